"""Encryption at rest: AES-256-GCM for documents and journal records.

Keys come as 32 raw bytes, 64 hex characters, the base64 of 32 bytes, or a
passphrase stretched with scrypt. Documents are sealed in desiru's container
(docs/FORMAT.md, "Encrypted container"): a fixed header authenticated as
associated data, then the body cut into segments, each its own GCM message, so
files larger than one GCM call allows still encrypt and truncation is detected.
Journal records are single GCM messages bound to their journal and seq.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import os
import struct
import unicodedata
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from desiru.errors import (
    CorruptDataError,
    DecryptionError,
    DesiruError,
    IncompatibleVersionError,
    MissingKeyError,
)
from desiru.serialization.container import CONTAINER_MAGIC

# -- constants of the format (docs/FORMAT.md names the same ones) ------------------------------
KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
SALT_SIZE = 16
KEY_ID_SIZE = 8
#: the HMAC message whose keyed hash is a key's id
KEY_ID_CONTEXT = b"desiru key id v1"

CONTAINER_VERSION = 1
CIPHER_AES_256_GCM = 1
KDF_NONE = 0
KDF_SCRYPT = 1
#: magic, version, cipher, kdf, log2 segment size, key id, nonce
FIXED_HEADER_SIZE = len(CONTAINER_MAGIC) + 4 + KEY_ID_SIZE + NONCE_SIZE  # 32
#: log2 n, r, p, salt
SCRYPT_BLOCK_SIZE = 3 + SALT_SIZE  # 19
#: bounds on the segment size a header may name; cryptography refuses GCM messages of 2**31 bytes or more
MIN_SEGMENT_LOG2 = 12
MAX_SEGMENT_LOG2 = 30
#: writers use the smallest segment that holds the whole body (one GCM call whose output is the
#: result, the fastest path from Python), up to 2**30; None here means that, an int forces a size
WRITE_SEGMENT_LOG2: int | None = None

#: the default scrypt cost: 32 MiB of memory and ~75 ms per derivation on the 2-core reference machine
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
#: bounds a header may claim, so that a crafted file cannot make a load eat memory or minutes
MIN_SCRYPT_LOG2_N = 10
MAX_SCRYPT_LOG2_N = 20
MAX_SCRYPT_R = 32
MAX_SCRYPT_P = 16
MAX_SCRYPT_MEMORY = 256 * 2**20  # 128 * n * r bytes
MAX_SCRYPT_WORK = 2**22  # n * r * p, 16 times the default

RECORD_VERSION = 1
#: domain tag that starts the associated data of every journal record
RECORD_AAD_TAG = b"desiru journal record v1\x00"
RECORD_OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
MAX_JOURNAL_ID_SIZE = 255
_RECORD_PREFIX = bytes((RECORD_VERSION,))

_U64 = struct.Struct(">Q")


# -- keys -----------------------------------------------------------------------------------------
def _compute_key_id(raw: bytes) -> str:
    return hmac.new(raw, KEY_ID_CONTEXT, hashlib.sha256).digest()[:KEY_ID_SIZE].hex()


def _classify(key: Any) -> tuple[str, bytes | str]:
    """("raw", 32 bytes) or ("passphrase", text) for a user's key value."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        raw = bytes(key)
        if len(raw) != KEY_SIZE:
            raise DesiruError(
                f"a key given as bytes must be exactly {KEY_SIZE} bytes; got {len(raw)}",
                hint="pass 32 random bytes (os.urandom(32)), 64 hex characters, base64 of 32 bytes, "
                "or a str passphrase",
            )
        return "raw", raw
    if isinstance(key, str):
        text = key.strip()
        if len(text) == 2 * KEY_SIZE:
            try:
                return "raw", bytes.fromhex(text)
            except ValueError:
                pass
        if 43 <= len(text) <= 44:  # base64 of 32 bytes: 43 characters, 44 with its "=" padding
            std = text.replace("-", "+").replace("_", "/")
            try:
                raw = base64.b64decode(std + "=" * (-len(std) % 4), validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) == KEY_SIZE and _b64_canonical(raw, text):
                return "raw", raw
        if not key:
            raise DesiruError("the key is an empty string", hint="pass a key or a non-empty passphrase")
        return "passphrase", key
    raise DesiruError(
        f"a key must be bytes or str, got {type(key).__name__}",
        hint="pass 32 raw bytes, 64 hex characters, base64 of 32 bytes, or a passphrase",
    )


