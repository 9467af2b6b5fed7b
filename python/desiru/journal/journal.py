"""``Journal``: every change of a program as typed events, replayable to any point.

The writer keeps the head state in memory, so ``commit`` is one Rust diff of the
program's state against it plus an append of one record per edit; replay loads
the nearest snapshot at or before the target and applies the events after it,
streaming (memory follows the state, not the journal).
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import socket
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from desiru import _engine, adapters
from desiru.errors import CommitFailedError, CorruptDataError, DesiruError, MissingKeyError
from desiru.journal.codec import (
    RecordCodec,
    check_fsync_mode,
)
from desiru.journal.durability import SyncPolicy
from desiru.journal.events import (
    CheckpointTagged,
    Committed,
    Event,
    ResultsRecorded,
    event_from_edit,
)
from desiru.journal.index import Checkpoint, TagIndex
from desiru.journal.replay import ReplayMixin, VerifyReport
from desiru.journal.runs import Node, RunIndex, results_payload
from desiru.journal.snapshot_binding import newest_bound, set_aside_past_head
from desiru.journal.state_builder import StateBuilder
from desiru.journal.state_hash import StateHasher
from desiru.journal.store import CutReport, JournalStore
from desiru.journal.warning import JournalWarning
from desiru.program import Program, warn_script_classes
from desiru.progress import ProgressCallback, Ticker
from desiru.serialization.version import CURRENT_VERSION
from desiru.state import copy_tree

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


#: commit states kept in memory (sharing structure) so a commit from a recent parent replays nothing
STATE_CACHE = 256
#: the most commits applied on top of a cached ancestor before replaying from a snapshot instead
STATE_CHAIN = 1024
#: events since the last run index checkpoint that make a writer's close() store one
CLOSE_CHECKPOINT = 10_000
#: default bound on the events a replay applies after its nearest snapshot (see snapshot_every)
DEFAULT_SNAPSHOT_EVERY = 20_000


@dataclass(frozen=True)
class CommitResult:
    """What a commit appended: its seq, the events (empty: no change), its parent and state hash.

    ``seq`` is the commit's seq (the last event it appended; with no change, the commit it
    resolved to). ``parent`` is the commit it was diffed against (None: the first);
    ``content_hash`` the hex of its whole state's hash (desiru.journal.state_hash).
    """

    seq: int
    events: tuple[Event, ...] = ()
    parent: int | None = None
    #: the 16-byte hash, or a function computing it when first asked (a plain commit on the line
    #: does not need it, and hashing a GB program costs a second)
    _hash: Any = field(default=None, repr=False, compare=False)

    @property
    def content_hash(self) -> str | None:
        """The hex of the committed state's hash (None: no commit)."""
        h = self._hash
        if h is None:
            return None
        if not isinstance(h, bytes):
            h = h()
            object.__setattr__(self, "_hash", h)
        return h.hex()

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


def _applied(state: dict[str, Any], edits: list[dict[str, Any]], copy: bool) -> dict[str, Any]:
    """``state`` (left unchanged) with ``edits`` applied, on a copy of only the nodes they touch.

    Every node the edits do not touch is shared with ``state``. ``copy=True`` copies the
    values the edits carry first (a diff's edits hold parts of the caller's program).
    """
    if not edits:
        return state
    if copy:
        edits = [{k: v if k == "op" or k == "path" else copy_tree(v) for k, v in e.items()} for e in edits]
    created = [i for i, e in enumerate(edits) if e["op"] == "program_created"]
    if created:
        new: dict[str, Any] = {}
        edits = edits[created[-1]:]
    else:
        new = _unshare(state, {e["path"] for e in edits}, {})
    return _engine.apply_edits(new, edits)


