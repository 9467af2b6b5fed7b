"""The container layer: compression (zstd, gzip) and encryption around document bytes.

On the way out: encode -> compress -> encrypt. On the way in each layer is
recognised by its magic bytes and peeled in reverse, so a file loads whatever
its name. Compressed documents are plain zstd or gzip streams (the ``zstd`` and
``gunzip`` tools read them); encrypted ones use desiru's container (desiru.crypto).
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass
from typing import Any

import zstandard

from desiru import crypto
from desiru.crypto import CONTAINER_MAGIC
from desiru.errors import CorruptDataError, DesiruError, MissingKeyError, NotEncryptedError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
COMPRESSIONS = ("zstd", "gzip")
SUFFIX = {"zstd": ".zst", "gzip": ".gz"}
#: zstd level 1 with all cores: saves are dominated by compression, so fast beats small
ZSTD_LEVEL = 1
GZIP_LEVEL = 6
#: the largest document (after decompression) desiru loads: 64 GiB
MAX_DOCUMENT_SIZE = 64 << 30
#: decompression stops at MAX_RATIO times the compressed size plus RATIO_SLACK (a decompression
#: bomb is refused before it takes the memory); a caller that trusts a file passes max_size=
MAX_RATIO = 256
RATIO_SLACK = 64 << 20
#: kept for callers of the first releases: a declared size is trusted up to the same bound
TRUSTED_RATIO = MAX_RATIO
_STREAM_CHUNK = 1 << 24


def normalize_compression(compress: bool | str | None) -> str | None:
    """``True`` means zstd; ``None``/``False`` none; else "zstd" or "gzip"."""
    if compress is None or compress is False:
        return None
    if compress is True:
        return "zstd"
    name = {"zst": "zstd", "gz": "gzip"}.get(str(compress).lower(), str(compress).lower())
    if name not in COMPRESSIONS:
        raise DesiruError(f"unknown compression {compress!r}", hint="use compress=True, 'zstd' or 'gzip'")
    return name


def compress(data: bytes, method: str | None) -> bytes:
    """Compress document bytes (zstd multithreaded, off the GIL; gzip deterministic)."""
    if method is None:
        return data
    if method == "zstd":
        threads = -1 if len(data) > (1 << 20) else 0
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=threads, write_content_size=True).compress(data)
    if method == "gzip":
        return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)
    raise DesiruError(f"unknown compression {method!r}")


def detect_compression(data: bytes) -> str | None:
    """Which compression ``data`` starts with, if any."""
    if data.startswith(ZSTD_MAGIC):
        return "zstd"
    if data.startswith(GZIP_MAGIC):
        return "gzip"
    return None


def decompression_limit(compressed: int, max_size: int | None = None) -> int:
    """How many bytes a stream of ``compressed`` bytes may decompress to (``max_size`` overrides)."""
    if max_size is not None:
        return max_size
    return min(MAX_DOCUMENT_SIZE, MAX_RATIO * compressed + RATIO_SLACK)


def _too_big(method: str, limit: int, path: str | None) -> CorruptDataError:
    return CorruptDataError(
        f"the {method} stream decompresses to more than {limit:,} bytes (at most {MAX_RATIO}x its size plus "
        f"{RATIO_SLACK >> 20} MiB, and never more than {MAX_DOCUMENT_SIZE >> 30} GiB): refused as a "
        f"decompression bomb",
        path=path,
        hint="if the file is genuine (a very repetitive program), load it with "
        "desiru.serialization.documents.load_document(path, max_size=N) or raise "
        "desiru.serialization.container.MAX_RATIO",
    )


def zstd_frame_length(data: bytes) -> int:
    """Bytes of the zstd frame at the start of ``data`` (RFC 8878), walked block by block, no decoding.

    A CorruptDataError when the frame is malformed or runs past the data.
    """
    n = len(data)
    if n < 6 or not data.startswith(ZSTD_MAGIC):
        raise CorruptDataError("not a zstd frame")
    fhd = data[4]
    if fhd & 0x08:
        raise CorruptDataError("zstd frame header has its reserved bit set")
    fcs_flag, single, checksum, dict_flag = fhd >> 6, (fhd >> 5) & 1, (fhd >> 2) & 1, fhd & 3
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[dict_flag] + ((1 if single else 0), 2, 4, 8)[fcs_flag]
    while True:
        if pos + 3 > n:
            raise CorruptDataError("zstd frame is truncated (in a block header)")
        header = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
        last, kind, size = header & 1, (header >> 1) & 3, header >> 3
        if kind == 3:
            raise CorruptDataError("zstd frame holds a reserved block type")
        pos += 3 + (1 if kind == 1 else size)
        if pos > n:
            raise CorruptDataError("zstd frame is truncated (in a block)")
        if last:
            break
    pos += 4 if checksum else 0
    if pos > n:
        raise CorruptDataError("zstd frame is truncated (in its checksum)")
    return pos


def _unzstd(data: bytes, limit: int, path: str | None) -> bytes:
    try:
        end = zstd_frame_length(data)
    except CorruptDataError as exc:
        raise CorruptDataError(f"the zstd stream is damaged or truncated: {exc.message}", path=path,
                               hint="the file was cut short or altered; restore it from a backup") from None
    if end != len(data):
        raise CorruptDataError(f"{len(data) - end:,} bytes follow the zstd frame (a second document, or garbage)",
                               path=path, offset=end, hint="the file was altered or two files were joined; "
                               "restore it from a backup")
    dctx = zstandard.ZstdDecompressor()
    declared = zstandard.frame_content_size(data)
    if declared > limit:
        raise _too_big("zstd", limit, path)
    if declared >= 0:
        return dctx.decompress(data)  # one allocation of the declared (bounded) size
    out = bytearray()
    with dctx.stream_reader(io.BytesIO(data), read_across_frames=False) as reader:
        while chunk := reader.read(_STREAM_CHUNK):
            out += chunk
            if len(out) > limit:
                raise _too_big("zstd", limit, path)
    return bytes(out)


def _gunzip(data: bytes, limit: int, path: str | None) -> bytes:
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    rest = data
    while not d.eof:
        chunk = d.decompress(rest, _STREAM_CHUNK)
        out += chunk
        if len(out) > limit:
            raise _too_big("gzip", limit, path)
        rest = d.unconsumed_tail
        if not chunk and not rest and not d.eof:  # an empty stream ends with its first call
            raise EOFError("the gzip stream ends before its end marker")
    if d.unused_data:
        raise CorruptDataError(f"{len(d.unused_data):,} bytes follow the gzip stream (a second document, or "
                               f"garbage)", path=path, offset=len(data) - len(d.unused_data),
                               hint="the file was altered or two files were joined; restore it from a backup")
    return bytes(out)


def decompress(data: bytes, method: str, path: str | None = None, *, max_size: int | None = None) -> bytes:
    """Undo ``compress``; a damaged, truncated, trailed or oversized stream is a CorruptDataError.

    Output is bounded by ``decompression_limit(len(data), max_size)`` whatever the stream
    declares, so a small bomb cannot take gigabytes of memory.
    """
    limit = decompression_limit(len(data), max_size)
    try:
        if method == "zstd":
            return _unzstd(data, limit, path)
        if method == "gzip":
            return _gunzip(data, limit, path)
    except CorruptDataError as exc:
        raise exc.locate(path) from None
    except (zstandard.ZstdError, EOFError, zlib.error, OSError) as exc:
        raise CorruptDataError(
            f"the {method} stream is damaged or truncated: {exc}",
            path=path,
            hint="the file was cut short or altered; restore it from a backup",
        ) from None
    raise DesiruError(f"unknown compression {method!r}")


@dataclass(frozen=True)
class Layers:
    """What was peeled off a file on the way in."""

    compression: str | None
    encrypted: bool
    key_id: str | None = None


def seal(doc: bytes, *, fmt: str, compression: str | None, key: Any) -> bytes:
    """Compress, then encrypt when a key is given."""
    body = compress(doc, compression)
    if key is None:
        return body
    return crypto.seal_document(body, key)


def unseal(data: bytes, *, key: Any, path: str | None = None, max_size: int | None = None
           ) -> tuple[bytes, Layers]:
    """Decrypt (when it is a desiru container) and decompress; returns document bytes and the layers."""
    encrypted = False
    key_id = None
    if data.startswith(CONTAINER_MAGIC):
        if key is None:
            raise MissingKeyError(
                "the file is encrypted and no key was given",
                path=path,
                hint="pass key=... (or --key-env VAR on the command line)",
            )
        data, key_id = crypto.open_document(data, key, path=path)
        encrypted = True
    elif key is not None:
        # a caller who passes a key expects ciphertext: accepting plaintext would let anyone who
        # can replace the file plant a program (a downgrade); journals refuse it the same way
        raise NotEncryptedError(
            "a key was given but the file is not encrypted",
            path=path,
            hint="load it without a key, or encrypt it first with `desiru rekey` / desiru.rekey(path, None, key)",
        )
    method = detect_compression(data)
    if method is not None:
        data = decompress(data, method, path, max_size=max_size)
    return data, Layers(method, encrypted, key_id)