def _b64_canonical(raw: bytes, text: str) -> bool:
    """True when ``text`` is exactly how base64 (standard or url-safe, padded or not) writes ``raw``."""
    for enc in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        if text in (enc, enc.rstrip("=")):
            return True
    return False


def _check_scrypt(n: Any, r: Any, p: Any, salt: Any, path: Any = None) -> None:
    ok = (
        isinstance(n, int)
        and isinstance(r, int)
        and isinstance(p, int)
        and isinstance(salt, (bytes, bytearray))
        and n > 1
        and n & (n - 1) == 0
        and MIN_SCRYPT_LOG2_N <= n.bit_length() - 1 <= MAX_SCRYPT_LOG2_N
        and 1 <= r <= MAX_SCRYPT_R
        and 1 <= p <= MAX_SCRYPT_P
        and 128 * n * r <= MAX_SCRYPT_MEMORY
        and n * r * p <= MAX_SCRYPT_WORK
        and len(salt) == SALT_SIZE
    )
    if not ok:
        raise CorruptDataError(
            f"scrypt parameters out of bounds (n={n!r}, r={r!r}, p={p!r}, salt of "
            f"{len(salt) if isinstance(salt, (bytes, bytearray)) else '?'} bytes)",
            path=path,
            hint=f"n must be a power of two from 2**{MIN_SCRYPT_LOG2_N} to 2**{MAX_SCRYPT_LOG2_N}, r <= "
            f"{MAX_SCRYPT_R}, p <= {MAX_SCRYPT_P}, 128*n*r <= {MAX_SCRYPT_MEMORY}, "
            f"n*r*p <= {MAX_SCRYPT_WORK}, "
            f"salt {SALT_SIZE} bytes",
        )


def check_kdf(kdf: Any, path: Any = None) -> None:
    """CorruptDataError unless ``kdf`` (stored key-derivation parameters) is None or sound scrypt parameters."""
    if kdf is None:
        return
    if not isinstance(kdf, dict) or kdf.get("name", "scrypt") != "scrypt":
        raise CorruptDataError(f"the stored key derivation is malformed ({kdf!r:.80})", path=path,
                               hint="the file's header was altered or damaged; restore it from a copy")
    _check_scrypt(kdf.get("n"), kdf.get("r"), kdf.get("p"), kdf.get("salt"), path)


