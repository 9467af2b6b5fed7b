"""Snapshots bound to their log: a snapshot is used only when it provably belongs to the log beside it.

A snapshot's meta holds ``record_hash``, the xxh3-128 of the stored record at its
seq. Before a snapshot is used (replay, tags, compaction, verify) the record at
its seq is read back and compared: a snapshot left from a history that was cut (a
torn tail cut back before it, a journal copied log first with ``cp -r``) names a
record that is no longer there, or another one. Snapshots written before the
binding carry the timestamp of their head record, which is compared instead.
The snapshot a compacted log starts after (seq = first seq - 1) has no record
left to compare with: it is the log's base and is trusted as such; so is a
snapshot whose record cannot be read for damage in the log before it (it stands
in for that history, as before the binding).

On open, a writer moves every snapshot past the head into ``damaged/`` (never
deleting it), so no later commit at those seqs can meet it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from desiru import _engine
from desiru.errors import CorruptDataError, DesiruError
from desiru.journal.store import JournalStore
from desiru.journal.warning import JournalWarning

#: the snapshot meta key holding the xxh3-128 of the stored record at the snapshot's seq
RECORD_HASH = "record_hash"


class StaleSnapshotError(CorruptDataError):
    """A snapshot that does not belong to the log beside it (its seq's record differs or is gone)."""


def record_hash(store: JournalStore, seq: int) -> bytes | None:
    """xxh3-128 of the stored payload at ``seq``, or None when the log does not hold it."""
    if seq < 1 or seq < store.first_seq():
        return None
    for s, payload in store.read(seq, seq + 1):
        if s == seq:
            return bytes(_engine.xxh3_128(payload))
    return None


def check_binding(store: JournalStore, seq: int, meta: dict[str, Any], timestamp_of: Any) -> None:
    """Raise StaleSnapshotError unless the snapshot at ``seq`` (its ``meta``) belongs to ``store``'s log.

    ``timestamp_of(seq, payload)`` gives a record's timestamp (for snapshots written before the binding).
    """
    if seq < store.first_seq():
        return  # the base of a compacted log: its record was dropped with the log before it
    payload = None
    try:
        for s, p in store.read(seq, seq + 1):
            if s == seq:
                payload = p
    except CorruptDataError as exc:
        if exc.seq is not None and exc.seq <= seq:
            return  # damage in the log before it: the snapshot is what stands in for that history
        raise
    where = getattr(store, "name", None)
    if payload is None:
        raise StaleSnapshotError(f"snapshot at seq {seq} is past the end of the log (a cut tail or a "
                                 f"half-copied journal left it)", path=where, seq=seq,
                                 hint="open the journal as a writer: it moves such snapshots into damaged/")
    want = meta.get(RECORD_HASH)
    if isinstance(want, bytes):
        ok = bytes(_engine.xxh3_128(payload)) == want
    else:  # written before the binding: the meta's timestamp is its head record's
        try:
            ok = float(timestamp_of(seq, payload)) == float(meta.get("timestamp", -1.0))
        except (DesiruError, TypeError, ValueError):
            ok = False
    if not ok:
        raise StaleSnapshotError(f"snapshot at seq {seq} does not belong to this log (the record at seq "
                                 f"{seq} is another one)", path=where, seq=seq,
                                 hint="it is ignored; repair(path) or a writer's open moves it into damaged/")


def newest_bound(seqs: Sequence[int], check: Any) -> int | None:
    """The newest of ``seqs`` whose snapshot reads and belongs to the log (``check(seq)`` raises if not)."""
    for s in reversed(list(seqs)):
        try:
            check(s)
        except CorruptDataError:
            continue
        return s
    return None


def set_aside_past_head(store: JournalStore, head: int, name: str) -> list[int]:
    """Writer on open: move every snapshot past ``head`` aside (damaged/), with a JournalWarning."""
    moved = []
    for s in store.snapshot_seqs():
        if s <= head:
            continue
        quarantine = getattr(store, "quarantine_snapshot", None)
        kept = quarantine(s) if quarantine is not None else None
        if quarantine is None:
            store.delete_snapshot(s)
        moved.append(s)
        warnings.warn(f"{name}: snapshot at seq {s} is past the head ({head}) and does not belong to this "
                      f"log; moved aside" + (f" to {kept}" if kept else ""), JournalWarning, stacklevel=4)
    return moved


__all__ = ["RECORD_HASH", "StaleSnapshotError", "check_binding", "newest_bound", "record_hash",
           "set_aside_past_head"]
