"""The run index of a journal: every commit as a node of a tree, with its parent and results.

A commit group that opens with ``Committed`` names its parent; one without it (journals
of release 0.1.0, events appended by hand on a line) has the commit before it as its
parent. ``ResultsRecorded`` events attach a score, metrics and params to a commit. The
index is built by one scan of the log (events of a commit after its ``Committed`` are
skipped by a look at their first bytes) plus, in a compacted journal, the table the
compaction wrote into the snapshot it kept; a writer extends it as it appends.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from desiru import _engine
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
from desiru.journal.events import EVENT_TYPES, Committed, ResultsRecorded
from desiru.journal.state_hash import state_hash
from desiru.journal.store import Fault, JournalStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import TypeVar

    T = TypeVar("T")

_ARRAY8 = b"\x98"
#: record prefixes the index must decode even inside a commit it already knows
_WANTED = tuple(_ARRAY8 + _engine.packb(t) for t in (ResultsRecorded.type, Committed.type))
#: event types that change the state (a group holding one is a commit)
_EDIT_TYPES = frozenset(name for name, cls in EVENT_TYPES.items() if cls.op is not None)


class Trial(NamedTuple):
    """One commit of a run: where it came from, how it scored, what was chosen, and who made it.

    ``seq`` is the commit's seq (its last event); ``first_seq`` its first. ``parent`` is the
    commit it was derived from (None for the first). ``content_hash`` is the hex of its whole
    state's hash (desiru.journal.state_hash; None for commits written by release 0.1.0).
    ``replayable`` is False once compaction dropped its state (its results stay).
    """

    seq: int
    parent: int | None
    score: float | None
    metrics: Mapping[str, float]
    params: Mapping[str, Any]
    tags: tuple[str, ...]
    timestamp: float
    content_hash: str | None
    writer: str | None
    first_seq: int = 0
    replayable: bool = True

    def __repr__(self) -> str:
        return (f"Trial(seq={self.seq}, parent={self.parent}, score={self.score}, metrics={self.metrics}, "
                f"params={self.params}, tags={self.tags})")

    def value(self, metric: str | None = None) -> float | None:
        """The score (``metric=None``) or the named metric; None when not recorded."""
        return self.score if metric is None else self.metrics.get(metric)


class Node:
    """The index's mutable record of one commit (a Trial is its frozen view).

    A plain class with slots: a run index holds one per commit, built 100,000 at a time.
    """

    __slots__ = ("dropped", "first", "hash", "last", "metrics", "params", "parent", "score", "timestamp", "writer")

    def __init__(self, first: int, last: int, parent: int, hash: bytes | None, writer: str | None,
                 timestamp: float, score: float | None = None, metrics: dict[str, float] | None = None,
                 params: dict[str, Any] | None = None, dropped: bool = False) -> None:
        self.first, self.last, self.parent, self.hash, self.writer = first, last, parent, hash, writer
        self.timestamp, self.score, self.dropped = timestamp, score, dropped
        #: state dropped by compaction (``dropped``: only its results are kept)
        self.metrics: dict[str, float] = {} if metrics is None else metrics
        self.params: dict[str, Any] = {} if params is None else params

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Node) and self.to_row() == other.to_row()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Node({', '.join(repr(v) for v in self.to_row())})"

    def merge(self, payload: Mapping[str, Any]) -> None:
        """Fold one ResultsRecorded payload in: later values win, key by key."""
        if payload.get("score") is not None:
            self.score = float(payload["score"])
        if payload.get("metrics"):
            self.metrics.update(payload["metrics"])
        if payload.get("params"):
            self.params.update(payload["params"])

    def to_row(self) -> list[Any]:
        return [self.first, self.last, self.parent, self.hash, self.writer, self.timestamp, self.score,
                self.metrics, self.params, self.dropped]

    @classmethod
    def from_row(cls, row: list[Any]) -> Node:
        """A node from ``to_row()`` as decoded just now (its dicts are taken, not copied)."""
        n = object.__new__(cls)
        n.first, n.last, n.parent, n.hash, n.writer, n.timestamp, n.score, metrics, params, dropped = row
        n.metrics = metrics if type(metrics) is dict else {}
        n.params = params if type(params) is dict else {}
        n.dropped = bool(dropped)
        return n


# -- checks of what a caller hands in ------------------------------------------------------------
def check_score(score: Any, name: str = "score") -> float | None:
    """``score`` as a finite float, or DesiruError naming the argument."""
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise DesiruError(f"{name} must be a number, got {type(score).__name__}", hint=f"pass {name}=0.84")
    value = float(score)
    if not math.isfinite(value):
        raise DesiruError(f"{name} must be finite, got {score!r}",
                          hint="record a failed evaluation with a low score, or leave it out")
    return value


def check_metrics(metrics: Any) -> dict[str, float]:
    """``metrics`` as a flat {str: finite float} dict, or DesiruError naming the bad entry."""
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise DesiruError(f"metrics must be a dict of str to numbers, got {type(metrics).__name__}",
                          hint='pass metrics={"em": 0.9, "cost_usd": 0.02}')
    out = {}
    for k, v in metrics.items():
        if not isinstance(k, str) or not k:
            raise DesiruError(f"metrics keys must be non-empty str, got {k!r}")
        value = check_score(v, f"metrics[{k!r}]")
        assert value is not None or v is None
        if value is None:
            raise DesiruError(f"metrics[{k!r}] must be a number, got None")
        out[k] = value
    return out


def check_params(params: Any) -> dict[str, Any]:
    """``params`` as a dict of JSON-like values (str keys), or DesiruError naming the bad value."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise DesiruError(f"params must be a dict, got {type(params).__name__}",
                          hint='pass params={"instruction_idx": 3, "demo_set": 5}')

    def walk(v: Any, where: str, depth: int) -> Any:
        if depth > 32:
            raise DesiruError(f"params nest deeper than 32 levels at {where}")
        if v is None or isinstance(v, (str, bool, int)):
            if isinstance(v, int) and not isinstance(v, bool) and not -(1 << 63) <= v < (1 << 64):
                raise DesiruError(f"{where} = {v} does not fit in 64 bits", hint="store it as a str")
            return v
        if isinstance(v, float):
            if not math.isfinite(v):
                raise DesiruError(f"{where} must be finite, got {v!r}")
            return v
        if isinstance(v, (list, tuple)):
            return [walk(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
        if isinstance(v, Mapping):
            out = {}
            for k, x in v.items():
                if not isinstance(k, str):
                    raise DesiruError(f"{where} has a key {k!r} that is not a str")
                out[k] = walk(x, f"{where}[{k!r}]", depth + 1)
            return out
        raise DesiruError(f"{where} cannot be stored: {type(v).__name__} is not a JSON-like value",
                          hint="params hold str, int, float, bool, None, lists and dicts of them")

    return {k: walk(v, f"params[{k!r}]", 0) for k, v in walk(dict(params), "params", 0).items()}


def results_payload(score: Any, metrics: Any, params: Any) -> dict[str, Any] | None:
    """The ResultsRecorded payload for these arguments (checked), or None when all are empty."""
    s, m, p = check_score(score), check_metrics(metrics), check_params(params)
    if s is None and not m and not p:
        return None
    return {"score": s, "metrics": m, "params": p}


class RunIndex:
    """Part of ``Journal`` (a mixin): the commit tree, trials and the queries over them."""

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
        with self._mutex:
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
                for row in rows:
                    self._add_node(Node.from_row(row))
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
            if ck is None or ck["lo"] != (chain[-1]["hi"] if chain else 0) + 1:
                break
            chain.append(ck)
        while chain and self._tail_hash(chain[-1]["hi"]) != chain[-1]["tail"]:
            chain.pop()  # the log was cut (and written again) after it: the log is read instead
        if not chain:
            return
        try:
            for ck in chain:
                for row in ck["rows"]:
                    self._add_node(Node.from_row(row))
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
        lo = self._checkpointed + 1
        seqs = self._node_seqs
        rows = [self._nodes[s].to_row() for s in seqs[bisect.bisect_left(seqs, lo):]]
        late = [x for x in self._late if x[0] >= lo]
        orphans = [[seq, target] for seq, target in self._orphans if lo <= seq <= head]
        self._store.put_index(head, runs_checkpoint.encode(lo, head, tail, rows, late, orphans))
        self._checkpointed, self._late = head, []

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
            # a group of release 0.1.0 (or appended by hand on a line): the commit before it is its parent
            before = bisect.bisect_left(self._node_seqs, rec[R_FIRST])
            self._add_node(Node(rec[R_FIRST], rec[R_LAST], self._node_seqs[before - 1] if before else 0, None,
                                None, float(rec[R_TIMESTAMP])))

    def _index_appended(self, records: Iterable[list[Any]]) -> None:
        """A writer's own appends, folded in without reading them back."""
        if self._nodes is None or self._runs_upto < min((r[R_SEQ] for r in records), default=1) - 1:
            return
        for rec in records:
            self._index_record(rec)
            self._runs_upto = max(self._runs_upto, rec[R_SEQ])

    # -- resolving points ------------------------------------------------------------------------
    def _node_at(self, seq: int) -> Node | None:
        """The commit that ``seq`` names: the one whose group holds it, else the newest before it."""
        nodes = self._runs(seq)
        node = self._group_node(seq)
        if node is not None:
            return node
        i = bisect.bisect_right(self._node_seqs, seq)
        return nodes[self._node_seqs[i - 1]] if i else None

    def _point(self, point: Any, what: str = "point") -> int:
        """The commit seq a point names: an int seq, a tag, a CommitResult or a Trial."""
        if point is None:
            raise DesiruError(f"{what} is required")
        if isinstance(point, str):
            tags = self.tags()
            if point not in tags:
                raise DesiruError(f"{what}: no tag {point!r} in this journal", path=self._name,
                                  hint=f"known tags: {sorted(tags)[:20]}")
            seq = tags[point]
        elif isinstance(point, bool):
            raise DesiruError(f"{what} takes a seq, a tag, a CommitResult or a Trial, got bool")
        elif isinstance(point, int):
            seq = point
        elif isinstance(getattr(point, "seq", None), int):
            seq = point.seq
        else:
            raise DesiruError(f"{what} takes a seq, a tag, a CommitResult or a Trial, got {type(point).__name__}")
        head = self.head
        if seq < 1 or seq > head:
            raise DesiruError(f"{what}: seq {seq} does not exist (the journal holds 1..{head})", path=self._name,
                              hint="pass the seq of a commit (journal.trials() lists them), a tag, a CommitResult "
                              "or a Trial")
        node = self._node_at(seq)
        if node is None:
            raise DesiruError(f"{what}: there is no commit at or before seq {seq}", path=self._name,
                              hint="commit a program first (journal.trials() lists the commits)")
        return node.last

    # -- queries ---------------------------------------------------------------------------------
    def _trial(self, node: Node, tags_of: Mapping[int, list[str]]) -> Trial:
        return Trial(node.last, node.parent or None, node.score, dict(node.metrics), dict(node.params),
                     tuple(tags_of.get(node.last, ())), node.timestamp,
                     node.hash.hex() if node.hash is not None else None, node.writer, node.first, not node.dropped)

    def _tags_by_node(self) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for name, seq in self.tags().items():
            node = self._group_node(seq)
            out.setdefault(node.last if node is not None else seq, []).append(name)
        return out

    def trials(self) -> list[Trial]:
        """Every commit as a Trial, oldest first, from the index (no program is replayed)."""
        self._check_open()
        with self._mutex:
            nodes = self._runs()
            tags_of = self._tags_by_node()
            return [self._trial(nodes[s], tags_of) for s in self._node_seqs]

    def trial(self, point: Any) -> Trial:
        """The Trial of one commit (a seq, tag, CommitResult or Trial)."""
        self._check_open()
        with self._mutex:
            seq = self._point(point)
            return self._trial(self._runs()[seq], self._tags_by_node())

    def best(self, k: int | None = None, metric: str | None = None, mode: str = "max") -> Any:
        """The best Trial by score (or by ``metric``), or a list of the ``k`` best; ties go to the older.

        Trials without that value are left out; with none, ``best()`` is None and ``best(k)`` [].
        """
        if mode not in ("max", "min"):
            raise DesiruError(f"mode must be 'max' or 'min', got {mode!r}")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise DesiruError(f"k must be an int >= 1, got {k!r}")
        self._check_open()
        with self._mutex:
            ranked = self._ranked(metric, mode)
            tags_of = self._tags_by_node()
            nodes = self._runs()
            top = [self._trial(nodes[s], tags_of) for s in ranked[: (k or 1)]]
        if k is None:
            return top[0] if top else None
        return top

    def _ranked(self, metric: str | None, mode: str) -> list[int]:
        nodes = self._runs()
        sign = -1.0 if mode == "max" else 1.0
        scored = []
        for s in self._node_seqs:
            n = nodes[s]
            v = n.score if metric is None else n.metrics.get(metric)
            if v is not None:
                scored.append((sign * v, s))
        scored.sort()
        return [s for _v, s in scored]

    def lineage(self, point: Any) -> list[Trial]:
        """The Trials from the root commit to ``point``, in that order."""
        self._check_open()
        with self._mutex:
            nodes = self._runs()
            tags_of = self._tags_by_node()
            return [self._trial(nodes[s], tags_of) for s in reversed(self._chain(self._point(point))) if s in nodes]

    def _chain(self, seq: int) -> list[int]:
        """Commit seqs from ``seq`` back to the root (newest first)."""
        nodes = self._runs()
        out = []
        while seq:
            out.append(seq)
            node = nodes.get(seq)
            if node is None:
                break
            seq = node.parent
        return out

    def find(self, program_or_hash: Any) -> list[Trial]:
        """The commits whose state is identical to a program's (or to a content hash), oldest first."""
        self._check_open()
        if isinstance(program_or_hash, str):
            try:
                h = bytes.fromhex(program_or_hash)
            except ValueError:
                raise DesiruError(f"not a content hash (32 hex chars): {program_or_hash!r}") from None
        elif isinstance(program_or_hash, bytes):
            h = program_or_hash
        else:
            with self._mutex:
                h = state_hash(self._state_of_candidate(program_or_hash))
        with self._mutex:
            nodes = self._runs()
            tags_of = self._tags_by_node()
            return [self._trial(nodes[s], tags_of) for s in self._by_hash.get(h, ())]

    def _check_runs(self) -> list[Fault]:
        """verify()'s look at the run: parents, results and tags name commits; snapshots hold their hash."""
        faults = []
        nodes = self._runs()
        first = self._store.first_seq()
        for s in self._node_seqs:
            node = nodes[s]
            if node.parent and (node.parent not in nodes or node.parent >= node.first):
                faults.append(Fault(f"commit {s} names parent {node.parent}, which is no earlier commit", seq=s))
        for seq, target in self._orphans:
            if not (type(target) is int and target < first):  # results of a compacted commit are fine
                faults.append(Fault(f"results name seq {target!r}, which holds no commit", seq=seq))
        for name, seq in self.tags().items():
            if self._node_at(seq) is None:
                faults.append(Fault(f"tag {name!r} names seq {seq}, which holds no commit", seq=seq))
        for s in self._store.snapshot_seqs():
            node = nodes.get(s)
            if node is None or node.hash is None or node.dropped:
                continue
            try:
                state = self._codec.snapshot_state(s, self._store.get_snapshot(s))
            except DesiruError:
                continue  # reported by the snapshot checks
            if state_hash(state) != node.hash:
                faults.append(Fault("snapshot differs from the state its commit recorded (content hash)", seq=s))
        return faults

    if TYPE_CHECKING:
        def _state_of_candidate(self, program: Any) -> dict[str, Any]: ...


__all__ = ["Node", "RunIndex", "Trial", "check_metrics", "check_params", "check_score", "results_payload"]
