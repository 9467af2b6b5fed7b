"""The module table of a msgpack program document (format 2.2.0, docs/FORMAT.md "Module table").

A writer encodes the state canonically piece by piece, so it knows where each top-level
module's bytes lie; the table in the header records each module's byte range and xxh3-128,
the range of the whole ``"modules"`` entry (``span``) and the xxh3-128 of the state bytes
outside it (``rest``). A reader that trusts the header (``header_checksum`` covers the table)
can then decode the program's own fields at once and each module when it is first needed.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Any

import msgpack
import xxhash

from desiru import _engine
from desiru.errors import CorruptDataError
from desiru.serialization.version import CURRENT_VERSION, Version

TABLE_KEY = "module_table"
#: the first format whose msgpack programs carry a module table (2.3.0 added each module's outline)
TABLE_SINCE = Version("2.2.0")
#: the largest header (module table included) a reader decodes before it gives up on the table
MAX_HEADER = 64 << 20
_FIRST_READ = 1 << 16
PREFIX = "xxh3-128:"


def has_table(version: Version) -> bool:
    """Whether a document of ``version`` may carry a module table this release reads as it is (the
    formats from TABLE_SINCE to this release's; a newer minor's table may say more than we know)."""
    return TABLE_SINCE <= version <= CURRENT_VERSION


def map_header(n: int) -> bytes:
    """The msgpack header of a map of ``n`` entries, in its shortest form."""
    if n < 16:
        return bytes([0x80 | n])
    return b"\xde" + n.to_bytes(2, "big") if n < 1 << 16 else b"\xdf" + n.to_bytes(4, "big")


def header_chunks(tree: dict[str, Any]) -> list[bytes]:
    """A msgpack document's header as written before its state: the map header (counting the state),
    every field of ``tree`` (an envelope, its "state" left out), then the key "state"."""
    fields = {k: v for k, v in tree.items() if k != "state"}
    head = _engine.packb(fields)[len(map_header(len(fields))):]
    return [map_header(len(fields) + 1), head, _engine.packb("state")]


def array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    return b"\xdc" + n.to_bytes(2, "big") if n < 1 << 16 else b"\xdd" + n.to_bytes(4, "big")


def digest(data: bytes | memoryview) -> str:
    """``"xxh3-128:<hex>"`` of bytes, the form every checksum of a document takes."""
    return PREFIX + xxhash.xxh3_128_hexdigest(data)


def state_chunks(state: dict[str, Any], kind: str) -> tuple[list[bytes], dict[str, Any] | None]:
    """The canonical encoding of ``state`` as chunks, and the module table of a program (else None).

    The chunks joined are exactly ``packb(state, canonical=True)``: canonical msgpack is context
    free, so a map written key by key (keys sorted by their UTF-8 bytes) is the same bytes.
    """
    modules = state.get("modules")
    if (kind != "program" or not isinstance(modules, list) or not all(isinstance(k, str) for k in state)
            or not all(isinstance(m, dict) and isinstance(m.get("name"), str) for m in modules)):
        return [_engine.packb(state, canonical=True)], None
    chunks = [map_header(len(state))]
    pos = len(chunks[0])
    rest = xxhash.xxh3_128(chunks[0])
    entries: list[list[Any]] = []
    outlines: list[dict[str, Any]] = []
    span = [0, 0]
    for key in sorted(state, key=lambda k: k.encode("utf-8")):
        packed_key = _engine.packb(key)
        if key != "modules":
            value = _engine.packb(state[key], canonical=True)
            chunks += [packed_key, value]
            rest.update(packed_key)
            rest.update(value)
            pos += len(packed_key) + len(value)
            continue
        span[0] = pos
        head = array_header(len(modules))
        chunks += [packed_key, head]
        pos += len(packed_key) + len(head)
        for module in modules:
            body = _engine.packb(module, canonical=True)
            entries.append([module["name"], pos, len(body), digest(body)])
            outlines.append(outline_of(module))
            chunks.append(body)
            pos += len(body)
        span[1] = pos
    return chunks, {"span": span, "rest": PREFIX + rest.hexdigest(), "modules": entries, "outlines": outlines}


def outline_of(entry: dict[str, Any]) -> dict[str, Any]:
    """A module's state entry with its demos as their number, and a nested program's modules as their
    outlines: what a listing (``desiru inspect``) shows, small enough for the header (since 2.3.0)."""
    out = dict(entry)
    if isinstance(out.get("demos"), list):
        out["demos"] = len(out["demos"])
    if isinstance(out.get("modules"), list):
        out["modules"] = [outline_of(m) if isinstance(m, dict) else m for m in out["modules"]]
    return out


@dataclass(frozen=True)
class Entry:
    """One top-level module of the table: its name, where its bytes lie (from the state's start), checksum."""

    name: str
    offset: int
    length: int
    checksum: str


@dataclass(frozen=True)
class Table:
    """A checked module table: ``span`` (start, end) of the "modules" entry, ``rest`` checksum, entries,
    and (since 2.3.0) each module's outline (None in a 2.2.0 table)."""

    span: tuple[int, int]
    rest: str
    entries: tuple[Entry, ...]
    outlines: tuple[dict[str, Any], ...] | None = None


def parse(value: Any, state_size: int, path: str | None) -> Table:
    """The table a header holds, checked against itself and the state's size, or CorruptDataError.

    The modules must follow one another without a gap from just after the "modules" key and its
    array header to the end of ``span``, inside the state: a table that says anything else was
    not written by desiru (it could make a reader read bytes that belong to something else).
    """
    def bad(why: str) -> CorruptDataError:
        return CorruptDataError(f"the module table is malformed: {why}", path=path,
                                hint="the file was altered or damaged; `desiru verify` checks it in full")

    if not isinstance(value, dict) or set(value) - {"outlines"} != {"span", "rest", "modules"}:
        raise bad("it is not a map of span, rest, modules (and outlines)")
    span, rest, rows = value["span"], value["rest"], value["modules"]
    if (not isinstance(span, list) or len(span) != 2 or not all(type(x) is int for x in span)
            or not 0 < span[0] <= span[1] <= state_size):
        raise bad(f"span {span!r:.60} is not a range inside the state ({state_size} bytes)")
    if not isinstance(rest, str) or not rest.startswith(PREFIX):
        raise bad("rest is not an xxh3-128 checksum")
    if not isinstance(rows, list):
        raise bad("modules is not a list")
    at = span[0] + len(_engine.packb("modules")) + len(array_header(len(rows)))
    entries = []
    seen: set[str] = set()
    for row in rows:
        if (not isinstance(row, list) or len(row) != 4 or not isinstance(row[0], str) or type(row[1]) is not int
                or type(row[2]) is not int or not isinstance(row[3], str) or not row[3].startswith(PREFIX)):
            raise bad(f"entry {row!r:.80} is not [name, offset, length, checksum]")
        if row[1] != at or row[2] <= 0:
            raise bad(f"module {row[0]!r} starts at {row[1]}, not where the one before it ends ({at})")
        if row[0] in seen:
            raise bad(f"two modules are named {row[0]!r}")
        seen.add(row[0])
        at += row[2]
        entries.append(Entry(row[0], row[1], row[2], row[3]))
    if at != span[1]:
        raise bad(f"the modules end at {at}, the span at {span[1]}")
    outlines = value.get("outlines")
    if outlines is not None and (not isinstance(outlines, list) or len(outlines) != len(entries) or not all(
            isinstance(o, dict) and o.get("name") == e.name for o, e in zip(outlines, entries))):
        raise bad("the outlines are not one map per module, in the modules' order")
    return Table((span[0], span[1]), rest, tuple(entries), None if outlines is None else tuple(outlines))


def _same(a: Any, b: Any) -> bool:
    """Equal as state trees (by canonical bytes: a NaN equals itself, 1 differs from 1.0)."""
    try:
        return bool(_engine.packb(a, canonical=True) == _engine.packb(b, canonical=True))
    except Exception:  # a value no state tree holds: not what a writer wrote
        return False


def check_outlines(header: dict[str, Any], state: dict[str, Any], path: str | None) -> None:
    """Each outline of the module table against the module it outlines (an eager, verifying load
    and ``desiru verify`` run this: a listing must never show what the file does not hold)."""
    outlines = header[TABLE_KEY].get("outlines") if isinstance(header.get(TABLE_KEY), dict) else None
    modules = state.get("modules")
    if outlines is None or not isinstance(modules, list):
        return
    for i, module in enumerate(modules):
        if i >= len(outlines) or not isinstance(module, dict) or not _same(outline_of(module), outlines[i]):
            name = module.get("name") if isinstance(module, dict) else i
            raise CorruptDataError(f"module {name!r}: the module table's outline differs from the module",
                                   path=path, hint="the file was altered or damaged; restore it from a backup")
    if len(outlines) != len(modules):
        raise CorruptDataError("the module table outlines another number of modules than the state holds",
                               path=path, hint="the file was altered or damaged; restore it from a backup")


def check_span_head(data: bytes, table: Table, path: str | None) -> None:
    """The bytes between the span's start and the first module must be the key "modules" and the
    array header for the table's rows (``rest`` does not cover them; the whole checksum does)."""
    if bytes(data) != _engine.packb("modules") + array_header(len(table.entries)):
        raise CorruptDataError("the bytes before the first module are not the \"modules\" key and the array header "
                               "the module table describes", path=path,
                               hint="the file was altered or damaged; restore it from a backup")


def decode_rest(data: bytes, table: Table, path: str | None) -> dict[str, Any]:
    """The state without its modules, from the state bytes outside the span (checked against ``rest``)."""
    got = digest(data)
    if got != table.rest:
        raise CorruptDataError(f"the program's own fields do not match their checksum (the file says {table.rest}, "
                               f"they hash to {got})", path=path,
                               hint="the file was altered or damaged; restore it from a backup")
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(len(data), 1 << 16))
    unpacker.feed(data)
    try:
        n = unpacker.read_map_header()
        rest = {}
        for _ in range(n - 1):  # the "modules" entry is the one the span cut out
            key = unpacker.unpack()
            rest[key] = unpacker.unpack()
        left = len(data) - unpacker.tell()
    except Exception as exc:
        raise CorruptDataError(f"the program's own fields cannot be decoded: {exc}", path=path) from None
    if left or "modules" in rest or not all(isinstance(k, str) for k in rest):
        raise CorruptDataError("the program's own fields are not the map the module table describes", path=path,
                               hint="the file was altered or damaged; `desiru verify` checks it in full")
    return rest


