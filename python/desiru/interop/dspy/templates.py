"""A live dspy module shaped like a program read from a DSPy save: something to load the file into.

dspy's ``module.load(path)`` needs an instance of the program that saved the file.
When the code is gone (a file from another repository, another dspy release), this
builds a stand-in from what desiru read: nested ``dspy.Module`` objects named as the
file names its predictors, each a ``dspy.Predict`` with the derived signature (or a
``dspy.Retrieve`` for a retriever's ``{"k": ...}`` state).
"""

from __future__ import annotations

from typing import Any

from desiru.errors import DesiruError
from desiru.interop.dspy.live import _require_dspy
from desiru.interop.dspy.states import ROOT, _meta, _segments
from desiru.program import Program


def dspy_template(program: Program) -> Any:
    """A dspy module whose ``named_parameters()`` are the program's predictors, by their dspy names."""
    dspy = _require_dspy()
    mods = [(_meta(m.metadata).get("name", d), m) for d, m in program.named_modules()]
    if [n for n, _ in mods] == [ROOT]:  # a bare predictor (or a file keyed "self", which only a bare one reads)
        return _leaf(dspy, mods[0][1])
    root = dspy.Module()
    for name, module in mods:
        *parents, last = _segments(name)
        node = root
        for seg in [*parents, last]:
            if not seg.isidentifier():
                raise DesiruError(f"cannot build a stand-in for the dspy predictor {name!r} (only dotted names)",
                                  hint="load the file into an instance of the program that saved it")
        for seg in parents:
            child = node.__dict__.get(seg)
            if child is None:
                child = dspy.Module()
                setattr(node, seg, child)
            node = child
        setattr(node, last, _leaf(dspy, module))
    return root


def _leaf(dspy: Any, module: Any) -> Any:
    raw = _meta(module.metadata).get("raw")
    if raw is not None:
        if isinstance(raw, dict) and set(raw) <= {"k"}:
            return dspy.Retrieve(k=raw.get("k", 3))
        raise DesiruError(f"no dspy class is known for a parameter whose state is {sorted(raw)}",
                          hint="load the file into an instance of the program that saved it")
    sig = module.signature
    fields = {n: (str, dspy.InputField(desc=f.desc)) for n, f in sig.inputs.items()}
    fields |= {n: (str, dspy.OutputField(desc=f.desc)) for n, f in sig.outputs.items()}
    return dspy.Predict(dspy.Signature(fields, sig.instructions or None))
