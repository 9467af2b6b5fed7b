"""``program.to_state()`` for commits, reusing the demo lists of modules whose demos did not change.

A commit of one changed demo in a program of 100,000 must not copy 100,000 demos.
``Module.to_state`` copies every demo (about 2 us each); here a module whose
``demos`` list holds the very same Example objects as at the previous commit gets
the previous commit's demo list back (an identity check per demo, ~30 ns), and the
Rust diff then skips it by identity too.

Sound because an Example cannot be changed in place: it has no setters, and we
only reuse demos whose values are immutable scalars (a demo holding a list or a
dict could be mutated inside without its identity changing: those modules are
rebuilt every time). Classes that override ``to_state`` are always asked directly.
The result equals ``program.to_state()`` (tests/test_journal_state_builder.py).
"""

from __future__ import annotations

import operator
from typing import Any

from desiru import registry
from desiru.example import Example
from desiru.module import Module
from desiru.program import Program
from desiru.state import copy_tree

_SCALARS = (str, int, float, bool, type(None), bytes)


def _immutable_example(d: Any) -> bool:
    return type(d) is Example and all(type(v) in _SCALARS for v in d._data.values())


class StateBuilder:
    """Builds program states, remembering per module path the demos of the last build."""

    def __init__(self) -> None:
        # module path -> (module, the Example objects, their demo states)
        self._cache: dict[str, tuple[Module, list[Any], list[dict[str, Any]]]] = {}
        self._seen: set[str] = set()

    def build(self, program: Program) -> dict[str, Any]:
        """Equal to ``program.to_state()``; shares demo lists with earlier builds where nothing changed."""
        self._seen = set()
        state = self._program(program, "")
        for path in [p for p in self._cache if p not in self._seen]:
            del self._cache[path]  # modules that are gone: let their demos be freed
        return state

    def _program(self, program: Program, prefix: str) -> dict[str, Any]:
        if type(program).to_state is not Program.to_state:
            return program.to_state()
        modules = []
        for name, child in program._children().items():
            path = prefix + name
            if isinstance(child, Program):
                child_state = self._program(child, path + ".")
            elif isinstance(child, Module):
                child_state = self._module(child, path)
            else:  # pragma: no cover - _children holds only these two
                child_state = child.to_state()
            modules.append({"name": name, **child_state})
        return {
            "kind": "program",
            "class": registry.class_name(type(program)),
            "modules": modules,
            "configuration": copy_tree(program.configuration),
            "custom_data": program.custom_serialization(),
            "metadata": copy_tree(program.metadata),
        }

    def _module(self, module: Module, path: str) -> dict[str, Any]:
        if type(module).to_state is not Module.to_state:
            return module.to_state()
        self._seen.add(path)
        examples = module.demos
        cached = self._cache.get(path)
        if (cached is not None and cached[0] is module and len(cached[1]) == len(examples)
                and all(map(operator.is_, cached[1], examples))):
            demos = cached[2]
        else:
            demos = [copy_tree(d.to_dict() if isinstance(d, Example) else dict(d)) for d in examples]
            if all(map(_immutable_example, examples)):
                self._cache[path] = (module, list(examples), demos)
            else:
                self._cache.pop(path, None)
        return {
            "kind": "module",
            "class": registry.class_name(type(module)),
            "signature": module.signature.to_state(),
            "demos": demos,
            "parameters": copy_tree(module.parameters),
            "metadata": copy_tree(module.metadata),
        }


__all__ = ["StateBuilder"]
