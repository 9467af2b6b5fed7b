"""Open a msgpack program document lazily (docs/FORMAT.md "Module table").

``open_mapped`` maps the file, decodes the header entries only, checks ``header_checksum``
(which covers the module table) and the table's shape; ``rest_state`` decodes the program's own
fields (checked against the table's ``rest``) and ``module_state`` one module's bytes from the map,
checked against the table. Objects are built above (``desiru.files``: each top-level module stays
pending until first touched). The checksum of the whole state is not checked here: ``desiru verify`` and an eager
load check it. A framed document (compressed or encrypted, docs/FORMAT.md "Framed container")
opens the same way, each module's frame decrypted and decompressed when the module is touched.
Files without a table (older formats, json, yaml, whole-file compressed or encrypted documents)
give None, and callers load them eagerly.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Any

import msgpack

from desiru.errors import CorruptDataError, DesiruError
from desiru.serialization import envelope, framed, table


@dataclass(frozen=True)
class MappedDocument:
    """A mapped program document whose header and module table were checked.

    A plain document's state lies in the map from ``state_offset``; a framed one (compressed or
    encrypted, ``frames`` set) holds its head frame (header entries and the state up to the first
    module, ``state_offset`` counting in it) and its tail frame opened, each module in its own frame.
    """

    path: str
    data: mmap.mmap
    state_offset: int
    header: dict[str, Any]
    table: table.Table
    frames: framed.Framed | None = None
    head: bytes = b""
    tail: bytes = b""

    def find(self, name: str) -> table.Entry | None:
        return next((e for e in self.table.entries if e.name == name), None)

    def module_bytes(self, entry: table.Entry) -> tuple[bytes, int]:
        """One module's bytes (from the map, or its frame opened) and their offset in the file."""
        if self.frames is not None:
            i = self.table.entries.index(entry) + 1
            return self.frames.frame(i, entry.name, expect=entry.length), self.frames.starts[i]
        start = self.state_offset + entry.offset
        return self.data[start:start + entry.length], start

    def module_state(self, entry: table.Entry) -> dict[str, Any]:
        """One module's state entry, read and verified (CorruptDataError names it)."""
        data, start = self.module_bytes(entry)
        return table.check_module(data, entry, self.path, offset=start)

    def rest_state(self) -> dict[str, Any]:
        """The program's state without its modules (verified against the table's ``rest``)."""
        s, (a, b) = self.state_offset, self.table.span
        if self.frames is not None:
            return table.decode_rest(self.head[s:s + a] + self.tail, self.table, self.path)
        return table.decode_rest(self.data[s:s + a] + self.data[s + b:], self.table, self.path)


def outline(doc: MappedDocument, entry: table.Entry) -> dict[str, Any]:
    """A module's state entry with ``demos`` as their number, read without building a demo: what a
    listing such as ``desiru inspect`` shows (the bytes are checked against the table first)."""
    data, start = doc.module_bytes(entry)
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


def open_mapped(path: str | os.PathLike[str], key: Any = None) -> MappedDocument | None:
    """The mapped document at ``path`` with its checked table, or None when it has none.

    A framed document (compressed or encrypted per module) opens its head and tail frames now
    (``key`` for an encrypted one); any other file with a ``key`` loads eagerly (None).
    """
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
    try:
        found = _open(data, name, key)
    except DesiruError:
        data.close()
        raise
    if found is None:
        data.close()
    return found


def _open(data: mmap.mmap, name: str, key: Any) -> MappedDocument | None:
    frames, head, tail = None, b"", b""
    if framed.is_framed(data):
        frames = framed.parse(data, key, name)
        head = frames.frame(0)
        header, state_offset, _ = framed.module_names(head, frames)
        tail = frames.frame(frames.count - 1)
    else:
        first = data[0]
        found = table.read_header(data) if key is None and (0x80 <= first <= 0x8F or first in (0xDE, 0xDF)) else None
        if found is None:
            return None
        header, state_offset = found
    if table.TABLE_KEY not in header:
        return None
    version = envelope.header_version(header, name)
    envelope.check_newer(version, name)
    if not table.has_table(version) or header.get("format") != envelope.FORMAT_NAME \
            or header.get("kind") != "program":
        return None  # a newer minor (it warns, keeps its fields) or something odd: the eager path deals with it
    envelope.check_header(header, version, name)
    if frames is None:
        checked = table.parse(header[table.TABLE_KEY], len(data) - state_offset, name)
        first = checked.entries[0].offset if checked.entries else checked.span[1]
        table.check_span_head(data[state_offset + checked.span[0]:state_offset + first], checked, name)
    else:
        checked = _framed_table(header, len(head) - state_offset, len(tail), name)
        table.check_span_head(head[state_offset + checked.span[0]:], checked, name)
    return MappedDocument(name, data, state_offset, header, checked, frames, head, tail)


def _framed_table(header: dict[str, Any], head_state: int, tail: int, path: str) -> table.Table:
    """The module table of a framed document, checked as a plain one would be, and against its frames:
    the head frame ends where the first module starts, the tail frame is the state after the span."""
    value = header[table.TABLE_KEY]
    span = value.get("span") if isinstance(value, dict) else None
    end = span[1] if isinstance(span, list) and len(span) == 2 and type(span[1]) is int else 0
    checked = table.parse(value, end + tail, path)
    first = checked.entries[0].offset if checked.entries else checked.span[1]
    if head_state != first:
        raise CorruptDataError(f"the head frame holds {head_state:,} bytes of the state, the module table says "
                               f"{first:,}", path=path,
                               hint="the file was altered or damaged; restore it from a backup")
    return checked


__all__ = ["MappedDocument", "open_mapped", "outline"]
