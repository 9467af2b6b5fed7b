"""Segments of a file journal's log: listing them, scanning their framed records (from a sparse
seq -> offset mark where one is known), and finding the last whole record."""

from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

from desiru import _engine
from desiru.errors import CorruptDataError
from desiru.journal.file_layout import (
    LOG_DIR,
    MARK_EVERY,
    MAX_RECORD,
    RECORD_HEADER,
    SCAN_CHUNK,
    SMALL_WINDOW,
    TORN,
    U64,
    FolderSeqs,
    HeaderMismatchError,
    seg_name,
    seq_patterns,
)
from desiru.journal.safe_fs import open_file


class Segments:
    """The segment scanning half of ``FileStore`` (it uses the store's root, salt, marks and views)."""

    root: Path
    _segment_files: FolderSeqs

    def _list_segments(self) -> list[int]:
        """The first seqs of the log's segment files, sorted (one stat while the folder is unchanged)."""
        return self._segment_files.get(self._log_dir())

    def _log_dir(self) -> str:
        """The log folder as a str, made once: a commit names its segment several times, and joining
        Paths cost a shared writer a quarter of its commit."""
        folder: str | None = self.__dict__.get("_log_folder")
        if folder is None:
            folder = self.__dict__["_log_folder"] = os.path.join(self.root, LOG_DIR)
        return folder

    def _seg_path(self, first: int) -> Path:
        return Path(self._seg_file(first))

    def _seg_file(self, first: int) -> str:
        """The segment's path as a str (the hot paths: open, stat)."""
        return os.path.join(self._log_dir(), seg_name(first))

    def _scan_segment(self, first: int, offset: int = 0, *, tail_ok: bool, expect: int | None = None
                      ) -> Iterator[tuple[int, int, bytes]]:
        """(seq, offset, payload) of one segment's records from ``offset`` (see ``_scan_chunks``)."""
        for base, records in self._scan_chunks(first, offset, tail_ok=tail_ok, expect=expect):
            for seq, off, payload in records:
                yield seq, base + off, payload

    def _scan_chunks(self, first: int, offset: int = 0, *, tail_ok: bool, expect: int | None = None,
                     want: int | None = None) -> Iterator[tuple[int, list[tuple[int, int, bytes]]]]:
        """(base offset, records) per window read; each record is (seq, offset from base, payload).

        Seqs are checked to run on from ``expect`` without a gap. Damage raises
        CorruptDataError naming seq and offset (after the good records before it were
        yielded), except a torn or corrupt tail of the last segment when ``tail_ok``
        (nothing valid follows it): there the scan just ends (a writer may be midway
        through an append, or recover() will cut it). ``want`` (records the caller needs) starts
        with a small window that grows, so reading a few records reads a few KiB.
        """
        path = self._seg_file(first)
        grow = SCAN_CHUNK if want is None else min(SCAN_CHUNK, max(SMALL_WINDOW, want * 256))
        try:
            fd = open_file(path, os.O_RDONLY, journal=self.name)
        except FileNotFoundError:
            raise CorruptDataError("a log segment vanished while reading (compacted?)", path=str(path),
                                   seq=expect, hint="reopen the journal and read again") from None
        try:
            size = os.fstat(fd).st_size
            pos = offset
            expected = first if expect is None else expect
            while pos < size:
                window = min(grow, size - pos)
                grow = min(SCAN_CHUNK, grow * 4)
                buf = os.pread(fd, window, pos)
                records, good_end, fault = _engine.frame_scan(buf, self.salt, 0, MAX_RECORD)
                if records:
                    # frame_scan gives strictly increasing seqs: the first and the last pin them all
                    if records[0][0] != expected or records[-1][0] != expected + len(records) - 1:
                        bad = next(i for i, r in enumerate(records) if r[0] != expected + i)
                        if bad:
                            yield pos, records[:bad]
                        raise CorruptDataError(f"record has seq {records[bad][0]}, expected {expected + bad}",
                                               path=str(path), seq=expected + bad, offset=pos + records[bad][1],
                                               hint="run desiru.journal.repair(path)")
                    expected += len(records)
                    yield pos, records
                if fault is None:
                    pos += good_end
                    continue
                f_off, reason = fault
                at = pos + f_off
                if reason in TORN and pos + len(buf) < size:
                    if f_off > 0:  # the record runs past this window: the next window starts at it
                        pos += good_end
                        continue
                    # a record longer than a window: read it whole (its length is trusted: a torn
                    # payload means its header checksum held)
                    need = RECORD_HEADER
                    if reason == "torn payload":
                        need += struct.unpack_from("<I", buf, 0)[0]
                    if need > window:
                        records2, good2, fault2 = _engine.frame_scan(os.pread(fd, need, pos), self.salt, 0,
                                                                     MAX_RECORD)
                        if fault2 is None and records2:
                            if records2[0][0] != expected:
                                raise CorruptDataError(f"record has seq {records2[0][0]}, expected {expected}",
                                                       path=str(path), seq=expected, offset=pos)
                            expected += 1
                            yield pos, records2
                            pos += good2
                            continue
                        f_off, reason = fault2 if fault2 is not None else (0, "bad record")
                        at = pos + f_off
                salted = reason == "bad header checksum" and self._salted_otherwise(fd, at, size, expected)
                if tail_ok and not salted and self._find_valid(fd, at + 1, size, expected) is None:
                    return
                if salted:
                    raise HeaderMismatchError(
                        "whole records fail the checksums seeded by the journal header's salt: the header "
                        "was replaced or altered", path=str(path), seq=expected, offset=at,
                        hint="restore the journal's header file from a copy; do not repair it (repair would "
                        "cut every record)")
                raise CorruptDataError(f"damaged record ({reason})", path=str(path), seq=expected, offset=at,
                                       hint="run journal.verify() to see every fault, and "
                                       "desiru.journal.repair(path) to cut the journal before it")
        finally:
            os.close(fd)

    def _salted_otherwise(self, fd: int, at: int, size: int, expected: int) -> bool:
        """Whether the bytes from ``at`` to the end are a chain of whole records with the seqs that
        belong there (several of them, or the whole log from its first byte): a write torn by a
        crash leaves no such thing, a header whose salt does not match its log does."""
        pos, seq, count = at, expected, 0
        while pos < size and count < 4096:
            head = os.pread(fd, RECORD_HEADER, pos)
            if len(head) < RECORD_HEADER:
                return False
            length, got = struct.unpack_from("<IQ", head, 0)
            if got != seq or length > MAX_RECORD or pos + RECORD_HEADER + length > size:
                return False
            pos, seq, count = pos + RECORD_HEADER + length, seq + 1, count + 1
        return count >= 2 or (at == 0 and count == 1 and pos == size)

    def _find_valid(self, fd: int, at: int, size: int, expected: int) -> tuple[int, int] | None:
        """(offset, seq) of the first valid record at or after ``at`` with a seq >= ``expected``.

        Every offset up to the end of the file is considered, however long the damage is: a
        record after the fault can only carry a seq in [expected, expected + bytes left / 24],
        so the search looks for the bytes those seqs share (see ``seq_patterns``) and checks
        each hit with the framing's checksums. Memory stays one window whatever the size.
        """
        if at >= size:
            return None
        hi = expected + (size - at) // RECORD_HEADER + 1
        patterns = seq_patterns(expected, hi)
        window = 4 * SCAN_CHUNK
        pos = at
        while pos < size:
            buf = os.pread(fd, min(window + RECORD_HEADER, size - pos), pos)
            limit = min(window, len(buf))
            hits = sorted({m.start() for pat in patterns for m in pat.finditer(buf, 0, limit + RECORD_HEADER)
                           if m.start() < limit})
            for hit in hits:
                if len(buf) - hit < RECORD_HEADER:
                    break
                seq = U64.unpack_from(buf, hit + 4)[0]
                if expected <= seq <= hi and self._valid_at(fd, pos + hit, buf, hit):
                    return pos + hit, seq
            pos += limit
        return None

    def _valid_at(self, fd: int, offset: int, buf: bytes, at: int) -> bool:
        """Whether a whole valid record starts at ``offset`` (``buf[at:]`` holds the bytes from there)."""
        records, _, fault = _engine.frame_scan(buf, self.salt, at, MAX_RECORD)
        if records:
            return True
        if fault is None or fault[1] != "torn payload":
            return False
        # the header held and the payload runs past the window: read the record whole
        need = RECORD_HEADER + struct.unpack_from("<I", buf, at)[0]
        records, _, _ = _engine.frame_scan(os.pread(fd, need, offset), self.salt, 0, MAX_RECORD)
        return bool(records)

    def _next_valid(self, path: Path, at: int, expected: int) -> tuple[int, int] | None:
        """(offset, seq) of the first valid record after the fault at ``at`` (for check())."""
        try:
            fd = open_file(path, os.O_RDONLY, journal=self.name)
        except OSError:
            return None
        try:
            return self._find_valid(fd, at + 1, os.fstat(fd).st_size, expected)
        finally:
            os.close(fd)

    def _scan_last(self) -> int:
        """The last complete seq, scanning only the last segment (earlier ones are checked on read).

        Damage with valid records after it is remembered in ``self.damage`` (recover() raises
        it for a writer; a reader reads up to it), the seq returned is the last one before it.
        """
        for _attempt in range(3):
            if not self._segments:
                return 0
            first = self._segments[-1]
            last, offset, start = first - 1, 0, -1  # an empty last segment continues the one before it
            try:
                for base, records in self._scan_chunks(first, tail_ok=True):
                    self._mark_chunk(first, base, records)
                    last, off, payload = records[-1]
                    start, offset = base + off, base + off + RECORD_HEADER + len(payload)
            except CorruptDataError as exc:
                if self._vanished(first):  # a reader raced the writer's compaction: look again
                    self._segments = self._list_segments()
                    continue
                self.damage = exc
            break
        self._tail_pos = (first, offset)
        self._remember_tail(first, start)
        return last

    # -- the tail view: what this object read of the last segment, and whether it still holds ----------
    def _remember_tail(self, first: int, start: int) -> None:
        """Note the header of the last record of the tail view (at ``start``; -1: none). Another
        shared writer cuts a dead writer's half commit and writes its own where it was: the bytes
        under this view change without the file growing, and the header there shows it."""
        self._tail_mark = None if start < 0 else (first, start, self._header_at(first, start))

    def _header_at(self, first: int, start: int) -> bytes:
        held = self._tail_reader
        if held is None or held[0] != first:
            self._close_tail_reader()
            try:
                held = self._tail_reader = (first, open_file(self._seg_file(first), os.O_RDONLY,
                                                             journal=self.name))
            except FileNotFoundError:
                return b""
        return os.pread(held[1], RECORD_HEADER, start)

    def _close_tail_reader(self) -> None:
        held, self._tail_reader = self._tail_reader, None
        if held is not None:
            os.close(held[1])

    def _tail_rewritten(self, first: int, size: int) -> bool:
        """Whether the log under this view's tail changed since it was read (a cut by another writer)."""
        if size < self._tail_pos[1]:
            return True
        mark = self._tail_mark
        return mark is not None and mark[0] == first and self._header_at(first, mark[1]) != mark[2]

    def _forget_tail(self, first: int) -> None:
        """Read segment ``first`` again from its start: what this view knew past its start may be gone."""
        self._marks.pop(first, None)
        self._cursor = (0, 0, 0)
        self._tail_pos = (first, 0)
        self._tail_mark = None
        self._last_seq = first - 1

    def _vanished(self, first: int) -> bool:
        """Whether the segment starting at ``first`` is gone (a compaction removed it while we read)."""
        return not self._lock.held and not os.path.exists(self._seg_file(first))

    # -- sparse seq -> offset marks -------------------------------------------------------------
    def _mark(self, segment: int, seq: int, offset: int) -> None:
        """Remember where record ``seq`` starts, one record in MARK_EVERY."""
        seqs, offsets = self._marks.setdefault(segment, ([], []))
        if not seqs or seq >= seqs[-1] + MARK_EVERY:
            seqs.append(seq)
            offsets.append(offset)
            return
        i = bisect.bisect_left(seqs, seq)
        if (i == 0 or seq - seqs[i - 1] >= MARK_EVERY) and (i == len(seqs) or seqs[i] - seq >= MARK_EVERY):
            seqs.insert(i, seq)
            offsets.insert(i, offset)

    def _mark_chunk(self, segment: int, base: int, records: Sequence[tuple[int, int, bytes]]) -> None:
        """Remember one record in MARK_EVERY of a window just scanned whole."""
        for k in range(0, len(records), MARK_EVERY):
            self._mark(segment, records[k][0], base + records[k][1])

    def _nearest_mark(self, segment: int, start: int) -> tuple[int, int] | None:
        """(seq, offset) of the marked record nearest at or before ``start`` in ``segment``."""
        marks = self._marks.get(segment)
        if not marks:
            return None
        i = bisect.bisect_right(marks[0], start)
        return (marks[0][i - 1], marks[1][i - 1]) if i else None
