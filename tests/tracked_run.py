"""A tracked optimization run written with the Journal API, as an optimizer would write it.

Candidates derive from random earlier ones (a tree), change instructions, demos and a
parameter, and carry a score, metrics and params; a few results arrive after their commit.
Deterministic for a seed, so a test can compare the report with what it wrote.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from programs import sample_program

import desiru as ds
from desiru.journal import Journal

INSTRUCTIONS = ["Answer briefly.", "Think step by step, then answer in one word.",
                "Use the context; say 'unknown' when it does not hold the answer.", "Answer like a <b>teacher</b>."]


def candidate(rng: random.Random, i: int) -> ds.Program:
    """A variant of the sample program: instructions, demos and temperature chosen by ``rng``."""
    p = sample_program()
    p.answer.signature = p.answer.signature.with_instructions(rng.choice(INSTRUCTIONS))
    p.answer.demos = [ds.Example(question=f"q{k}?", context=f"ctx {k}", reasoning=f"step {k}", answer=f"a{k}")
                      for k in rng.sample(range(12), rng.randint(1, 4))]
    p.answer.parameters["temperature"] = rng.choice([0.0, 0.3, 0.7, 1.0])
    return p


def write_run(path: Path | str, n: int = 40, seed: int = 7, key: Any = None) -> list[int]:
    """Write ``n`` scored commits (the first from the sample program) into the journal at ``path`` (a directory
    or a PostgreSQL location) and return their seqs."""
    rng = random.Random(seed)
    seqs: list[int] = []
    with Journal.open(path, key=key) as j:
        root = j.commit(sample_program(), score=0.3, metrics={"em": 0.3, "cost_usd": 0.05},
                        params={"instruction_idx": 0, "demo_set": 0})
        seqs.append(root.seq)
        for i in range(1, n):
            parent = rng.choice(seqs[-8:])
            em = round(min(1.0, 0.3 + 0.6 * i / n + rng.uniform(-0.15, 0.1)), 4)
            params = {"instruction_idx": rng.randrange(len(INSTRUCTIONS)), "demo_set": rng.randrange(6),
                      "note": "<script>alert(1)</script>" if i == 3 else "ok"}
            late = i % 9 == 0
            r = j.commit(candidate(rng, i), parent=parent, score=None if late else em,
                         metrics={"em": em, "cost_usd": round(rng.uniform(0.01, 0.06), 4)}, params=params)
            if late:  # an evaluation that came back after the commit
                j.record(r, score=em)
            seqs.append(r.seq)
        j.tag("best", j.best().seq)
    return seqs
