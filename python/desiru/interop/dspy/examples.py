"""Build many ``dspy.Example`` objects fast, exactly as ``dspy.Example(fields).with_inputs(*keys)`` builds them.

Loading a program with 10,000 demos makes 10,000 Examples. dspy's constructor plus
``with_inputs`` (which copies the Example, and asks its length on the way) costs ~15 us
each, ten times dspy's own JSON load of the same program, which leaves demos as dicts.
``ExampleFactory`` builds one Example with dspy's own constructor and gives every later
one the same attributes (fresh copies of the mutable ones), its fields and its input
keys, which is what the constructor and ``with_inputs`` set. A test compares the two.
"""

from __future__ import annotations

from typing import Any

_set = object.__setattr__


class ExampleFactory:
    """Examples of one dspy Example class, built like ``cls(fields)`` / ``.with_inputs(*keys)``."""

    def __init__(self, cls: Any) -> None:
        self.cls = cls
        template = vars(cls({"_": None}))
        plain = {k: v for k, v in template.items() if k not in ("_store", "_input_keys")}
        self._fast = "_store" in template and "_input_keys" in template and all(
            v is None or isinstance(v, (list, dict, set, str, int, float, bool)) for v in plain.values())
        self._shared = {k: v for k, v in plain.items() if not isinstance(v, (list, dict, set))}
        self._fresh = [(k, v) for k, v in plain.items() if isinstance(v, (list, dict, set))]
        self._new = object.__new__

    def make(self, fields: dict[str, Any], keys: list[str] | None, *, copy: bool = True) -> Any:
        """An Example holding ``fields`` (a copy unless ``copy=False``); input keys ``keys`` (None: never set)."""
        if not self._fast:  # an Example class this factory does not know: dspy's own way
            ex = self.cls(fields)
            return ex.with_inputs(*keys) if keys is not None else ex
        ex = self._new(self.cls)
        attrs = {**self._shared, "_store": dict(fields) if copy else fields,
                 "_input_keys": None if keys is None else set(keys)}
        for k, v in self._fresh:  # mutable attributes (the Example's _demos list): each its own
            attrs[k] = v.copy()
        _set(ex, "__dict__", attrs)  # not through Example.__setattr__
        return ex

    def make_all(self, fields: list[dict[str, Any]], keys: list[list[str] | None]) -> list[Any]:
        """``make(f, k, copy=False)`` for each pair: the Examples take the dicts they are given."""
        if not self._fast or self._shared or [k for k, _ in self._fresh] != ["_demos"]:
            return [self.make(f, k, copy=False) for f, k in zip(fields, keys)]
        new, cls, out, set_ = self._new, self.cls, [], _set
        append = out.append
        for f, k in zip(fields, keys):  # the shape dspy's constructor gives, built in one step
            ex = new(cls)
            set_(ex, "__dict__", {"_store": f, "_demos": [], "_input_keys": None if k is None else set(k)})
            append(ex)
        return out

    def adopt_marked(self, demos: list[Any], key: str) -> None:
        """Turn, in place, each dict of ``demos`` holding ``key`` into an Example that takes that dict.

        ``key`` (removed from the dict) holds the input keys, or None when they were never set;
        a dict without it stays a dict. For demos nobody else holds (a program just read from a
        file): no dict is copied, one pass over the list.
        """
        if not self._fast or self._shared or [k for k, _ in self._fresh] != ["_demos"]:
            for i, d in enumerate(demos):
                if type(d) is dict and key in d:
                    keys = d.pop(key)
                    demos[i] = self.make(d, keys if isinstance(keys, list) else None, copy=False)
            return
        new, cls, set_, missing = self._new, self.cls, _set, object()
        for i, d in enumerate(demos):
            if type(d) is not dict:
                continue
            keys = d.pop(key, missing)
            if keys is missing:
                continue
            ex = new(cls)
            set_(ex, "__dict__", {"_store": d, "_demos": [],
                                  "_input_keys": set(keys) if isinstance(keys, list) else None})
            demos[i] = ex


__all__ = ["ExampleFactory"]
