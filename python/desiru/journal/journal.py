"""``Journal``: every change of a program as typed events, replayable to any point.

The writer keeps the head state in memory, so ``commit`` is one Rust diff of the
program's state against it plus an append of one record per edit; replay loads
the nearest snapshot at or before the target and applies the events after it,
streaming (memory follows the state, not the journal).
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from desiru import _engine
from desiru.errors import CorruptDataError, DesiruError, MissingKeyError
from desiru.journal.codec import (
    CURRENT_SCHEMA,
    R_PATH,
    R_PAYLOAD,
    R_SEQ,
    R_TIMESTAMP,
    R_TYPE,
    ZSTD_MAGIC,
    RecordCodec,
    check_fsync_mode,
)
from desiru.journal.durability import SyncPolicy
from desiru.journal.events import (
    OP_OF_TYPE,
    CheckpointTagged,
    Event,
    event_from_edit,
)
from desiru.journal.file_store import FileStore
from desiru.journal.state_builder import StateBuilder
from desiru.journal.store import CutReport, Fault, JournalStore
from desiru.program import Program
from desiru.serialization.version import CURRENT_VERSION
from desiru.state import copy_tree

#: edits applied per apply_edits call while replaying: bounds memory, amortises the call
REPLAY_BATCH = 4096
CIPHER = "AES-256-GCM"


class JournalWarning(UserWarning):
    """Something was wrong but recovered: e.g. a torn tail cut off when the journal opened."""


@dataclass(frozen=True)
class CommitResult:
    """What a commit appended: the journal's head seq after it, and the events (empty: no change)."""

    seq: int
    events: tuple[Event, ...] = ()

    @property
    def changed(self) -> bool:
        """Whether the commit appended anything."""
        return bool(self.events)


@dataclass(frozen=True)
class Checkpoint:
    """A point recorded by ``IncrementalSerializer.save_checkpoint``: version number, tag, seq, time."""

    version: int
    tag: str | None
    seq: int
    timestamp: float


