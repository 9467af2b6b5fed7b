"""Journal records sealed one by one, bound to their journal and seq (docs/FORMAT.md, "Journal records")."""

from __future__ import annotations

import functools
import os
import struct
from typing import Any

from cryptography.exceptions import InvalidTag

from desiru.crypto.keys import NONCE_SIZE, TAG_SIZE, Key, aead_of
from desiru.errors import DecryptionError, DesiruError, MissingKeyError

RECORD_VERSION = 1
#: domain tag that starts the associated data of every journal record
RECORD_AAD_TAG = b"desiru journal record v1\x00"
RECORD_OVERHEAD = 1 + NONCE_SIZE + TAG_SIZE
MAX_JOURNAL_ID_SIZE = 255
_RECORD_PREFIX = bytes((RECORD_VERSION,))

_U64 = struct.Struct(">Q")


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
    return _RECORD_PREFIX + nonce + aead_of(k).encrypt(nonce, payload, _record_aad(journal_id, seq))


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
        return aead_of(k).decrypt(bytes(mv[1 : 1 + NONCE_SIZE]), mv[1 + NONCE_SIZE :], _record_aad(journal_id, seq))
    except InvalidTag:
        raise DecryptionError(
            "authentication failed: the record was altered, moved from another seq or journal, or the key is wrong",
            seq=seq,
            hint="run `desiru verify` on the journal; restore it from a backup if it was damaged",
        ) from None

__all__ = ["MAX_JOURNAL_ID_SIZE", "RECORD_AAD_TAG", "RECORD_OVERHEAD", "RECORD_VERSION", "open_record", "seal_record"]
