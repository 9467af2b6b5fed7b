"""Framed documents (container version 2, docs/FORMAT.md "Framed container"): a compressed or
encrypted msgpack program whose modules stay readable one at a time.

The plain document (header entries, then the canonical state with its module table) is cut into
frames: frame 0 holds every byte up to the first module, frames 1..n one module each (the rows of
the module table, in order), the last frame the state's bytes after the modules. Each frame is
compressed on its own, then sealed on its own (AES-256-GCM, its associated data binding the
container header, the frame directory, the frame's number and the module's name), so a reader
opens the header frame and the one module it needs. The frames joined are exactly the plain
document, which an eager load decodes as before.
"""

from __future__ import annotations

import mmap
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import zstandard

from desiru import crypto
from desiru.errors import CorruptDataError, DesiruError, NotEncryptedError
from desiru.serialization import container, table

_COUNT = struct.Struct(">I")
_LENGTH = struct.Struct(">Q")
#: frames besides the modules: the head (frame 0) and the tail (the last)
EXTRA_FRAMES = 2


def is_framed(data: bytes | mmap.mmap) -> bool:
    """Whether ``data`` is a framed document (desiru's container, version 2)."""
    m = len(crypto.CONTAINER_MAGIC)
    return len(data) > m and crypto.is_container(data[:m]) and data[m] == crypto.FRAMED_VERSION


# -- writing ---------------------------------------------------------------------------------------
def plain_frames(chunks: list[bytes], state_start: int, module_table: dict[str, Any]) -> list[bytes]:
    """The plain frames of a msgpack program document given as chunks (``documents.msgpack_parts``):
    the head, one frame per row of ``module_table``, the tail. Joined, they are the document."""
    rows, span_end = module_table["modules"], module_table["span"][1]
    cut = rows[0][1] if rows else span_end  # where, in the state, the head frame ends
    pos, first = 0, None
    for i in range(state_start, len(chunks)):
        if pos == cut:
            first = i
            break
        pos += len(chunks[i])
    if first is None and pos == cut:
        first = len(chunks)
    if first is None or any(len(chunks[first + j]) != row[2] for j, row in enumerate(rows)):
        raise DesiruError("the document's chunks do not follow its module table (a bug in desiru)",
                          hint="save without compress= and key= meanwhile, and report it")
    tail = first + len(rows)
    return [b"".join(chunks[:first]), *chunks[first:tail], b"".join(chunks[tail:])]


def _names(rows: list[list[Any]]) -> list[str]:
    return ["", *(row[0] for row in rows), ""]


def write_frames(frames: list[bytes], names: list[str], compression: str | None, key: Any) -> list[bytes]:
    """The bytes of a framed container holding ``frames`` (compressed, then sealed when ``key``)."""
    k = crypto.Key.from_user(key) if key is not None else None
    with ThreadPoolExecutor(2) as pool:  # zstd and gzip release the GIL: two frames at a time
        stored = list(pool.map(lambda f: _compress(f, compression), frames))
    largest = max(map(len, stored))
    header = crypto.read_header(crypto.build_framed_header(k, compression, crypto.segment_log2_for(largest)))
    lengths = [len(s) if k is None else crypto.sealed_size(len(s), header.segment_log2) for s in stored]
    directory = _COUNT.pack(len(frames)) + b"".join(_LENGTH.pack(n) for n in lengths)
    if k is not None:
        bound = header.raw + directory
        stored = [crypto.seal_frame(k, header, bound, i, names[i], s) for i, s in enumerate(stored)]
    return [header.raw, directory, *stored]


def _compress(frame: bytes, method: str | None) -> bytes:
    if method == "zstd":  # one thread per frame: the pool runs frames side by side
        return zstandard.ZstdCompressor(level=container.ZSTD_LEVEL, write_content_size=True).compress(frame)
    return container.compress(frame, method)


