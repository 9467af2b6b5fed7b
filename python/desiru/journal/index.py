"""Tags and checkpoints of a journal: the seq each name points at, kept up to date incrementally.

The index starts from the newest snapshot's meta (which lists every tag up to it)
and scans only the log after it; a writer extends it as it appends. A reader whose
writer compacted meanwhile rebuilds it when the log now starts after what it covers,
and every refresh re-applies the compaction floor (tags before it are "compacted away").
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from desiru import _engine
from desiru.errors import CorruptDataError, DesiruError
from desiru.journal.codec import R_TYPE, RecordCodec
from desiru.journal.events import CheckpointTagged, Event
from desiru.journal.store import JournalStore

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")

#: a plain record starts with the msgpack header of an 8-array, then its type as a str
_ARRAY8 = b"\x98"
_TAG_PREFIX = _ARRAY8 + _engine.packb(CheckpointTagged.type)

@dataclass(frozen=True)
class TagMove:
    """One event of a tag's history: the tag, the commit it names from then on, where it pointed before."""

    tag: str
    seq: int
    event_seq: int
    timestamp: float
    moved_from: int | None = None


@dataclass(frozen=True)
class Checkpoint:
    """A point recorded by ``IncrementalSerializer.save_checkpoint``: version number, tag, seq, time."""

    version: int
    tag: str | None
    seq: int
    timestamp: float


