"""Top-level functions: ``ds.load`` and ``ds.load_module``."""

from __future__ import annotations

import os

from desiru import files, gcpause
from desiru.errors import DesiruError
from desiru.module import Module
from desiru.program import Program
from desiru.serialization import lazy as lazy_open
from desiru.serialization.documents import load_document


def load(path: str | os.PathLike[str], key: bytes | str | None = None, *, cls: type | None = None,
         verify: bool = True, any_class: bool = False, lazy: bool = False) -> Program | Module:
    """Load a document as the registered class it names (a Program, or a Module file).

    ``cls=Triage`` loads it as that class instead of looking the name up, so a file saved
    from a script (class ``__main__.Triage``) loads in another script that imports Triage.
    The file must hold that class (or a plain desiru.Program) unless ``any_class=True``.
    ``verify=False`` skips the content checksum: unsafe, only to rescue a hand-edited file.
    ``lazy=True``: a msgpack program with a module table (format 2.2.0), or one in per-module
    frames (compressed or encrypted), is mapped and returned at once, each module decoded (and
    decompressed, decrypted) and verified when first touched; other files load eagerly.
    """
    if lazy and verify:
        mapped = lazy_open.open_mapped(path, key)
        if mapped is not None:
            return files.load_lazily(mapped, _program_class(cls, path), any_class=any_class)
    with gcpause.paused():  # decoding and building make a large tree without cycles
        doc = load_document(path, key=key, verify=verify)
        if doc.kind == "module":
            target = cls if isinstance(cls, type) and issubclass(cls, Module) else Module
            return target.from_state(doc.state, path=os.fspath(path), copy=False)
        return files.from_document(_program_class(cls, path), doc, any_class=any_class)


def _program_class(cls: type | None, path: str | os.PathLike[str]) -> type[Program]:
    """The class ``cls=`` asks a program file to load as (Program when None)."""
    target = cls if cls is not None else Program
    if not (isinstance(target, type) and issubclass(target, Program)):
        raise DesiruError(f"cls= takes a Program subclass for a program file, got {cls!r}", path=os.fspath(path),
                          hint="pass the class itself, e.g. ds.load(path, cls=Triage)")
    return target


load_module = files.load_module

__all__ = ["load", "load_module"]
