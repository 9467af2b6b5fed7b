"""Queries over the run index: trials, the best, lineages, identical states, and verify()'s checks.

Every answer comes from the index (the node table), never from replaying a program.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from desiru import gcpause
from desiru.errors import DesiruError
from desiru.journal.codec import RecordCodec
from desiru.journal.state_hash import state_hash
from desiru.journal.store import Fault, JournalStore
from desiru.journal.trials import Node, Trial

_make_trial = Trial._make


class RunQueries:
    """Part of ``Journal`` (through RunIndex, a mixin): resolving points and answering queries."""

    _store: JournalStore
    _codec: RecordCodec
    _mutex: threading.RLock
    _name: str
    _node_seqs: list[int]
    _by_hash: dict[bytes, list[int]]
    _orphans: list[tuple[int, Any]]

    if TYPE_CHECKING:  # provided by Journal, RunIndex, TagIndex and WriteMixin
        @property
        def head(self) -> int: ...
        def _check_open(self) -> None: ...
        def tags(self) -> dict[str, int]: ...
        def _runs(self, upto: int | None = None) -> dict[int, Node]: ...
        def _group_node(self, seq: int) -> Node | None: ...
        def _state_of_candidate(self, program: Any) -> dict[str, Any]: ...

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
        # _make (one tuple.__new__) rather than Trial(...): trials() builds 100,000 of them
        return _make_trial((node.last, node.parent or None, node.score, dict(node.metrics), dict(node.params),
                            tuple(tags_of.get(node.last, ())), node.timestamp,
                            node.hash.hex() if node.hash is not None else None, node.writer, node.first,
                            not node.dropped))

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
            with gcpause.paused():  # 100,000 new tuples and dicts, no cycles
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



__all__ = ["RunQueries"]