def check_module(data: bytes, entry: Entry, path: str | None, offset: int | None = None) -> dict[str, Any]:
    """The state entry of one module from its bytes, verified against the table, or CorruptDataError
    naming the module."""
    got = digest(data)
    if got != entry.checksum:
        raise CorruptDataError(f"module {entry.name!r}: checksum mismatch (the table says {entry.checksum}, "
                               f"its {len(data)} bytes hash to {got})", path=path, offset=offset,
                               hint="the module's bytes were altered or damaged; restore the file from a backup")
    try:
        state = _engine.unpackb(data)
    except CorruptDataError as exc:
        exc.within(f"module {entry.name!r}")
        raise
    if not isinstance(state, dict) or state.get("name") != entry.name:
        raise CorruptDataError(f"module {entry.name!r}: its bytes hold another entry", path=path, offset=offset)
    return state


def check_table(raw: bytes | memoryview, state_offset: int, header: dict[str, Any], path: str | None) -> None:
    """Every module's bytes and the rest against the module table (an eager, verifying load runs this)."""
    t = parse(header[TABLE_KEY], len(raw) - state_offset, path)
    view = memoryview(raw)
    for entry in t.entries:
        start = state_offset + entry.offset
        got = digest(view[start:start + entry.length])
        if got != entry.checksum:
            raise CorruptDataError(f"module {entry.name!r}: checksum mismatch (the table says {entry.checksum}, "
                                   f"its bytes hash to {got})", path=path, offset=start,
                                   hint="the file was altered or damaged; restore it from a backup")
    a, b = t.span
    rest = digest(bytes(view[state_offset:state_offset + a]) + bytes(view[state_offset + b:]))
    if rest != t.rest:
        raise CorruptDataError("the program's own fields do not match the module table's checksum", path=path,
                               hint="the file was altered or damaged; restore it from a backup")


def read_header(data: bytes | mmap.mmap) -> tuple[dict[str, Any], int] | None:
    """The header entries of a msgpack document and where its state starts, or None when the bytes
    are not a map with a "state" entry (a full decode then says what is wrong). Reads no more than
    the header: a 64 KiB prefix, more only for a larger table."""
    size = _FIRST_READ
    while True:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=max(size, 1 << 16))
        unpacker.feed(data[:size])
        header: dict[str, Any] = {}
        try:
            for _ in range(unpacker.read_map_header()):
                key = unpacker.unpack()
                if key == "state":
                    return header, int(unpacker.tell())
                if not isinstance(key, str):
                    return None
                header[key] = unpacker.unpack()
            return None
        except msgpack.OutOfData:
            if size >= min(len(data), MAX_HEADER):
                return None
            size *= 4
        except Exception:
            return None
