"""Open a msgpack program document lazily (docs/FORMAT.md "Module table").

``open_mapped`` maps the file, decodes the header entries only, checks ``header_checksum``
(which covers the module table) and the table's shape. ``load_program`` then decodes the
program's own fields (checked against the table's ``rest``) and leaves every top-level module
pending: its bytes are read from the map, checked against the table and decoded when first
touched. The checksum of the whole state is not checked here: ``desiru verify`` and an eager
load check it. Files without a table (older formats, json, yaml, compressed or encrypted
documents) give None, and callers load them eagerly.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Any

import msgpack

from desiru.errors import CorruptDataError, DesiruError, UnknownModuleError
from desiru.module import Module
from desiru.program import Program
from desiru.serialization import envelope, table
from desiru.serialization.migrations import unknown_header_fields
from desiru.serialization.version import CURRENT_VERSION


@dataclass(frozen=True)
class MappedDocument:
    """A mapped program document whose header and module table were checked."""

    path: str
    data: mmap.mmap
    state_offset: int
    header: dict[str, Any]
    table: table.Table

    def find(self, name: str) -> table.Entry | None:
        return next((e for e in self.table.entries if e.name == name), None)

    def module_state(self, entry: table.Entry) -> dict[str, Any]:
        """One module's state entry, read from the map and verified (CorruptDataError names it)."""
        start = self.state_offset + entry.offset
        return table.check_module(self.data[start:start + entry.length], entry, self.path, offset=start)

    def rest_state(self) -> dict[str, Any]:
        """The program's state without its modules (verified against the table's ``rest``)."""
        s, (a, b) = self.state_offset, self.table.span
        return table.decode_rest(self.data[s:s + a] + self.data[s + b:], self.table, self.path)


def outline(doc: MappedDocument, entry: table.Entry) -> dict[str, Any]:
    """A module's state entry with ``demos`` as their number, read without building a demo: what a
    listing such as ``desiru inspect`` shows (the bytes are checked against the table first)."""
    start = doc.state_offset + entry.offset
    data = doc.data[start:start + entry.length]
    got = table.digest(data)
    if got != entry.checksum:
        raise CorruptDataError(f"module {entry.name!r}: checksum mismatch (the table says {entry.checksum}, its "
                               f"bytes hash to {got})", path=doc.path, offset=start,
                               hint="the module's bytes were altered or damaged; restore the file from a backup")
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1 << 16))
    unpacker.feed(data)
    out: dict[str, Any] = {}
    try:
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key == "demos":
                out[key] = _array_length(data, unpacker.tell())
                unpacker.skip()  # the whole array in one call
            else:
                out[key] = unpacker.unpack()
    except Exception as exc:
        raise CorruptDataError(f"module {entry.name!r} cannot be decoded: {exc}", path=doc.path, offset=start) from None
    return out


def _array_length(data: bytes, at: int) -> int:
    """The item count of the msgpack array whose header starts at ``data[at]``."""
    first = data[at]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F
    if first in (0xDC, 0xDD):
        width = 2 if first == 0xDC else 4
        return int.from_bytes(data[at + 1:at + 1 + width], "big")
    raise ValueError(f"demos are not an array (byte 0x{first:02x})")


def open_mapped(path: str | os.PathLike[str]) -> MappedDocument | None:
    """The mapped document at ``path`` with its checked table, or None when it has none."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return None
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # the map outlives the descriptor
    except FileNotFoundError:
        raise DesiruError("no such file", path=name, hint="check the path") from None
    except IsADirectoryError:
        raise DesiruError("this is a folder, not a file", path=name) from None
    except (OSError, ValueError) as exc:
        raise DesiruError(f"cannot map the file: {getattr(exc, 'strerror', None) or exc}", path=name) from None
    first = data[0]
    found = table.read_header(data) if 0x80 <= first <= 0x8F or first in (0xDE, 0xDF) else None
    if found is None or table.TABLE_KEY not in found[0]:
        data.close()
        return None
    header, state_offset = found
    try:
        version = envelope.header_version(header, name)
        envelope.check_newer(version, name)
        if version != CURRENT_VERSION or header.get("format") != envelope.FORMAT_NAME \
                or header.get("kind") != "program":
            data.close()  # a newer minor (it warns, keeps its fields) or something odd: the eager path deals with it
            return None
        envelope.check_header(header, version, name)
        checked = table.parse(header[table.TABLE_KEY], len(data) - state_offset, name)
    except DesiruError:
        data.close()
        raise
    return MappedDocument(name, data, state_offset, header, checked)


def build_child(doc: MappedDocument, entry: table.Entry) -> Module | Program:
    """The module (or nested program) of one table entry, decoded and verified now."""
    state = doc.module_state(entry)
    try:
        if state.get("kind") == "program":
            return Program.from_state(state, path=doc.path, copy=False)
        return Module.from_state(state, path=doc.path, copy=False)
    except DesiruError as exc:
        exc.within(f"module {entry.name!r}")
        raise


def load_program(doc: MappedDocument, cls: type[Program] = Program, *, any_class: bool = False) -> Program:
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


class _Loader:
    """Builds one pending module (a class, not a closure, so that errors show what it loads)."""

    __slots__ = ("doc", "entry")

    def __init__(self, doc: MappedDocument, entry: table.Entry) -> None:
        self.doc, self.entry = doc, entry

    def __call__(self) -> Module | Program:
        return build_child(self.doc, self.entry)


def load_module(path: str | os.PathLike[str], name: str) -> Module | Program | None:
    """The module at dotted ``name`` read from its own bytes, or None when the file has no table."""
    doc = open_mapped(path)
    if doc is None:
        return None
    top, _, below = name.partition(".")
    entry = doc.find(top)
    if entry is None:
        raise UnknownModuleError(f"no module {top!r} in {os.fspath(path)}",
                                 hint=f"known: {[e.name for e in doc.table.entries]}")
    child = build_child(doc, entry)
    if not below:
        return child
    if not isinstance(child, Program):
        raise UnknownModuleError(f"{top!r} is a module, not a program: it has no {below!r}")
    return child.get_module(below)


__all__ = ["MappedDocument", "build_child", "load_module", "load_program", "open_mapped", "outline"]
