"""The dspy adapter's entry in ``desiru.adapters``: how commit, save and replay take dspy modules."""

from __future__ import annotations

from typing import Any

from desiru import adapters
from desiru.interop.dspy.cache import DspyStateCache
from desiru.interop.dspy.live import from_dspy, is_dspy_module, to_dspy
from desiru.program import Program


def _load_into(program: Program, template: Any, *, allow_unsafe_lm_state: bool = False) -> Any:
    """A copy of the dspy module ``template`` holding ``program`` (the template is left unchanged)."""
    return to_dspy(program, template, copy=True, allow_unsafe_lm_state=allow_unsafe_lm_state)


ADAPTER = adapters.register(adapters.Adapter(
    name="dspy",
    label="a dspy module",
    accepts=is_dspy_module,  # checked without importing dspy
    to_program=from_dspy,
    converter=DspyStateCache,  # a journal keeps one: a commit converts only the demos that changed
    load_into=_load_into,
))

__all__ = ["ADAPTER"]
