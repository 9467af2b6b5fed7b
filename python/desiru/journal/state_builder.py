"""``program.to_state()`` for commits, reusing the demo lists of modules whose demos did not change.

A commit of one changed demo in a program of 100,000 must not copy 100,000 demos.
``Module.to_state`` copies every demo (about 2 us each); here a module whose
``demos`` list holds the very same Example objects as at the previous commit gets
the previous commit's demo list back (an identity check per demo, ~30 ns), and the
Rust diff then skips it by identity too.

Sound because an Example cannot be changed in place: it has no setters, and we
only reuse demos whose values are immutable scalars (a demo holding a list or a
dict could be mutated inside without its identity changing: those modules are
rebuilt every time). Every other field comes from ``Module.to_state`` /
``Program.to_state`` themselves, called with the demos (or children) set aside
for the call, so this file holds no copy of their logic; classes that override
``to_state`` are always asked directly. The journal calls this under its lock;
another thread reading the same module's ``demos`` during a commit could see the
list set aside. The result equals ``program.to_state()``
(tests/test_journal_state_builder.py).
"""

from __future__ import annotations

import operator
from typing import Any

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
        children = program.__dict__.get("_modules")
        if type(program).to_state is not Program.to_state or not isinstance(children, dict):
            return program.to_state()
        # everything but the children comes from Program.to_state itself (no copy of its logic):
        # it runs on the program with its children set aside for the call
        object.__setattr__(program, "_modules", {})
        try:
            state = program.to_state()
        finally:
            object.__setattr__(program, "_modules", children)
        modules = []
        for name, child in children.items():
            path = prefix + name
            if isinstance(child, Program):
                child_state = self._program(child, path + ".")
            else:
                child_state = self._module(child, path)
            modules.append({"name": name, **child_state})
        state["modules"] = modules
        return state

    def _module(self, module: Module, path: str) -> dict[str, Any]:
        examples = module.__dict__.get("demos")
        if type(module).to_state is not Module.to_state or type(examples) is not list:
            return module.to_state()
        self._seen.add(path)
        cached = self._cache.get(path)
        if cached is not None and cached[0] is not module:
            cached = None
        if cached is not None and len(cached[1]) == len(examples) and all(map(operator.is_, cached[1], examples)):
            demos = cached[2]  # the same Example objects as last time: the same list
        else:
            # the cache holds its Examples alive, so an id found here is that very object
            previous = dict(zip(map(id, cached[1]), cached[2])) if cached is not None else {}
            demos = []
            reusable = True
            for d in examples:
                demo = previous.get(id(d))
                if demo is None:
                    if _immutable_example(d):
                        demo = dict(d._data)  # == Module.to_state's copy_tree of it: its values are scalars
                    else:
                        demo = copy_tree(d._data if type(d) is Example else dict(d))
                        reusable = False
                demos.append(demo)
            if reusable:
                self._cache[path] = (module, list(examples), demos)
            else:
                self._cache.pop(path, None)
        # every other field from Module.to_state itself, run with the demos set aside
        module.__dict__["demos"] = []
        try:
            state = module.to_state()
        finally:
            module.__dict__["demos"] = examples
        state["demos"] = demos
        return state


__all__ = ["StateBuilder"]