def _writer_name() -> str:
    """Who is writing, for trials: host, process and a random part (two writers in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class Journal(ReplayMixin, TagIndex, RunIndex):
    """An append-only log of typed events: a run of commits, each derived from a parent (docs/journal.md).

    Every public method takes the journal's lock, so one Journal may be shared by threads.
    """

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
        self._converters: dict[str, adapters.StateConverter] = {}  # per adapter, made on its first commit
        # ids of the head state's nodes only the journal holds (see _unshare), with the nodes
        self._private: dict[int, Any] = {}
        self._reset_runs()
        #: the commit this writer's next commit(parent=None) derives from (None: the newest commit)
        self._line_head: int | None = None
        self._states: OrderedDict[int, dict[str, Any]] = OrderedDict()
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

    def _line(self) -> int:
        """The commit this writer's next commit(parent=None) derives from (0: none yet)."""
        if self._line_head is None:
            self._runs()
            self._line_head = self._node_seqs[-1] if self._node_seqs else 0
        return self._line_head

    def _ensure_head_state(self) -> dict[str, Any] | None:
        """The state of this writer's line head (owned by the journal: ``_private`` says which nodes)."""
        line = self._line()
        if self._head_state is None and line > 0:
            self._head_state = self._state_of(line)
            self._private = {}
        return self._head_state

    def _cache_state(self, seq: int, state: dict[str, Any]) -> None:
        """Keep a commit's state (shared structure, never changed in place) for commits derived from it."""
        self._states[seq] = state
        self._states.move_to_end(seq)
        while len(self._states) > STATE_CACHE:
            self._states.popitem(last=False)

    def _state_of(self, seq: int) -> dict[str, Any]:
        """The state of commit ``seq``, read only: from memory, a cached ancestor plus its events, or a replay."""
        if seq == self._line_head and self._head_state is not None:
            return self._head_state
        cached = self._states.get(seq)
        if cached is not None:
            self._states.move_to_end(seq)
            return cached
        nodes = self._runs()
        first = self._store.first_seq()
        chain: list[int] = []
        s = seq
        base: dict[str, Any] | None = None
        while s and len(chain) <= STATE_CHAIN:
            if s == self._line_head and self._head_state is not None:
                base = self._head_state
                break
            base = self._states.get(s)
            if base is not None:
                break
            node = nodes.get(s)
            if node is None or node.dropped or node.first < first:
                break
            chain.append(s)
            s = node.parent
        if base is None:  # no ancestor in memory: from the nearest snapshot on its lineage
            state = self.replay_state(seq, _copy=True)
        else:
            state = self._apply_chain(base, [nodes[c] for c in reversed(chain)])
        self._cache_state(seq, state)
        return state

    def _apply_chain(self, state: dict[str, Any], chain: list[Node]) -> dict[str, Any]:
        """``state`` (left unchanged) with the edits of the commits in ``chain`` (oldest first) applied,
        as one batch on a copy of only the nodes they touch."""
        edits: list[dict[str, Any]] = []
        for start, stop in self._ranges([node.last for node in chain]):
            for arrays in self._arrays(start, stop + 1):
                edits.extend(self._edits(arrays))
        return _applied(state, edits, copy=False)  # decoded just now: nobody else holds them

    # -- writing ---------------------------------------------------------------------------------------
    def commit(self, program: Program, tag: str | None = None, *, parent: Any = None, score: Any = None,
               metrics: Mapping[str, float] | None = None, params: Mapping[str, Any] | None = None
               ) -> CommitResult:
        """Append ``program`` as a commit derived from ``parent`` (default: this writer's last commit).

        Its events are the diff against the parent's state. ``score``, ``metrics`` and ``params``
        are stored beside the state as a ResultsRecorded event (never inside the program). With
        ``tag`` a CheckpointTagged event follows; a tag that names another commit is not moved
        (use ``tag(name, point, move=True)``). Nothing changed, no tag and no results: nothing is
        written and the parent's seq comes back.
        """
        return self._commit_state(self._state_of_candidate(program), tag, parent=parent,
                                  results=results_payload(score, metrics, params))

    def _state_of_candidate(self, program: Any) -> dict[str, Any]:
        if not isinstance(program, Program):  # a live object of another library, through its adapter
            adapter = adapters.find(program)
            if adapter is not None and adapter.converter is not None:  # converts only what changed since
                converter = self._converters.get(adapter.name)       # this journal's last commit of it
                if converter is None:
                    converter = self._converters[adapter.name] = adapter.converter()
                return converter.state(program)
            program = adapters.to_program(program, "commit")
        warn_script_classes(program)
        return self._builder.build(program)

    def _check_tag(self, tag: Any) -> None:
        if tag is not None and not isinstance(tag, str):
            raise DesiruError(f"a tag is a str, got {type(tag).__name__}")
        if tag == "":
            raise DesiruError("a tag must not be empty", hint="pass a name such as tag='epoch-3', or tag=None")

    def _commit_state(self, new_state: dict[str, Any], tag: str | None,
                      extra: Mapping[str, Any] | None = None, force_tag: bool = False, *,
                      parent: Any = None, results: dict[str, Any] | None = None) -> CommitResult:
        self._check_tag(tag)
        with self._mutex:
            self._check_writable()
            line = self._line()
            base = line if parent is None else self._point(parent, "parent")
            if tag is not None:
                self._check_tag_free(tag, None)
            old = self._ensure_head_state() if base == line else self._state_of(base)
            edits = _split_large(_engine.diff_states(old, new_state))
            if not edits and tag is None and not force_tag and results is None:
                self._switch_line(base)
                return CommitResult(base, (), self._runs()[base].parent or None if base else None,
                                    self._hash_later(self._head_state) if base else None)
            # what the journal keeps: the parent's state with the edits applied (sharing every node they
            # do not touch, so unchanged modules keep their hashes and cached states cost their changes)
            kept = _applied(old or {}, edits, copy=True)
            digest: Any = self._hash_later(kept)  # hashed below only when a Committed event records it
            ts = self._now()
            seq = self._head
            events: list[Event] = []
            # a plain commit on the line writes what release 0.1.0 wrote; a run's commit (a parent, results,
            # or a branch) opens with Committed: its parent, its state's hash and its writer
            if (self.shared or parent is not None or results is not None
                    or base != (self._node_seqs[-1] if self._node_seqs else 0)):
                seq += 1
                digest = self._hasher.state(kept)
                events.append(Committed(payload={"parent": base, "hash": digest, "writer": self.writer}, seq=seq,
                                        timestamp=ts))
            for edit in edits:
                seq += 1
                events.append(event_from_edit(edit, seq, ts))
            if results is not None:
                seq += 1
                events.append(ResultsRecorded(payload=results, seq=seq, timestamp=ts))
            if tag is not None or force_tag:
                seq += 1
                events.append(CheckpointTagged(path="", payload={"tag": tag, **(extra or {})}, seq=seq,
                                               timestamp=ts))
            events = self._write(events)
            seq = events[-1].seq
            if not edits and not isinstance(events[0], Committed):
                # a tag on the unchanged line head (the layout of release 0.1.0): no commit of its own
                self._switch_line(base)
                return CommitResult(seq, tuple(events), self._runs()[base].parent or None, digest)
            if base != line and self._head_state is not None:
                self._cache_state(line, self._head_state)
            self._line_head, self._head_state, self._private = seq, kept, {}
            self._builder.rebind(new_state, kept)
            nodes = self._runs()
            self._depth[seq] = self._depth_of(base, nodes) + len(events)
            result = CommitResult(seq, tuple(events), base or None, digest)
        self._maybe_snapshot()  # outside the lock: encoding a snapshot must not hold back the batch fsync
        return result

    def _hash_later(self, state: Any) -> Any:
        """The hash of ``state`` (one the journal keeps: never changed in place), when first asked."""
        return functools.partial(self._hasher.state, state)

    def _depth_of(self, seq: int, nodes: dict[int, Node]) -> int:
        """Events a replay of commit ``seq`` applies after its nearest snapshot (estimated when unknown)."""
        known = self._depth.get(seq)  # known first: listing the snapshots at every commit costs O(snapshots)
        if known is not None:
            return known
        if seq == 0 or seq in self._snapshot_set():
            return 0
        # not computed in this session: walk to the nearest snapshot (bounded walk, then assume the worst)
        total, s, steps = 0, seq, 0
        snaps = self._snapshot_set()
        while s and s not in snaps and steps < 1024:
            node = nodes.get(s)
            if node is None:
                break
            total += node.last - node.first + 1
            s = node.parent
            steps += 1
        if s and s not in snaps:
            total = max(total, self.snapshot_every)
        self._depth[seq] = total
        return total

    def _snapshot_set(self) -> set[int]:
        return set(self._store.snapshot_seqs())

    def _switch_line(self, seq: int) -> None:
        """Make commit ``seq`` this writer's line head (its state becomes the head state)."""
        if seq == self._line_head:
            return
        if self._line_head and self._head_state is not None:
            self._cache_state(self._line_head, self._head_state)
        self._head_state = self._state_of(seq) if seq else None
        self._line_head, self._private = seq, {}

    def record(self, point: Any, *, score: Any = None, metrics: Mapping[str, float] | None = None,
               params: Mapping[str, Any] | None = None) -> int:
        """Attach results to a commit made earlier (a seq, tag, CommitResult or Trial); returns its seq.

        Several records for one commit merge, later values winning key by key.
        """
        results = results_payload(score, metrics, params)
        with self._mutex:
            self._check_writable()
            target = self._point(point, "point")
            if results is None:
                raise DesiruError("record() needs score=, metrics= or params=", path=self._name)
            self._write([ResultsRecorded(payload={"commit": target, **results}, seq=self._head + 1,
                                         timestamp=self._now())])
            return target

    def _check_tag_free(self, name: str, target: int | None, move: bool = False) -> int | None:
        """Where tag ``name`` points now (None: free); DesiruError when it would move without ``move``."""
        now = self.tags().get(name)
        if now is not None and now != target and not move:
            raise DesiruError(f"tag {name!r} already points at seq {now}", path=self._name, seq=now,
                              hint=f"move it with journal.tag({name!r}, point, move=True), or pick another name")
        return now

    def tag(self, name: str, point: Any = None, *, move: bool = False) -> int:
        """Tag any commit (default: this writer's last); moving an existing tag needs ``move=True``.

        Every tag and every move is an event: ``tags(history=True)`` lists them. Returns the seq tagged.
        """
        self._check_tag(name)
        if name is None:
            raise DesiruError("tag() needs a name")
        with self._mutex:
            self._check_writable()
            target = self._line() if point is None else self._point(point, "point")
            if target == 0:
                raise DesiruError("nothing to tag: the journal holds no commit", path=self._name)
            if self._runs()[target].dropped:
                raise DesiruError(f"commit {target} was compacted away: a tag must name a commit that replays",
                                  path=self._name, seq=target, hint="tag a commit that trials() lists as replayable")
            now = self._check_tag_free(name, target, move)
            if now == target:
                return target
            payload: dict[str, Any] = {"tag": name, "target": target}
            if now is not None:
                payload["moved_from"] = now
            self._write([CheckpointTagged(payload=payload, seq=self._head + 1, timestamp=self._now())])
            return target

    def append(self, event: Event) -> Event:
        """Append one event built by hand; it must apply to the head. Returns the stored event."""
        return self.append_many([event])[0]

    def append_many(self, events: Any) -> list[Event]:
        """Append events built by hand as one atomic group (all or none survive a crash).

        They must apply to this writer's line head in order; if one does not, nothing is
        written. Returns the stored events (with their seq and timestamp).
        """
        events = list(events)
        for ev in events:
            if not isinstance(ev, Event):
                raise DesiruError(f"append() takes Events, got {type(ev).__name__}")
        if not events:
            return []
        with self._mutex:
            self._check_writable()
            line = self._line()
            ts = self._now()
            seq = self._head
            stored: list[Event] = []
            edits = []
            # on a branch (this writer's line is not the newest commit) the group must say its parent
            branch = self.shared or (bool(line) and bool(self._node_seqs) and self._node_seqs[-1] != line)
            if branch and any(ev.op is not None for ev in events) and not isinstance(events[0], Committed):
                seq += 1
                stored.append(Committed(payload={"parent": line, "hash": b"", "writer": self.writer}, seq=seq,
                                        timestamp=ts))
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
                    self._hasher.forget(self._private.values())  # changed in place just below
                try:
                    _engine.apply_edits(state, edits)
                except BaseException:
                    # nothing was written; the head state may be half changed: rebuild it from the log
                    self._head_state, self._private = None, {}
                    raise
            stored = self._write(stored)
            if edits:
                self._head_state = state
                self._line_head = seq = stored[-1].seq
                self._depth[seq] = self._depth_of(line, self._runs()) + len(stored)
            result = stored[len(stored) - len(events):]  # the caller's events (not a Committed added above)
        self._maybe_snapshot()  # outside the lock, as in commit()
        return result

    def _write(self, events: list[Event]) -> list[Event]:
        """Append one commit group atomically; returns its events as stored (seqs the store allocated).

        The events come numbered from this writer's head; a shared store may have grown since,
        so they are renumbered from its true last seq under its lock (parents, targets and tags
        name seqs of their own and never move).
        """
        encode = self._codec.encode_event
        stored: list[Event] = events

        def make(last: int) -> list[tuple[int, bytes]]:
            nonlocal stored
            if self.shared and last != self._head:
                last = self._settle_shared_tail(last)
            shift = last + 1 - events[0].seq
            stored = events if shift == 0 else [ev._stamped(ev.seq + shift, ev.timestamp) for ev in events]
            first, final = stored[0].seq, stored[-1].seq
            return [(ev.seq, encode(ev, first, final)) for ev in stored]

        previous = self._head
        try:
            self._store.append_new(make)
        except CommitFailedError:  # the store knows the commit did not happen (e.g. a lost connection)
            raise
        except BaseException as exc:
            # the log may now hold part of this commit: refuse to write after it until reopened,
            # and read back only what the log holds
            self._sync.poison(exc, "a write")
            self._head_state, self._private = None, {}
            if isinstance(exc, OSError):
                raise DesiruError(f"writing the journal failed: {exc.strerror or exc}", path=self._name,
                                  seq=events[0].seq, hint="free disk space (or fix the disk), then close and "
                                  "reopen the journal: it cuts what was half written; the commit did not happen"
                                  ) from exc
            raise
        first, last = stored[0].seq, stored[-1].seq
        self._head = last
        try:
            self._sync.appended(len(stored))
        except BaseException:
            self._head_state, self._private = None, {}  # poisoned: reads replay the log from now on
            raise
        if self._tags is not None and first == previous + 1:
            self._index(stored)
        self._index_appended([[ev.type, ev.schema_version, ev.seq, ev.timestamp, ev.path, dict(ev.payload),
                               first, last] for ev in stored])
        return stored

    def _settle_shared_tail(self, last: int) -> int:
        """A shared writer, under the store's lock: the last whole commit's seq, a dead writer's half
        commit cut (each writer appends a commit in one write, so this is rare: a crash mid-write)."""
        if last == 0 or last < self._store.first_seq():
            return last
        record = self._read_record(last)
        first, end = record.get("commit") or (last, last)
        if end > last:
            cut = self._store.cut_after(first - 1, "a commit a crashed writer left half written")
            if cut is not None:
                self._warn_cut(cut)
            return first - 1
        return last

    def _maybe_snapshot(self) -> None:
        """The automatic snapshot: when replaying this writer's line head would apply more than
        ``snapshot_every`` events after its nearest snapshot. Runs after the commit was appended,
        so a failure to write it (e.g. a full disk) is a warning, not an error.
        """
        line = self._line_head
        if line and self._depth.get(line, 0) >= self.snapshot_every:
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
        """Write the whole state of this writer's last commit (atomically); replays through it start there.

        Returns the seq of the snapshotted commit.
        """
        return self._snapshot(auto=False)

    def _snapshot_meta(self, seq: int, runs: list[list[Any]] | None = None) -> dict[str, Any]:
        self._load_index()
        assert self._tags is not None and self._checkpoints is not None
        meta: dict[str, Any] = {
            "timestamp": self._head_ts,
            "format_version": str(CURRENT_VERSION),
            "tags": {**self._dropped_tags, **self._tags},
            "checkpoints": [[c.version, c.tag, c.seq, c.timestamp] for c in self._checkpoints if c.seq <= seq],
        }
        if runs is None and self._store.first_seq() > 1:
            # a compacted journal: the table of the commits before its log travels with every snapshot
            nodes = self._runs()
            runs = [nodes[s].to_row() for s in self._node_seqs if s <= seq]
        if runs is not None:
            meta["runs"] = runs
        return meta

    def _put_snapshot(self, seq: int, state: dict[str, Any], meta: dict[str, Any]) -> None:
        blob = self._codec.encode_snapshot(seq, meta, state)
        self._sync.sync_now()  # the events up to the snapshot reach the disk before it does
        self._store.put_snapshot(seq, blob)

    def _snapshot(self, *, auto: bool) -> int:
        with self._mutex:
            self._check_writable()
            state = self._ensure_head_state()
            seq = self._line_head or 0
            if seq == 0 or state is None:
                raise DesiruError("nothing to snapshot: the journal holds no commit", path=self._name)
            # later edits copy a node before they change it, so ``state`` stays as it is while it is encoded
            self._private = {}
            meta = self._codec.bind_meta(seq, self._snapshot_meta(seq))
        # encoded outside the lock: the batch mode's sync thread needs it to keep its 50 ms bound
        blob = self._codec.encode_snapshot(seq, meta, state, bound=True)
        with self._mutex:
            self._check_writable()
            self._sync.sync_now()  # the events up to the snapshot reach the disk before it does
            try:
                self._store.put_snapshot(seq, blob)
            except OSError as exc:  # atomic: no snapshot was written, the log is untouched
                what = f"writing the snapshot at seq {seq} failed: {exc.strerror or exc}"
                if auto:
                    warnings.warn(f"{self._name}: {what}; the commit is in the log, and the snapshot will be "
                                  f"retried at the next commit", JournalWarning, stacklevel=5)
                    return self._last_snapshot
                raise DesiruError(what, path=self._name, seq=seq,
                                  hint="free disk space (or fix the disk) and call snapshot() again; "
                                  "the journal itself is unharmed") from exc
            self._last_snapshot = max(self._last_snapshot, seq)
            self._depth[seq] = 0
            if not self.shared:  # a shared writer's head may trail the others': only the one writer keeps them
                with contextlib.suppress(OSError, DesiruError):  # a cache: failing to store it is harmless
                    self._checkpoint_runs()
            return seq

    def compact(self, keep_best: int = 10, *, keep_tags: bool = True,
                progress: ProgressCallback | None = None) -> int:
        """Drop the log before the newest snapshot; returns the bytes freed.

        Every commit after that snapshot replays the same. Tagged commits, the lineage of the
        ``keep_best`` best trials and this writer's last commit stay replayable (each gets a
        snapshot of its own if it needs one); the trials table (scores, params, lineage) of
        every commit survives. ``keep_tags=False`` lets tagged commits before the snapshot go
        (their tags are then compacted away). Deletion goes oldest first, so a crash midway
        leaves a journal that opens and replays. ``progress(done, total)`` is told the snapshots
        written for kept commits (desiru.progress).
        """
        if isinstance(keep_best, bool) or not isinstance(keep_best, int) or keep_best < 0:
            raise DesiruError(f"keep_best must be an int >= 0, got {keep_best!r}")
        if self.shared:
            raise DesiruError("compact() needs the only writer: other writers may be appending", path=self._name,
                              hint="close the shared writers and open one without shared=True to compact")
        with self._mutex:
            self._check_writable()
            snaps = self._store.snapshot_seqs()
            if not snaps:
                return 0
            # only a snapshot that belongs to this log may stand in for the history before it
            floor = newest_bound(snaps, lambda s: self._codec.snapshot_meta(s, self._store.get_snapshot(s)))
            if floor is None:
                return 0
            snaps = [s for s in snaps if s <= floor]
            nodes = self._runs()
            self._load_index()
            assert self._tags is not None and self._checkpoints is not None
            have = set(snaps)
            first = self._store.first_seq()

            def alive(s: int) -> bool:
                node = nodes.get(s)
                return node is not None and not node.dropped and (s in have or node.first >= first)

            keep: set[int] = set()
            for seq in self._tags.values() if keep_tags else ():
                keep.add(self._commit_of(seq))
            for s in self._ranked(None, "max")[:keep_best]:
                keep.update(self._chain(s))
            if self._line_head:
                keep.add(self._line_head)
            # a commit after the floor must still reach a snapshot: the first ancestor at or
            # before the floor on its way back needs one
            for s in self._node_seqs:
                if s <= floor:
                    continue
                p = nodes[s].parent
                while p > floor:
                    p = nodes[p].parent if p in nodes else 0
                if p:
                    keep.add(p)
            need = sorted(s for s in keep if s < floor and s in nodes and alive(s))
            tick = Ticker(progress, len(need) + 1, step=1)
            for done, s in enumerate(need):
                if s not in have:
                    self._put_snapshot(s, self._state_of(s), self._snapshot_meta(s))
                tick(done + 1)
            kept = set(need) | {floor}
            for s in self._node_seqs:
                if s < floor and s not in kept:
                    nodes[s].dropped = True
            rows = [nodes[s].to_row() for s in self._node_seqs if s <= floor]
            self._put_snapshot(floor, self._state_of(floor), self._snapshot_meta(floor, rows))
            tick.end()
            freed = self._store.drop_before(floor)
            for hi in self._store.index_seqs():  # the table now starts from the snapshot's rows
                self._store.delete_index(hi)
            self._checkpointed, self._late = 0, []
            for s in snaps[:-1]:
                if s not in kept:
                    self._store.delete_snapshot(s)
            self._runs_first = self._store.first_seq()
            kept_now = set(self._store.snapshot_seqs())
            for tag, seq in list(self._tags.items()):
                if seq < floor and self._commit_of(seq) not in kept_now:
                    self._dropped_tags[tag] = self._tags.pop(tag)
            self._checkpoints = [c for c in self._checkpoints if c.seq >= floor]
            self._states = OrderedDict((s, st) for s, st in self._states.items() if s >= floor or s in kept_now)
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
