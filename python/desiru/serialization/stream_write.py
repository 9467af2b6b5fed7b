"""Save a large plain msgpack program while it is being encoded (docs/FORMAT.md, "Module table").

The header comes first in the file but depends on every byte after it (the content checksum
and the module table's ranges and checksums), so ``table.state_chunks`` encodes the whole
state before anything is written. Only the header's *size* is needed to place the state,
and that size depends on the module lengths only through how many bytes msgpack spends on
each integer. A module whose encoding is surely at least 64 KiB (a lower bound walked
from its first strings) has a 5-byte length; smaller ones are encoded up front, exactly. So
the state is written at its final offset module by module, on a second thread
(``_engine.StreamWriter``: each module encoded into a reused buffer, written and hashed
with XXH3 there, once, disk writeback started every 8 MiB) while the next module is encoded;
the header goes in last at offset 0. Should the guess miss (a module of 4 GiB or more),
``Misfit`` is raised, the temp file dropped, and the caller writes the document the plain way.
The bytes are exactly those ``documents.msgpack_parts`` joins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from desiru import _engine
from desiru.atomic import atomic_fd, write_all
from desiru.serialization import envelope, table

#: a module whose encoding is at least this long has a uint32 length (0xce + 4 bytes) in the table
BIG = 1 << 16
_ZERO_DIGEST = table.PREFIX + "0" * 32
#: what a piece is, for the hashes the writer puts it in (``_engine.StreamWriter``)
_REST, _SPAN, _MODULE = 0, 1, 2


class Misfit(Exception):
    """The header came out longer or shorter than the room left for it (the caller saves anew)."""


def plan(state: dict[str, Any], kind: str) -> list[bool] | None:
    """For a program state that gets a module table and holds a module large enough to stream,
    which of its modules are surely at least BIG bytes encoded; else None (save it the plain way)."""
    modules = state.get("modules")
    if (kind != "program" or not isinstance(modules, list) or not all(isinstance(k, str) for k in state)
            or not all(isinstance(m, dict) and isinstance(m.get("name"), str) for m in modules)):
        return None
    big = [_engine.size_at_least(m, BIG) for m in modules]
    return big if any(big) else None


def _header(state: dict[str, Any], kind: str, extra: dict[str, Any] | None, checksum: str,
            module_table: dict[str, Any]) -> bytes:
    """The header bytes of ``documents.msgpack_parts`` (``table.header_chunks``)."""
    tree = envelope.build(state, kind, extra=extra, checksum=checksum, module_table=module_table)
    return b"".join(table.header_chunks(tree))


def save(state: dict[str, Any], kind: str, extra: dict[str, Any] | None, target: Path, big: list[bool]
         ) -> tuple[int, str]:
    """Write the msgpack document of ``state`` to ``target`` atomically and durably, encoding while
    writing; returns (size, content checksum). ``big`` is what ``plan`` said of the state; ``Misfit``
    when the header does not fit the room guessed for it (nothing is left behind)."""
    modules: list[dict[str, Any]] = state["modules"]
    keys = sorted(state, key=lambda k: k.encode("utf-8"))
    split = keys.index("modules")
    # what is small is encoded now, exactly; a big module is encoded when its turn to be written comes
    before = [table.map_header(len(state))]
    for key in keys[:split]:
        before += [_engine.packb(key), _engine.packb(state[key], canonical=True)]
    after = []
    for key in keys[split + 1:]:
        after += [_engine.packb(key), _engine.packb(state[key], canonical=True)]
    opening = _engine.packb("modules") + table.array_header(len(modules))
    ready: list[bytes | None] = [None if b else _engine.packb(m, canonical=True) for m, b in zip(modules, big)]
    # the room for the header: the table with each big module's length as BIG (same integer width)
    pos = sum(map(len, before))
    span_start = pos
    pos += len(opening)
    entries = []
    for module, body in zip(modules, ready):
        length = BIG if body is None else len(body)
        entries.append([module["name"], pos, length, _ZERO_DIGEST])
        pos += length
    outlines = [table.outline_of(m) for m in modules]
    guess = {"span": [span_start, pos], "rest": _ZERO_DIGEST, "modules": entries, "outlines": outlines}
    room = len(_header(state, kind, extra, _ZERO_DIGEST, guess))

    with atomic_fd(target) as fd:
        writer = _engine.StreamWriter(fd, room)
        try:
            for chunk in before:
                writer.put(chunk, _REST)
            writer.put(opening, _SPAN)
            lengths = []
            for i, module in enumerate(modules):
                body = ready[i]
                if body is None:
                    lengths.append(writer.put_module(module))
                else:
                    ready[i] = None
                    writer.put(body, _MODULE)
                    lengths.append(len(body))
            for chunk in after:
                writer.put(chunk, _REST)
            written, whole, rest, digests = writer.finish()
        finally:
            writer.close()
        offset = span_start + len(opening)
        for entry, length, digest in zip(entries, lengths, digests):
            entry[1], entry[2], entry[3] = offset, length, table.PREFIX + digest.hex()
            offset += length
        module_table = {"span": [span_start, offset], "rest": table.PREFIX + rest.hex(),
                        "modules": entries, "outlines": outlines}
        checksum = f"{envelope.CHECKSUM_ALGORITHM}:{whole.hex()}"
        header = _header(state, kind, extra, checksum, module_table)
        if len(header) != room:
            raise Misfit(f"header of {len(header)} bytes, room for {room}")
        write_all(fd, header, 0)
        size = room + written
    return size, checksum


__all__ = ["BIG", "Misfit", "plan", "save"]
