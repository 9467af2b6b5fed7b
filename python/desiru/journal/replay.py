"""Replay and checks of a journal: the state at any seq, tag or time, and ``verify()``.

Replay starts from the newest snapshot at or before its target and applies the
events after it record by record, in batches of edits: memory follows the state
(plus one batch and one read window), not the journal.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from desiru import _engine, adapters, gcpause
from desiru.errors import CorruptDataError, DesiruError
from desiru.journal.codec import (
    CURRENT_SCHEMA,
    R_PATH,
    R_PAYLOAD,
    R_SEQ,
    R_TIMESTAMP,
    R_TYPE,
    ZSTD_MAGIC,
    RecordCodec,
)
from desiru.journal.events import OP_OF_TYPE
from desiru.journal.store import Fault, JournalStore
from desiru.journal.warning import JournalWarning
from desiru.program import Program
from desiru.progress import ProgressCallback, Ticker
from desiru.state import copy_for_objects, copy_tree

T = TypeVar("T")

#: edits applied per apply_edits call while replaying: bounds memory, amortises the call
REPLAY_BATCH = 4096


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


_UNKNOWN = object()


def _unknown_type(rec: list[Any]) -> CorruptDataError:
    return CorruptDataError(f"unknown event type {rec[R_TYPE]!r}", seq=rec[R_SEQ],
                            hint="this journal was written by a newer desiru; upgrade to read it")


class ReplayMixin:
    """Part of ``Journal`` (a mixin): reading records back into states, programs and reports."""

    _store: JournalStore
    _codec: RecordCodec
    _mutex: threading.RLock
    _name: str
    _head: int
    _head_state: dict[str, Any] | None
    _dropped_tags: dict[str, int]
    #: snapshot seqs whose file and meta were read whole once (first_replayable's cache)
    _readable_snapshots: set[int]

    _line_head: int | None
    _nodes: dict[int, Any] | None
    _states: Any
    _node_seqs: list[int]
    readonly: bool

    if TYPE_CHECKING:  # provided by Journal, TagIndex and RunIndex
        @property
        def head(self) -> int: ...
        def _check_open(self) -> None: ...
        def tags(self, history: bool = False) -> Any: ...
        def _node_at(self, seq: int) -> Any: ...
        def _runs(self, upto: int | None = None) -> dict[int, Any]: ...
        def _check_runs(self) -> list[Fault]: ...
        def _remember_replayed(self, seq: int, state: dict[str, Any]) -> None: ...

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

    # -- readers racing a compaction ---------------------------------------------------------------
    def _listing(self) -> tuple[int, tuple[int, ...]]:
        return self._store.first_seq(), tuple(self._store.snapshot_seqs())

    def _compacted_since(self, before: tuple[int, tuple[int, ...]]) -> bool:
        """Whether the store dropped records or snapshots since ``before`` (a ``_listing()``)."""
        first, snaps = before
        now_first, now_snaps = self._listing()
        return now_first > first or not set(snaps) <= set(now_snaps)

    def _race_safe(self, fn: Callable[[], T]) -> T:
        """``fn()``, which reads the store; when the writer compacted meanwhile, once more.

        A reader that lists segments or snapshots and then finds one gone has raced a
        compaction, not met damage: it looks again, and if the writer compacted again under
        it, it says so with a plain DesiruError (never CorruptDataError).
        """
        first_exc: DesiruError | None = None
        while True:
            before = self._listing()
            try:
                return fn()
            except DesiruError as exc:
                if not self._compacted_since(before):
                    raise
                if first_exc is not None:
                    raise DesiruError(
                        f"the journal was compacted while this reader read it ({first_exc.message})",
                        path=self._name,
                        hint=f"read again; the oldest replayable seq is now {self._first_replayable_or_unknown()}",
                    ) from exc
                first_exc = exc

    def _first_replayable_or_unknown(self) -> int | str:
        try:
            return self.first_replayable()
        except DesiruError:
            return "unknown"

    def first_replayable(self) -> int:
        """The oldest seq that can still be replayed (compaction moves it forward).

        In a compacted journal that is the oldest readable snapshot the log continues from;
        damaged ones are skipped. If every such snapshot is damaged nothing can be replayed:
        CorruptDataError naming the snapshot.
        """
        first = self._store.first_seq()
        if first <= 1:
            return 0
        snaps = [s for s in self._store.snapshot_seqs() if s >= first - 1]
        damaged: CorruptDataError | None = None
        for s in snaps:
            if s in self._readable_snapshots:
                return s
            try:
                self._codec.snapshot_meta(s, self._store.get_snapshot(s))
            except CorruptDataError as exc:
                damaged = damaged or exc
                continue
            except DesiruError:
                continue  # vanished: a compaction raced this look
            self._readable_snapshots.add(s)
            return s
        if damaged is not None:
            raise self._damaged_base(damaged, first)
        return first

    def _damaged_base(self, exc: CorruptDataError, first: int) -> CorruptDataError:
        """The error for a damaged snapshot the log cannot replace (its events were compacted away)."""
        return CorruptDataError(f"the snapshot at seq {exc.seq} is damaged ({exc.message}) and the events "
                                f"before seq {first} were compacted away, so it cannot be rebuilt",
                                path=exc.path or self._name, seq=exc.seq, offset=exc.offset,
                                hint="restore the journal (or this snapshot file) from a copy; "
                                "journal.verify() lists every fault")

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
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise DesiruError(f"seq= takes an int, got {type(seq).__name__}")
        if seq < 1 or seq > head:  # seq 0 (before the first event) is out of range like any other
            raise DesiruError(f"seq {seq!r} is out of range: "
                              + (f"this journal holds seqs 1..{head}" if head else "this journal is empty"),
                              path=self._name, hint=None if head else "commit a program first")
        return seq

    def _seq_at(self, at: Any) -> int:
        """The seq of the newest event at or before ``at`` (a naive datetime is local time)."""
        if isinstance(at, _dt.datetime):
            when = at.timestamp()
            shown = at.isoformat()
        elif isinstance(at, (int, float)) and not isinstance(at, bool):
            when = float(at)
            try:
                utc = _dt.datetime.fromtimestamp(when, _dt.timezone.utc).isoformat()
                shown = f"{at} ({utc})"
            except (OverflowError, OSError, ValueError):
                shown = str(at)
        else:
            raise DesiruError(f"at= takes a datetime or a unix timestamp, got {type(at).__name__}")
        found = 0
        first_ts = None
        for arrays in self._arrays(self.first_replayable() or 1, self._head + 1):
            for rec in arrays:
                if first_ts is None:
                    first_ts = rec[R_TIMESTAMP]
                if rec[R_TIMESTAMP] > when:
                    break
                found = rec[R_SEQ]
            else:
                continue
            break
        if found == 0:
            oldest = self.first_replayable()
            if oldest > 1:
                hint = f"the oldest replayable seq is {oldest}; events before it were compacted away"
            elif first_ts is not None:
                first_at = _dt.datetime.fromtimestamp(first_ts, _dt.timezone.utc).isoformat()
                hint = f"the first event is from {first_at}"
            else:
                hint = "the journal is empty"
            raise DesiruError(f"no event at or before {shown}", path=self._name, hint=hint)
        return found

    def replay_state(self, seq: int | None = None, tag: str | None = None, at: Any = None,
                     *, _copy: bool = True, progress: ProgressCallback | None = None) -> dict[str, Any]:
        """The state tree as it was at ``seq`` / ``tag`` / time ``at`` (default: the head).

        A naive ``at`` datetime is local time (as ``datetime.timestamp()`` takes it).
        ``progress(done, total)`` is told the events replayed (desiru.progress).
        """
        self._check_open()
        with self._mutex:  # the writer's caches are shared with committing threads
            return self._race_safe(lambda: self._replay_state(seq, tag, at, _copy, progress))

    def _replay_state(self, seq: int | None, tag: str | None, at: Any, _copy: bool,
                      progress: ProgressCallback | None = None) -> dict[str, Any]:
        target = self._target(seq, tag, at)
        if target == 0:
            raise DesiruError("the journal holds no program at seq 0", path=self._name,
                              hint="commit a program first")
        node = self._node_at(target)
        if node is None:
            raise DesiruError(f"no program at seq {target}", path=self._name)
        target = node.last
        known = self._head_state if target == self._line_head else None
        if known is None:
            known = self._states.get(target)
        if known is not None:  # at hand already: one unit of work, done
            if progress is not None:
                progress(1, 1)
            return copy_tree(known) if _copy else known
        state = self._replay_node(target, progress=progress)
        if not _copy and not self.readonly:  # replay(): the caller's program gets copies of its nodes
            self._remember_replayed(target, state)
        return state

    def _replay_node(self, target: int, skip_snapshot: int | None = None,
                     progress: ProgressCallback | None = None) -> dict[str, Any]:
        """The state of commit ``target``: its nearest readable snapshot, then its lineage's events."""
        with gcpause.paused():  # a state of 100,000 demos is as many new dicts, with no cycles
            return self._replay_node_paused(target, skip_snapshot, progress)

    def _replay_node_paused(self, target: int, skip_snapshot: int | None,
                            progress: ProgressCallback | None) -> dict[str, Any]:
        nodes = self._runs(target)
        first = self._store.first_seq()
        snaps = set(self._store.snapshot_seqs())
        chain: list[int] = []
        state: dict[str, Any] | None = None
        damaged: CorruptDataError | None = None
        s = target
        while s:
            if s in snaps and s != skip_snapshot:
                try:
                    state = self._codec.snapshot_state(s, self._store.get_snapshot(s))
                    self._readable_snapshots.add(s)
                    break
                except CorruptDataError as exc:  # a damaged snapshot: fall back to an older base
                    damaged = damaged or exc
            node = nodes.get(s)
            if node is None:
                raise CorruptDataError(f"commit {target} derives from seq {s}, which holds no commit",
                                       path=self._name, seq=s, hint="run journal.verify()")
            if node.dropped or node.first < first:
                if damaged is not None:
                    raise self._damaged_base(damaged, first)
                what = f"seq {target} can no longer be replayed: " + (
                    "its state was compacted away" if s == target else f"its ancestor {s} was compacted away")
                raise DesiruError(what, path=self._name, seq=target,
                                  hint=f"its results stay in trials(); the oldest replayable seq is "
                                  f"{self.first_replayable()}")
            chain.append(s)
            s = node.parent
        if damaged is not None:
            warnings.warn(f"{self._name}: snapshot at seq {damaged.seq} is damaged ({damaged.message}); "
                          f"replaying from an older point", JournalWarning, stacklevel=5)
        ranges = self._ranges(chain[::-1])
        tick = Ticker(progress, sum(stop - start + 1 for start, stop in ranges))
        done = 0
        for start, stop in ranges:
            state = self._apply_range(state, start, stop, tick, done)
            done += stop - start + 1
        if state is None:
            raise DesiruError(f"no program at seq {target}", path=self._name)
        tick.end()
        return state

    def _ranges(self, lineage: list[int]) -> list[list[int]]:
        """The seq ranges [first, last] holding the commit groups of ``lineage`` (oldest first);
        commits that are neighbours in the log (a line) share one range, read at once. The run index
        already holds them (it is not brought further: a replay reads nothing past its target)."""
        nodes = self._nodes
        assert nodes is not None
        order = self._node_seqs
        ranges: list[list[int]] = []
        prev_idx = -2
        for s in lineage:
            idx = bisect.bisect_left(order, s)
            node = nodes[s]
            if ranges and idx == prev_idx + 1:
                ranges[-1][1] = node.last
            else:
                ranges.append([node.first, node.last])
            prev_idx = idx
        return ranges

    def _apply_range(self, state: dict[str, Any] | None, start: int, stop: int, tick: Ticker | None = None,
                     done: int = 0) -> dict[str, Any] | None:
        """``state`` with the edits of the records start..stop applied in place, record by record
        (``tick`` told ``done`` plus the records read, for a progress callback)."""
        # decode and apply in batches of edits: only a batch of edits is ever alive, so memory
        # follows the state and the garbage collector has little to scan
        expect = start
        batch: list[dict[str, Any]] = []
        ops = OP_OF_TYPE
        decode = self._codec.decode_array
        # the fast path reads plain records inline; anything unusual (encrypted, compressed, an
        # older schema, a malformed record) goes through decode_array, which upcasts or raises
        inline = self._codec.key is None
        unpack = _engine.unpackb
        schemas = CURRENT_SCHEMA
        for chunk in self._store.read_chunks(start, stop + 1):
            if tick is not None:
                tick(done + expect - start)
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
        if expect != stop + 1:
            raise CorruptDataError(f"the log ends at seq {expect - 1}, before seq {stop}", path=self._name,
                                   seq=expect)
        if batch:
            assert state is not None
            _engine.apply_edits(state, batch)
        return state

    def replay(self, seq: int | None = None, tag: str | None = None, at: Any = None, *,
               into: Any = None, allow_unsafe_lm_state: bool = False, cls: type[Program] | None = None,
               any_class: bool = False, progress: ProgressCallback | None = None) -> Program | Any:
        """The program exactly as it was at ``seq`` / ``tag`` / time ``at`` (default: the head).

        ``cls=Triage`` builds that class instead of the registered class the journal names
        (which must match it unless ``any_class=True``; see ``Program.from_state``). With
        ``into=`` a dspy module (a template, left unchanged), a copy of it holding that state;
        ``allow_unsafe_lm_state=True`` keeps LM endpoints (api_base, ...) for trusted journals
        (see ``desiru.interop.dspy.to_dspy``; the template goes through its adapter, desiru.adapters).
        """
        state = self.replay_state(seq, tag, at, _copy=False, progress=progress)
        target = cls or Program
        if getattr(target.from_state, "__func__", None) is Program.__dict__["from_state"].__func__:
            # one copy, sharing the immutable demos (desiru.state.copy_for_objects), adopted as it is
            program = target.from_state(copy_for_objects(state), path=self._name, any_class=any_class, copy=False)
        else:  # a class with its own from_state gets the state to copy as it does
            program = target.from_state(state, path=self._name, any_class=any_class)
        if into is None:
            return program
        return adapters.load_into(program, into, allow_unsafe_lm_state=allow_unsafe_lm_state)

    def verify(self, *, progress: ProgressCallback | None = None) -> VerifyReport:
        """Check every record (framing, decryption, decoding) and snapshot; report each fault.

        When the log itself is sound, it is also replayed and every snapshot compared
        with the state the events give at its seq. ``progress(done, total)`` is told the
        records decoded (desiru.progress).
        """
        self._check_open()
        with self._mutex:
            count, faults = self._store.check()
            snaps = self._store.snapshot_seqs()
            decoded = 0
            tick = Ticker(progress, count)
            try:
                for seq, payload in self._store.read(0, self._head + 1):
                    tick(decoded)
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
            if not faults:
                try:
                    faults.extend(self._check_runs())
                except DesiruError as exc:
                    faults.append(Fault(f"run index: {exc.message}", seq=exc.seq, offset=exc.offset))
            tick.end()
            return VerifyReport(self._head, count, len(snaps), tuple(faults))

    def _replay_without(self, target: int, skip_snapshot: int) -> dict[str, Any]:
        """Replay commit ``target`` without the snapshot at ``skip_snapshot`` (for verify)."""
        return self._replay_node(target, skip_snapshot=skip_snapshot)


__all__ = ["REPLAY_BATCH", "ReplayMixin", "VerifyReport"]
