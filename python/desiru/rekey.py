"""``ds.rekey``: re-encrypt a document or a journal under a new key, atomically.

A document is re-sealed without decoding it: the authenticated (compressed)
body moves from the old container to a new one with a fresh nonce (and, for a
passphrase, a fresh salt). Journals are handed to desiru.journal.rekey_journal.
Nothing is written until the old key has opened the data, so a wrong old key
leaves the file exactly as it was.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from desiru import crypto
from desiru.atomic import atomic_write
from desiru.errors import DesiruError
from desiru.progress import ProgressCallback
from desiru.serialization import framed
from desiru.serialization.documents import deserialize_document, read_bytes

KeyLike = crypto.Key | bytes | str


@dataclass(frozen=True)
class RekeyResult:
    """What a rekey did: the path, "document" or "journal", and the key ids before and after (None: plain)."""

    path: Path
    kind: str
    old_key_id: str | None
    new_key_id: str | None


def _is_journal(path: Path) -> bool:
    try:
        from desiru.journal import is_journal
    except ImportError:  # a build without the journal package only has documents
        return False
    return bool(is_journal(path))


def rekey(path: str | os.PathLike[str], old_key: KeyLike | None, new_key: KeyLike | None, *,
          progress: ProgressCallback | None = None) -> RekeyResult:
    """Re-encrypt the document or journal at ``path`` from ``old_key`` to ``new_key``, atomically.

    ``old_key=None`` encrypts a plain document; ``new_key=None`` writes it back unencrypted.
    Keys take every form ``key=`` takes (raw, hex, base64, passphrase, ``desiru.crypto.Key``).
    ``progress(done, total)`` is told a journal's records rewritten (desiru.progress).
    """
    target = Path(path)
    if old_key is None and new_key is None:
        raise DesiruError(
            "rekey needs an old key, a new key, or both",
            path=target,
            hint="pass old_key=None only to encrypt a plain file, new_key=None only to decrypt one",
        )
    if _is_journal(target):
        return _rekey_journal(target, old_key, new_key, progress)
    return _rekey_document(target, old_key, new_key)


def _rekey_document(target: Path, old_key: KeyLike | None, new_key: KeyLike | None) -> RekeyResult:
    where = os.fspath(target)
    data = read_bytes(target)
    if framed.is_framed(data):  # per-module frames: each one opened and sealed again
        return _rekey_framed(target, data, old_key, new_key)
    if crypto.is_encrypted(data):
        if old_key is None:
            crypto.open_document(data, None, path=where)  # raises MissingKeyError naming the file
        body, old_id = crypto.open_document(data, old_key, path=where)
    else:
        if old_key is not None:
            raise DesiruError(
                "the file is not encrypted, but an old key was given",
                path=target,
                hint="pass old_key=None to encrypt a plain file",
            )
        # a plain file is checked in full (format, version, checksum) so garbage is never sealed
        deserialize_document(data, path=where)
        body, old_id = data, None
    if new_key is None:
        out, new_id = body, None
    else:
        key = crypto.Key.from_user(new_key)  # derived once: the same Key seals and checks
        out = crypto.seal_document(body, key)
        opened, new_id = crypto.open_document(out, key, path=where)
        if opened != body:  # never replace a good file with one that does not open
            raise DesiruError("re-encrypted bytes did not open again; the file was left unchanged", path=target)
    atomic_write(target, out)
    return RekeyResult(target, "document", old_id, new_id)


def _rekey_framed(target: Path, data: bytes, old_key: KeyLike | None, new_key: KeyLike | None) -> RekeyResult:
    where = os.fspath(target)
    if old_key is not None and not crypto.is_encrypted(data):
        raise DesiruError("the file is not encrypted, but an old key was given", path=target,
                          hint="pass old_key=None to encrypt a plain file")
    key = crypto.Key.from_user(new_key) if new_key is not None else None
    out, old_id = framed.reseal(data, old_key, key, where)
    before = deserialize_document(data, key=old_key, path=where)
    if deserialize_document(out, key=key, path=where).state != before.state:  # never replace a good file badly
        raise DesiruError("re-encrypted bytes did not open again; the file was left unchanged", path=target)
    atomic_write(target, out)
    return RekeyResult(target, "document", old_id, key.key_id if key is not None else None)


def _journal_key_id(target: Path) -> str | None:
    """The key id a journal's header names (None: not encrypted)."""
    from desiru.journal.file_store import HEADER_FILE, decode_header

    _, body = decode_header((target / HEADER_FILE).read_bytes(), os.fspath(target), check_version=False)
    enc = body["meta"].get("encryption")
    return enc.get("key_id") if isinstance(enc, dict) else None


def _rekey_journal(target: Path, old_key: KeyLike | None, new_key: KeyLike | None,
                   progress: ProgressCallback | None = None) -> RekeyResult:
    from desiru.journal import rekey_journal

    old_id = _journal_key_id(target)
    rekey_journal(target, old_key, new_key, progress=progress)  # checks the old key before it writes anything
    return RekeyResult(target, "journal", old_id, _journal_key_id(target))


__all__ = ["RekeyResult", "rekey"]
