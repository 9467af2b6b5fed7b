"""The rows of the run index: ``Trial`` (what queries return) and ``Node`` (what the index keeps)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple


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



__all__ = ["Node", "Trial"]
