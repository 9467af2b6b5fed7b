"""Writing a journal: commits (diffed against their parent), results, tags and hand-built events.

Every write appends one commit group atomically (``_write``); a shared writer renumbers
its group under the store's lock after catching up on the other writers.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from desiru import _engine, adapters
from desiru.errors import CommitFailedError, DesiruError
from desiru.journal.codec import RecordCodec
from desiru.journal.durability import SyncPolicy
from desiru.journal.events import (
    CheckpointTagged,
    Committed,
    Event,
    ResultsRecorded,
    event_from_edit,
)
from desiru.journal.runs import Node, results_payload
from desiru.journal.state_builder import StateBuilder
from desiru.journal.state_hash import StateHasher
from desiru.journal.states import _applied, _owned
from desiru.journal.store import CutReport, JournalStore
from desiru.program import Program


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

    @classmethod
    def _made(cls, seq: int, events: tuple[Event, ...], parent: int | None, digest: Any) -> CommitResult:
        """The journal's own construction (its fields are right by construction): without the frozen
        dataclass's per-field ``object.__setattr__``, which a small commit would feel."""
        result = object.__new__(cls)
        result.__dict__.update(seq=seq, events=events, parent=parent, _hash=digest)
        return result

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


def _writer_name() -> str:
    """Who is writing, for trials: host, process and a random part (two writers in one process differ)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


def _encoded(encode: Any, events: list[Event]) -> list[tuple[int, bytes]]:
    """(seq, payload) of each event of one commit group, as the store takes them."""
    first, final = events[0].seq, events[-1].seq
    return [(ev.seq, encode(ev, first, final)) for ev in events]


class WriteMixin:
    """Part of ``Journal`` (a mixin): commit, record, tag, append and the atomic append under them."""

    _store: JournalStore
    _codec: RecordCodec
    _sync: SyncPolicy
    _mutex: threading.RLock
    _name: str
    _head: int
    _head_state: dict[str, Any] | None
    _private: dict[int, Any]
    _line_head: int | None
    _depth: dict[int, int]
    _tags: dict[str, int] | None
    _node_seqs: list[int]
    _builder: StateBuilder
    _hasher: StateHasher
    _converters: dict[str, adapters.StateConverter]
    shared: bool
    _direct: bool
    writer: str

    if TYPE_CHECKING:  # provided by Journal, CommitStates, SnapshotMixin, TagIndex, RunIndex and ReplayMixin
        def _check_writable(self) -> None: ...
        def _now(self) -> float: ...
        def _line(self) -> int: ...
        def _ensure_head_state(self) -> dict[str, Any] | None: ...
        def _state_of(self, seq: int) -> dict[str, Any]: ...
        def _cache_state(self, seq: int, state: dict[str, Any]) -> None: ...
        def _hash_later(self, state: Any) -> Any: ...
        def _depth_of(self, seq: int) -> int: ...
        def _switch_line(self, seq: int) -> None: ...
        def _split(self, edits: list[dict[str, Any]]) -> list[dict[str, Any]]: ...
        def _maybe_snapshot(self) -> None: ...
        def _point(self, point: Any, what: str = "point") -> int: ...
        def _runs(self, upto: int | None = None) -> dict[int, Node]: ...
        def tags(self, history: bool = False) -> Any: ...
        def _index(self, events: list[Event]) -> None: ...
        def _index_appended(self, records: Any) -> None: ...
        def _read_record(self, seq: int) -> dict[str, Any]: ...
        def _warn_cut(self, cut: CutReport) -> None: ...

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
        return self._builder.build(program)  # warns about classes of __main__ (warn_script_classes)

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
            # the events and the state kept own what they hold: the diff's values are the program's own
            edits = _owned(self._split(_engine.diff_states(old, new_state)))
            if not edits and tag is None and not force_tag and results is None:
                self._switch_line(base)
                self._private = {}  # the result hashes the head state later: append_many must copy, not edit it
                return CommitResult(base, (), self._runs()[base].parent or None if base else None,
                                    self._hash_later(self._head_state) if base else None)
            # what the journal keeps: the parent's state with the edits applied (sharing every node they
            # do not touch, so unchanged modules keep their hashes and cached states cost their changes)
            kept = _applied(old or {}, edits)
            digest: Any = self._hash_later(kept)  # hashed below only when a Committed event records it
            ts = self._now()
            seq = self._head
            events: list[Event] = []
            # a plain commit on the line writes what release 0.1.0 wrote; a run's commit (a parent, results,
            # or a branch) opens with Committed: its parent, its state's hash and its writer
            if (self.shared or parent is not None or results is not None
                    or base != (self._node_seqs[-1] if self._node_seqs else 0)):
                seq += 1
                digest, module_hashes = self._hasher.parts(kept)
                payload: dict[str, Any] = {"parent": base, "hash": digest, "writer": self.writer}
                if module_hashes is not None:  # a rebuilt state of this commit takes them (no rehash)
                    payload["modules"] = module_hashes
                events.append(Committed(payload=payload, seq=seq, timestamp=ts))
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
                self._private = {}  # as above: the result's lazy hash reads the head state
                return CommitResult(seq, tuple(events), self._runs()[base].parent or None, digest)
            if base != line and self._head_state is not None:
                self._cache_state(line, self._head_state)
            self._line_head, self._head_state, self._private = seq, kept, {}
            self._builder.rebind(new_state, kept)
            self._depth[seq] = self._depth_of(base) + len(events)
            result = CommitResult._made(seq, tuple(events), base or None, digest)
        self._maybe_snapshot()  # outside the lock: encoding a snapshot must not hold back the batch fsync
        return result

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
                try:  # the head's own nodes change in place; any other is copied first, and the copy is its own
                    state = _engine.apply_edits(state, edits, self._private)
                    self._hasher.forget(self._private.values())  # hashes of nodes changed in place
                except BaseException:
                    # nothing was written; the head state may be half changed: rebuild it from the log
                    self._head_state, self._private = None, {}
                    raise
            try:
                stored = self._write(stored)
            except CommitFailedError:
                if edits:  # applied to the head state in place above: rebuild it from the log, which
                    self._head_state, self._private = None, {}  # does not hold this group
                raise
            if edits:
                self._head_state = state
                self._line_head = seq = stored[-1].seq
                self._depth[seq] = self._depth_of(line) + len(stored)
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
            return _encoded(encode, stored)

        previous = self._head
        try:
            store = self._store
            if self._direct and store.last_seq() == self._head:
                # an exclusive writer of a store that takes records as they come: the events keep their seqs
                store.append(_encoded(encode, events))
            else:
                store.append_new(make)
        except CommitFailedError:  # the store knows the commit did not happen (e.g. a lost connection)
            # the writer goes on; a state derived meanwhile may share the head state's private nodes,
            # so they are no longer changed in place (append_many drops its half-changed head state)
            self._private = {}
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
        self._index_appended(stored)
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

    def flush(self) -> None:
        """Make every appended event durable now (fsync), whatever the mode."""
        with self._mutex:
            self._check_writable()
            self._sync.sync_now()


__all__ = ["CommitResult", "WriteMixin"]
