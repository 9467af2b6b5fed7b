"""Encryption at rest: desiru's container (this module) over keys and sealed journal records.

The container (docs/FORMAT.md, "Encrypted container" and "Framed container") starts with
``CONTAINER_MAGIC``; its layout lives here and only here. Version 1 seals a whole document: a
fixed header authenticated as associated data, then the body cut into segments, each its own GCM
message, so files larger than one GCM call allows still encrypt and truncation is detected.
Version 2 holds a document as separate frames (one per module, compressed and optionally sealed
on its own) so that one module can be read without the others; this module seals and opens one
frame, ``desiru.serialization.framed`` lays the document out in frames.

Below this module: ``desiru.crypto.keys`` (key forms, scrypt, key ids) and
``desiru.crypto.records`` (journal records). Nothing here imports from above (serialization).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag

from desiru.crypto.keys import (
    KEY_ID_CONTEXT,
    KEY_ID_SIZE,
    KEY_SIZE,
    MAX_SCRYPT_LOG2_N,
    MAX_SCRYPT_MEMORY,
    MAX_SCRYPT_P,
    MAX_SCRYPT_R,
    MAX_SCRYPT_WORK,
    MIN_SCRYPT_LOG2_N,
    NONCE_SIZE,
    SALT_SIZE,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    TAG_SIZE,
    Key,
    _check_scrypt,
    aead_of,
    check_kdf,
    check_key_id,
    generate_key,
    key_id_of,
    resolve_stored,
)
from desiru.crypto.records import (
    MAX_JOURNAL_ID_SIZE,
    RECORD_AAD_TAG,
    RECORD_OVERHEAD,
    RECORD_VERSION,
    open_record,
    seal_record,
)
from desiru.errors import CorruptDataError, DecryptionError, DesiruError, IncompatibleVersionError

# -- constants of the container (docs/FORMAT.md names the same ones) ----------------------------
#: first 8 bytes of desiru's binary container: a high byte so text tools treat it as binary, then
#: "DSRU", then CR LF SUB to catch text-mode mangling
CONTAINER_MAGIC = b"\x89DSRU\r\n\x1a"
#: version 1: one encrypted document; version 2: a framed document (FRAMED_VERSION)
CONTAINER_VERSION = 1
FRAMED_VERSION = 2
CIPHER_NONE = 0
CIPHER_AES_256_GCM = 1
KDF_NONE = 0
KDF_SCRYPT = 1
#: the compression byte of a framed container
COMPRESSION_IDS = {None: 0, "zstd": 1, "gzip": 2}
#: magic, version, cipher, kdf, log2 segment size, key id, nonce
FIXED_HEADER_SIZE = len(CONTAINER_MAGIC) + 4 + KEY_ID_SIZE + NONCE_SIZE  # 32
#: a framed container adds its compression byte after the segment size
FRAMED_FIXED_SIZE = FIXED_HEADER_SIZE + 1  # 33
#: log2 n, r, p, salt
SCRYPT_BLOCK_SIZE = 3 + SALT_SIZE  # 19
#: bounds on the segment size a header may name; cryptography refuses GCM messages of 2**31 bytes or more
MIN_SEGMENT_LOG2 = 12
MAX_SEGMENT_LOG2 = 30
#: writers use the smallest segment that holds the whole body (one GCM call whose output is the
#: result, the fastest path from Python), up to 2**30; None here means that, an int forces a size
WRITE_SEGMENT_LOG2: int | None = None

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")


# -- the container header -----------------------------------------------------------------------
@dataclass(frozen=True)
class ContainerHeader:
    """The parsed header of a container; ``raw`` is the exact bytes authenticated as AAD.

    ``version`` 1 is an encrypted document; 2 a framed one, whose ``cipher`` may be
    ``CIPHER_NONE`` (compressed frames, nothing sealed) and which names its ``compression``.
    """

    version: int
    cipher: int
    segment_log2: int
    key_id: str
    nonce: bytes
    kdf: dict[str, Any] | None
    raw: bytes
    compression: str | None = None

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def encrypted(self) -> bool:
        return self.cipher != CIPHER_NONE


def is_container(data: bytes) -> bool:
    """Whether ``data`` starts with desiru's container magic (encrypted, or a framed document)."""
    return bytes(data[: len(CONTAINER_MAGIC)]) == CONTAINER_MAGIC


def is_encrypted(data: bytes) -> bool:
    """Whether ``data`` is an encrypted desiru container (a framed one only when its cipher is set)."""
    m = len(CONTAINER_MAGIC)
    if not is_container(data):
        return False
    return len(data) < m + 2 or data[m] != FRAMED_VERSION or data[m + 1] != CIPHER_NONE


