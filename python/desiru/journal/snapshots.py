"""Snapshots and compaction of a journal: whole states beside the log, and cutting the log before them.

A snapshot is bound to the log (its meta holds the hash of the record at its seq). The
automatic one is taken along any line whose replay would apply more than
``snapshot_every`` events; ``compact`` keeps tagged commits, the lineage of the best
trials and this writer's last commit replayable, the trials table of every commit, and
the recorded LM answers (``LMResponseRecorded``, appended again after the head before the
log that held them is dropped, so a resumed dspy run still replays them).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from typing import TYPE_CHECKING, Any

from desiru.errors import DecryptionError, DesiruError
from desiru.journal.codec import R_PAYLOAD, R_TYPE, ZSTD_MAGIC, RecordCodec
from desiru.journal.durability import SyncPolicy
from desiru.journal.events import LMResponseRecorded
from desiru.journal.index import Checkpoint
from desiru.journal.runs import Node
from desiru.journal.snapshot_binding import newest_bound
from desiru.journal.states import StateCache
from desiru.journal.store import JournalStore
from desiru.journal.warning import JournalWarning
from desiru.progress import ProgressCallback, Ticker
from desiru.serialization.version import CURRENT_VERSION

#: LM answers re-appended per atomic group while compacting
_CARRY_BATCH = 4096
#: how a plain (unsealed, uncompressed) LMResponseRecorded record starts: a msgpack array of 8, then its type
_LM_PREFIX = b"\x98" + bytes([0xA0 | len(LMResponseRecorded.type)]) + LMResponseRecorded.type.encode()


class SnapshotMixin:
    """Part of ``Journal`` (a mixin): ``snapshot()``, the automatic snapshot and ``compact()``."""

    _store: JournalStore
    _codec: RecordCodec
    _sync: SyncPolicy
    _mutex: threading.RLock
    _name: str
    _head_ts: float
    _line_head: int | None
    _private: dict[int, Any]
    _depth: dict[int, int]
    _states: StateCache
    _tags: dict[str, int] | None
    _checkpoints: list[Checkpoint] | None
    _dropped_tags: dict[str, int]
    _last_snapshot: int
    _node_seqs: list[int]
    _checkpointed: int
    _late: list[list[Any]]
    _runs_first: int
    snapshot_every: int
    shared: bool

    if TYPE_CHECKING:  # provided by Journal, CommitStates, TagIndex and RunIndex
        def _check_writable(self) -> None: ...
        def _ensure_head_state(self) -> dict[str, Any] | None: ...
        def _state_of(self, seq: int) -> dict[str, Any]: ...
        def _load_index(self) -> None: ...
        def _runs(self, upto: int | None = None) -> dict[int, Node]: ...
        def _commit_of(self, seq: int) -> int: ...
        def _ranked(self, metric: str | None, mode: str) -> list[int]: ...
        def append_many(self, events: Any) -> list[Any]: ...
        def _chain(self, seq: int) -> list[int]: ...
        def _checkpoint_runs(self) -> None: ...

    def _maybe_snapshot(self) -> None:
        """The automatic snapshot: when replaying this writer's line head would apply more than
        ``snapshot_every`` events after its nearest snapshot. Runs after the commit was appended,
        so a failure to write it (e.g. a full disk) is a warning, not an error.
        """
        line = self._line_head
        if line and self._depth.get(line, 0) >= self.snapshot_every:
            self._snapshot(auto=True)

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
            "dropped_tags": dict(self._dropped_tags),  # compacted away, even while their records remain
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

    def _carry_lm_answers(self, floor: int) -> int:
        """Append again, after the head, the LM answers recorded at or before ``floor`` (the log compaction
        drops); returns the bytes they now take. An answer whose request key is held after ``floor``
        already (left by a compaction a crash stopped before its drop) is not appended twice. The new
        records are sealed like any other (bound to the journal id and their new seq) and reach the
        disk before the old go.
        """
        first = self._store.first_seq()
        # what the store keeps anyway (the rest of a log file holding later records) stays where it is
        floor = min(floor, self._store.first_kept(floor) - 1)
        if first > floor:
            return 0
        sealed_by = self._codec.key
        if sealed_by is not None:
            from desiru.crypto import open_record
        # records are opened here (when sealed), then read by a codec without the key
        opened = RecordCodec(self._codec.journal_id, None, self._name)
        moving: list[dict[str, Any]] = []
        keys: set[str] = set()
        later: set[str] = set()
        for chunk in self._store.read_chunks(first, self._store.last_seq() + 1):
            for seq, _pos, payload in chunk:
                if sealed_by is not None:
                    try:
                        payload = open_record(sealed_by, self._codec.journal_id, seq, payload)
                    except DecryptionError as exc:
                        raise DecryptionError(exc.message, path=self._name, seq=seq, hint=exc.hint) from None
                # an uncompressed record says its type in its first bytes: skip the others undecoded
                if payload[:4] != ZSTD_MAGIC and not payload.startswith(_LM_PREFIX):
                    continue
                rec = opened.decode_array(seq, payload)
                if rec[R_TYPE] != LMResponseRecorded.type:
                    continue
                key = rec[R_PAYLOAD].get("key")
                if seq > floor:
                    if isinstance(key, str):
                        later.add(key)
                elif not isinstance(key, str) or key not in keys:
                    if isinstance(key, str):
                        keys.add(key)
                    moving.append(rec[R_PAYLOAD])
        moving = [p for p in moving if p.get("key") not in later]
        if not moving:
            return 0
        start = self._store.last_seq() + 1
        for i in range(0, len(moving), _CARRY_BATCH):
            self.append_many([LMResponseRecorded(payload=p) for p in moving[i:i + _CARRY_BATCH]])
        self._sync.sync_now()
        return sum(len(payload) for _seq, payload in self._store.read(start))

    def compact(self, keep_best: int = 10, *, keep_tags: bool = True,
                progress: ProgressCallback | None = None) -> int:
        """Drop the log before the newest snapshot; returns the bytes freed (net: less what the LM answers
        carried over take again).

        Every commit after that snapshot replays the same. Tagged commits, the lineage of the
        ``keep_best`` best trials and this writer's last commit stay replayable (each gets a
        snapshot of its own if it needs one); the trials table (scores, params, lineage) of
        every commit survives, and so do the recorded LM answers (``LMResponseRecorded``: those
        in the log to be dropped are first appended again after the head, sealed as any record).
        ``keep_tags=False`` lets tagged commits before the snapshot go (their tags are then
        compacted away). Deletion goes oldest first, so a crash midway leaves a journal that
        opens and replays (with an LM answer held twice at worst). ``progress(done, total)`` is
        told the snapshots written for kept commits (desiru.progress).
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
            carried = self._carry_lm_answers(floor)
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
            # tags whose commit keeps no snapshot go before the floor's snapshot is written, so that
            # its meta (what a reopened journal reads) says they were compacted away
            kept_now = kept | {s for s in snaps if s == snaps[-1]}
            for tag, seq in list(self._tags.items()):
                if seq < floor and self._commit_of(seq) not in kept_now:
                    self._dropped_tags[tag] = self._tags.pop(tag)
            rows = [nodes[s].to_row() for s in self._node_seqs if s <= floor]
            self._put_snapshot(floor, self._state_of(floor), self._snapshot_meta(floor, rows))
            tick.end()
            freed = self._store.drop_before(floor) - carried
            for hi in self._store.index_seqs():  # the table now starts from the snapshot's rows
                self._store.delete_index(hi)
            self._checkpointed, self._late = 0, []
            for s in snaps[:-1]:
                if s not in kept:
                    self._store.delete_snapshot(s)
            self._runs_first = self._store.first_seq()
            kept_now = set(self._store.snapshot_seqs())
            self._checkpoints = [c for c in self._checkpoints if c.seq >= floor]
            self._states.keep_only(lambda s: s >= floor or s in kept_now)
            return freed


__all__ = ["SnapshotMixin"]
