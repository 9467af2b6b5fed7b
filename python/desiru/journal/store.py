"""The storage interface under a journal: records by seq, snapshots, one writer's lock.

A store keeps opaque payloads (the journal encodes, encrypts and interprets them)
under strictly increasing seqs, plus snapshot blobs keyed by seq, plus a small
metadata dict written once at creation. The journal's logic (diffing, events,
replay, tags, encryption) never looks below this interface, so another backend
(e.g. PostgreSQL for many workers) only has to implement it and pass the contract
suite in tests/journal_contract.py.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from desiru.errors import DesiruError


@dataclass(frozen=True)
class Fault:
    """One damaged place found by a check: where (seq, offset, file) and what."""

    reason: str
    seq: int | None = None
    offset: int | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = [f"{k} {v}" for k, v in (("file", self.file), ("seq", self.seq), ("offset", self.offset))
                 if v is not None]
        return f"{self.reason} ({', '.join(where)})" if where else self.reason


@dataclass(frozen=True)
class CutReport:
    """What a store cut off its tail: the seqs and bytes removed, and where they were kept."""

    after_seq: int
    reason: str
    nbytes: int
    kept_in: str | None
    seqs: tuple[int, ...] = field(default=())


class JournalStore(abc.ABC):
    """Where a journal's records and snapshots live.

    Contract (checked by tests/journal_contract.py):
    - ``append`` takes records with seqs greater than ``last_seq()``, in increasing order;
      after it returns, readers of the same store see them (durability needs ``sync``).
    - ``read(start, stop)`` yields ``(seq, payload)`` for start <= seq < stop in order,
      and raises CorruptDataError naming seq/offset when it meets damage.
    - ``lock()`` raises JournalLockedError at once when another writer holds the store.
    - snapshots are written atomically: ``get_snapshot`` returns the whole blob or raises.
    - ``drop_before(seq)`` removes records with seq <= ``seq`` (whole storage units may be
      kept; the journal only relies on records after the newest snapshot).
    - ``cut_after(seq)`` removes records after ``seq``, keeping the bytes aside.
    """

    #: a readable name (path or URL) for messages
    name: str = "<store>"
    readonly: bool = False
    #: True when an exclusive writer's ``append_new(make)`` is ``append(make(last_seq()))``, so the journal
    #: may call ``append`` itself (the file and memory stores say so; a store that allocates seqs in its
    #: own transaction, or one that does not say, gets ``append_new``)
    direct_append: bool = False
    #: damage found while opening (valid records follow it, so it is no torn tail); readers
    #: read up to it, and ``recover`` raises it
    damage: Exception | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether the store has been created."""

    @abc.abstractmethod
    def create(self, meta: dict[str, Any]) -> None:
        """Create an empty store holding ``meta`` (journal id, encryption info); atomic."""

    @abc.abstractmethod
    def open(self) -> dict[str, Any]:
        """Open an existing store; checks its format version first; returns the stored meta."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release files, connections and the lock."""

    # -- one writer ------------------------------------------------------------------------
    @abc.abstractmethod
    def lock(self) -> None:
        """Become the only writer, or raise JournalLockedError at once."""

    @abc.abstractmethod
    def unlock(self) -> None:
        """Stop being the writer."""

    def lock_shared(self) -> None:
        """Join the writers of a store many writers append to, each through ``append_new``.

        Refused (JournalLockedError) while an exclusive writer holds the store; an exclusive
        writer is refused while shared ones are open. Stores that take one writer only say so.
        """
        raise DesiruError("this journal store takes one writer at a time", path=self.name,
                          hint="open it without shared=True")

    # -- records ---------------------------------------------------------------------------
    @abc.abstractmethod
    def append(self, records: Sequence[tuple[int, bytes]]) -> None:
        """Append ``(seq, payload)`` records after ``last_seq()``; visible to readers on return."""

    def append_new(self, make: Callable[[int], Sequence[tuple[int, bytes]]]) -> Sequence[tuple[int, bytes]]:
        """Append the records ``make(last)`` builds after the store's true last seq ``last``; returns them.

        The seam for many writers: a store shared by several writers (processes, machines)
        allocates the seqs itself, under its own lock or transaction, so ``make`` learns the
        real last seq only here (records are sealed with their seq, so they are built after).
        With ``make`` raising, nothing is appended. An exclusive writer needs no more than this.
        """
        records = make(self.last_seq())
        if records:
            self.append(records)
        return records

    def wait_for_append(self, after_seq: int, timeout: float, poll: float = 0.02) -> bool:
        """Wait up to ``timeout`` s until a record after ``after_seq`` is stored; whether one is.

        Followers sleep here between looks. This default polls ``last_seq`` every ``poll``
        seconds; a store that can be woken (PostgreSQL's LISTEN/NOTIFY) overrides it.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            if self.last_seq() > after_seq:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(poll, left))

    @abc.abstractmethod
    def sync(self) -> None:
        """Make every appended record durable (fsync)."""

    @abc.abstractmethod
    def read(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, bytes]]:
        """``(seq, payload)`` of stored records with start <= seq < stop, in order."""

    def read_chunks(self, start: int = 0, stop: int | None = None
                    ) -> Iterator[Sequence[tuple[int, Any, bytes]]]:
        """Like ``read`` in lists of ``(seq, store-private position, payload)``: the fast path of replay.

        A store reads in chunks anyway; handing them over whole saves a Python call per record.
        """
        chunk: list[tuple[int, Any, bytes]] = []
        for seq, payload in self.read(start, stop):
            chunk.append((seq, None, payload))
            if len(chunk) >= 4096:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    @abc.abstractmethod
    def last_seq(self) -> int:
        """The seq of the newest complete record (0 when empty); refreshes a reader's view."""

    @abc.abstractmethod
    def first_seq(self) -> int:
        """The seq of the oldest stored record; ``last_seq() + 1`` when none is stored (1 when empty).

        ``drop_before`` may move it forward; ``last_seq`` never goes back because of it.
        """

    @abc.abstractmethod
    def recover(self) -> CutReport | None:
        """Writer only: find a torn or corrupt tail, keep its bytes aside and cut it off."""

    @abc.abstractmethod
    def cut_after(self, seq: int, reason: str) -> CutReport | None:
        """Writer only: remove records after ``seq`` (kept aside, never replayed)."""

    @abc.abstractmethod
    def drop_before(self, seq: int) -> int:
        """Writer only: remove records with seq <= ``seq`` that are no longer needed; bytes freed."""

    def first_kept(self, seq: int) -> int:
        """The oldest seq ``drop_before(seq)`` would keep if called now (a store that keeps whole storage
        units says where the unit holding ``seq`` starts); compaction carries only what goes."""
        return max(seq + 1, self.first_seq())

    @abc.abstractmethod
    def check(self) -> tuple[int, list[Fault]]:
        """Scan every record: (number of good records, faults with seq and offset)."""

    # -- snapshots -------------------------------------------------------------------------
    @abc.abstractmethod
    def put_snapshot(self, seq: int, blob: bytes) -> None:
        """Store a snapshot blob for ``seq`` atomically (replacing one at the same seq)."""

    @abc.abstractmethod
    def get_snapshot(self, seq: int) -> bytes:
        """The snapshot blob for ``seq``; CorruptDataError if it is damaged."""

    @abc.abstractmethod
    def snapshot_seqs(self) -> list[int]:
        """Seqs that have a snapshot, ascending."""

    @abc.abstractmethod
    def delete_snapshot(self, seq: int) -> None:
        """Remove the snapshot at ``seq`` (no error when absent)."""

    # -- index checkpoints (optional: a store without them rebuilds its indexes from the log) -------
    def put_index(self, hi: int, blob: bytes) -> None:
        """Store an index checkpoint covering records up to ``hi`` (atomically); default: not kept."""
        return None

    def get_index(self, hi: int) -> bytes | None:
        """The checkpoint stored for ``hi``; None when missing or damaged (the log is read instead)."""
        return None

    def index_seqs(self) -> list[int]:
        """The ``hi`` of every stored index checkpoint, ascending."""
        return []

    def delete_index(self, hi: int) -> None:
        """Remove the checkpoint for ``hi`` (no error when absent)."""
        return None

    # -- whole-store operations ----------------------------------------------------------------
    def size(self) -> int:
        """Bytes the store takes (0 when unknown)."""
        return 0


__all__ = ["CutReport", "Fault", "JournalStore"]
