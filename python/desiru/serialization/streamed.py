"""Read a large plain program document module by module from a memory map.

A msgpack program with a module table (format 2.2.0 and later) and at least ``STREAM_BYTES``
is read without a whole-file buffer: each module's bytes are checked against the table and
decoded, then the program's own fields, then the checksum of the whole state is hashed from
the map in ``HASH_STEP`` steps, and the table's outlines are compared with the modules; the
map's pages are released as they are read. Framed (compressed, encrypted) documents and older
minors are read whole. A load holds
the state plus one module, never the whole file as well, and a ``progress(done, total)``
callback is told the state bytes read. The checks are those of ``documents.load_document``.
"""

from __future__ import annotations

import contextlib
import mmap
import os

import xxhash

from desiru.errors import CorruptDataError, DesiruError
from desiru.progress import ProgressCallback, Ticker
from desiru.serialization import envelope, lazy, table

#: a plain program file at least this large is read module by module
STREAM_BYTES = 32 << 20
#: bytes hashed per step of the whole-state checksum (their pages are released after each)
HASH_STEP = 8 << 20


def read(path: str | os.PathLike[str], *, progress: ProgressCallback | None = None) -> envelope.Document | None:
    """The document at ``path`` read module by module, or None when it is small, has no table, or
    fails a check: the caller then reads it whole, which says what is wrong exactly as it always
    has (so a damaged file costs a second read, a sound one a single pass)."""
    try:
        if os.stat(path).st_size < STREAM_BYTES:
            return None
        doc = lazy.open_mapped(path)
    except (OSError, DesiruError):
        return None
    if doc is None:
        return None
    if doc.frames is not None or envelope.header_version(doc.header, doc.path) != envelope.CURRENT_VERSION:
        doc.data.close()  # framed (compressed, encrypted) or an older minor to migrate: read whole
        return None
    try:
        tick = Ticker(progress, len(doc.data) - doc.state_offset, step=1 << 20)
        modules = []
        for entry in doc.table.entries:
            start = doc.state_offset + entry.offset
            modules.append(doc.module_state(entry))
            release(doc.data, start, entry.length)
            tick(entry.offset + entry.length)
        state = {**doc.rest_state(), "modules": modules}
        check_whole(doc)
        table.check_outlines(doc.header, state, doc.path)
        tick.end()
    except DesiruError:
        return None
    finally:
        doc.data.close()
    version = envelope.header_version(doc.header, doc.path)
    return envelope.Document(kind="program", state=state, version=version, header=dict(doc.header),
                             format="msgpack", path=doc.path)


def check_whole(doc: lazy.MappedDocument) -> None:
    """The header's checksum of the whole state against its bytes, hashed in steps from the map."""
    whole = xxhash.xxh3_128()
    end = len(doc.data)
    with memoryview(doc.data) as view:
        for at in range(doc.state_offset, end, HASH_STEP):
            whole.update(view[at:min(at + HASH_STEP, end)])
            release(doc.data, at, HASH_STEP)
    want = doc.header.get("checksum")
    got = f"{envelope.CHECKSUM_ALGORITHM}:{whole.hexdigest()}"
    if want != got:
        raise CorruptDataError(f"content checksum mismatch: the file says {want}, its content hashes to {got}",
                               path=doc.path, hint="the file was altered or damaged; restore it from a backup")


def release(data: mmap.mmap, start: int, length: int) -> None:
    """Drop the pages of ``data[start:start + length]`` from this process (they stay in the page
    cache): read once, they would otherwise count in its memory until the map is closed."""
    page = mmap.PAGESIZE
    first = start - start % page
    with contextlib.suppress(OSError, ValueError, AttributeError):  # madvise is a hint: without it, only memory
        data.madvise(mmap.MADV_DONTNEED, first, min(length + start - first, len(data) - first))


__all__ = ["HASH_STEP", "STREAM_BYTES", "check_whole", "read", "release"]
