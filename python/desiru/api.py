"""Top-level functions: ``ds.load`` and ``ds.load_module``."""

from __future__ import annotations

import os

from desiru.errors import DesiruError, UnknownModuleError
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
    ``lazy=True``: a msgpack program with a module table (format 2.2.0) is mapped and returned at
    once, each module decoded and verified when first touched; other files load eagerly.
    """
    if lazy and key is None and verify:
        mapped = lazy_open.open_mapped(path)
        if mapped is not None:
            return lazy_open.load_program(mapped, _program_class(cls, path), any_class=any_class)
    doc = load_document(path, key=key, verify=verify)
    if doc.kind == "module":
        target = cls if isinstance(cls, type) and issubclass(cls, Module) else Module
        return target.from_state(doc.state, path=os.fspath(path), copy=False)
    return _program_class(cls, path).from_document(doc, any_class=any_class)


def _program_class(cls: type | None, path: str | os.PathLike[str]) -> type[Program]:
    """The class ``cls=`` asks a program file to load as (Program when None)."""
    target = cls if cls is not None else Program
    if not (isinstance(target, type) and issubclass(target, Program)):
        raise DesiruError(f"cls= takes a Program subclass for a program file, got {cls!r}", path=os.fspath(path),
                          hint="pass the class itself, e.g. ds.load(path, cls=Triage)")
    return target


def load_module(path: str | os.PathLike[str], name: str, *, key: bytes | str | None = None) -> Module | Program:
    """The module at dotted ``name`` in a program file (or a module file saved under that name).

    With a module table only that module's bytes are read and verified; otherwise the file is
    loaded in full (older formats, json, yaml, compressed or encrypted files).
    """
    if key is None:
        child = lazy_open.load_module(path, name)
        if child is not None:
            return child
    doc = load_document(path, key=key)
    if doc.kind == "module":
        if name not in (doc.state.get("name"), ""):
            raise UnknownModuleError(f"this module file holds {doc.state.get('name')!r}, not {name!r}",
                                     path=os.fspath(path))
        return Module.from_state(doc.state, path=os.fspath(path), copy=False)
    return Program.from_document(doc).get_module(name)
