"""The run index of a journal: every commit as a node of a tree, with its parent and results.

A commit group that opens with ``Committed`` names its parent; one without it (journals
of release 0.1.0, events appended by hand on a line) has the commit before it as its
parent. ``ResultsRecorded`` events attach a score, metrics and params to a commit. The
index is built by one scan of the log (events of a commit after its ``Committed`` are
skipped by a look at their first bytes) plus, in a compacted journal, the table the
compaction wrote into the snapshot it kept; a writer extends it as it appends.

The rows are in desiru.journal.trials, the queries in run_queries, the checks of the
results a caller records in results; their names are importable from here too.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from desiru import _engine, gcpause
from desiru.errors import CorruptDataError, DesiruError
from desiru.journal import runs_checkpoint
from desiru.journal.codec import (
    CURRENT_SCHEMA,
    R_FIRST,
    R_LAST,
    R_PAYLOAD,
    R_SEQ,
    R_TIMESTAMP,
    R_TYPE,
    RecordCodec,
)
from desiru.journal.events import EVENT_TYPES, Committed, Event, ResultsRecorded
from desiru.journal.results import check_metrics, check_params, check_score, results_payload
from desiru.journal.run_queries import RunQueries
from desiru.journal.store import JournalStore
from desiru.journal.trials import Node, Trial

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

_ARRAY8 = b"\x98"
#: record prefixes the index must decode even inside a commit it already knows
_WANTED = tuple(_ARRAY8 + _engine.packb(t) for t in (ResultsRecorded.type, Committed.type))
#: event types that change the state (a group holding one is a commit)
_EDIT_TYPES = frozenset(name for name, cls in EVENT_TYPES.items() if cls.op is not None)
#: every this-many-th run index checkpoint is written whole (from seq 1) and replaces the older ones
CHECKPOINT_MERGE = 16
#: the events whose payload the run index reads
_INDEXED = frozenset((Committed.type, ResultsRecorded.type))


class RunIndex(RunQueries):
    """Part of ``Journal`` (a mixin): the commit tree, built from the log and kept up to date (queries:
    RunQueries)."""

    _store: JournalStore
    _codec: RecordCodec
    _mutex: threading.RLock
    _name: str
    _head: int
    _nodes: dict[int, Node] | None
    _node_seqs: list[int]
    _by_hash: dict[bytes, list[int]]
    _runs_upto: int
    _runs_first: int

    if TYPE_CHECKING:  # provided by Journal, TagIndex and ReplayMixin
        @property
        def head(self) -> int: ...
        def _check_open(self) -> None: ...
        def tags(self) -> dict[str, int]: ...
        def first_replayable(self) -> int: ...
        def _race_safe(self, fn: Callable[[], T]) -> T: ...

    def _reset_runs(self) -> None:
        #: (seq, target) of results naming no commit (verify reports them)
        self._orphans: list[tuple[int, Any]] = []
        self._nodes = None
        self._node_seqs = []
        self._by_hash = {}
        self._runs_upto = 0
        self._runs_first = 0
        #: the last seq the stored run index checkpoints cover, and the results after it that name
        #: commits up to it (the next checkpoint carries them)
        self._checkpointed = 0
        self._late: list[list[Any]] = []

    # -- building ------------------------------------------------------------------------------------
    def _runs(self, upto: int | None = None) -> dict[int, Node]:
        """The node table, brought up to the head or to ``upto`` (a reader racing a compaction retries).

        Reading no further than asked keeps a replay of an early commit independent of damage later on.
        """
        head = self.head if upto is None else min(upto, self._head)
        nodes = self._nodes
        if nodes is not None and self._runs_upto >= head and self._runs_first >= self._store.first_seq():
            return nodes
        return self._race_safe(lambda: self._update_runs(head))

    def _update_runs(self, head: int) -> dict[int, Node]:
        # a node per commit, 100,000 at a time, and no cycles among them: the cyclic GC is paused
        with self._mutex, gcpause.paused():
            try:
                first = self._store.first_seq()
                if self._nodes is None or (first > self._runs_first and first - 1 > self._runs_upto):
                    self._build_base(first)
                    if first <= 1:
                        self._load_checkpoints(head)
                self._scan_runs(self._runs_upto + 1, head + 1)
                self._runs_first = first
            except BaseException:
                self._reset_runs()
                raise
            assert self._nodes is not None
            return self._nodes

    def _build_base(self, first: int) -> None:
        """Start the table empty, or (compacted journal) from the table a compaction left in a snapshot.

        The log is then scanned from its first record; the state before it is a node of its own
        (the snapshot the log continues from), so the groups after it have a parent to start from.
        """
        self._reset_runs()
        self._nodes = {}
        if first <= 1:
            return
        for s in reversed([s for s in self._store.snapshot_seqs() if s >= first - 1]):
            try:
                rows = self._codec.snapshot_meta(s, self._store.get_snapshot(s)).get("runs")
            except CorruptDataError:
                continue  # damaged: an older one, or the log, will do
            if rows:
                self._add_nodes([Node.from_row(row) for row in rows])
                break
        if first - 1 not in self._nodes:
            self._add_node(Node(first - 1, first - 1, 0, None, None, 0.0))
        self._runs_upto = first - 1

    def _load_checkpoints(self, head: int) -> None:
        """Start the table of a journal never compacted from its stored checkpoints (see runs_checkpoint)."""
        chain: list[dict[str, Any]] = []
        for hi in self._store.index_seqs():
            if hi > head:
                break
            ck = runs_checkpoint.decode(self._store.get_index(hi), hi)
            if ck is not None and ck["lo"] == 1:
                chain = [ck]  # a merged checkpoint (from seq 1) stands for every one before it
                continue
            if ck is None or ck["lo"] != (chain[-1]["hi"] if chain else 0) + 1:
                break
            chain.append(ck)
        while chain and self._tail_hash(chain[-1]["hi"]) != chain[-1]["tail"]:
            chain.pop()  # the log was cut (and written again) after it: the log is read instead
        if not chain:
            return
        try:
            for ck in chain:
                self._add_nodes([Node.from_row(row) for row in ck["rows"]])
                for _seq, target, payload in ck["late"]:
                    self._nodes[target].merge(payload)  # type: ignore[index]
                self._orphans.extend((seq, target) for seq, target in ck["orphans"])
        except Exception:  # well formed but inconsistent: rebuild from the log
            self._reset_runs()
            self._nodes = {}
            return
        self._runs_upto = self._checkpointed = chain[-1]["hi"]

    def _tail_hash(self, seq: int) -> bytes | None:
        try:
            for _s, payload in self._store.read(seq, seq + 1):
                return runs_checkpoint.record_hash(payload)
        except DesiruError:
            pass
        return None

    def _checkpoint_runs(self) -> None:
        """Store a checkpoint of the table from the last one to the head (an exclusive writer, at a snapshot).

        Only for a plain journal never compacted: an encrypted one would leak its results in clear.
        """
        head = self._head
        if (self._nodes is None or self._runs_upto < head or head <= self._checkpointed or self._codec.key is not None
                or self._store.first_seq() > 1):
            return
        tail = self._tail_hash(head)
        if tail is None:
            return
        older = [hi for hi in self._store.index_seqs() if hi <= self._checkpointed]
        # every CHECKPOINT_MERGE-th checkpoint holds the whole table (from seq 1) and the older files go:
        # the first use of the index then reads a bounded number of files, however long the run
        merge = len(older) + 1 >= CHECKPOINT_MERGE
        lo = 1 if merge else self._checkpointed + 1
        seqs = self._node_seqs
        rows = [self._nodes[s].to_row() for s in seqs[bisect.bisect_left(seqs, lo):]]
        late = [] if merge else [x for x in self._late if x[0] >= lo]  # a merged row holds its late results
        orphans = [[seq, target] for seq, target in self._orphans if lo <= seq <= head]
        self._store.put_index(head, runs_checkpoint.encode(lo, head, tail, rows, late, orphans))
        self._checkpointed, self._late = head, []
        if merge:
            for hi in older:  # a crash before this leaves them: the loader starts at the merged one
                self._store.delete_index(hi)

    def _add_nodes(self, nodes: list[Node]) -> None:
        """``_add_node`` of each, at once when they come in order after the table (a stored table)."""
        assert self._nodes is not None
        table, seqs = self._nodes, self._node_seqs
        lasts = [n.last for n in nodes]
        if not lasts or (seqs and lasts[0] <= seqs[-1]) or lasts != sorted(set(lasts)):
            for node in nodes:
                self._add_node(node)
            return
        table.update(zip(lasts, nodes))
        seqs.extend(lasts)
        by_hash = self._by_hash
        for node in nodes:
            if node.hash is not None:
                by_hash.setdefault(node.hash, []).append(node.last)

    def _add_node(self, node: Node) -> None:
        assert self._nodes is not None
        if node.last in self._nodes:  # known from a compaction's table, met again in the log
            return
        self._nodes[node.last] = node
        if not self._node_seqs or node.last > self._node_seqs[-1]:
            self._node_seqs.append(node.last)
        else:
            bisect.insort(self._node_seqs, node.last)
        if node.hash is not None:
            self._by_hash.setdefault(node.hash, []).append(node.last)

    def _scan_runs(self, start: int, stop: int) -> None:
        """Index the commit groups and results with start <= seq < stop (whole groups only)."""
        if start >= stop:
            return
        first = self._store.first_seq()
        start = max(start, first) if first else start
        codec = self._codec
        quick = codec.key is None
        unpack = _engine.unpackb
        schemas = CURRENT_SCHEMA
        known_until = 0  # the last seq of the group whose Committed was read: its edits are skipped
        expect = start
        for chunk in self._store.read_chunks(start, stop):
            if chunk[0][0] != expect or chunk[-1][0] != expect + len(chunk) - 1:
                raise CorruptDataError(f"the log skips from seq {expect - 1} to {chunk[0][0]}", path=self._name,
                                       seq=expect, hint="run journal.verify()")
            expect += len(chunk)
            for seq, _pos, payload in chunk:
                if seq <= known_until and quick and payload[:1] == _ARRAY8 and not payload.startswith(_WANTED):
                    continue
                rec = None
                if quick and payload[:1] == _ARRAY8:  # a plain record: decoded inline (as replay does)
                    try:
                        rec = unpack(payload)
                    except CorruptDataError:
                        rec = None
                    if (type(rec) is not list or len(rec) != 8 or rec[R_SEQ] != seq
                            or schemas.get(rec[R_TYPE]) != rec[1] or type(rec[R_PAYLOAD]) is not dict):
                        rec = None
                if rec is None:
                    rec = codec.decode_array(seq, payload)
                self._index_record(rec)
                node = self._nodes.get(rec[R_LAST]) if self._nodes is not None else None
                if node is not None and node.first <= seq:
                    known_until = node.last
        self._runs_upto = max(self._runs_upto, stop - 1)

    def _group_node(self, seq: int) -> Node | None:
        """The node whose group holds ``seq`` (None when that group is no commit)."""
        seqs = self._node_seqs
        i = bisect.bisect_left(seqs, seq)
        if i < len(seqs):
            assert self._nodes is not None
            node = self._nodes[seqs[i]]
            if node.first <= seq:
                return node
        return None

    def _index_record(self, rec: list[Any]) -> None:
        assert self._nodes is not None
        kind = rec[R_TYPE]
        if kind == Committed.type:
            p = rec[R_PAYLOAD]
            parent = p.get("parent")
            h = p.get("hash")
            self._add_node(Node(rec[R_FIRST], rec[R_LAST], parent if type(parent) is int else 0,
                                h if type(h) is bytes else None, p.get("writer"), float(rec[R_TIMESTAMP])))
        elif kind == ResultsRecorded.type:
            p = rec[R_PAYLOAD]
            target = p.get("commit", rec[R_LAST])
            node = self._nodes.get(target) if type(target) is int else None
            if node is not None:
                node.merge(p)
                if target <= self._checkpointed:
                    self._late.append([rec[R_SEQ], target, p])
            else:
                self._orphans.append((rec[R_SEQ], target))
        elif kind in _EDIT_TYPES and rec[R_LAST] not in self._nodes:
            self._index_line_group(rec[R_FIRST], rec[R_LAST], rec[R_TIMESTAMP])

    def _index_line_group(self, first: int, last: int, timestamp: Any) -> None:
        """A group of edits without Committed (release 0.1.0's layout, or appended by hand on the line):
        the commit before it is its parent."""
        seqs = self._node_seqs
        before = len(seqs) if not seqs or seqs[-1] < first else bisect.bisect_left(seqs, first)
        self._add_node(Node(first, last, seqs[before - 1] if before else 0, None, None, float(timestamp)))

    def _index_appended(self, events: Sequence[Event]) -> None:
        """A writer's own appends (one commit group), folded in without reading them back."""
        if self._nodes is None or not events or self._runs_upto < events[0].seq - 1:
            return
        first, last = events[0].seq, events[-1].seq
        for ev in events:
            if ev.type in _INDEXED:  # the others (tags, LM answers) add nothing to the run index
                self._index_record([ev.type, ev.schema_version, ev.seq, ev.timestamp, ev.path, dict(ev.payload),
                                    first, last])
            elif ev.op is not None and last not in self._nodes:
                self._index_line_group(first, last, ev.timestamp)
        self._runs_upto = max(self._runs_upto, last)

__all__ = ["Node", "RunIndex", "Trial", "check_metrics", "check_params", "check_score", "results_payload"]
