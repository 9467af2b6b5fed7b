"""Open a msgpack program document lazily (docs/FORMAT.md "Module table").

``open_mapped`` maps the file, decodes the header entries only, checks ``header_checksum``
(which covers the module table) and the table's shape; ``rest_state`` decodes the program's own
fields (checked against the table's ``rest``) and ``module_state`` one module's bytes from the map,
checked against the table. Objects are built above (``desiru.files``: each top-level module stays
pending until first touched). The checksum of the whole state is not checked here: ``desiru verify`` and an eager
load check it. Files without a table (older formats, json, yaml, compressed or encrypted
documents) give None, and callers load them eagerly.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Any

import msgpack

from desiru.errors import CorruptDataError, DesiruError
from desiru.serialization import envelope, table
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


__all__ = ["MappedDocument", "open_mapped", "outline"]
