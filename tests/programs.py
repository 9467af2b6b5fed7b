"""Program builders and hypothesis strategies shared by the tests."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

import desiru as ds


class QA(ds.Program):
    """A two-step QA program like the one in DESIGN.md."""

    def __init__(self) -> None:
        super().__init__()
        self.retrieve = ds.Predict("question -> context", temperature=0.0)
        self.answer = ds.ChainOfThought("question, context -> answer", temperature=0.2, max_tokens=256)

    def forward(self, question: str) -> ds.Prediction:
        context = self.retrieve(question=question).context
        return self.answer(question=question, context=context)


class Outer(ds.Program):
    """A program with a nested program."""

    def __init__(self) -> None:
        super().__init__()
        self.first = ds.Predict("text -> summary")
        self.qa = QA()


def sample_program() -> QA:
    p = QA()
    p.retrieve.demos = [ds.Example(question="Capital of France?", context="Paris is the capital of France.")]
    p.answer.demos = [
        ds.Example(question="2+2?", context="arithmetic", reasoning="2 plus 2 is 4.", answer="4"),
        ds.Example(question="Colour of sky?", context="daytime", reasoning="Rayleigh scattering.", answer="blue"),
    ]
    p.answer.metadata["score"] = 0.93
    p.configuration = {"optimizer": "BootstrapFewShot", "max_demos": 4}
    p.metadata = {"run": "r1"}
    p.custom_data = {"notes": ["best so far"], "blob": b"\x00\x01\xff"}
    return p


# -- hypothesis: values a state tree may hold -------------------------------------------------
ints = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63), 2**64 - 1, 2**32, -(2**31), 127, 128, -32, -33]),
)
floats = st.floats(allow_nan=False)  # NaN != NaN, so equality checks use finite floats and +-inf
texts = st.one_of(st.text(max_size=40), st.sampled_from(["", "é", "日本語", "🙂" * 3, "$bytes", "a" * 300]))
leaves = st.one_of(st.none(), st.booleans(), ints, floats, texts, st.binary(max_size=40))
keys = st.one_of(st.text(max_size=12), st.sampled_from(["$bytes", "$float", "$dict", "class", "kind"]))
values = st.recursive(
    leaves,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=12,
)
names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def modules(draw: Any) -> ds.Module:
    cls = draw(st.sampled_from([ds.Predict, ds.ChainOfThought]))
    n_in = draw(st.integers(1, 3))
    fields = draw(st.lists(names, min_size=n_in + 1, max_size=n_in + 2, unique=True))
    fields = [f for f in fields if f != "reasoning"] or ["x", "y"]
    if len(fields) < 2:
        fields.append("out_field")
    spec = f"{', '.join(fields[:-1])} -> {fields[-1]}"
    m = cls(spec, **draw(st.dictionaries(names, values, max_size=3)))
    m.signature = m.signature.with_instructions(draw(texts))
    m.demos = [ds.Example(d) for d in draw(st.lists(st.dictionaries(names, values, max_size=3), max_size=4))]
    m.metadata = draw(st.dictionaries(names, values, max_size=2))
    return m


@st.composite
def programs(draw: Any, depth: int = 2) -> ds.Program:
    p = ds.Program()
    for name in draw(st.lists(names, max_size=4, unique=True)):
        if depth > 0 and draw(st.booleans()) and draw(st.integers(0, 3)) == 0:
            setattr(p, name, draw(programs(depth=depth - 1)))
        else:
            setattr(p, name, draw(modules()))
    p.configuration = draw(st.dictionaries(names, values, max_size=3))
    p.metadata = draw(st.dictionaries(names, values, max_size=2))
    p.custom_data = draw(values)
    return p


def has_nan(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(has_nan(v) for v in value.values())
    if isinstance(value, list):
        return any(has_nan(v) for v in value)
    return False
