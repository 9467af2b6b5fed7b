"""Helpers for the state tree: the plain-data shape every layer works on (docs/STATE.md)."""

from __future__ import annotations

from typing import Any

from desiru.errors import CorruptDataError

_LEAVES = frozenset({str, int, float, bool, bytes, type(None)})


def copy_tree(value: Any) -> Any:
    """Copy the containers of a state tree (leaves are immutable and shared)."""
    t = type(value)
    # leaves are tested inline: most of a program is dicts of strings, and a call per leaf doubles the cost
    if t is dict:
        return {k: v if type(v) in _LEAVES else copy_tree(v) for k, v in value.items()}
    if t is list or t is tuple:
        return [v if type(v) in _LEAVES else copy_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: copy_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [copy_tree(v) for v in value]
    return value


def require_mapping(value: Any, what: str, path: str | None) -> dict[str, Any]:
    """``value`` if it is a dict, else a CorruptDataError naming ``what``."""
    if not isinstance(value, dict):
        raise CorruptDataError(f"{what} must be a mapping, got {type(value).__name__}", path=path)
    return value
