"""State-tree helpers shared by the pure-Python diff and apply: strict equality, copies, and the
keys and names both use (``rust/src/diff.rs`` has the same rules)."""

from __future__ import annotations

import struct
from typing import Any

from desiru._pure.codec import MAX_DEPTH
from desiru.errors import SerializationError

State = dict[str, Any]
Edit = dict[str, Any]

PROGRAM_KEYS = ("modules", "configuration", "custom_data", "metadata")
MODULE_KEYS = ("signature", "demos", "parameters", "metadata")
EDIT_HINT = "the edits do not fit this state: apply them to the state they were computed from"

_F64 = struct.Struct("<d")


def too_deep() -> SerializationError:
    return SerializationError(
        f"containers nest deeper than {MAX_DEPTH} levels (is there a cycle?)",
        hint="a state tree is plain nested dicts and lists of bounded depth",
    )


def strict_equal(a: Any, b: Any, depth: int = 0) -> bool:
    """Equality that sees types: ``True``, ``1`` and ``1.0`` differ; floats compare by bits."""
    if a is b:
        return True
    t = type(a)
    if t is not type(b):
        return False
    if t is dict:
        if depth >= MAX_DEPTH:
            raise too_deep()
        if len(a) != len(b):
            return False
        for k, v in a.items():
            if k not in b or not strict_equal(v, b[k], depth + 1):
                return False
        return True
    if t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise too_deep()
        if len(a) != len(b):
            return False
        for x, y in zip(a, b):
            if not strict_equal(x, y, depth + 1):
                return False
        return True
    if t is float:
        return _F64.pack(a) == _F64.pack(b)
    return bool(a == b)


def copy_tree(x: Any, depth: int = 0) -> Any:
    """A copy of the containers (dict, list, tuple) of a tree; leaves are shared."""
    t = type(x)
    if t is dict:
        if depth >= MAX_DEPTH:
            raise too_deep()
        out = {}
        for k, v in x.items():
            out[k] = copy_tree(v, depth + 1)
        return out
    if t is list:
        if depth >= MAX_DEPTH:
            raise too_deep()
        items = []
        for v in x:
            items.append(copy_tree(v, depth + 1))
        return items
    if t is tuple:
        if depth >= MAX_DEPTH:
            raise too_deep()
        items = []
        for v in x:
            items.append(copy_tree(v, depth + 1))
        return tuple(items)
    return x


__all__ = ["EDIT_HINT", "MODULE_KEYS", "PROGRAM_KEYS", "Edit", "State", "copy_tree", "strict_equal", "too_deep"]
