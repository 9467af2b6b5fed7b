"""Copy a whole journal between stores: a directory and PostgreSQL, in either direction.

Records and snapshots move as the bytes they are stored as (sealed, compressed), and
the meta (journal id, encryption info) moves with them: seqs, timestamps, tags and
encryption stay as they were, and an encrypted journal opens with the same key.
Nothing is decrypted, so no key is needed. The copy is what the source held when the
copy started; a destination that already holds a journal is refused, and a copy that
fails midway removes what it wrote.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from desiru.errors import DesiruError
from desiru.journal.locate import is_postgres, location_label, store_for
from desiru.journal.store import JournalStore
from desiru.progress import ProgressCallback, Ticker

#: records per append while copying (one transaction each on PostgreSQL)
BATCH = 4096


@dataclass(frozen=True)
class CopyResult:
    """What a copy moved: records, snapshots, the head seq, and the two locations (no passwords)."""

    records: int
    snapshots: int
    head: int
    src: str
    dst: str


def copy_journal(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, src_name: str | None = None,
                 dst_name: str | None = None, progress: ProgressCallback | None = None) -> CopyResult:
    """Copy the journal at ``src`` to a new journal at ``dst`` (paths or PostgreSQL locations).

    ``progress(done, total)`` is told the records copied (desiru.progress).
    """
    source = store_for(src, name=src_name, readonly=True)
    label_src, label_dst = location_label(src, src_name), location_label(dst, dst_name)
    try:
        if not source.exists():
            raise DesiruError("no journal here", path=label_src, hint="check the source location")
        meta = source.open()
        if is_postgres(dst):
            target = store_for(dst, name=dst_name)
            if target.exists():
                raise DesiruError("the destination already holds a journal", path=label_dst,
                                  hint="copy to a new name (postgresql://...#NEW-NAME)")
            target.create(meta)
            try:
                result = _fill(source, target, label_src, label_dst, meta, progress)
            except BaseException:
                target.close()
                _drop_postgres(target)
                raise
            return result
        final = Path(dst)
        if final.exists():
            raise DesiruError("the destination already exists", path=label_dst, hint="copy to a new path")
        if not final.parent.is_dir():
            raise DesiruError(f"folder {str(final.parent)!r} does not exist", path=label_dst, hint="create it first")
        tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.copy")
        try:
            target = store_for(tmp)
            target.create(meta)
            result = _fill(source, target, label_src, label_dst, meta, progress)
            os.rename(tmp, final)  # the copy appears whole or not at all
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return result
    finally:
        source.close()


def _fill(source: JournalStore, target: JournalStore, label_src: str, label_dst: str, meta: dict[str, Any],
          progress: ProgressCallback | None = None) -> CopyResult:
    target.open()
    target.lock()
    try:
        head = source.last_seq()
        first = source.first_seq()
        snaps = [s for s in source.snapshot_seqs() if s <= head]
        nsnaps = len(snaps)
        if first > 1:  # compacted: the log starts after the snapshot there
            target.start_at(first)  # type: ignore[attr-defined]

        def put_snapshots(upto: int) -> None:
            while snaps and snaps[0] <= upto:
                s = snaps.pop(0)
                target.put_snapshot(s, source.get_snapshot(s))

        put_snapshots(first - 1)
        count = 0
        tick = Ticker(progress, max(head - first + 1, 0))
        for chunk in source.read_chunks(first, head + 1):
            batch: list[tuple[int, bytes]] = []
            for seq, _pos, payload in chunk:
                if snaps and snaps[0] < seq:  # a snapshot follows the records up to it, as in the source
                    target.append(batch)
                    batch = []
                    put_snapshots(seq - 1)
                batch.append((seq, payload))
                if len(batch) >= BATCH:
                    target.append(batch)
                    batch = []
            target.append(batch)
            count += len(chunk)
            tick(count)
        put_snapshots(head)
        tick.end()
        if target.last_seq() != head:
            raise DesiruError(f"the copy ends at seq {target.last_seq()}, the source at {head}", path=label_dst,
                              hint="the source changed under the copy: copy again")
        target.sync()
        return CopyResult(count, nsnaps, head, label_src, label_dst)
    finally:
        target.close()


def _drop_postgres(store: Any) -> None:
    """Remove a half-made copy from the database."""
    try:
        store.drop()
    except DesiruError:
        pass


__all__ = ["CopyResult", "copy_journal"]