def framed_document(chunks: list[bytes], state_start: int, module_table: dict[str, Any],
                    compression: str | None, key: Any) -> list[bytes]:
    """A msgpack program document (as chunks) laid out in frames, compressed and/or sealed."""
    return write_frames(plain_frames(chunks, state_start, module_table), _names(module_table["modules"]),
                        compression, key)


# -- reading ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Framed:
    """A parsed framed container: its header, where each frame lies, and the key that opens it."""

    path: str | None
    data: bytes | mmap.mmap
    header: crypto.ContainerHeader
    bound: bytes
    starts: tuple[int, ...]
    lengths: tuple[int, ...]
    key: crypto.Key | None
    #: the bound on the head and tail frames' decompressed size (None: container.decompression_limit);
    #: a module frame is bounded by its length in the module table
    max_size: int | None = None

    @property
    def count(self) -> int:
        return len(self.starts)

    def frame(self, i: int, name: str = "", expect: int | None = None) -> bytes:
        """Frame ``i`` opened (authenticated, decompressed): ``expect`` is the size the module table
        gives it. A damaged, moved or cut frame is a DesiruError naming it, never a partial result."""
        what = f"module {name!r} (frame {i})" if name else f"frame {i}"
        start = self.starts[i]
        blob = self.data[start:start + self.lengths[i]]
        if self.key is not None:
            blob = crypto.open_frame(self.key, self.header, self.bound, i, name, blob, path=self.path,
                                     offset=start)
        method = self.header.compression
        if method is not None:
            if expect is not None and method == "zstd" and len(blob) >= 18:
                declared = zstandard.frame_content_size(blob[:18]) if blob[:4] == container.ZSTD_MAGIC else -1
                if declared >= 0 and declared != expect:
                    raise self._size(what, declared, expect, start)
            try:
                blob = container.decompress(blob, method, self.path,
                                            max_size=expect if expect is not None else self.max_size)
            except CorruptDataError as exc:
                exc.offset = start if exc.offset is None else exc.offset
                raise exc.within(what) from None
        if expect is not None and len(blob) != expect:
            raise self._size(what, len(blob), expect, start)
        return blob

    def _size(self, what: str, got: int, want: int, start: int) -> CorruptDataError:
        return CorruptDataError(f"{what} holds {got:,} bytes, the module table says {want:,} (frames were "
                                f"swapped, replaced or damaged)", path=self.path, offset=start,
                                hint="the file was altered or damaged; restore it from a backup")


def parse(data: bytes | mmap.mmap, key: Any, path: str | None, max_size: int | None = None) -> Framed:
    """The frames of a framed container, their bounds checked against the file's size; the key is
    checked (kind and key id) before anything is decrypted."""
    header = crypto.read_header(data[:crypto.FRAMED_FIXED_SIZE + crypto.SCRYPT_BLOCK_SIZE], path)
    if header.version != crypto.FRAMED_VERSION:
        raise CorruptDataError("not a framed document", path=path, offset=len(crypto.CONTAINER_MAGIC))
    at = header.size
    size = len(data)

    def cut(why: str, offset: int) -> CorruptDataError:
        return CorruptDataError(f"the framed document is damaged or truncated: {why}", path=path, offset=offset,
                                hint="the file was cut short; restore it from a backup")

    if size < at + _COUNT.size:
        raise cut("its frame directory is missing", size)
    (count,) = _COUNT.unpack(data[at:at + _COUNT.size])
    end = at + _COUNT.size + _LENGTH.size * count
    if count < EXTRA_FRAMES:
        raise CorruptDataError(f"the frame directory lists {count} frames (at least {EXTRA_FRAMES})", path=path,
                               offset=at, hint="the file was altered or damaged; restore it from a backup")
    if end > size:
        raise cut(f"its directory of {count:,} frames runs past the end ({size:,} bytes)", size)
    directory = bytes(data[at:end])
    lengths = [_LENGTH.unpack_from(directory, _COUNT.size + _LENGTH.size * i)[0] for i in range(count)]
    starts, pos = [], end
    for n in lengths:
        starts.append(pos)
        pos += n
    if pos > size:
        raise cut(f"its frames need {pos:,} bytes, the file has {size:,}", size)
    if pos < size:
        raise CorruptDataError(f"{size - pos:,} bytes follow the last frame (a second document, or garbage)",
                               path=path, offset=pos,
                               hint="the file was altered or two files were joined; restore it from a backup")
    k = None
    if header.encrypted:
        k = crypto.resolve_stored(key, header.kdf, header.key_id, path)
    elif key is not None:
        raise NotEncryptedError("a key was given but the file is not encrypted", path=path,
                                hint="load it without a key, or encrypt it first with `desiru rekey`")
    return Framed(path, data, header, header.raw + directory, tuple(starts), tuple(lengths), k, max_size)


