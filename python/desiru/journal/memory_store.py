"""An in-memory store: the smallest complete implementation of the store interface.

It shows what a backend must do (tests/journal_contract.py runs the same suite on
it and on the file store) and serves tests and short-lived journals. Several
``MemoryStore`` objects on one ``MemoryBackend`` behave like connections to one
database: one writer, any number of readers.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from desiru.errors import DesiruError, JournalLockedError
from desiru.journal.store import CutReport, Fault, JournalStore


class MemoryBackend:
    """The shared data of an in-memory journal."""

    def __init__(self) -> None:
        self.meta: dict[str, Any] | None = None
        self.seqs: list[int] = []
        self.last = 0
        self.payloads: list[bytes] = []
        self.snapshots: dict[int, bytes] = {}
        self.aside: list[tuple[int, bytes]] = []
        self.writer: object | None = None
        self.guard = threading.Lock()


class MemoryStore(JournalStore):
    """A connection to a MemoryBackend."""

    direct_append = True  # an exclusive writer's append_new is append(make(last_seq()))

    def __init__(self, backend: MemoryBackend | None = None, *, readonly: bool = False, name: str = "<memory>"
                 ) -> None:
        self.backend = backend if backend is not None else MemoryBackend()
        self.readonly = readonly
        self.name = name
        self._locked = False

    def exists(self) -> bool:
        return self.backend.meta is not None

    def create(self, meta: dict[str, Any]) -> None:
        with self.backend.guard:
            if self.backend.meta is None:
                self.backend.meta = dict(meta)

    def open(self) -> dict[str, Any]:
        if self.backend.meta is None:
            raise DesiruError("no journal here", path=self.name)
        return dict(self.backend.meta)

    def close(self) -> None:
        self.unlock()

    def lock(self) -> None:
        if self.readonly:
            raise DesiruError("this store was opened read-only", path=self.name)
        with self.backend.guard:
            if self.backend.writer is not None and self.backend.writer is not self:
                raise JournalLockedError("another writer holds this journal", path=self.name)
            self.backend.writer = self
            self._locked = True

    def unlock(self) -> None:
        with self.backend.guard:
            if self.backend.writer is self:
                self.backend.writer = None
            self._locked = False

    def _need_writer(self) -> None:
        if not self._locked:
            raise DesiruError("this operation needs the writer lock", path=self.name)

    def append(self, records: Sequence[tuple[int, bytes]]) -> None:
        self._need_writer()
        b = self.backend
        expected = b.last + 1 if b.last else (records[0][0] if records else 1)
        for seq, _ in records:
            if seq != expected:
                raise DesiruError(f"append of seq {seq}, expected {expected}", path=self.name)
            expected += 1
        with b.guard:
            for seq, payload in records:
                b.seqs.append(seq)
                b.payloads.append(bytes(payload))
                b.last = seq

    def sync(self) -> None:
        self._need_writer()

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, bytes]]:
        b = self.backend
        i = bisect.bisect_left(b.seqs, start)
        while True:
            with b.guard:
                if i >= len(b.seqs):
                    return
                seq, payload = b.seqs[i], b.payloads[i]
            if stop is not None and seq >= stop:
                return
            yield seq, payload
            i += 1

    def last_seq(self) -> int:
        return self.backend.last

    def first_seq(self) -> int:
        return self.backend.seqs[0] if self.backend.seqs else self.backend.last + 1

    def recover(self) -> CutReport | None:
        self._need_writer()
        return None  # nothing is ever torn in memory

    def cut_after(self, seq: int, reason: str) -> CutReport | None:
        self._need_writer()
        b = self.backend
        with b.guard:
            i = bisect.bisect_right(b.seqs, seq)
            if i >= len(b.seqs):
                return None
            cut = list(zip(b.seqs[i:], b.payloads[i:]))
            del b.seqs[i:], b.payloads[i:]
            b.aside.extend(cut)
            b.last = seq
        return CutReport(after_seq=seq, reason=reason, nbytes=sum(len(p) for _, p in cut), kept_in="memory",
                         seqs=tuple(s for s, _ in cut))

    def drop_before(self, seq: int) -> int:
        self._need_writer()
        b = self.backend
        with b.guard:
            i = bisect.bisect_right(b.seqs, seq)
            freed = sum(len(p) for p in b.payloads[:i])
            del b.seqs[:i], b.payloads[:i]
        return freed

    def check(self) -> tuple[int, list[Fault]]:
        faults = []
        seqs = self.backend.seqs
        for a, b in itertools.pairwise(seqs):
            if b != a + 1:
                faults.append(Fault(f"seq gap after {a}", seq=b))
        return len(seqs), faults

    def put_snapshot(self, seq: int, blob: bytes) -> None:
        self._need_writer()
        with self.backend.guard:
            self.backend.snapshots[seq] = bytes(blob)

    def get_snapshot(self, seq: int) -> bytes:
        try:
            return self.backend.snapshots[seq]
        except KeyError:
            raise DesiruError(f"no snapshot at seq {seq}", path=self.name, seq=seq) from None

    def snapshot_seqs(self) -> list[int]:
        return sorted(self.backend.snapshots)

    def delete_snapshot(self, seq: int) -> None:
        self._need_writer()
        with self.backend.guard:
            self.backend.snapshots.pop(seq, None)

    def size(self) -> int:
        return sum(map(len, self.backend.payloads)) + sum(map(len, self.backend.snapshots.values()))


__all__ = ["MemoryBackend", "MemoryStore"]
