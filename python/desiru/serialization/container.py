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

from desiru.errors import CorruptDataError, DesiruError, MissingKeyError, NotEncryptedError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
#: first 8 bytes of desiru's binary container (encrypted documents): a high byte so
#: text tools treat it as binary, then "DSRU", then CR LF SUB to catch text-mode mangling
CONTAINER_MAGIC = b"\x89DSRU\r\n\x1a"
COMPRESSIONS = ("zstd", "gzip")
SUFFIX = {"zstd": ".zst", "gzip": ".gz"}
#: zstd level 1 with all cores: saves are dominated by compression, so fast beats small
ZSTD_LEVEL = 1
GZIP_LEVEL = 6
#: a zstd frame's declared size is preallocated only up to this ratio to its input
TRUSTED_RATIO = 64


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


def decompress(data: bytes, method: str, path: str | None = None) -> bytes:
    """Undo ``compress``; a damaged or truncated stream is a CorruptDataError."""
    try:
        if method == "zstd":
            dctx = zstandard.ZstdDecompressor()
            declared = zstandard.frame_content_size(data)
            # trust a declared size only when the input can plausibly justify it; a forged
            # header claiming terabytes must not become one huge allocation
            if 0 <= declared <= TRUSTED_RATIO * len(data) + (64 << 20):
                return dctx.decompress(data)
            with dctx.stream_reader(io.BytesIO(data), read_across_frames=True) as reader:
                chunks = []
                while chunk := reader.read(1 << 24):
                    chunks.append(chunk)
            return b"".join(chunks)
        if method == "gzip":
            return gzip.decompress(data)
    except (zstandard.ZstdError, gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
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
    from desiru import crypto

    return crypto.seal_document(body, key)


def unseal(data: bytes, *, key: Any, path: str | None = None) -> tuple[bytes, Layers]:
    """Decrypt (when it is a desiru container) and decompress; returns document bytes and the layers."""
    encrypted = False
    key_id = None
    if data.startswith(CONTAINER_MAGIC):
        from desiru import crypto

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
        data = decompress(data, method, path)
    return data, Layers(method, encrypted, key_id)
