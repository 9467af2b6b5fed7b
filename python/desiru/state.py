"""Helpers for the state tree: the plain-data shape every layer works on (docs/STATE.md)."""

from __future__ import annotations

from typing import Any

from desiru.errors import CorruptDataError

#: the types of a state tree's immutable leaves (shared, never copied)
LEAVES = frozenset({str, int, float, bool, bytes, type(None)})


def copy_tree(value: Any) -> Any:
    """Copy the containers of a state tree (leaves are immutable and shared)."""
    t = type(value)
    # leaves are tested inline: most of a program is dicts of strings, and a call per leaf doubles the cost
    if t is dict:
        return {k: v if type(v) in LEAVES else copy_tree(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [v if type(v) in LEAVES else copy_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: copy_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [copy_tree(v) for v in value]
    return value


def leaves_only(fields: dict[str, Any]) -> bool:
    """Whether every value of ``fields`` is an immutable leaf (a demo that can be shared, not copied)."""
    return LEAVES.issuperset(map(type, fields.values()))


def copy_for_objects(state: Any) -> Any:
    """A copy of a program or module state to build objects from: every container copied, except the
    demo dicts whose values are all leaves, which are shared.

    Such a demo becomes an Example, which has no setters, and no edit changes a demo dict in
    place (a changed demo is a removed one plus an added one), so sharing is invisible. It
    halves what a copy of 100,000 demos costs, and a journal commit of a program built this
    way from the journal's own state finds its unchanged demos by identity.
    """
    if type(state) is not dict:
        return copy_tree(state)
    out: dict[str, Any] = {}
    for key, value in state.items():
        if key == "demos" and type(value) is list:
            out[key] = [d if type(d) is dict and leaves_only(d) else copy_tree(d) for d in value]
        elif key == "modules" and type(value) is list:
            out[key] = [copy_for_objects(m) for m in value]
        else:
            out[key] = copy_tree(value)
    return out


def require_mapping(value: Any, what: str, path: str | None) -> dict[str, Any]:
    """``value`` if it is a dict, else a CorruptDataError naming ``what``."""
    if not isinstance(value, dict):
        raise CorruptDataError(f"{what} must be a mapping, got {type(value).__name__}", path=path)
    return value