def _build_header(key: Key, nonce: bytes, segment_log2: int) -> bytes:
    kdf_id = KDF_SCRYPT if key.kdf is not None else KDF_NONE
    parts = [
        CONTAINER_MAGIC,
        bytes((CONTAINER_VERSION, CIPHER_AES_256_GCM, kdf_id, segment_log2)),
        bytes.fromhex(key.key_id),
        nonce,
    ]
    if key.kdf is not None:
        parts.append(_scrypt_block(key.kdf))
    return b"".join(parts)


def _scrypt_block(kdf: dict[str, Any]) -> bytes:
    n, r, p = kdf["n"], kdf["r"], kdf["p"]
    return bytes((n.bit_length() - 1, r, p)) + bytes(kdf["salt"])


def build_framed_header(key: Key | None, compression: str | None, segment_log2: int = MAX_SEGMENT_LOG2) -> bytes:
    """The header of a framed container (version 2): sealed under ``key`` when given, with a fresh
    nonce; writers pass ``segment_log2_for`` the largest frame, so each frame is one segment."""
    seg_log2 = 0 if key is None else WRITE_SEGMENT_LOG2 or segment_log2  # no cipher: no segments either
    head = bytes((FRAMED_VERSION, CIPHER_NONE if key is None else CIPHER_AES_256_GCM,
                  KDF_SCRYPT if key is not None and key.kdf is not None else KDF_NONE, seg_log2,
                  COMPRESSION_IDS[compression]))
    if key is None:
        return CONTAINER_MAGIC + head + bytes(KEY_ID_SIZE + NONCE_SIZE)
    out = CONTAINER_MAGIC + head + bytes.fromhex(key.key_id) + os.urandom(NONCE_SIZE)
    return out + _scrypt_block(key.kdf) if key.kdf is not None else out


def read_header(blob: bytes, path: Any = None) -> ContainerHeader:
    """Parse and bound-check the header of a container (nothing is decrypted)."""
    mv = memoryview(blob)
    if bytes(mv[: len(CONTAINER_MAGIC)]) != CONTAINER_MAGIC:
        raise CorruptDataError("not an encrypted desiru container (magic bytes differ)", path=path, offset=0)
    m = len(CONTAINER_MAGIC)
    if len(mv) > m and mv[m] > FRAMED_VERSION:
        raise IncompatibleVersionError(
            f"desiru container version {mv[m]} is newer than this desiru reads ({FRAMED_VERSION})",
            path=path,
            offset=m,
            hint="upgrade desiru",
        )
    framed = len(mv) > m and mv[m] == FRAMED_VERSION
    fixed = FRAMED_FIXED_SIZE if framed else FIXED_HEADER_SIZE
    if len(mv) < fixed:
        raise CorruptDataError(
            f"the {'framed' if framed else 'encrypted'} container is truncated: {len(mv)} bytes, its header "
            f"needs {fixed}",
            path=path,
            offset=len(mv),
            hint="the file was cut short; restore it from a backup",
        )
    version, cipher, kdf_id, seg_log2 = mv[m], mv[m + 1], mv[m + 2], mv[m + 3]
    if version not in (CONTAINER_VERSION, FRAMED_VERSION):
        raise CorruptDataError(f"invalid encrypted container version {version}", path=path, offset=m)
    if cipher != CIPHER_AES_256_GCM and not (framed and cipher == CIPHER_NONE):
        raise CorruptDataError(f"unknown cipher id {cipher} (1 is AES-256-GCM)", path=path, offset=m + 1)
    if kdf_id not in (KDF_NONE, KDF_SCRYPT) or (cipher == CIPHER_NONE and kdf_id != KDF_NONE):
        raise CorruptDataError(f"unknown key derivation id {kdf_id}", path=path, offset=m + 2)
    if cipher == CIPHER_NONE and (seg_log2 or any(mv[m + 5:fixed])):
        raise CorruptDataError("a framed container without a cipher has a segment size, key id or nonce (they "
                               "must be zero)", path=path, offset=m + 3,
                               hint="the file was altered or damaged; restore it from a backup")
    if cipher != CIPHER_NONE and not MIN_SEGMENT_LOG2 <= seg_log2 <= MAX_SEGMENT_LOG2:
        raise CorruptDataError(
            f"segment size 2**{seg_log2} out of bounds (2**{MIN_SEGMENT_LOG2}..2**{MAX_SEGMENT_LOG2})",
            path=path,
            offset=m + 3,
        )
    compression = None
    at = m + 4
    if framed:
        names = {v: k for k, v in COMPRESSION_IDS.items()}
        if mv[at] not in names:
            raise CorruptDataError(f"unknown compression id {mv[at]} (0 none, 1 zstd, 2 gzip)", path=path, offset=at)
        compression = names[mv[at]]
        at += 1
    key_id = bytes(mv[at : at + KEY_ID_SIZE]).hex()
    nonce = bytes(mv[at + KEY_ID_SIZE : fixed])
    end = fixed
    kdf = None
    if kdf_id == KDF_SCRYPT:
        end += SCRYPT_BLOCK_SIZE
        if len(mv) < end:
            raise CorruptDataError(
                "the encrypted container is truncated inside its scrypt parameters",
                path=path,
                offset=len(mv),
                hint="restore the file from a backup",
            )
        log2_n, r, p = mv[fixed], mv[fixed + 1], mv[fixed + 2]
        salt = bytes(mv[fixed + 3 : end])
        n = 1 << log2_n if log2_n < 64 else 0
        _check_scrypt(n, r, p, salt, path)
        kdf = {"name": "scrypt", "n": n, "r": r, "p": p, "salt": salt}
    return ContainerHeader(version, cipher, seg_log2, key_id, nonce, kdf, bytes(mv[:end]), compression)


