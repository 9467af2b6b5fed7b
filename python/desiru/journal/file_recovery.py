"""Recovery of a file journal: cutting a torn tail, dropping compacted segments, checking every
record, and salvaging what remains readable (repair)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
from collections.abc import Iterator

from desiru.atomic import fsync_dir
from desiru.errors import CorruptDataError
from desiru.journal.file_layout import (
    DAMAGED_DIR,
    INDEX_DIR,
    INDEX_SUFFIX,
    LOG_DIR,
    RECORD_HEADER,
    SNAPSHOT_DIR,
    WRITE_HINT,
    snap_name,
)
from desiru.journal.safe_fs import (
    open_file,
    os_errors,
    read_file,
    real_dir,
)
from desiru.journal.store import CutReport, Fault


class Recovery:
    """The recovery half of ``FileStore`` (it uses the store's segments and scanning)."""

    def recover(self) -> CutReport | None:
        """Cut a torn/corrupt tail of the last segment into damaged/ (never appending after garbage).

        Damage with valid records after it is not a tail: CorruptDataError naming seq and offset.
        """
        if self.damage is not None:
            raise self.damage
        with os_errors("checking the end of the journal's log", self.name, WRITE_HINT):
            return self._recover()

    def _recover(self) -> CutReport | None:
        self._remove_temp_files()
        if not self._segments:
            return None
        first = self._segments[-1]
        path = self._seg_path(first)
        size = path.stat().st_size
        good_end = self._tail_pos[1] if self._tail_pos[0] == first else 0
        if good_end >= size:
            return None
        return self._cut(first, good_end, size, self._last_seq, "torn or corrupt tail")

    def _remove_temp_files(self) -> None:
        """Delete temp files a crash left behind in a snapshot write (never read: not yet renamed)."""
        for folder in (self.root / SNAPSHOT_DIR, self.root / DAMAGED_DIR):
            with contextlib.suppress(FileNotFoundError):
                for entry in os.scandir(folder):
                    if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)

    def _cut(self, first: int, offset: int, size: int, after_seq: int, reason: str) -> CutReport:
        self._cursor = (0, 0, 0)
        self._marks.clear()
        path = self._seg_path(first)
        fd = open_file(path, os.O_RDWR, journal=self.name)
        try:
            cut = os.pread(fd, size - offset, offset)
        finally:
            os.close(fd)
        kept = self._keep_aside(cut, f"{first:020d}-at-{offset}")
        fd = open_file(path, os.O_WRONLY, journal=self.name)
        try:
            os.ftruncate(fd, offset)
            os.fsync(fd)
        finally:
            os.close(fd)
        if self._fd is not None and self._segments and first == self._segments[-1]:
            self._end = offset
        self._tail_pos, self._tail_mark = (first, offset), None
        return CutReport(after_seq=after_seq, reason=reason, nbytes=len(cut), kept_in=kept)

    def _keep_aside(self, data: bytes, label: str) -> str:
        folder = real_dir(self.root / DAMAGED_DIR, journal=self.name, create=self.dir_mode)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        target = folder / f"{stamp}-{label}.bin"
        self._write_file(target, data)
        return str(target)

    def cut_after(self, seq: int, reason: str) -> CutReport | None:
        if seq >= self._last_seq and self.damage is None:
            return None
        self._cursor = (0, 0, 0)
        self._marks.clear()
        kept: list[str] = []
        nbytes = 0
        # whole segments after seq move aside; the one holding seq is truncated after it
        for first in reversed(list(self._segments)):
            if first > seq + 1 or (first == seq + 1 and first != self._segments[0]):
                path = self._seg_path(first)
                data = read_file(path, journal=self.name)
                kept.append(self._keep_aside(data, f"{first:020d}-whole"))
                nbytes += len(data)
                if self._fd is not None and first == self._segments[-1]:
                    os.close(self._fd)
                    self._fd = None
                path.unlink()
                self._segments.remove(first)
        fsync_dir(self.root / LOG_DIR)
        if self._segments:
            first = self._segments[-1]
            end = 0
            with contextlib.suppress(CorruptDataError):  # damage after seq is what we cut
                for s, off, payload in self._scan_segment(first, tail_ok=True):
                    if s > seq:
                        break
                    end = off + RECORD_HEADER + len(payload)
            size = self._seg_path(first).stat().st_size
            if end < size:
                report = self._cut(first, end, size, seq, reason)
                nbytes += report.nbytes
                kept.append(report.kept_in or "")
            self._tail_pos, self._tail_mark = (first, end), None
        self._last_seq = seq
        self.damage = None
        return CutReport(after_seq=seq, reason=reason, nbytes=nbytes, kept_in=", ".join(k for k in kept if k))

    def first_kept(self, seq: int) -> int:
        """Mirrors ``drop_before``: whole segments go, up to the first that holds a record after ``seq``
        (the last one goes too when the next append starts a new segment and it ends at or before ``seq``)."""
        segments = list(self._segments)
        if not segments:
            return max(seq + 1, self.first_seq())
        if self._roll and self._last_seq <= seq:
            return self._last_seq + 1
        for i, first in enumerate(segments[:-1]):
            if segments[i + 1] - 1 > seq:
                return first
        return segments[-1]

    def drop_before(self, seq: int) -> int:
        self._cursor = (0, 0, 0)
        self._marks.clear()
        if self._roll and self._last_seq <= seq and self._segments:
            # the last segment is wholly covered: roll now, so it is no longer the last one and
            # the empty new segment keeps saying where the log continues
            self._writer_fd(self._last_seq + 1)
        freed = 0
        segments = list(self._segments)
        for i, first in enumerate(segments[:-1]):
            if segments[i + 1] - 1 > seq:  # this segment holds records after seq: keep it and the rest
                break
            path = self._seg_path(first)
            freed += path.stat().st_size
            path.unlink()
            self._segments.remove(first)
        fsync_dir(self.root / LOG_DIR)
        return freed

    def check(self) -> tuple[int, list[Fault]]:
        faults: list[Fault] = []
        count = 0
        segments = self._list_segments()
        prev_last: int | None = None
        for i, first in enumerate(segments):
            path = self._seg_path(first)
            if prev_last is not None and first != prev_last + 1:
                faults.append(Fault(f"seq gap: previous segment ends at {prev_last}", seq=first,
                                    file=str(path)))
            last = first - 1
            offset, expect = 0, first
            while True:  # after a fault, resume at the next valid record to report every fault
                try:
                    for seq, _off, _payload in self._scan_segment(first, offset, tail_ok=False, expect=expect):
                        last = seq
                        count += 1
                    break
                except CorruptDataError as exc:
                    faults.append(Fault(exc.message, seq=exc.seq, offset=exc.offset, file=str(path)))
                    resume = self._next_valid(path, exc.offset or 0, exc.seq or expect)
                    if resume is None or resume[0] <= offset:
                        break
                    offset, expect = resume
            prev_last = last
            del i
        for hi in self.index_seqs():  # a damaged cache is never used, but it is damage all the same
            if self.get_index(hi) is None:
                faults.append(Fault("run index checkpoint is damaged (it is not used; repair deletes it)",
                                    file=str(self.root / INDEX_DIR / f"{hi:020d}{INDEX_SUFFIX}")))
        for seq in self.snapshot_seqs():
            try:
                self.get_snapshot(seq)
            except CorruptDataError as exc:
                faults.append(Fault(f"snapshot: {exc.message}", seq=seq, offset=exc.offset,
                                    file=str(self.root / SNAPSHOT_DIR / snap_name(seq))))
        return count, faults

    def salvage(self, start: int) -> Iterator[tuple[int, bytes]]:
        """Every readable record with seq >= ``start``, in order, resuming after each fault (for repair)."""
        segments = self._list_segments()
        for i, first in enumerate(segments):
            if i + 1 < len(segments) and segments[i + 1] <= start:
                continue
            path = self._seg_path(first)
            offset, expect = 0, first
            while True:
                try:
                    for seq, _off, payload in self._scan_segment(first, offset, tail_ok=False, expect=expect):
                        if seq >= start:
                            yield seq, payload
                    break
                except CorruptDataError as exc:
                    resume = self._next_valid(path, exc.offset or 0, exc.seq or expect)
                    if resume is None or resume[0] <= offset:
                        break
                    offset, expect = resume