def _scrypt(passphrase: str, kdf: dict[str, Any]) -> bytes:
    # NFC so that the same passphrase typed on macOS (NFD) and elsewhere gives the same key
    secret = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return Scrypt(salt=bytes(kdf["salt"]), length=KEY_SIZE, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(secret)


class Key:
    """A 256-bit key ready for use, with its id and (for passphrases) the scrypt parameters to store."""

    __slots__ = ("_aead", "_derived", "_passphrase", "_raw", "kdf", "key_id")

    def __init__(self, raw: bytes, *, kdf: dict[str, Any] | None = None, passphrase: str | None = None) -> None:
        if len(raw) != KEY_SIZE:
            raise DesiruError(f"a key must be {KEY_SIZE} bytes; got {len(raw)}")
        self._raw = bytes(raw)
        self.kdf = kdf
        self.key_id = _compute_key_id(self._raw)
        self._passphrase = passphrase
        self._aead = AESGCM(self._raw)
        self._derived: dict[tuple[bytes, int, int, int], Key] = {}

    @classmethod
    def from_user(cls, key: Key | bytes | str, kdf: dict[str, Any] | None = None) -> Key:
        """The Key for a user's value; for a passphrase ``kdf`` holds stored scrypt parameters (None: fresh).

        A ``kdf`` without "salt" chooses the cost (n, r, p) and gets a fresh random salt.
        """
        if isinstance(key, Key):
            if kdf is not None and key._passphrase is not None:
                return key.for_kdf(kdf)
            return key
        kind, value = _classify(key)
        if kind == "raw":
            assert isinstance(value, bytes)
            return cls(value)
        assert isinstance(value, str)
        params = {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P}
        if kdf is not None:
            if kdf.get("name", "scrypt") != "scrypt":
                raise DesiruError(f"unknown key derivation {kdf.get('name')!r}", hint="desiru uses scrypt")
            params.update({k: kdf[k] for k in ("n", "r", "p", "salt") if k in kdf})
        if params.get("salt") is None:
            params["salt"] = os.urandom(SALT_SIZE)
        params["salt"] = bytes(params["salt"])
        _check_scrypt(params["n"], params["r"], params["p"], params["salt"])
        return cls(_scrypt(value, params), kdf=params, passphrase=value)

    @property
    def is_passphrase(self) -> bool:
        """Whether this key was derived from a passphrase (its id then depends on the salt)."""
        return self._passphrase is not None

    def for_kdf(self, kdf: dict[str, Any]) -> Key:
        """The key the same passphrase gives under other stored scrypt parameters (cached per salt)."""
        if self._passphrase is None:
            raise DesiruError("only a passphrase key can be derived again with other scrypt parameters")
        if self.kdf is not None and _kdf_tuple(self.kdf) == _kdf_tuple(kdf):
            return self
        ident = _kdf_tuple(kdf)
        found = self._derived.get(ident)
        if found is None:
            found = Key.from_user(self._passphrase, kdf)
            if len(self._derived) >= 8:
                self._derived.pop(next(iter(self._derived)))
            self._derived[ident] = found
        return found

    def __repr__(self) -> str:
        kind = "passphrase" if self._passphrase is not None else "raw"
        return f"Key(key_id={self.key_id!r}, {kind})"

    def __reduce__(self) -> Any:  # keys are not pickled by accident
        raise TypeError("desiru.crypto.Key cannot be pickled")


def _kdf_tuple(kdf: dict[str, Any]) -> tuple[bytes, int, int, int]:
    return (
        bytes(kdf.get("salt") or b""),
        int(kdf.get("n", SCRYPT_N)),
        int(kdf.get("r", SCRYPT_R)),
        int(kdf.get("p", SCRYPT_P)),
    )


def key_id_of(key: Key | bytes | str, kdf: dict[str, Any] | None = None) -> str:
    """The id of a key: hex of 8 bytes of HMAC-SHA256(key, KEY_ID_CONTEXT); a passphrase needs its ``kdf``."""
    if not isinstance(key, Key) and kdf is None and _classify(key)[0] == "passphrase":
        raise DesiruError(
            "a passphrase's key id depends on the salt it is used with",
            hint="pass the kdf parameters stored with the data (crypto.read_header(...).kdf)",
        )
    return Key.from_user(key, kdf).key_id


def generate_key() -> str:
    """A fresh random key as 64 hex characters, ready for an environment variable."""
    return os.urandom(KEY_SIZE).hex()


def check_key_id(key: Key, expected: str, *, path: Any = None, seq: int | None = None) -> None:
    """Raise DecryptionError naming both ids when ``key`` is not the key with id ``expected``."""
    if hmac.compare_digest(key.key_id.encode(), str(expected).encode("utf-8", "replace")):
        return
    if key.is_passphrase:
        raise DecryptionError(
            f"wrong passphrase or damaged file: encrypted with key id {expected}; "
            f"the passphrase given has id {key.key_id} with this file's salt",
            path=path,
            seq=seq,
            hint="check the passphrase",
        )
    raise DecryptionError(
        f"encrypted with key id {expected}; the key given has id {key.key_id}",
        path=path,
        seq=seq,
        hint="pass the key the data was encrypted with; desiru.crypto.key_id_of(key) shows a key's id",
    )


# -- the document container ---------------------------------------------------------------------
@dataclass(frozen=True)
class ContainerHeader:
    """The parsed header of an encrypted document; ``raw`` is the exact bytes authenticated as AAD."""

    version: int
    cipher: int
    segment_log2: int
    key_id: str
    nonce: bytes
    kdf: dict[str, Any] | None
    raw: bytes

    @property
    def size(self) -> int:
        return len(self.raw)


def is_encrypted(data: bytes) -> bool:
    """Whether ``data`` is an encrypted desiru container."""
    return bytes(data[: len(CONTAINER_MAGIC)]) == CONTAINER_MAGIC


def _build_header(key: Key, nonce: bytes, segment_log2: int) -> bytes:
    kdf_id = KDF_SCRYPT if key.kdf is not None else KDF_NONE
    parts = [
        CONTAINER_MAGIC,
        bytes((CONTAINER_VERSION, CIPHER_AES_256_GCM, kdf_id, segment_log2)),
        bytes.fromhex(key.key_id),
        nonce,
    ]
    if key.kdf is not None:
        n, r, p = key.kdf["n"], key.kdf["r"], key.kdf["p"]
        parts.append(bytes((n.bit_length() - 1, r, p)) + bytes(key.kdf["salt"]))
    return b"".join(parts)


def read_header(blob: bytes, path: Any = None) -> ContainerHeader:
    """Parse and bound-check the header of an encrypted document (nothing is decrypted)."""
    mv = memoryview(blob)
    if bytes(mv[: len(CONTAINER_MAGIC)]) != CONTAINER_MAGIC:
        raise CorruptDataError("not an encrypted desiru container (magic bytes differ)", path=path, offset=0)
    if len(mv) < FIXED_HEADER_SIZE:
        raise CorruptDataError(
            f"the encrypted container is truncated: {len(mv)} bytes, its header needs {FIXED_HEADER_SIZE}",
            path=path,
            offset=len(mv),
            hint="the file was cut short; restore it from a backup",
        )
    m = len(CONTAINER_MAGIC)
    version, cipher, kdf_id, seg_log2 = mv[m], mv[m + 1], mv[m + 2], mv[m + 3]
    if version > CONTAINER_VERSION:
        raise IncompatibleVersionError(
            f"encrypted container version {version} is newer than this desiru reads ({CONTAINER_VERSION})",
            path=path,
            offset=m,
            hint="upgrade desiru",
        )
    if version != CONTAINER_VERSION:
        raise CorruptDataError(f"invalid encrypted container version {version}", path=path, offset=m)
    if cipher != CIPHER_AES_256_GCM:
        raise CorruptDataError(f"unknown cipher id {cipher} (1 is AES-256-GCM)", path=path, offset=m + 1)
    if kdf_id not in (KDF_NONE, KDF_SCRYPT):
        raise CorruptDataError(f"unknown key derivation id {kdf_id}", path=path, offset=m + 2)
    if not MIN_SEGMENT_LOG2 <= seg_log2 <= MAX_SEGMENT_LOG2:
        raise CorruptDataError(
            f"segment size 2**{seg_log2} out of bounds (2**{MIN_SEGMENT_LOG2}..2**{MAX_SEGMENT_LOG2})",
            path=path,
            offset=m + 3,
        )
    key_id = bytes(mv[m + 4 : m + 4 + KEY_ID_SIZE]).hex()
    nonce = bytes(mv[m + 4 + KEY_ID_SIZE : FIXED_HEADER_SIZE])
    end = FIXED_HEADER_SIZE
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
        log2_n, r, p = mv[FIXED_HEADER_SIZE], mv[FIXED_HEADER_SIZE + 1], mv[FIXED_HEADER_SIZE + 2]
        salt = bytes(mv[FIXED_HEADER_SIZE + 3 : end])
        n = 1 << log2_n if log2_n < 64 else 0
        _check_scrypt(n, r, p, salt, path)
        kdf = {"name": "scrypt", "n": n, "r": r, "p": p, "salt": salt}
    return ContainerHeader(version, cipher, seg_log2, key_id, nonce, kdf, bytes(mv[:end]))


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
    aead = k._aead
    out = [header]
    for i in range(count):
        chunk = body_mv[i * seg : (i + 1) * seg]
        out.append(aead.encrypt(_segment_nonce(base, i), chunk, _segment_aad(header, i, i == count - 1)))
    return b"".join(out)


def _resolve_for_header(key: Any, header: ContainerHeader, path: Any) -> Key:
    """The Key to open a container with, checked against the header's kdf and key id."""
    if key is None:
        raise MissingKeyError(
            "the data is encrypted and no key was given",
            path=path,
            hint="pass key=..., or --key-env VAR on the command line",
        )
    if isinstance(key, Key):
        is_pass = key.is_passphrase
    else:
        is_pass = _classify(key)[0] == "passphrase"
    if header.kdf is None and is_pass:
        raise DecryptionError(
            f"encrypted with a raw 256-bit key (key id {header.key_id}); a passphrase was given",
            path=path,
            hint="pass the 32-byte key (raw, hex or base64), not a passphrase",
        )
    if header.kdf is not None and not is_pass:
        k = Key.from_user(key)
        raise DecryptionError(
            f"encrypted with a passphrase (key id {header.key_id}); a raw key was given (id {k.key_id})",
            path=path,
            hint="pass the passphrase the data was encrypted with",
        )
    k = Key.from_user(key, header.kdf)
    check_key_id(k, header.key_id, path=path)
    return k


def open_document(blob: bytes, key: Key | bytes | str | None, path: Any = None) -> tuple[bytes, str]:
    """Authenticate and decrypt a container; returns (body, key id). Never returns partial data."""
    header = read_header(blob, path)
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
    aead = k._aead
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


# -- journal records ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _record_aad_prefix(journal_id: bytes) -> bytes:
    if len(journal_id) > MAX_JOURNAL_ID_SIZE:
        raise DesiruError(f"journal id too long ({len(journal_id)} bytes, at most {MAX_JOURNAL_ID_SIZE})")
    return RECORD_AAD_TAG + bytes((len(journal_id),)) + journal_id


def _record_aad(journal_id: bytes, seq: int) -> bytes:
    if not 0 <= seq < 2**64:
        raise DesiruError(f"seq {seq} out of range for a journal record")
    return _record_aad_prefix(journal_id if type(journal_id) is bytes else bytes(journal_id)) + _U64.pack(seq)


def _require_key(key: Any) -> Key:
    if isinstance(key, Key):
        return key
    if key is None:
        raise MissingKeyError("the journal is encrypted and no key was given", hint="pass key=...")
    raise DesiruError(
        f"expected a desiru.crypto.Key, got {type(key).__name__}",
        hint="build it with Key.from_user(key, kdf) using the kdf stored in the journal header",
    )


def seal_record(key: Key, journal_id: bytes, seq: int, payload: bytes) -> bytes:
    """Encrypt one journal record: version, fresh nonce, ciphertext, tag; the AAD binds journal and seq."""
    k = key if type(key) is Key else _require_key(key)
    nonce = os.urandom(NONCE_SIZE)
    return _RECORD_PREFIX + nonce + k._aead.encrypt(nonce, payload, _record_aad(journal_id, seq))


def open_record(key: Key, journal_id: bytes, seq: int, blob: bytes) -> bytes:
    """Authenticate and decrypt one journal record written by ``seal_record`` for this journal and seq."""
    k = key if type(key) is Key else _require_key(key)
    if len(blob) < RECORD_OVERHEAD:
        raise DecryptionError(
            f"encrypted record too short ({len(blob)} bytes, at least {RECORD_OVERHEAD})",
            seq=seq,
            hint="the journal record is damaged",
        )
    if blob[0] != RECORD_VERSION:
        raise DecryptionError(
            f"unknown encrypted record version {blob[0]}",
            seq=seq,
            hint="the record is damaged or was written by a newer desiru",
        )
    mv = memoryview(blob)
    try:
        return k._aead.decrypt(bytes(mv[1 : 1 + NONCE_SIZE]), mv[1 + NONCE_SIZE :], _record_aad(journal_id, seq))
    except InvalidTag:
        raise DecryptionError(
            "authentication failed: the record was altered, moved from another seq or journal, or the key is wrong",
            seq=seq,
            hint="run `desiru verify` on the journal; restore it from a backup if it was damaged",
        ) from None


__all__ = [
    "CONTAINER_VERSION",
    "ContainerHeader",
    "Key",
    "check_key_id",
    "generate_key",
    "is_encrypted",
    "key_id_of",
    "open_document",
    "open_record",
    "read_header",
    "seal_document",
    "seal_record",
]
