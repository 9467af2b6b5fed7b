"""``Journal``: every change of a program as typed events, replayable to any point.

The writer keeps the head state in memory, so ``commit`` is one Rust diff of the
program's state against it plus an append of one record per edit; replay loads
the nearest snapshot at or before the target and applies the events after it,
streaming (memory follows the state, not the journal). This file opens and closes
a journal and reads its events; the other parts are mixins (see ``Journal``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

from desiru import adapters
from desiru.errors import CorruptDataError, DesiruError, MissingKeyError
from desiru.journal.codec import (
    RecordCodec,
    check_fsync_mode,
)
from desiru.journal.durability import SyncPolicy
from desiru.journal.events import Event
from desiru.journal.index import Checkpoint, TagIndex
from desiru.journal.replay import ReplayMixin, VerifyReport
from desiru.journal.runs import RunIndex
from desiru.journal.snapshot_binding import set_aside_past_head
from desiru.journal.snapshots import SnapshotMixin
from desiru.journal.state_builder import StateBuilder
from desiru.journal.state_hash import StateHasher
from desiru.journal.states import STATE_CACHE as STATE_CACHE
from desiru.journal.states import STATE_CHAIN as STATE_CHAIN
from desiru.journal.states import CommitStates, StateCache
from desiru.journal.store import CutReport, JournalStore
from desiru.journal.warning import JournalWarning
from desiru.journal.writing import CommitResult, WriteMixin, _writer_name

CIPHER = "AES-256-GCM"
#: a ProgramCreated of a state with more demos than this is written as the program without its
#: modules plus one ModuleAdded per module: the same replay, records of module size (a record is
#: at most 256 MiB, and a GB program would not fit in one)
SPLIT_DEMOS = 20_000


def _count_demos(node: Any) -> int:
    """Demos in a program state, nested programs included."""
    if type(node) is not dict:
        return 0
    demos = node.get("demos")
    count = len(demos) if type(demos) is list else 0
    modules = node.get("modules")
    if type(modules) is list:
        count += sum(_count_demos(m) for m in modules)
    return count


def _split_large(edits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A diff's ``edits`` with a large ``program_created`` said as a shell plus one ``module_added`` per
    module (a diff gives ``program_created`` alone: any other list comes back as it is)."""
    if len(edits) != 1 or edits[0].get("op") != "program_created":
        return edits  # a commit's common case: no copy of the list
    out = []
    for edit in edits:
        state = edit.get("state") if edit.get("op") == "program_created" else None
        modules = state.get("modules") if type(state) is dict else None
        if type(modules) is not list or not modules or _count_demos(state) <= SPLIT_DEMOS:
            out.append(edit)
            continue
        assert state is not None
        shell = {k: ([] if k == "modules" else v) for k, v in state.items()}
        out.append({"op": "program_created", "path": "", "state": shell})
        for i, m in enumerate(modules):
            out.append({"op": "module_added", "path": m["name"], "index": i, "state": m})
    return out


#: events since the last run index checkpoint that make a writer's close() store one
CLOSE_CHECKPOINT = 10_000
#: default bound on the events a replay applies after its nearest snapshot (see snapshot_every)
DEFAULT_SNAPSHOT_EVERY = 20_000


