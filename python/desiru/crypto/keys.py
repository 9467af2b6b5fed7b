"""Keys: the forms a user's key takes, scrypt for passphrases, and key ids (docs/FORMAT.md, "Keys").

The lowest part of desiru.crypto: it knows AES-256 keys and how to derive and name them, nothing
of containers or records (those are built on it: ``desiru.crypto`` and ``desiru.crypto.records``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import unicodedata
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from desiru.errors import CorruptDataError, DecryptionError, DesiruError, MissingKeyError

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
SALT_SIZE = 16
KEY_ID_SIZE = 8
#: the HMAC message whose keyed hash is a key's id
KEY_ID_CONTEXT = b"desiru key id v1"

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



def resolve_stored(key: Any, kdf: dict[str, Any] | None, key_id: str, path: Any) -> Key:
    """The Key that opens data stored under ``key_id`` (and, for a passphrase, the stored ``kdf``).

    Says which kind of key the data needs when the wrong kind is given, and both ids when the
    key is another one, before anything is decrypted.
    """
    if key is None:
        raise MissingKeyError(
            "the data is encrypted and no key was given",
            path=path,
            hint="pass key=..., or --key-env VAR on the command line",
        )
    is_pass = key.is_passphrase if isinstance(key, Key) else _classify(key)[0] == "passphrase"
    if kdf is None and is_pass:
        raise DecryptionError(
            f"encrypted with a raw 256-bit key (key id {key_id}); a passphrase was given",
            path=path,
            hint="pass the 32-byte key (raw, hex or base64), not a passphrase",
        )
    if kdf is not None and not is_pass:
        k = Key.from_user(key)
        raise DecryptionError(
            f"encrypted with a passphrase (key id {key_id}); a raw key was given (id {k.key_id})",
            path=path,
            hint="pass the passphrase the data was encrypted with",
        )
    k = Key.from_user(key, kdf)
    check_key_id(k, key_id, path=path)
    return k


def aead_of(key: Key) -> AESGCM:
    """The AES-256-GCM cipher of a prepared key (for the container and the records built on keys)."""
    return key._aead


__all__ = ["Key", "aead_of", "check_kdf", "check_key_id", "generate_key", "key_id_of", "resolve_stored"]
