"""``ds.migrate(path)``: bring a document or a journal to the current format, in place.

A document is read (through every registered migration), a copy of its original
bytes is kept next to it as ``PATH.bak-<old version>``, and the migrated document
replaces it atomically, in the same format, compression and encryption. A reader
sees the old file or the new one, never a mix; if anything fails the original is
untouched. A journal (a directory) is copied to ``PATH.bak-<old version>``, then
rewritten by ``desiru.journal.migrate_journal`` (format header and every event
brought to the current version through the upcasters) and swapped in atomically.
"""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desiru.atomic import atomic_write, fsync_dir
from desiru.errors import DesiruError, IncompatibleVersionError
from desiru.progress import ProgressCallback
from desiru.serialization.documents import deserialize_document, read_bytes, serialize_document
from desiru.serialization.migrations import unknown_header_fields
from desiru.serialization.version import CURRENT_VERSION, Version


@dataclass(frozen=True)
class MigrateResult:
    """What ``migrate`` did: the file, its version before and after, and where the original was kept."""

    path: Path
    kind: str  # "document" or "journal"
    from_version: Version
    to_version: Version
    backup: Path | None
    changed: bool
    records: int | None = None  # for journals: how many records were rewritten


def migrate(path: str | os.PathLike[str], *, key: bytes | str | None = None,
            progress: ProgressCallback | None = None) -> MigrateResult:
    """Upgrade the document or journal at ``path`` to the current format, in place, keeping a backup.

    A file already at the current version (or a newer minor of it) is left as it is.
    Encrypted documents need ``key``; they are written back encrypted with it.
    ``progress(done, total)`` is told a journal's records rewritten (desiru.progress).
    """
    target = Path(path)
    if _is_journal(target):
        return _migrate_journal(target, key, progress)
    data = read_bytes(target)
    with warnings.catch_warnings():  # a newer minor is reported by the result, not by a warning
        from desiru.serialization.version import NewerFormatWarning

        warnings.simplefilter("ignore", NewerFormatWarning)
        doc = deserialize_document(data, key=key, path=os.fspath(target))
    if doc.version >= CURRENT_VERSION:
        return MigrateResult(target, "document", doc.version, doc.version, None, False)
    assert doc.format is not None
    body, _, _ = serialize_document(doc.state, kind=doc.kind, format=doc.format, compress=doc.compression,
                                    key=key if doc.encrypted else None, extra=unknown_header_fields(doc.header))
    backup = backup_path(target, doc.version)
    atomic_write(backup, data)  # the original first, durably: the swap below may then fail safely
    atomic_write(target, body)
    return MigrateResult(target, "document", doc.version, CURRENT_VERSION, backup, True)


def backup_path(path: Path, version: Version) -> Path:
    """``PATH.bak-<version>``, or ``PATH.bak-<version>.N`` when that name is taken."""
    candidate = path.with_name(f"{path.name}.bak-{version}")
    n = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak-{version}.{n}")
        n += 1
    return candidate


def _is_journal(path: Path) -> bool:
    if not path.is_dir():
        return False
    from desiru.journal import is_journal

    return bool(is_journal(path))


def _copy_durably(src: Path, dst: Path) -> None:
    """Copy a journal directory and fsync every file and folder of the copy before it counts as a backup."""
    shutil.copytree(src, dst, symlinks=True)
    for folder, _, files in os.walk(dst):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(folder)
    fsync_dir(dst.parent)


def _journal_version(root: Path) -> Version:
    from desiru.journal.file_store import HEADER_FILE, peek_version

    return peek_version(read_bytes(root / HEADER_FILE), os.fspath(root))


def _events_current(root: Path, key: Any) -> bool:
    """True when every record of a journal at the current format is stored as this release writes
    it (the array layout, each event at its current schema), so a rewrite would change nothing.
    False when that cannot be told (encrypted without a key, damage): the rewrite then runs and
    reports the problem itself."""
    import zstandard

    from desiru import _engine
    from desiru.journal import codec as rc
    from desiru.journal.file_store import FileStore

    store = FileStore(root, readonly=True, check_version=False)
    try:
        meta = store.open()
    except (DesiruError, OSError):
        return False
    try:
        enc = meta.get("encryption")
        if (enc is None) != (key is None):
            return False  # a key is missing, or given for a plain journal: the rewrite says which
        crypto_key = None
        if enc is not None:
            from desiru import crypto

            crypto_key = crypto.Key.from_user(key, enc.get("kdf"))
            crypto.check_key_id(crypto_key, enc.get("key_id", ""), path=os.fspath(root))
        journal_id = meta.get("journal_id", b"")
        unzstd = zstandard.ZstdDecompressor()
        for seq, payload in store.read(0):
            if crypto_key is not None:
                payload = crypto.open_record(crypto_key, journal_id, seq, payload)
            if payload[:4] == rc.ZSTD_MAGIC:
                payload = unzstd.decompress(payload, max_output_size=rc.MAX_RECORD_DECOMPRESSED)
            rec = _engine.unpackb(payload)
            if (type(rec) is not list or len(rec) != rc.RECORD_FIELDS  # e.g. the map layout of early writers
                    or rc.CURRENT_SCHEMA.get(rec[rc.R_TYPE]) != rec[rc.R_SCHEMA]):
                return False
        return True
    except (DesiruError, zstandard.ZstdError):
        return False
    finally:
        store.close()


def _migrate_journal(root: Path, key: Any, progress: ProgressCallback | None = None) -> MigrateResult:
    """Copy the journal aside as the backup, then let the journal rewrite itself (events upcast)."""
    from desiru.journal import migrate_journal

    before = _journal_version(root)
    if before > CURRENT_VERSION:
        raise IncompatibleVersionError(
            f"the journal has format {before}, newer than this release writes ({CURRENT_VERSION})",
            path=root, hint="migrate it with the release that wrote it, or a newer one")
    if before == CURRENT_VERSION and _events_current(root, key):
        return MigrateResult(root, "journal", before, before, None, False, 0)
    backup = backup_path(root, before)
    _copy_durably(root, backup)
    try:  # an open writer holds the journal's lock: the rewrite then fails with JournalLockedError
        records = migrate_journal(root, key=key, progress=progress)
    except BaseException:
        shutil.rmtree(backup, ignore_errors=True)  # nothing changed: no backup to keep
        raise
    fsync_dir(root.parent)
    return MigrateResult(root, "journal", before, _journal_version(root), backup, True, records)
