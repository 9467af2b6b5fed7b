"""The program states every benchmark works on, generated deterministically.

- ``small_state()``: 5 modules x 8 demos (a typical compiled program).
- ``large_state()``: 50 modules x 2,000 demos of realistic text, about 100 MB
  as msgpack (the "very large program" of DESIGN.md).

The shape follows docs/STATE.md (program state -> modules -> signature, demos,
parameters, metadata). Text is drawn from a fixed English vocabulary;
about 1 sentence in 40 carries a non-ASCII word (accents, typographic quotes
and dashes, a little CJK and emoji), as LM output does, so str encoding and
decoding take their non-ASCII paths on part of the data.
Sentences come from a pool, so generating 100,000 demos takes about a second.
"""

from __future__ import annotations

import random
from typing import Any

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there been one all we their has would when if so no what can out other more "
    "question answer context retrieval model passage document evidence reasoning step therefore because "
    "population capital river mountain century history science energy protein language network theorem "
    "algorithm database compiler function variable gradient optimizer prompt instruction example signature "
    "module program demonstration metric score baseline accuracy latency throughput memory storage journal "
    "Paris Berlin Tokyo Amazon Nile Everest Newton Curie Turing Lovelace Einstein Darwin Shakespeare"
).split()
# LM text is mostly ASCII with some typographic quotes, dashes and names:
# about 1 sentence in 40 carries one of these.
_UNICODE_WORDS = "café naïve résumé Zürich São Kraków “quoted” it’s — ≥ ± → 東京 日本語 数据 🙂 ✓".split()


_INSTRUCTIONS = (
    "Answer the question using only the context. Be concise and cite the passage you used.",
    "Given the fields question and context, produce the answer. Think step by step first.",
    "Retrieve passages relevant to the question; prefer recent and authoritative sources.",
    "Summarize the document in two sentences for a technical reader.",
    "Classify the sentiment of the review as positive, negative or neutral and explain briefly.",
)


def _sentence(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randint(6, 22))
    if rng.random() < 0.025:
        words[rng.randrange(len(words))] = rng.choice(_UNICODE_WORDS)
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice((".", ".", ".", "?", "!"))


class _Text:
    """A pool of sentences to build paragraphs from quickly."""

    def __init__(self, rng: random.Random, pool: int = 4000) -> None:
        self.rng = rng
        self.pool = [_sentence(rng) for _ in range(pool)]

    def paragraph(self, lo: int, hi: int) -> str:
        return " ".join(self.rng.choices(self.pool, k=self.rng.randint(lo, hi)))


def _field(name: str, desc: str) -> dict[str, Any]:
    return {"name": name, "desc": desc, "prefix": name.capitalize() + ":"}


def _demo(text: _Text, rng: random.Random, i: int) -> dict[str, Any]:
    demo: dict[str, Any] = {
        "question": text.paragraph(1, 2),
        "context": text.paragraph(4, 9),
        "reasoning": text.paragraph(1, 4),
        "answer": text.paragraph(1, 1),
        "id": i,
        "score": round(rng.random(), 4),
        "augmented": rng.random() < 0.5,
    }
    if rng.random() < 0.1:
        demo["feedback"] = None
    return demo


def _module(text: _Text, rng: random.Random, index: int, n_demos: int) -> dict[str, Any]:
    cot = index % 2 == 1
    outputs = [_field("answer", "the answer, often a short phrase")]
    if cot:
        outputs.insert(0, _field("reasoning", "think step by step"))
    return {
        "kind": "module",
        "name": f"step_{index}",
        "class": "desiru.ChainOfThought" if cot else "desiru.Predict",
        "signature": {
            "instructions": rng.choice(_INSTRUCTIONS),
            "inputs": [_field("question", "a question"), _field("context", "may contain relevant facts")],
            "outputs": outputs,
        },
        "demos": [_demo(text, rng, i) for i in range(n_demos)],
        "parameters": {"temperature": round(rng.random(), 2), "max_tokens": rng.choice((256, 512, 1024)), "n": 1},
        "metadata": {"optimizer": "MIPROv2", "trial": rng.randint(0, 500), "score": round(rng.random(), 4)},
    }


def program_state(n_modules: int, n_demos: int, seed: int = 0) -> dict[str, Any]:
    """A program state of ``n_modules`` modules with ``n_demos`` demos each."""
    rng = random.Random(seed)
    text = _Text(rng)
    return {
        "kind": "program",
        "class": "bench.BigProgram",
        "modules": [_module(text, rng, m, n_demos) for m in range(n_modules)],
        "configuration": {"lm": "gpt-4o-mini", "max_retries": 3, "cache": True},
        "custom_data": None,
        "metadata": {"created": "2026-11-28T12:00:00Z", "desiru_version": "0.1.0", "seed": seed},
    }


def small_state() -> dict[str, Any]:
    """5 modules x 8 demos."""
    return program_state(5, 8, seed=1)


def large_state() -> dict[str, Any]:
    """50 modules x 2,000 demos (about 100 MB of msgpack)."""
    return program_state(50, 2000, seed=2)


if __name__ == "__main__":
    import time

    import msgpack

    for name, make in (("small", small_state), ("large", large_state)):
        t = time.perf_counter()
        state = make()
        built = time.perf_counter() - t
        size = len(msgpack.packb(state, use_bin_type=True))
        print(f"{name}: {size / 1e6:.2f} MB of msgpack, built in {built:.2f} s")
