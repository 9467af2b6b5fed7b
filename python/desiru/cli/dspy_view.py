"""How the CLI shows programs converted from dspy: dspy's class names, no adapter bookkeeping in demos."""

from __future__ import annotations

from typing import Any

from desiru.cli import sources
from desiru.interop.dspy import INPUT_KEYS, META


def _dspy_class(node: Any) -> str | None:
    meta = (node.get("metadata") or {}).get(META) if isinstance(node, dict) else None
    cls = meta.get("class") if isinstance(meta, dict) else None
    return cls if isinstance(cls, str) else None


def short_class(cls: str) -> str:
    """dspy's public name for a dspy class path: ``dspy.predict.predict.Predict`` -> ``dspy.Predict``."""
    return f"dspy.{cls.rsplit('.', 1)[-1]}" if cls.startswith("dspy.") else cls


def class_label(root: dict[str, Any] | None, path: str, node: dict[str, Any]) -> str:
    """The class to show for a module: its dspy class when it came from dspy (the owner's for a
    ChainOfThought's inner ``predict``), else its desiru class."""
    cls = _dspy_class(node)
    if cls is None:
        return str(node.get("class"))
    if root is not None and "." in path and path.rsplit(".", 1)[1] == "predict":
        try:
            owner = _dspy_class(sources.find_child(root, path.rsplit(".", 1)[0]))
        except Exception:  # a damaged tree: show what the module itself says
            owner = None
        if owner is not None and owner.startswith("dspy.") and not owner.endswith(".Predict"):
            cls = owner
    return short_class(cls)


def demo_columns(demos: list[dict[str, Any]]) -> list[str]:
    """The columns of a demo table: every key in order of appearance, without the adapter's input keys."""
    columns: list[str] = []
    for d in demos:
        columns.extend(k for k in d if k not in columns and k != INPUT_KEYS)
    return columns


__all__ = ["class_label", "demo_columns", "short_class"]