@dataclass(frozen=True)
class VerifyReport:
    """Result of ``Journal.verify()``: counts and every fault found (empty when all is well)."""

    head: int
    records: int
    snapshots: int
    faults: tuple[Fault, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.faults

    def __bool__(self) -> bool:
        return self.ok


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


_UNKNOWN = object()


def _unknown_type(rec: list[Any]) -> CorruptDataError:
    return CorruptDataError(f"unknown event type {rec[R_TYPE]!r}", seq=rec[R_SEQ],
                            hint="this journal was written by a newer desiru; upgrade to read it")


class Journal:
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
        if head == 0 or head < self._store.first_seq():  # empty, or compacted up to a snapshot at the head
            self._head_ts = self._timestamp_of(head)
            return
        record = self._read_record(head)
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
        with self._mutex:
            self._check_writable()
            old = self._ensure_head_state()
            edits = _engine.diff_states(old, new_state)
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
            # the log may now hold part of this commit: refuse to write after it until reopened
            self._sync.poisoned = exc
            raise
        self._head = last
        self._sync.appended(len(records))
        if self._tags is not None:
            self._index(events)

    def _maybe_snapshot(self) -> None:
        if self.snapshot_every is not None and self._head - self._last_snapshot >= self.snapshot_every:
            self.snapshot()

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
        for seq, payload in self._store.read(start, stop):
            if expect is not None and seq != expect:
                raise DesiruError(f"events {expect}..{seq - 1} were compacted away", path=self._name, seq=expect,
                                  hint=f"the oldest replayable seq is {self.first_replayable()}")
            expect = seq + 1
            yield self._codec.event_of(self._codec.decode_array(seq, payload))

    def _arrays(self, start: int, stop: int) -> Iterator[list[list[Any]]]:
        """Decoded record arrays (codec.R_*) with start <= seq < stop, a chunk at a time, checked gapless."""
        first = self._store.first_seq()
        if first and start < first:
            start = first
        expect = start
        decode = self._codec.decode_array
        for chunk in self._store.read_chunks(start, stop):
            if chunk[0][0] != expect or chunk[-1][0] != expect + len(chunk) - 1:
                raise CorruptDataError(f"the log skips from seq {expect - 1} to {chunk[0][0]}", path=self._name,
                                       seq=expect, hint="run journal.verify()")
            expect += len(chunk)
            yield [decode(seq, payload) for seq, _pos, payload in chunk]

    def _edits(self, arrays: list[list[Any]]) -> list[dict[str, Any]]:
        """The edits of decoded record arrays (CheckpointTagged gives none)."""
        ops = OP_OF_TYPE
        edits = []
        for rec in arrays:
            op = ops.get(rec[R_TYPE], _UNKNOWN)
            if op is None:
                continue
            if op is _UNKNOWN:
                raise _unknown_type(rec)
            edit = dict(rec[R_PAYLOAD])
            edit["op"] = op
            edit["path"] = rec[R_PATH]
            edits.append(edit)
        return edits

    def first_replayable(self) -> int:
        """The oldest seq that can still be replayed (compaction moves it forward)."""
        first = self._store.first_seq()
        if first <= 1:
            return 0
        snaps = [s for s in self._store.snapshot_seqs() if s >= first - 1]
        return snaps[0] if snaps else first

    # -- index of tags and checkpoints ---------------------------------------------------------------
    def _index(self, events: list[Event]) -> None:
        assert self._tags is not None and self._checkpoints is not None
        for ev in events:
            if not isinstance(ev, CheckpointTagged):
                continue
            payload, seq, ts = ev.payload, ev.seq, ev.timestamp
            tag = payload.get("tag")
            if isinstance(tag, str):
                self._tags[tag] = seq
            version = payload.get("checkpoint")
            if isinstance(version, int):
                self._checkpoints.append(Checkpoint(version, tag if isinstance(tag, str) else None, seq, ts))
        self._index_upto = max(self._index_upto, self._head)

    def _load_index(self) -> None:
        head = self.head
        if self._tags is not None and self._index_upto >= head:
            return
        with self._mutex:
            if self._tags is None:
                self._tags, self._checkpoints, self._dropped_tags = {}, [], {}
                start = self._store.first_seq()
                floor = self.first_replayable()
                self._index_upto = max(start - 1, 0)
                # the newest snapshot holds every tag up to its seq: scan the log only after it
                for base in reversed([s for s in self._store.snapshot_seqs() if start - 1 <= s <= head]):
                    try:
                        meta = self._codec.snapshot_meta(base, self._store.get_snapshot(base))
                    except DesiruError:
                        continue  # damaged: an older one (or the log) will do
                    for tag, seq in (meta.get("tags") or {}).items():
                        (self._tags if seq >= floor else self._dropped_tags)[tag] = seq
                    for v, tag, seq, ts in meta.get("checkpoints") or []:
                        if seq >= floor:
                            self._checkpoints.append(Checkpoint(v, tag, seq, ts))
                    self._index_upto = base
                    break
            for arrays in self._arrays(self._index_upto + 1, head + 1):
                self._index([self._codec.event_of(rec) for rec in arrays if rec[R_TYPE] == CheckpointTagged.type])
            self._index_upto = head

    def tags(self) -> dict[str, int]:
        """{tag: seq of its CheckpointTagged event} for every tag that can be replayed."""
        self._check_open()
        self._load_index()
        assert self._tags is not None
        return dict(self._tags)

    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints recorded by IncrementalSerializer, oldest first."""
        self._check_open()
        self._load_index()
        assert self._checkpoints is not None
        return list(self._checkpoints)

    # -- replay ----------------------------------------------------------------------------------------
    def _target(self, seq: int | None, tag: str | None, at: Any) -> int:
        given = sum(x is not None for x in (seq, tag, at))
        if given > 1:
            raise DesiruError("give at most one of seq=, tag=, at=")
        head = self.head
        if tag is not None:
            tags = self.tags()
            if tag not in tags:
                if tag in self._dropped_tags:
                    raise DesiruError(f"tag {tag!r} (seq {self._dropped_tags[tag]}) was compacted away",
                                      path=self._name, hint=f"the oldest replayable seq is {self.first_replayable()}")
                raise DesiruError(f"no tag {tag!r} in this journal", path=self._name,
                                  hint=f"known tags: {sorted(tags)}")
            return tags[tag]
        if at is not None:
            return self._seq_at(at)
        if seq is None:
            return head
        if not isinstance(seq, int) or seq < 0 or seq > head:
            raise DesiruError(f"seq {seq!r} is out of range (0..{head})", path=self._name)
        return seq

    def _seq_at(self, at: Any) -> int:
        if isinstance(at, _dt.datetime):
            when = at.timestamp()
        elif isinstance(at, (int, float)):
            when = float(at)
        else:
            raise DesiruError(f"at= takes a datetime or a unix timestamp, got {type(at).__name__}")
        found = 0
        for arrays in self._arrays(self.first_replayable() or 1, self._head + 1):
            for rec in arrays:
                if rec[R_TIMESTAMP] > when:
                    break
                found = rec[R_SEQ]
            else:
                continue
            break
        if found == 0 and self.first_replayable() > 1:
            raise DesiruError(f"no replayable event at or before {at}", path=self._name,
                              hint=f"the oldest replayable seq is {self.first_replayable()}")
        return found

    def replay_state(self, seq: int | None = None, tag: str | None = None, at: Any = None,
                     *, _copy: bool = True) -> dict[str, Any]:
        """The state tree as it was at ``seq`` / ``tag`` / time ``at`` (default: the head)."""
        self._check_open()
        target = self._target(seq, tag, at)
        if target == self._head and self._head_state is not None:
            return copy_tree(self._head_state) if _copy else self._head_state
        if target == 0:
            raise DesiruError("the journal holds no program at seq 0", path=self._name,
                              hint="commit a program first")
        bases = [s for s in self._store.snapshot_seqs() if s <= target]
        state: dict[str, Any] | None = None
        base = 0
        while bases:
            base = bases.pop()
            try:
                state = self._codec.snapshot_state(base, self._store.get_snapshot(base))
                break
            except CorruptDataError as exc:  # a damaged snapshot: fall back to an older base
                warnings.warn(f"{self._name}: snapshot at seq {base} is damaged ({exc.message}); "
                              f"replaying from an older point", JournalWarning, stacklevel=2)
                state, base = None, 0
        first = self._store.first_seq()
        if base < target and first > base + 1:
            raise DesiruError(f"seq {target} can no longer be replayed: the events before seq {first} were "
                              f"compacted away", path=self._name,
                              hint=f"the oldest replayable seq is {self.first_replayable()}")
        # decode and apply record by record, in batches of edits: only a batch of edits is ever
        # alive, so memory follows the state and the garbage collector has little to scan
        expect = base + 1
        batch: list[dict[str, Any]] = []
        ops = OP_OF_TYPE
        decode = self._codec.decode_array
        # the fast path reads plain records inline; anything unusual (encrypted, compressed, an
        # older schema, a malformed record) goes through decode_array, which upcasts or raises
        inline = self._codec.key is None
        unpack = _engine.unpackb
        schemas = CURRENT_SCHEMA
        for chunk in self._store.read_chunks(base + 1, target + 1):
            if chunk[0][0] != expect or chunk[-1][0] != expect + len(chunk) - 1:
                raise CorruptDataError(f"the log skips from seq {expect - 1} to {chunk[0][0]}", path=self._name,
                                       seq=expect, hint="run journal.verify()")
            expect += len(chunk)
            for seq, _pos, payload in chunk:
                rec = None
                if inline and not payload.startswith(ZSTD_MAGIC):
                    try:
                        rec = unpack(payload)
                    except CorruptDataError:
                        rec = None
                    if (type(rec) is not list or len(rec) != 8 or rec[R_SEQ] != seq
                            or schemas.get(rec[R_TYPE]) != rec[1] or type(rec[R_PAYLOAD]) is not dict
                            or type(rec[R_PATH]) is not str):
                        rec = None
                if rec is None:
                    rec = decode(seq, payload)
                op = ops.get(rec[R_TYPE], _UNKNOWN)
                if op is None:
                    continue
                if op is _UNKNOWN:
                    raise _unknown_type(rec)
                edit = rec[R_PAYLOAD]  # a dict decoded just now, ours to extend into the edit
                edit["op"] = op
                edit["path"] = rec[R_PATH]
                if state is None:
                    if op != "program_created":
                        raise CorruptDataError("the journal does not start with ProgramCreated",
                                               path=self._name, seq=seq)
                    state = {}
                batch.append(edit)
                if len(batch) >= REPLAY_BATCH:
                    _engine.apply_edits(state, batch)
                    batch = []
        if expect != target + 1:
            raise CorruptDataError(f"the log ends at seq {expect - 1}, before seq {target}", path=self._name,
                                   seq=expect)
        if batch:
            assert state is not None
            _engine.apply_edits(state, batch)
        if state is None:
            raise DesiruError(f"no program at seq {target}", path=self._name)
        return state

    def replay(self, seq: int | None = None, tag: str | None = None, at: Any = None, *,
               into: Any = None) -> Program | Any:
        """The program exactly as it was at ``seq`` / ``tag`` / time ``at`` (default: the head).

        With ``into=`` a dspy module (a template, left unchanged), a copy of it holding that state.
        """
        state = self.replay_state(seq, tag, at, _copy=False)
        program = Program.from_state(state, path=self._name)
        if into is None:
            return program
        from desiru.interop.dspy import to_dspy

        return to_dspy(program, into, copy=True)

    # -- snapshots and compaction ---------------------------------------------------------------------
    def snapshot(self) -> int:
        """Write the full state at the head (atomically); replays from here on start from it."""
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
            self._store.put_snapshot(self._head, blob)
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

    # -- checks ----------------------------------------------------------------------------------------
    def verify(self) -> VerifyReport:
        """Check every record (framing, decryption, decoding) and snapshot; report each fault.

        When the log itself is sound, it is also replayed and every snapshot compared
        with the state the events give at its seq.
        """
        self._check_open()
        with self._mutex:
            count, faults = self._store.check()
            snaps = self._store.snapshot_seqs()
            decoded = 0
            try:
                for seq, payload in self._store.read(0, self._head + 1):
                    try:
                        self._codec.event(self._codec.decode(seq, payload))
                        decoded += 1
                    except DesiruError as exc:
                        faults.append(Fault(exc.message, seq=seq, file=self._name))
            except DesiruError as exc:
                if not any(f.seq == exc.seq for f in faults):
                    faults.append(Fault(exc.message, seq=exc.seq, offset=exc.offset, file=exc.path))
            if not faults:
                for s in snaps:
                    if s < self._store.first_seq() - 1 or s > self._head:
                        continue
                    try:
                        have = self._codec.snapshot_state(s, self._store.get_snapshot(s))
                        if self._store.first_seq() <= 1:
                            want = self._replay_without(s, s)
                            if _engine.content_hash(have) != _engine.content_hash(want):
                                faults.append(Fault("snapshot differs from the replayed events", seq=s))
                    except DesiruError as exc:
                        faults.append(Fault(f"snapshot: {exc.message}", seq=s, offset=exc.offset))
            return VerifyReport(self._head, count, len(snaps), tuple(faults))

    def _replay_without(self, target: int, skip_snapshot: int) -> dict[str, Any]:
        """Replay to ``target`` using only snapshots older than ``skip_snapshot`` (for verify)."""
        older = [s for s in self._store.snapshot_seqs() if s < skip_snapshot]
        state: dict[str, Any] | None = None
        base = 0
        if older:
            base = older[-1]
            state = self._codec.snapshot_state(base, self._store.get_snapshot(base))
        batch = []
        for arrays in self._arrays(base + 1, target + 1):
            batch.extend(self._edits(arrays))
        if batch and state is None:
            state = {}
        if state is None:
            raise CorruptDataError("no program to compare the snapshot with", seq=target)
        return _engine.apply_edits(state, batch)

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