class TagIndex:
    """Part of ``Journal`` (a mixin): ``tags()``, ``checkpoints()`` and the index behind them."""

    _store: JournalStore
    _codec: RecordCodec
    _mutex: threading.RLock
    _head: int
    _tags: dict[str, int] | None
    _checkpoints: list[Checkpoint] | None
    _tag_history: list[TagMove]
    _dropped_tags: dict[str, int]
    _index_upto: int
    #: store.first_seq() when the index was last brought up to date (compaction moves it)
    _index_first: int
    _readable_snapshots: set[int]

    if TYPE_CHECKING:  # provided by Journal and ReplayMixin
        @property
        def head(self) -> int: ...
        def _check_open(self) -> None: ...
        def first_replayable(self) -> int: ...
        def _race_safe(self, fn: Callable[[], T]) -> T: ...
        def _node_at(self, seq: int) -> Any: ...

    def _index(self, events: list[Event]) -> None:
        assert self._tags is not None and self._checkpoints is not None
        for ev in events:
            if not isinstance(ev, CheckpointTagged):
                continue
            payload, seq, ts = ev.payload, ev.seq, ev.timestamp
            tag = payload.get("tag")
            if isinstance(tag, str):
                target = payload.get("target")
                target = target if type(target) is int else seq
                moved = payload.get("moved_from")
                self._tags[tag] = target
                self._tag_history.append(TagMove(tag, target, seq, ts, moved if type(moved) is int else None))
            version = payload.get("checkpoint")
            if isinstance(version, int):
                self._checkpoints.append(Checkpoint(version, tag if isinstance(tag, str) else None, seq, ts))
        self._index_upto = max(self._index_upto, self._head)

    def _load_index(self) -> None:
        """Bring the index up to the head; a reader racing a compaction retries once (see _race_safe)."""
        head = self.head
        if self._tags is not None and self._index_upto >= head and self._index_first >= self._store.first_seq():
            return
        self._race_safe(self._update_index)

    def _update_index(self) -> None:
        with self._mutex:
            try:
                self._update_index_locked()
            except BaseException:
                self._tags = None  # half updated: rebuild on the next look
                raise

    def _update_index_locked(self) -> None:
        head = self.head
        start = self._store.first_seq()
        moved = self._tags is not None and start > self._index_first
        if moved and start - 1 > self._index_upto:
            # the writer compacted past what this index covers: the tags in between are only
            # in the newest snapshot's meta, so start again from it
            assert self._tags is not None
            old = {**self._dropped_tags, **self._tags}
            self._tags = None
        else:
            old = {}
        if self._tags is None:
            self._tags, self._checkpoints, self._dropped_tags, self._tag_history = {}, [], {}, []
            self._index_upto = max(start - 1, 0)
            # the newest snapshot holds every tag up to its seq: scan the log only after it
            for base in reversed([s for s in self._store.snapshot_seqs() if start - 1 <= s <= head]):
                try:
                    meta = self._codec.snapshot_meta(base, self._store.get_snapshot(base))
                except CorruptDataError:
                    continue  # damaged: an older one (or the log) will do; a vanished one raises (a race)
                self._readable_snapshots.add(base)
                self._tags.update(meta.get("tags") or {})
                dropped = meta.get("dropped_tags") or {}
                for tag, seq in dropped.items():
                    if self._tags.get(tag) == seq:
                        self._dropped_tags[tag] = self._tags.pop(tag)
                for v, tag, seq, ts in meta.get("checkpoints") or []:
                    self._checkpoints.append(Checkpoint(v, tag, seq, ts))
                self._index_upto = base
                break
        if self._index_upto < head:
            self._scan_tags(self._index_upto + 1, head + 1)
        self._index_upto = max(self._index_upto, head)
        self._apply_floor(old)  # on every refresh: a compaction may have moved it since the last
        self._index_first = start

    def _apply_floor(self, old: dict[str, int]) -> None:
        """Move the tags (and checkpoints) before the oldest replayable seq out of the index.

        ``old`` holds tags an index dropped for a rebuild: those not indexed again are compacted away.
        """
        assert self._tags is not None and self._checkpoints is not None
        floor = self.first_replayable()
        for tag, seq in old.items():
            if tag not in self._tags:
                self._dropped_tags.setdefault(tag, seq)
        kept = set(self._store.snapshot_seqs()) if floor > 1 else set()
        for tag, seq in list(self._tags.items()):
            # a compaction keeps a tagged commit's own snapshot
            if seq < floor and seq not in kept and self._commit_of(seq) not in kept:
                self._dropped_tags[tag] = self._tags.pop(tag)
        self._checkpoints = [c for c in self._checkpoints if c.seq >= floor]

    def _commit_of(self, seq: int) -> int:
        """The seq of the commit a tag at ``seq`` names (from the run index; ``seq`` itself when unreadable)."""
        try:
            node = self._node_at(seq)
        except DesiruError:
            return seq
        return node.last if node is not None else seq

    def _scan_tags(self, start: int, stop: int) -> None:
        """Index the CheckpointTagged events with start <= seq < stop.

        A plain record is an 8-array whose first item is its type, so every other event
        is skipped by a look at its first bytes, without decoding it.
        """
        first = self._store.first_seq()
        start = max(start, first) if first else start
        codec = self._codec
        quick = codec.key is None
        found = []
        expect = start
        for chunk in self._store.read_chunks(start, stop):
            if chunk[0][0] != expect or chunk[-1][0] != expect + len(chunk) - 1:
                raise DesiruError(f"the log skips from seq {expect - 1} to {chunk[0][0]}", seq=expect,
                                  hint="run journal.verify()")
            expect += len(chunk)
            for seq, _pos, payload in chunk:
                if quick and payload[:1] == _ARRAY8 and not payload.startswith(_TAG_PREFIX):
                    continue
                rec = codec.decode_array(seq, payload)
                if rec[R_TYPE] == CheckpointTagged.type:
                    found.append(codec.event_of(rec))
        self._index(found)

    def tags(self, history: bool = False) -> Any:
        """{tag: seq of the commit it names} for every tag that can be replayed.

        ``history=True``: every tagging and move still in the log, oldest first, as TagMove.
        """
        self._check_open()
        with self._mutex:
            self._load_index()
            assert self._tags is not None
            if history:
                return list(self._tag_history)
            return dict(self._tags)

    def checkpoints(self) -> list[Checkpoint]:
        """Checkpoints recorded by IncrementalSerializer, oldest first."""
        self._check_open()
        with self._mutex:
            self._load_index()
            assert self._checkpoints is not None
            return list(self._checkpoints)


__all__ = ["Checkpoint", "TagIndex", "TagMove"]
