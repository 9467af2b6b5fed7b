"""Programs and modules to document files and back: the one place loaded state trees become objects.

Serialization below works on state trees only; this module builds ``Program``/``Module`` objects
from them (eagerly, or lazily from a mapped document's module table) and turns objects into the
state trees documents hold. ``Program.save``/``load``/``export_module``/``import_module`` reach
these functions through ``desiru.persistence`` (installed at the bottom of this file), so the
model never imports this layer.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

from desiru import adapters, gcpause, persistence
from desiru.errors import DesiruError, UnknownModuleError
from desiru.module import Module
from desiru.persistence import LoadedDocument, SaveResult
from desiru.program import Program, warn_script_classes
from desiru.serialization import lazy
from desiru.serialization.documents import load_document, save_document
from desiru.serialization.migrations import unknown_header_fields

P = TypeVar("P", bound=Program)


def save(obj: Any, path: str | os.PathLike[str], *, format: str | None = None,
         compress: bool | str | None = None, key: bytes | str | None = None, sha256: bool = False) -> SaveResult:
    """Write ``obj`` (a Program, or a live object an adapter converts, e.g. a dspy module) to ``path``
    (``sha256=True``: also the file's sha256, in ``SaveResult.sha256``)."""
    program = obj if isinstance(obj, Program) else adapters.to_program(obj, "save")
    warn_script_classes(program)
    return save_document(program.to_state(copy=False), path, kind="program", format=format, compress=compress,
                         key=key, extra=program.__dict__.get("_unknown_header"), sha256=sha256)


def load(cls: type[P], path: str | os.PathLike[str], *, key: bytes | str | None = None, verify: bool = True,
         any_class: bool = False, lazy_open: bool = False) -> P:
    """The program file at ``path`` as ``cls`` (see ``Program.load``); ``lazy_open`` maps a file that
    has a module table and builds each module when it is first touched."""
    mapped = lazy.open_mapped(path, key) if lazy_open and verify else None
    if mapped is not None:
        return load_lazily(mapped, cls, any_class=any_class)  # type: ignore[return-value]
    with gcpause.paused():  # decoding and building make a large tree without cycles
        return from_document(cls, load_document(path, key=key, verify=verify), any_class=any_class)



def from_document(cls: type[P], doc: LoadedDocument, *, any_class: bool = False) -> P:
    """The program a loaded document holds (see ``Program.from_document``)."""
    if doc.kind != "program":
        raise DesiruError(f"this {'file' if doc.path else 'document'} holds a {doc.kind}, not a program",
                          path=doc.path, hint="load it with import_module() or desiru.load()")
    with gcpause.paused():  # hundreds of thousands of demos, none in a cycle
        program = cls.from_state(doc.state, path=doc.path, copy=False, any_class=any_class)
    program._unknown_header = unknown_header_fields(dict(doc.header)) or None
    return program


def module_from_state(state: dict[str, Any], path: str | None) -> Module | Program:
    """The module (or nested program, by its ``kind``) a table entry holds."""
    with gcpause.paused():
        if state.get("kind") == "program":
            return Program.from_state(state, path=path, copy=False)
        return Module.from_state(state, path=path, copy=False)


def load_module(path: str | os.PathLike[str], name: str, *, key: bytes | str | None = None) -> Module | Program:
    """The module at dotted ``name`` in a program file (or a module file saved under that name).

    With a module table only that module's bytes are read (decompressed, decrypted) and verified;
    otherwise the file is loaded in full (older formats, json, yaml, files compressed or encrypted
    as a whole).
    """
    mapped = lazy.open_mapped(path, key)
    if mapped is not None:
        return _module_of_mapped(mapped, name)
    doc = load_document(path, key=key)
    if doc.kind == "module":
        if name not in (doc.state.get("name"), ""):
            raise UnknownModuleError(f"this module file holds {doc.state.get('name')!r}, not {name!r}",
                                     path=os.fspath(path))
        return Module.from_state(doc.state, path=os.fspath(path), copy=False)
    return from_document(Program, doc).get_module(name)


def export_module(program: Program, name: str, path: str | os.PathLike[str], *, format: str | None = None,
                  compress: bool | str | None = None, key: bytes | str | None = None,
                  sha256: bool = False) -> SaveResult:
    """Write one module (or nested program) of ``program`` to its own file, as ``save`` does."""
    state = program.get_module(name).to_state(copy=False)
    state = {"name": name.rpartition(".")[2], **state}
    return save_document(state, path, kind=state["kind"], format=format, compress=compress, key=key,
                         sha256=sha256)


def import_module(program: Program, path: str | os.PathLike[str], name: str | None = None, *,
                  key: bytes | str | None = None) -> Module | Program:
    """Load a module file into ``program`` under ``name`` (default: the name it was saved with)."""
    doc = load_document(path, key=key)
    target = name or doc.state.get("name")
    if not isinstance(target, str) or not all(p.isidentifier() for p in target.split(".")):
        raise DesiruError(f"cannot import under the name {target!r}", path=path,
                          hint="pass name='some_identifier'")
    child: Module | Program
    if doc.kind == "program":
        child = Program.from_state(doc.state, path=os.fspath(path), copy=False)
    else:
        child = Module.from_state(doc.state, path=os.fspath(path), copy=False)
    program._set_child(target, child)
    return child


# -- lazy documents -------------------------------------------------------------------------------
def load_lazily(doc: lazy.MappedDocument, cls: type[Program] = Program, *, any_class: bool = False) -> Program:
    """The program of a mapped document, its modules pending until first touched (on ``Program``
    itself, of the class the file names; ``any_class`` as in ``Program.from_state``)."""
    rest = doc.rest_state()
    program = cls.from_state({**rest, "modules": []}, path=doc.path, copy=False, any_class=any_class)
    try:
        for entry in doc.table.entries:
            program._add_pending(entry.name, _Loader(doc, entry))
    except DesiruError as exc:
        exc.locate(doc.path)
        raise
    program._unknown_header = unknown_header_fields(dict(doc.header)) or None
    return program


def build_child(doc: lazy.MappedDocument, entry: Any) -> Module | Program:
    """The module (or nested program) of one table entry, decoded and verified now."""
    state = doc.module_state(entry)
    try:
        return module_from_state(state, doc.path)
    except DesiruError as exc:
        exc.within(f"module {entry.name!r}")
        raise


class _Loader:
    """Builds one pending module (a class, not a closure, so that errors show what it loads)."""

    __slots__ = ("doc", "entry")

    def __init__(self, doc: lazy.MappedDocument, entry: Any) -> None:
        self.doc, self.entry = doc, entry

    def __call__(self) -> Module | Program:
        return build_child(self.doc, self.entry)


def _module_of_mapped(doc: lazy.MappedDocument, name: str) -> Module | Program:
    """The module at dotted ``name``, read from its own bytes of a mapped document."""
    top, _, below = name.partition(".")
    entry = doc.find(top)
    if entry is None:
        raise UnknownModuleError(f"no module {top!r} in {doc.path}",
                                 hint=f"known: {[e.name for e in doc.table.entries]}")
    child = build_child(doc, entry)
    if not below:
        return child
    if not isinstance(child, Program):
        raise UnknownModuleError(f"{top!r} is a module, not a program: it has no {below!r}")
    return child.get_module(below)


persistence.use(persistence.Persistence(
    save=save, load=load, load_module=load_module, from_document=from_document,
    export_module=export_module, import_module=import_module,
))

__all__ = ["build_child", "export_module", "from_document", "import_module", "load", "load_lazily",
           "load_module", "module_from_state", "save"]
