"""Repair a damaged journal: keep the longest sound history, move the rest aside.

Nothing is deleted: cut bytes and damaged snapshots go to the journal's damaged/
folder. What remains opens, replays and accepts appends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from desiru.errors import DesiruError
from desiru.journal.codec import RecordCodec
from desiru.journal.file_store import FileStore, is_file_journal
from desiru.journal.store import CutReport, Fault


@dataclass(frozen=True)
class RepairReport:
    """What repair found and did: faults, cuts (with where the bytes went), snapshots moved aside."""

    path: str
    head: int
    faults: tuple[Fault, ...] = field(default=())
    cuts: tuple[CutReport, ...] = field(default=())
    snapshots_removed: tuple[int, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return bool(self.cuts or self.snapshots_removed)


def is_journal(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a desiru journal (a directory whose header has the journal magic)."""
    return is_file_journal(path)


def _codec(meta: dict[str, Any], key: Any, name: str) -> RecordCodec | None:
    enc = meta.get("encryption")
    if enc is None:
        return RecordCodec(meta.get("journal_id", b""), None, name)
    if key is None:
        return None  # without the key only the framing can be checked
    from desiru import crypto

    k = crypto.Key.from_user(key, enc.get("kdf"))
    crypto.check_key_id(k, enc.get("key_id", ""), path=name)
    return RecordCodec(meta.get("journal_id", b""), k, name)


def repair(path: str | os.PathLike[str], key: Any = None) -> RepairReport:
    """Cut the journal at its first damaged record (framing, seq, decryption or decoding).

    Takes the writer lock (JournalLockedError if a writer is open). Without the key,
    an encrypted journal is checked by its framing only.
    """
    name = os.fspath(path)
    if not is_journal(name):
        raise DesiruError("not a desiru journal", path=name, hint="give the journal directory")
    store = FileStore(name)
    meta = store.open()
    store.lock()
    try:
        cuts: list[CutReport] = []
        if store.damage is None:  # otherwise the cut below starts at the damage
            cut = store.recover()
            if cut is not None:
                cuts.append(cut)
        _count, faults = store.check()
        log_faults = [f for f in faults if not f.reason.startswith("snapshot") and f.seq is not None]
        bad = min((f.seq for f in log_faults if f.seq is not None), default=None)
        codec = _codec(meta, key, name)
        if codec is not None:
            stop = bad if bad is not None else store.last_seq() + 1
            last_rec: dict[str, Any] | None = None
            try:
                for seq, payload in store.read(0, stop):
                    try:
                        last_rec = codec.decode(seq, payload)
                        codec.event(last_rec)
                    except DesiruError as exc:
                        faults.append(Fault(exc.message, seq=seq, file=name))
                        bad = seq
                        break
            except DesiruError as exc:
                if exc.seq is not None:
                    bad = exc.seq if bad is None else min(bad, exc.seq)
        if bad is not None:
            cut = store.cut_after(bad - 1, f"repair: damage at seq {bad}")
            if cut is not None:
                cuts.append(cut)
        # a commit cut in the middle by the above: drop its first part too
        head = store.last_seq()
        if codec is not None and head:
            for seq, payload in store.read(head, head + 1):
                first, last = codec.decode(seq, payload).get("commit") or (seq, seq)
                if last > head:
                    cut = store.cut_after(first - 1, "repair: a commit left half written")
                    if cut is not None:
                        cuts.append(cut)
        head = store.last_seq()
        removed = []
        for seq in store.snapshot_seqs():
            ok = seq <= head
            if ok:
                try:
                    blob = store.get_snapshot(seq)
                    if codec is not None:
                        codec.snapshot_meta(seq, blob)
                        codec.snapshot_state(seq, blob)
                except DesiruError as exc:
                    faults.append(Fault(f"snapshot: {exc.message}", seq=seq, file=name))
                    ok = False
            if not ok:
                store.quarantine_snapshot(seq)
                removed.append(seq)
        return RepairReport(name, head, tuple(faults), tuple(cuts), tuple(removed))
    finally:
        store.close()


__all__ = ["RepairReport", "is_journal", "repair"]