def module_names(head: bytes, framed: Framed) -> tuple[dict[str, Any], int, list[str]]:
    """The header entries in the head frame, where its state starts, and the frame names (the
    modules of its table, between "" for the head and the tail); CorruptDataError when the table
    does not list one module per frame."""
    found = table.read_header(head)
    rows = found[0].get(table.TABLE_KEY, {}).get("modules") if found and isinstance(
        found[0].get(table.TABLE_KEY), dict) else None
    if found is None or not isinstance(rows, list) or not all(
            isinstance(r, list) and r and isinstance(r[0], str) for r in rows):
        raise CorruptDataError("the head frame holds no document header with a module table", path=framed.path,
                               offset=framed.starts[0], hint="the file was altered or damaged; restore it from a "
                               "backup")
    if len(rows) + EXTRA_FRAMES != framed.count:
        raise CorruptDataError(f"the frame directory lists {framed.count} frames for {len(rows)} modules (plus "
                               f"{EXTRA_FRAMES})", path=framed.path, offset=framed.starts[0],
                               hint="the file was altered or damaged; restore it from a backup")
    return found[0], found[1], _names(rows)


def unseal(data: bytes, *, key: Any, path: str | None = None, max_size: int | None = None
           ) -> tuple[bytes, container.Layers]:
    """Every layer peeled off a document's bytes: a framed container's frames opened and joined, or
    (``container.unseal``) a whole-file container and compression."""
    if is_framed(data):
        return read_document(data, key, path, max_size)
    return container.unseal(data, key=key, path=path, max_size=max_size)


def open_all(framed: Framed) -> tuple[list[bytes], list[str]]:
    """Every frame of a framed container opened, in order, and the frame names."""
    head = framed.frame(0)
    header, _, names = module_names(head, framed)
    rows = header[table.TABLE_KEY]["modules"]
    parts = [head]
    for i in range(1, framed.count - 1):
        row = rows[i - 1]
        parts.append(framed.frame(i, names[i], expect=row[2] if len(row) == 4 and type(row[2]) is int else None))
    parts.append(framed.frame(framed.count - 1))
    return parts, names


def read_document(data: bytes, key: Any, path: str | None, max_size: int | None = None
                  ) -> tuple[bytes, container.Layers]:
    """The plain document bytes of a framed container (every frame opened, then joined)."""
    framed = parse(data, key, path, max_size)
    parts, _ = open_all(framed)
    key_id = framed.header.key_id if framed.key is not None else None
    return b"".join(parts), container.Layers(framed.header.compression, framed.key is not None, key_id)


def reseal(data: bytes, old_key: Any, new_key: Any, path: str | None) -> tuple[bytes, str | None]:
    """A framed document under ``new_key`` (None: not encrypted; plain msgpack when it was not
    compressed either), and the old key id. Every frame is opened, so a wrong old key or a damaged
    frame leaves nothing written."""
    framed = parse(data, old_key, path)
    parts, names = open_all(framed)
    old_id = framed.header.key_id if framed.key is not None else None
    if new_key is None and framed.header.compression is None:
        return b"".join(parts), old_id
    return b"".join(write_frames(parts, names, framed.header.compression, new_key)), old_id


__all__ = ["Framed", "framed_document", "is_framed", "module_names", "open_all", "parse", "plain_frames",
           "read_document", "reseal", "unseal", "write_frames"]
