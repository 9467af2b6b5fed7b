"""``Journal``: every change of a program as typed events, replayable to any point.

The writer keeps the head state in memory, so ``commit`` is one Rust diff of the
program's state against it plus an append of one record per edit; replay loads
the nearest snapshot at or before the target and applies the events after it,
streaming (memory follows the state, not the journal).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from desiru import _engine
from desiru.errors import CorruptDataError, DesiruError, MissingKeyError
from desiru.journal.codec import (
    RecordCodec,
    check_fsync_mode,
)
from desiru.journal.durability import SyncPolicy
from desiru.journal.events import (
    CheckpointTagged,
    Event,
    event_from_edit,
)
from desiru.journal.file_store import FileStore
from desiru.journal.index import Checkpoint, TagIndex
from desiru.journal.replay import ReplayMixin, VerifyReport
from desiru.journal.state_builder import StateBuilder
from desiru.journal.store import CutReport, JournalStore
from desiru.journal.warning import JournalWarning
from desiru.program import Program
from desiru.serialization.version import CURRENT_VERSION

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
    """``edits`` with each large ``program_created`` said as a shell plus one ``module_added`` per module."""
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


@dataclass(frozen=True)
class CommitResult:
    """What a commit appended: the journal's head seq after it, and the events (empty: no change)."""

    seq: int
    events: tuple[Event, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the commit appended anything."""
        return bool(self.events)


def _unshare(root: dict[str, Any], paths: Any, private: dict[int, Any]) -> dict[str, Any]:
    """``root`` with the nodes on the way to each of ``paths`` made the journal's own.

    The head state shares subtrees with events already handed out and with the state
    builder's cache; an edit applied in place must only touch nodes the journal owns.
    A node is copied (with its direct lists and dicts) the first time, then recorded in
    ``private`` (which holds it, so its id cannot be reused) and changed in place after.
    """

    def own(node: dict[str, Any]) -> dict[str, Any]:
        if id(node) in private:
            return node
        new = {k: (list(v) if type(v) is list else dict(v) if type(v) is dict else v) for k, v in node.items()}
        private[id(new)] = new
        return new

    new_root = own(root)
    for path in paths:
        node = new_root
        for name in path.split(".") if path else ():
            modules = node.get("modules")
            if type(modules) is not list:
                break
            for i, m in enumerate(modules):
                if type(m) is dict and m.get("name") == name:
                    node = modules[i] = own(m)
                    break
            else:
                break
    return new_root


class Journal(ReplayMixin, TagIndex):
    """An append-only log of typed events for one program (see docs/journal.md)."""

    def __init__(
        self,
        store: JournalStore,
        *,
        key: Any = None,
        fsync: str = "batch",
        snapshot_every: int | None = None,
        create: bool = True,
        readonly: bool = False,
    ) -> None:
        self._store = store
        self._name = store.name
        self.readonly = readonly
        self.fsync = check_fsync_mode(fsync)
        if snapshot_every is not None and snapshot_every < 1:
            raise DesiruError(f"snapshot_every must be >= 1, got {snapshot_every}")
        self.snapshot_every = snapshot_every
        self._mutex = threading.RLock()
        self._closed = False
        self._head_state: dict[str, Any] | None = None
        self._tags: dict[str, int] | None = None
        self._checkpoints: list[Checkpoint] | None = None
        self._dropped_tags: dict[str, int] = {}
        self._index_upto = 0
        self._index_first = 0
        self._readable_snapshots: set[int] = set()
        self._builder = StateBuilder()
        # ids of the head state's nodes only the journal holds (see _unshare), with the nodes
        self._private: dict[int, Any] = {}
        if not store.exists():
            if not create or readonly:
                raise DesiruError("no journal here", path=self._name,
                                  hint="create it with desiru.Journal.open(path) (create=True)")
            store.create(self._new_meta(key))
        meta = store.open()
        self.journal_id: bytes = meta.get("journal_id", b"")
        self.encryption: dict[str, Any] | None = meta.get("encryption")
        self._codec = RecordCodec(self.journal_id, self._resolve_key(key), self._name)
        self._sync = SyncPolicy(self.fsync, store.sync, self._mutex, self._name)
        try:
            if not readonly:
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
    ) -> Journal:
        """Open (or create) the journal directory at ``path``; ``readonly=True`` opens a reader.

        One writer at a time: a second writer gets JournalLockedError at once. Readers take
        no lock and see every commit that completed.
        """
        return cls(FileStore(path, readonly=readonly), key=key, fsync=fsync, snapshot_every=snapshot_every,
                   create=create, readonly=readonly)

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
            if self.readonly:  # the writer may be midway through this commit: hide it
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
        if self.readonly and not self._closed:
            self.refresh()
        return self._head

    def refresh(self) -> int:
        """Reader: pick up commits the writer completed since the last look; returns the head."""
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

    def _ensure_head_state(self) -> dict[str, Any] | None:
        if self._head_state is None and self._head > 0:
            self._head_state = self.replay_state(self._head, _copy=False)
        return self._head_state

    # -- writing ---------------------------------------------------------------------------------------
    def commit(self, program: Program, tag: str | None = None) -> CommitResult:
        """Append the events that turn the head into ``program`` (none when nothing changed).

        With ``tag`` a CheckpointTagged event follows, even when nothing else changed.
        """
        if not isinstance(program, Program):  # a live dspy module, through the adapter (dspy is optional)
            from desiru.interop.dspy import as_program

            program = as_program(program)
        return self._commit_state(self._builder.build(program), tag)

    def _commit_state(self, new_state: dict[str, Any], tag: str | None,
                      extra: Mapping[str, Any] | None = None, force_tag: bool = False) -> CommitResult:
        if tag is not None and not isinstance(tag, str):
            raise DesiruError(f"a tag is a str, got {type(tag).__name__}")
        if tag == "":
            raise DesiruError("a tag must not be empty", hint="pass a name such as tag='epoch-3', or tag=None")
        with self._mutex:
            self._check_writable()
            old = self._ensure_head_state()
            edits = _split_large(_engine.diff_states(old, new_state))
            ts = self._now()
            seq = self._head
            events: list[Event] = []
            for edit in edits:
                seq += 1
                events.append(event_from_edit(edit, seq, ts))
            if tag is not None or force_tag:
                seq += 1
                events.append(CheckpointTagged(path="", payload={"tag": tag, **(extra or {})}, seq=seq,
                                               timestamp=ts))
            if not events:
                return CommitResult(self._head, ())
            self._write(events)
            self._head_state, self._private = new_state, {}
            self._maybe_snapshot()
            return CommitResult(self._head, tuple(events))

    def append(self, event: Event) -> Event:
        """Append one event built by hand; it must apply to the head. Returns the stored event."""
        return self.append_many([event])[0]

    def append_many(self, events: Any) -> list[Event]:
        """Append events built by hand as one atomic group (all or none survive a crash).

        They must apply to the head in order; if one does not, nothing is written. Returns
        the stored events (with their seq and timestamp).
        """
        events = list(events)
        for ev in events:
            if not isinstance(ev, Event):
                raise DesiruError(f"append() takes Events, got {type(ev).__name__}")
        if not events:
            return []
        with self._mutex:
            self._check_writable()
            ts = self._now()
            seq = self._head
            stored: list[Event] = []
            edits = []
            for ev in events:
                seq += 1
                new = ev._stamped(seq, ts)
                stored.append(new)
                edit = new.to_edit()
                if edit is not None:
                    edits.append(edit)
            state = self._ensure_head_state()
            if edits:
                if state is None:
                    if edits[0]["op"] != "program_created":
                        raise DesiruError(f"the journal is empty: the first event must be ProgramCreated, "
                                          f"not {events[0].type}", path=self._name)
                    state = {}
                else:
                    state = _unshare(state, {e["path"] for e in edits if e["op"] != "program_created"},
                                     self._private)
                try:
                    _engine.apply_edits(state, edits)
                except BaseException:
                    # nothing was written; the head state may be half changed: rebuild it from the log
                    self._head_state, self._private = None, {}
                    raise
            self._write(stored)
            self._head_state = state
            self._maybe_snapshot()
            return stored

    def _write(self, events: list[Event]) -> None:
        first, last = events[0].seq, events[-1].seq
        encode = self._codec.encode_event
        records = [(ev.seq, encode(ev, first, last)) for ev in events]
        try:
            self._store.append(records)
        except BaseException as exc:
            # the log may now hold part of this commit: refuse to write after it until reopened,
            # and read back only what the log holds
            self._sync.poison(exc, "a write")
            self._head_state, self._private = None, {}
            if isinstance(exc, OSError):
                raise DesiruError(f"writing the journal failed: {exc.strerror or exc}", path=self._name,
                                  seq=first, hint="free disk space (or fix the disk), then close and reopen "
                                  "the journal: it cuts what was half written; the commit did not happen"
                                  ) from exc
            raise
        self._head = last
        try:
            self._sync.appended(len(records))
        except BaseException:
            self._head_state, self._private = None, {}  # poisoned: reads replay the log from now on
            raise
        if self._tags is not None:
            self._index(events)

    def _maybe_snapshot(self) -> None:
        """The automatic snapshot of ``snapshot_every``; runs after a commit's events were appended.

        The commit is already in the log then, so a failure to write the snapshot (e.g. a full
        disk) is a warning, not an error: the next commit tries again.
        """
        if self.snapshot_every is not None and self._head - self._last_snapshot >= self.snapshot_every:
            self._snapshot(auto=True)

    def flush(self) -> None:
        """Make every appended event durable now (fsync), whatever the mode."""
        with self._mutex:
            self._check_writable()
            self._sync.sync_now()

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

    # -- snapshots and compaction ---------------------------------------------------------------------
    def snapshot(self) -> int:
        """Write the full state at the head (atomically); replays from here on start from it."""
        return self._snapshot(auto=False)

    def _snapshot(self, *, auto: bool) -> int:
        with self._mutex:
            self._check_writable()
            if self._head == 0:
                raise DesiruError("nothing to snapshot: the journal is empty", path=self._name)
            state = self._ensure_head_state()
            assert state is not None
            self._load_index()
            assert self._tags is not None and self._checkpoints is not None
            meta = {
                "timestamp": self._head_ts,
                "format_version": str(CURRENT_VERSION),
                "tags": {**self._dropped_tags, **self._tags},
                "checkpoints": [[c.version, c.tag, c.seq, c.timestamp] for c in self._checkpoints],
            }
            blob = self._codec.encode_snapshot(self._head, meta, state)
            self._sync.sync_now()  # the events up to the snapshot reach the disk before it does
            try:
                self._store.put_snapshot(self._head, blob)
            except OSError as exc:  # atomic: no snapshot was written, the log is untouched
                what = f"writing the snapshot at seq {self._head} failed: {exc.strerror or exc}"
                if auto:
                    warnings.warn(f"{self._name}: {what}; the commit is in the log, and the snapshot will be "
                                  f"retried at the next commit", JournalWarning, stacklevel=5)
                    return self._last_snapshot
                raise DesiruError(what, path=self._name, seq=self._head,
                                  hint="free disk space (or fix the disk) and call snapshot() again; "
                                  "the journal itself is unharmed") from exc
            self._last_snapshot = self._head
            return self._head

    def compact(self) -> int:
        """Drop the log and snapshots before the newest snapshot; returns the bytes freed.

        Every seq and tag at or after that snapshot replays the same. Deletion goes
        oldest first, so a crash midway leaves a journal that opens and replays.
        """
        with self._mutex:
            self._check_writable()
            snaps = self._store.snapshot_seqs()
            if not snaps:
                return 0
            newest = snaps[-1]
            self._load_index()
            assert self._tags is not None and self._checkpoints is not None
            freed = self._store.drop_before(newest)
            for s in snaps[:-1]:
                self._store.delete_snapshot(s)
            for tag, seq in list(self._tags.items()):
                if seq < newest:
                    self._dropped_tags[tag] = self._tags.pop(tag)
            self._checkpoints = [c for c in self._checkpoints if c.seq >= newest]
            return freed

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
