"""``ds.migrate(path)``: bring a document or a journal to the current format, in place.

A document is read (through every registered migration), a copy of its original
bytes is kept next to it as ``PATH.bak-<old version>``, and the migrated document
replaces it atomically, in the same format, compression and encryption. A reader
sees the old file or the new one, never a mix; if anything fails the original is
untouched. Journals are handed to ``desiru.journal.migrate_journal``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desiru.atomic import atomic_write
from desiru.errors import DesiruError
from desiru.serialization import container, envelope, formats
from desiru.serialization.documents import deserialize_document, read_bytes
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
    detail: Any = None  # the journal helper's own report, for journals


def migrate(path: str | os.PathLike[str], *, key: bytes | str | None = None) -> MigrateResult:
    """Upgrade the document or journal at ``path`` to the current format, in place, keeping a backup.

    A file already at the current version (or a newer minor of it) is left as it is.
    Encrypted documents need ``key``; they are written back encrypted with it.
    """
    target = Path(path)
    if _is_journal(target):
        from desiru import journal

        detail = journal.migrate_journal(target)
        return _journal_result(target, detail)
    data = read_bytes(target)
    with warnings.catch_warnings():  # a newer minor is reported by the result, not by a warning
        from desiru.serialization.version import NewerFormatWarning

        warnings.simplefilter("ignore", NewerFormatWarning)
        doc = deserialize_document(data, key=key, path=os.fspath(target))
    if doc.version >= CURRENT_VERSION:
        return MigrateResult(target, "document", doc.version, doc.version, None, False)
    tree = envelope.build(doc.state, doc.kind, extra=unknown_header_fields(doc.header))
    assert doc.format is not None
    body = container.seal(formats.encode(tree, doc.format), fmt=doc.format, compression=doc.compression,
                          key=key if doc.encrypted else None)
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
    try:
        from desiru.journal import is_journal
    except ImportError:  # a build without the journal: every path is a document
        return False
    return bool(is_journal(path))


def _journal_result(path: Path, detail: Any) -> MigrateResult:
    """Our result for a journal, from whatever the journal helper reports."""
    def get(name: str) -> Any:
        return detail.get(name) if isinstance(detail, dict) else getattr(detail, name, None)

    before, after = get("from_version"), get("to_version")
    try:
        v_from = Version.parse(str(before)) if before is not None else CURRENT_VERSION
        v_to = Version.parse(str(after)) if after is not None else CURRENT_VERSION
    except DesiruError:
        v_from = v_to = CURRENT_VERSION
    backup = get("backup")
    changed = get("changed")
    return MigrateResult(path, "journal", v_from, v_to, Path(backup) if backup else None,
                         bool(changed) if changed is not None else v_from != v_to, detail)