# -- version 1: one encrypted document ----------------------------------------------------------
def _segment_nonce(base: int, index: int) -> bytes:
    return (base ^ index).to_bytes(NONCE_SIZE, "big")


def _segment_aad(header: bytes, index: int, final: bool) -> bytes:
    return header + _U64.pack(index) + (b"\x01" if final else b"\x00")


def segment_log2_for(size: int) -> int:
    """The segment size (log2) a writer uses for a body of ``size`` bytes: one segment up to 2**30 - 1."""
    return min(max(size.bit_length(), MIN_SEGMENT_LOG2), MAX_SEGMENT_LOG2)


def seal_document(body: bytes, key: Key | bytes | str) -> bytes:
    """Encrypt document bytes into desiru's container (fresh random nonce, header authenticated)."""
    k = Key.from_user(key)
    nonce = os.urandom(NONCE_SIZE)
    body_mv = memoryview(body)
    seg_log2 = WRITE_SEGMENT_LOG2 or segment_log2_for(len(body_mv))
    header = _build_header(k, nonce, seg_log2)
    seg = 1 << seg_log2
    count = len(body_mv) // seg + 1  # the last segment holds len % seg bytes, possibly none
    base = int.from_bytes(nonce, "big")
    aead = aead_of(k)
    out = [header]
    for i in range(count):
        chunk = body_mv[i * seg : (i + 1) * seg]
        out.append(aead.encrypt(_segment_nonce(base, i), chunk, _segment_aad(header, i, i == count - 1)))
    return b"".join(out)


def _resolve_for_header(key: Any, header: ContainerHeader, path: Any) -> Key:
    """The Key to open a container with, checked against the header's kdf and key id."""
    return resolve_stored(key, header.kdf, header.key_id, path)


def open_document(blob: bytes, key: Key | bytes | str | None, path: Any = None) -> tuple[bytes, str]:
    """Authenticate and decrypt a container; returns (body, key id). Never returns partial data.

    A framed container (version 2) holds frames, not one body: desiru.serialization.framed opens it.
    """
    header = read_header(blob, path)
    if header.version == FRAMED_VERSION:
        raise DesiruError("this is a framed document (container version 2), not one sealed body", path=path,
                          hint="load it with desiru.load(path, key=...) (desiru.serialization.framed reads it)")
    mv = memoryview(blob)[header.size :]
    seg = 1 << header.segment_log2
    stride = seg + TAG_SIZE
    full, last = divmod(len(mv), stride)
    if last < TAG_SIZE:
        raise CorruptDataError(
            f"the encrypted body is truncated ({len(mv)} bytes after the header: not whole segments)",
            path=path,
            offset=len(blob),
            hint="the file was cut short; restore it from a backup",
        )
    count = full + 1
    k = _resolve_for_header(key, header, path)  # after the cheap shape checks: no scrypt for garbage
    base = int.from_bytes(header.nonce, "big")
    aead = aead_of(k)
    out = []
    for i in range(count):
        chunk = mv[i * stride : i * stride + (stride if i < full else last)]
        try:
            out.append(aead.decrypt(_segment_nonce(base, i), chunk, _segment_aad(header.raw, i, i == count - 1)))
        except InvalidTag:
            raise DecryptionError(
                f"authentication failed in segment {i}: the encrypted data was altered, truncated or damaged",
                path=path,
                offset=header.size + i * stride,
                hint="restore the file from a backup; the key itself matches the file's key id",
            ) from None
    return b"".join(out), header.key_id  # one segment: join hands back that very bytes object, no copy


