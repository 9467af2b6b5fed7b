"""The state of a live dspy module, fast on repeat: converted demos are reused while they are unchanged.

A journal commits the same dspy module again and again as an optimizer changes a demo or an
instruction. ``from_dspy`` converts every demo each time (dspy's ``dump_state`` copies each
``Example``), and the journal then copies the whole tree again: about 0.4 s for 10,000 demos.
``DspyStateCache.state(module)`` gives the same state tree (equal to
``from_dspy(module).to_state()``) but converts only the demos that changed:

- everything but the demos (signatures, LM settings, config, metadata) is converted as
  ``from_dspy`` converts it, from the predictors with their demos set aside for the call;
- a demo (a ``dspy.Example`` or a dict) whose values are all ``str`` or ``None`` is converted
  once and kept with a shallow copy of its fields and input keys; it is reused while the same
  object still holds equal fields and keys (an equal ``str`` converts the same). Any other
  demo is converted every time.

The cache holds the demo objects it saw, so an ``id`` it keeps is that object's. A journal
keeps one (``Journal._state_of_candidate``).
"""

from __future__ import annotations

import sys
import threading
from itertools import compress, repeat
from operator import is_not, ne
from typing import Any

from desiru.interop.dspy.live import _require_dspy, from_dspy
from desiru.interop.dspy.states import META, _demos, _plain

_LEAF = (str, type(None))


class _Demos:
    """One predictor's demos as last converted, position by position (parallel lists).

    ``fields`` holds a shallow copy of each demo's fields then (None when it may not be
    reused: a value that is not a str or None), ``keys`` its input keys then.
    """

    __slots__ = ("fields", "keys", "objs", "states")

    def __init__(self) -> None:
        self.objs: list[Any] = []
        self.fields: list[dict[str, Any] | None] = []
        self.keys: list[Any] = []
        self.states: list[dict[str, Any]] = []


class DspyStateCache:
    """Converted demos per predictor (by dspy name), reused across calls while unchanged."""

    def __init__(self) -> None:
        self._demos: dict[str, _Demos] = {}
        self._lock = threading.Lock()

    def state(self, module: Any) -> dict[str, Any]:
        """``from_dspy(module).to_state()``, converting only the demos that changed since the last call."""
        _require_dspy()
        params = dict(module.named_parameters())
        example_cls = getattr(sys.modules.get("dspy.primitives.example"), "Example", None)
        demos: dict[str, list[dict[str, Any]]] = {}
        set_aside: dict[str, Any] = {}
        with self._lock:
            for name, param in params.items():
                live = getattr(param, "demos", None)
                if type(live) is list and _is_predict(param):
                    demos[name] = self._convert(name, live, example_cls)
                    set_aside[name] = live
            for name in [n for n in self._demos if n not in demos]:
                del self._demos[name]
        # everything but the demos, converted by from_dspy itself on the predictors with no demos
        try:
            for name in set_aside:
                params[name].demos = []
            program = from_dspy(module)
        finally:
            for name, live in set_aside.items():
                params[name].demos = live
        state = program.to_state()
        for path, node in _module_nodes(state):
            meta = (node.get("metadata") or {}).get(META) or {}
            name = meta.get("name", path)
            if name in demos:
                node["demos"] = demos[name]
        return state

    def _convert(self, name: str, live: list[Any], example_cls: Any) -> list[dict[str, Any]]:
        """The demo states of ``live``; positions whose object, fields and input keys are unchanged are
        found at C speed (``map``/``compress``), so one changed demo of 10,000 costs little."""
        before = self._demos.get(name) or _Demos()
        n = len(live)
        fields = list(map(getattr, live, repeat("_store"), live))  # an Example's fields; a dict demo itself
        keys = list(map(getattr, live, repeat("_input_keys"), repeat(None)))
        if n == len(before.objs):
            changed = set(compress(range(n), map(is_not, live, before.objs)))
            changed.update(compress(range(n), map(ne, fields, before.fields)))
            changed.update(compress(range(n), map(ne, keys, before.keys)))
            if not changed:
                return before.states
        else:
            changed = set(range(n))
        after = _Demos()
        after.objs, after.keys = list(live), [None if k is None else frozenset(k) for k in keys]
        after.fields = list(before.fields) if n == len(before.objs) else [None] * n
        after.states = list(before.states) if n == len(before.objs) else [{}] * n
        moved = {id(o): i for i, o in enumerate(before.objs)} if n != len(before.objs) else {}
        for i in sorted(changed):
            demo = live[i]
            j = moved.get(id(demo))
            if j is not None and before.fields[j] is not None and before.fields[j] == fields[i] \
                    and before.keys[j] == keys[i]:
                after.fields[i], after.states[i] = before.fields[j], before.states[j]
                continue
            is_example = example_cls is not None and isinstance(demo, example_cls)
            after.states[i] = _demo_state(name, i, demo, is_example)
            store = fields[i]
            reusable = type(store) is dict and all(type(k) is str for k in store) and all(
                isinstance(v, _LEAF) for v in store.values())
            after.fields[i] = dict(store) if reusable else None
        self._demos[name] = after
        return after.states


def _is_predict(param: Any) -> bool:
    predict = getattr(sys.modules.get("dspy.predict.predict"), "Predict", None)
    return predict is not None and isinstance(param, predict)


def _demo_state(name: str, i: int, demo: Any, is_example: bool) -> dict[str, Any]:
    """One demo as ``from_dspy`` writes it: dspy's dump of it, plain values, and its input keys."""
    serialize = sys.modules["dspy.predict.predict"].serialize_object
    if is_example:
        dumped = demo.copy()
        for field in dumped:
            dumped[field] = serialize(dumped[field])
        dumped = dumped.toDict()
    else:
        dumped = {k: serialize(v) for k, v in dict(demo).items()} if isinstance(demo, dict) else demo
    where = f"predictor {name!r}"
    if not isinstance(dumped, dict):
        from desiru.errors import CorruptDataError

        raise CorruptDataError(f"{where}: demo {i} must be an object, got {type(dumped).__name__}")
    (state,) = _demos(where, [_plain(dumped, where)], [demo], None)
    return state


def _module_nodes(state: dict[str, Any], prefix: str = "") -> Any:
    for child in state.get("modules") or []:
        path = f"{prefix}{child.get('name')}"
        if child.get("kind") == "program":
            yield from _module_nodes(child, path + ".")
        else:
            yield path, child


__all__ = ["DspyStateCache"]