class Journal(WriteMixin, SnapshotMixin, CommitStates, ReplayMixin, TagIndex, RunIndex):
    """An append-only log of typed events: a run of commits, each derived from a parent (docs/journal.md).

    Every public method takes the journal's lock, so one Journal may be shared by threads. Its parts:
    writing (desiru.journal.writing), the states of commits (states), snapshots and compaction
    (snapshots), replay and verify (replay), tags (index) and the run index (runs).
    """

    _split = staticmethod(_split_large)  # reads SPLIT_DEMOS here when called

    def __init__(
        self,
        store: JournalStore,
        *,
        key: Any = None,
        fsync: str = "batch",
        snapshot_every: int | None = None,
        create: bool = True,
        readonly: bool = False,
        shared: bool = False,
    ) -> None:
        self._store = store
        #: one of many writers (processes, machines): each append catches up on the others first
        self.shared = bool(shared) and not readonly
        #: the write fast path (WriteMixin._write): an exclusive writer of a store that takes records directly
        self._direct = not self.shared and store.direct_append
        self._name = store.name
        self.readonly = readonly
        self.fsync = check_fsync_mode(fsync)
        if snapshot_every is not None and snapshot_every < 1:
            raise DesiruError(f"snapshot_every must be >= 1, got {snapshot_every}")
        #: the most events a replay applies after its nearest snapshot (a snapshot is written along
        #: any line that would need more)
        self.snapshot_every = DEFAULT_SNAPSHOT_EVERY if snapshot_every is None else snapshot_every
        self._mutex = threading.RLock()
        self._closed = False
        self._head_state: dict[str, Any] | None = None
        self._tags: dict[str, int] | None = None
        self._checkpoints: list[Checkpoint] | None = None
        self._dropped_tags: dict[str, int] = {}
        self._tag_history: list = []
        self._index_upto = 0
        self._index_first = 0
        self._readable_snapshots: set[int] = set()
        self._builder = StateBuilder()
        self._hasher = StateHasher()
        self._replayed: tuple[int, dict[str, Any]] | None = None
        self._converters: dict[str, adapters.StateConverter] = {}  # per adapter, made on its first commit
        # ids of the head state's nodes only the journal holds (apply_edits' own), with the nodes
        self._private: dict[int, Any] = {}
        self._reset_runs()
        #: the commit this writer's next commit(parent=None) derives from (None: the newest commit)
        self._line_head: int | None = None
        self._states = StateCache()
        #: per commit: events to apply from its nearest snapshot (the replay cost the policy bounds)
        self._depth: dict[int, int] = {}
        self.writer = _writer_name()
        if not store.exists():
            if not create or readonly:
                raise DesiruError("no journal here", path=self._name,
                                  hint="create it with desiru.Journal.open(path) (create=True)")
            store.create(self._new_meta(key))
        meta = store.open()
        self.journal_id: bytes = meta.get("journal_id", b"")
        self.encryption: dict[str, Any] | None = meta.get("encryption")
        self._codec = RecordCodec(self.journal_id, self._resolve_key(key), self._name)
        self._codec.bind(store)  # snapshots are used only when they belong to this log
        self._sync = SyncPolicy(self.fsync, store.sync, self._mutex, self._name)
        try:
            if self.shared:
                store.lock_shared()  # torn bytes of a dead writer are cut under the append lock
            elif not readonly:
                store.lock()
                cut = store.recover()
                if cut is not None:
                    self._warn_cut(cut)
            elif store.damage is not None:
                warnings.warn(f"{store.damage}; this reader sees the events before it only", JournalWarning,
                              stacklevel=3)
            self._head = store.last_seq()
            self._head_ts = 0.0
            self._settle_tail()
            if not readonly and not self.shared:  # only the one writer knows no other writer is ahead of it
                set_aside_past_head(store, self._head, self._name)
                for hi in store.index_seqs():  # run index checkpoints of records a cut removed
                    if hi > self._head:
                        store.delete_index(hi)
        except BaseException:
            store.close()
            raise
        self._last_snapshot = max([s for s in store.snapshot_seqs() if s <= self._head], default=0)

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        key: Any = None,
        fsync: str = "batch",
        snapshot_every: int | None = None,
        create: bool = True,
        *,
        readonly: bool = False,
        name: str | None = None,
        shared: bool = False,
    ) -> Journal:
        """Open (or create) the journal at ``path``; ``readonly=True`` opens a reader.

        ``path`` is a directory, or a PostgreSQL location ``postgresql://USER@HOST:PORT/DB``
        with the journal's ``name`` (see desiru.journal.locate). By default one writer at a
        time: a second writer gets JournalLockedError at once. ``shared=True`` opens one of
        many writers (processes on one machine, or machines on PostgreSQL): each append takes
        the store's lock for that append only and catches up on the others' records first.
        Readers take no lock and see every commit that completed.
        """
        from desiru.journal.locate import store_for

        return cls(store_for(path, name=name, readonly=readonly), key=key, fsync=fsync,
                   snapshot_every=snapshot_every, create=create, readonly=readonly, shared=shared)

    @staticmethod
    def _new_meta(key: Any) -> dict[str, Any]:
        meta: dict[str, Any] = {"journal_id": secrets.token_bytes(16), "encryption": None}
        if key is not None:
            from desiru import crypto

            k = crypto.Key.from_user(key)
            meta["encryption"] = {"cipher": CIPHER, "key_id": k.key_id, "kdf": k.kdf}
        return meta

    def _resolve_key(self, key: Any) -> Any:
        enc = self.encryption
        if enc is None:
            if key is not None:
                raise DesiruError("this journal is not encrypted but a key was given", path=self._name,
                                  hint="open it without key=, or rekey_journal(path, None, key) to encrypt it")
            return None
        if key is None:
            raise MissingKeyError(f"the journal is encrypted (key id {enc.get('key_id')}) and no key was given",
                                  path=self._name, hint="pass key=...")
        from desiru import crypto

        k = crypto.Key.from_user(key, enc.get("kdf"))
        crypto.check_key_id(k, enc.get("key_id", ""), path=self._name)
        return k

    def _warn_cut(self, cut: CutReport) -> None:
        warnings.warn(
            f"{self._name}: {cut.reason}: cut {cut.nbytes} bytes after seq {cut.after_seq}; "
            f"they were never replayed and are kept in {cut.kept_in}",
            JournalWarning,
            stacklevel=4,
        )

    def _settle_tail(self) -> None:
        """Find the last whole commit; a writer cuts a commit a crash left half written."""
        head = self._head
        try:
            if head == 0 or head < self._store.first_seq():  # empty, or compacted up to a snapshot at the head
                self._head_ts = self._timestamp_of(head)
                return
            record = self._read_record(head)
        except DesiruError:
            if not self.readonly or head >= self._store.first_seq():
                raise
            # a reader raced a compaction: the head's record (or snapshot) went away meanwhile. The
            # writer compacts only up to a snapshot, which it takes between commits: the commit is whole
            with contextlib.suppress(DesiruError):
                self._head_ts = self._timestamp_of(head)
            return
        first, last = record.get("commit") or (head, head)
        if last > head:
            if self.readonly or self.shared:  # a writer may be midway through this commit: hide it
                self._head = first - 1
            else:
                cut = self._store.cut_after(first - 1, "a commit a crash left half written")
                if cut is not None:
                    self._warn_cut(cut)
                self._head = self._store.last_seq()
            self._head_ts = self._timestamp_of(self._head)
        else:
            self._head_ts = float(record.get("timestamp", 0.0))

    def _timestamp_of(self, seq: int) -> float:
        if seq == 0:
            return 0.0
        if seq < self._store.first_seq():
            return float(self._codec.snapshot_meta(seq, self._store.get_snapshot(seq)).get("timestamp", 0.0))
        return float(self._read_record(seq).get("timestamp", 0.0))

    def _read_record(self, seq: int) -> dict[str, Any]:
        for s, payload in self._store.read(seq, seq + 1):
            return self._codec.decode(s, payload)
        raise CorruptDataError("record is missing", path=self._name, seq=seq)

    # -- context manager ------------------------------------------------------------------------------
    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush (per the fsync mode), release the lock and files. Idempotent."""
        if self._closed:
            return
        if not self.readonly and not self.shared and self._nodes is not None \
                and self._head - self._checkpointed >= CLOSE_CHECKPOINT:
            # a reader's first trials() then reads the table instead of the whole log (a cache:
            # failing to store it, or a forked child that must not write, changes nothing)
            with contextlib.suppress(OSError, DesiruError), self._mutex:
                self._sync.check()
                self._runs()
                self._checkpoint_runs()
        self._closed = True
        try:
            if not self.readonly:
                self._sync.close()
        finally:
            self._store.close()

    def __del__(self) -> None:  # a forgotten journal still releases its lock
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:
                pass

    def __repr__(self) -> str:
        mode = "reader" if self.readonly else "writer"
        return f"Journal({self._name!r}, {mode}, head={self._head})"

    # -- head -------------------------------------------------------------------------------------------
    @property
    def path(self) -> str:
        """Where the journal lives."""
        return self._name

    @property
    def store(self) -> JournalStore:
        """The storage backend."""
        return self._store

    @property
    def head(self) -> int:
        """Seq of the newest event of a whole commit (0 for an empty journal); a reader refreshes it."""
        if (self.readonly or self.shared) and not self._closed:
            self.refresh()
        return self._head

    def refresh(self) -> int:
        """Reader (or shared writer): pick up commits other writers completed since the last look."""
        with self._mutex:
            last = self._store.last_seq()
            if last != self._head:
                self._head = last
                self._settle_tail()
            return self._head

    def _check_open(self) -> None:
        if self._closed:
            raise DesiruError("the journal is closed", path=self._name, hint="open it again")

    def _check_writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise DesiruError("this journal was opened read-only", path=self._name,
                              hint="open it without readonly=True to write (one writer at a time)")
        self._sync.check()

    def _now(self) -> float:
        # timestamps never go backwards, so replay(at=...) can stop at the first later event
        ts = max(time.time(), self._head_ts)
        self._head_ts = ts
        return ts

    # -- reading ---------------------------------------------------------------------------------------
    def events(self, start: int = 0, stop: int | None = None) -> Iterator[Event]:
        """Typed events with start <= seq < stop (up to the head), upcast to the current schema."""
        self._check_open()
        head = self.head
        stop = head + 1 if stop is None else min(stop, head + 1)
        expect = None if start <= 1 else start  # from the beginning: wherever the log now starts
        before = self._listing()
        records = self._store.read(start, stop)
        while True:
            try:
                item = next(records, None)
            except DesiruError as exc:
                if not self._compacted_since(before):
                    raise
                # a reader raced a compaction: the segment it was reading went away
                at = expect if expect is not None else start
                raise DesiruError(f"events from seq {at} were compacted away while reading them",
                                  path=self._name, seq=at,
                                  hint=f"the oldest replayable seq is {self._first_replayable_or_unknown()}"
                                  ) from exc
            if item is None:
                return
            seq, payload = item
            if expect is not None and seq != expect:
                raise DesiruError(f"events {expect}..{seq - 1} were compacted away", path=self._name, seq=expect,
                                  hint=f"the oldest replayable seq is {self._first_replayable_or_unknown()}")
            expect = seq + 1
            yield self._codec.event_of(self._codec.decode_array(seq, payload))

    # -- following -------------------------------------------------------------------------------------
    def follow(self, start: int | None = None, timeout: float | None = None,
               poll: float = 0.02) -> Iterator[Event]:
        """Yield events as they are committed, once each and in order.

        Starts after the current head (or at ``start``); stops when no new event came
        for ``timeout`` seconds (None: never).
        """
        from desiru.journal.follow import follow

        return follow(self, start=start, timeout=timeout, poll=poll)

    def size(self) -> int:
        """Bytes the journal takes on disk."""
        return self._store.size()


__all__ = ["Checkpoint", "CommitResult", "Journal", "JournalWarning", "VerifyReport"]