# -- version 2: one frame of a framed document ---------------------------------------------------
def _frame_nonce(base: int, frame: int, segment: int) -> bytes:
    return (base ^ (frame << 32 | segment)).to_bytes(NONCE_SIZE, "big")


def _frame_aad(bound: bytes, frame: int, segment: int, final: bool, name: bytes) -> bytes:
    return bound + _U32.pack(frame) + _U32.pack(segment) + (b"\x01" if final else b"\x00") + name


def sealed_size(size: int, segment_log2: int) -> int:
    """How many bytes a frame of ``size`` bytes takes once sealed (one tag per segment)."""
    return size + TAG_SIZE * (size // (1 << segment_log2) + 1)


def seal_frame(key: Key, header: ContainerHeader, bound: bytes, frame: int, name: str, body: bytes) -> bytes:
    """Seal frame number ``frame`` of a framed container, bound by its AAD to ``bound`` (the container
    header and the frame directory), its number and ``name`` (the module it holds, "" for others)."""
    seg = 1 << header.segment_log2
    mv = memoryview(body)
    count = len(mv) // seg + 1
    base, aead, label = int.from_bytes(header.nonce, "big"), aead_of(key), name.encode("utf-8")
    return b"".join(aead.encrypt(_frame_nonce(base, frame, i), mv[i * seg:(i + 1) * seg],
                                 _frame_aad(bound, frame, i, i == count - 1, label)) for i in range(count))


def open_frame(key: Key, header: ContainerHeader, bound: bytes, frame: int, name: str, blob: bytes | memoryview,
               *, path: Any = None, offset: int | None = None) -> bytes:
    """Authenticate and decrypt one frame sealed by ``seal_frame``; DecryptionError names the frame
    (a frame moved to another place, or from another file, fails like a damaged one)."""
    stride = (1 << header.segment_log2) + TAG_SIZE
    full, last = divmod(len(blob), stride)
    if last < TAG_SIZE:
        raise CorruptDataError(f"frame {frame} is truncated ({len(blob)} bytes: not whole segments)", path=path,
                               offset=offset, hint="the file was cut short or altered; restore it from a backup")
    count = full + 1
    base, aead, label = int.from_bytes(header.nonce, "big"), aead_of(key), name.encode("utf-8")
    mv = memoryview(blob)
    out = []
    for i in range(count):
        try:
            out.append(aead.decrypt(_frame_nonce(base, frame, i), mv[i * stride:i * stride + (stride if i < full
                                                                                               else last)],
                                    _frame_aad(bound, frame, i, i == count - 1, label)))
        except InvalidTag:
            what = f"module {name!r} (frame {frame})" if name else f"frame {frame}"
            raise DecryptionError(
                f"authentication failed in {what}: the frame was altered, moved, truncated or damaged",
                path=path, offset=offset,
                hint="restore the file from a backup; the key itself matches the file's key id") from None
    return b"".join(out)


__all__ = [  # the layers below (keys, records) are re-exported: callers use desiru.crypto as before
    "CIPHER_AES_256_GCM", "CIPHER_NONE", "CONTAINER_MAGIC", "CONTAINER_VERSION", "FRAMED_VERSION", "KEY_ID_CONTEXT",
    "KEY_ID_SIZE", "KEY_SIZE", "MAX_JOURNAL_ID_SIZE", "MAX_SCRYPT_LOG2_N", "MAX_SCRYPT_MEMORY", "MAX_SCRYPT_P",
    "MAX_SCRYPT_R", "MAX_SCRYPT_WORK", "MIN_SCRYPT_LOG2_N", "NONCE_SIZE", "RECORD_AAD_TAG", "RECORD_OVERHEAD",
    "RECORD_VERSION", "SALT_SIZE", "SCRYPT_N", "SCRYPT_P", "SCRYPT_R", "TAG_SIZE", "ContainerHeader", "Key",
    "build_framed_header", "check_kdf", "check_key_id", "generate_key", "is_container", "is_encrypted", "key_id_of",
    "open_document", "open_frame", "open_record", "read_header", "resolve_stored", "seal_document", "seal_frame",
    "seal_record", "sealed_size", "segment_log2_for",
]
