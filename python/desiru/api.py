"""Top-level functions: ``ds.load``."""

from __future__ import annotations

import os

from desiru.module import Module
from desiru.program import Program
from desiru.serialization.documents import load_document


def load(path: str | os.PathLike[str], key: bytes | str | None = None) -> Program | Module:
    """Load a document as the registered class it names (a Program, or a Module file)."""
    doc = load_document(path, key=key)
    if doc.kind == "module":
        return Module.from_state(doc.state, path=os.fspath(path), copy=False)
    return Program.from_document(doc)
