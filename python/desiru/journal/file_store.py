"""The file store: a journal as one directory of framed log segments and snapshot files.

Layout (docs/FORMAT.md, "Journal")::

    <name>.journal/
      header                     magic, format version, salt, journal meta; checksummed
      lock                       the writer's flock target
      log/<first seq>.log        framed records; a new segment starts after each snapshot
                                 and once the last one holds SEGMENT_BYTES
      snapshots/<seq>.snap       framed chunks of one snapshot blob, written atomically
      index/<seq>.runs           run index checkpoints (one framed record each): a cache of the
                                 log, rebuilt from it when missing, damaged or not matching
      damaged/                   bytes cut off a torn tail or moved aside by repair

Records are framed by ``_engine.frame_encode`` with the journal's random salt, so a
length is trusted only once its header checksum holds and bytes of another journal
or an old file never validate. Readers take no lock and read with ``pread`` (no
mmap: the writer may truncate a torn tail, which would fault a mapping).

The store is one class in four files: this one (lifecycle, locking, appending and reading),
``file_layout`` (names and the header), ``file_segments`` (scanning), ``file_recovery`` (torn
tails, checks, salvage) and ``file_snapshots`` (snapshot and index files).
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from desiru import _engine
from desiru.atomic import atomic_write, fsync_dir, write_all
from desiru.errors import CorruptDataError, DesiruError, JournalLockedError
from desiru.journal.file_layout import (
    APPEND_LOCK_FILE,
    DAMAGED_DIR,
    HEADER_FILE,
    INDEX_DIR,
    INDEX_SUFFIX,
    LOCK_FILE,
    LOG_DIR,
    LOG_SUFFIX,
    MAGIC,
    MARK_EVERY,
    RECORD_HEADER,
    SEGMENT_BYTES,
    SNAPSHOT_DIR,
    SNAPSHOT_SUFFIX,
    WRITE_HINT,
    FolderSeqs,
    HeaderMismatchError,
    decode_header,
    encode_header,
    peek_version,
)
from desiru.journal.file_recovery import Recovery
from desiru.journal.file_segments import Segments
from desiru.journal.file_snapshots import SnapshotFiles
from desiru.journal.lock import WriterLock
from desiru.journal.safe_fs import (
    hold_temporary,
    open_file,
    os_errors,
    read_file,
    real_dir,
    refuse_links,
    remove_stale_temporaries,
)
from desiru.journal.store import JournalStore
from desiru.journal.watch import FolderWatch
from desiru.serialization.version import CURRENT_VERSION, Version


class FileStore(Segments, Recovery, SnapshotFiles, JournalStore):
    """A journal directory on a local file system (see the module docstring for the layout)."""

    direct_append = True  # an exclusive writer's append_new is append(make(last_seq())) (shared: not)

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False, check_version: bool = True
                 ) -> None:
        self.check_version = check_version
        self.root = Path(path)
        self.name = os.fspath(path)
        self.readonly = readonly
        self.salt = 0
        self.file_mode = 0o600
        self.dir_mode = 0o700
        self.version: Version = CURRENT_VERSION
        self._lock = WriterLock(str(self.root / LOCK_FILE), self.name)
        #: listings of log/, snapshots/ and index/, reused while the folder is unchanged (file_layout.FolderSeqs)
        self._segment_files = FolderSeqs(LOG_SUFFIX)
        self._snapshot_files = FolderSeqs(SNAPSHOT_SUFFIX)
        self._index_files = FolderSeqs(INDEX_SUFFIX)
        # a shared writer: holds the lock file in shared mode for its life, and the append lock
        # (``append.lock``) for one append at a time
        self._shared_fd: int | None = None
        self._appending = False
        self._segments: list[int] = []  # first seqs, ascending
        self._last_seq = 0
        self._fd: int | None = None  # the writer's append descriptor, on the last segment
        self._fd_segment = 0  # the first seq of the segment ``_fd`` is open on
        self._append_fd: int | None = None  # a shared writer's append.lock, open for the writer's life
        self._end = 0  # the writer's offset at the end of the last segment
        self._roll = False  # start a new segment at the next append (a snapshot was taken at the head)
        # reader's incremental view of the last segment: (segment first seq, scanned offset)
        self._tail_pos: tuple[int, int] = (0, 0)
        # (segment, offset, header) of the view's last record, and a read descriptor on that segment:
        # a cut by another writer below the view shows as a different header there (file_segments)
        self._tail_mark: tuple[int, int, bytes] | None = None
        self._tail_reader: tuple[int, int] | None = None
        # where the last read() stopped: (segment first seq, next seq, offset), to resume cheaply
        self._cursor: tuple[int, int, int] = (0, 0, 0)
        # sparse seq -> offset index per segment, of records this object wrote or read whole:
        # a read of any range starts near it instead of at the segment's start (never trusted over
        # the records: the scan from a mark checks framing and seqs as from the start)
        self._marks: dict[int, tuple[list[int], list[int]]] = {}
        # a follower's watch of log/ (inotify), made at its first wait; False: none to be had
        self._watch: FolderWatch | bool | None = None

    # -- lifecycle ------------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.root / HEADER_FILE).is_file()

    def create(self, meta: dict[str, Any]) -> None:
        """Build the directory under a temporary name, then rename it into place (atomic)."""
        parent = self.root.parent
        if not parent.is_dir():  # a new journal creates its missing folders (runs/qa.journal in a fresh dir)
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DesiruError(f"could not create the folder {str(parent)!r}: {exc.strerror or exc}",
                                  path=self.name, hint="check that the path is free and writable") from exc
        remove_stale_temporaries(self.root)
        tmp = parent / f".{self.root.name}.{secrets.token_hex(6)}.tmp"
        hold: int | None = None
        try:
            tmp.mkdir()
            hold = hold_temporary(tmp)  # while we build it, no other open takes it for a crash's leftover
            for sub in (LOG_DIR, SNAPSHOT_DIR):
                (tmp / sub).mkdir()
            atomic_write(tmp / HEADER_FILE, encode_header(secrets.randbits(64), meta))
            fsync_dir(tmp)
            try:
                os.rename(tmp, self.root)  # fails if the target exists and is not empty
            except OSError as exc:
                if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and self.exists():
                    return  # someone else created it first: theirs wins, we open it
                raise
        except OSError as exc:
            raise DesiruError(f"could not create the journal: {exc.strerror or exc}", path=self.name,
                              hint="check that the path is free and writable") from exc
        finally:
            if tmp.exists():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
            if hold is not None:
                os.close(hold)
        fsync_dir(parent)

    def open(self) -> dict[str, Any]:
        with os_errors("opening the journal", self.name, "check that the path is a journal folder you can read"):
            return self._open()

    def _open(self) -> dict[str, Any]:
        try:
            refuse_links(self.root, (HEADER_FILE, LOCK_FILE), (LOG_DIR, SNAPSHOT_DIR, DAMAGED_DIR, INDEX_DIR),
                          self.name)
            data = read_file(self.root / HEADER_FILE, journal=self.name)
        except FileNotFoundError:
            raise DesiruError("no journal here", path=self.name,
                              hint="create it with desiru.Journal.open(path) (create=True)") from None
        self.version, body = decode_header(data, self.name, check_version=self.check_version)
        self.salt = body["salt"]
        # new files and folders take the modes the journal already has (a 0700/0600 journal stays private)
        self.file_mode = os.lstat(self.root / HEADER_FILE).st_mode & 0o777
        self.dir_mode = os.stat(self.root).st_mode & 0o777
        self._lock.mode = self.file_mode
        self._load_log(self._list_segments())
        return dict(body["meta"])

    def _load_log(self, segments: list[int]) -> None:
        """This object's view of the log: its segments, the last whole record, and whether the next
        append starts a new segment (a snapshot at the head, so compaction can drop this one)."""
        self._segments = segments
        self._last_seq = self._scan_last()
        snaps = self.snapshot_seqs()
        self._roll = (bool(snaps) and bool(self._segments) and snaps[-1] == self._last_seq
                      and self._last_seq >= self._segments[-1])

    def _after_locking(self) -> None:
        """The log as it is once the lock is held: a writer that held it before may have compacted or
        cut it after ``open()`` looked."""
        segments = self._list_segments()
        if segments != self._segments:
            self._load_log(segments)

    def close(self) -> None:
        if isinstance(self._watch, FolderWatch):
            self._watch.close()
        self._watch = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        with contextlib.suppress(OSError):
            self._close_tail_reader()
        self._lock.release()
        self.unlock()

    def lock(self) -> None:
        if self.readonly:
            raise DesiruError("this store was opened read-only", path=self.name)
        with os_errors("taking the journal's writer lock", self.name, WRITE_HINT):
            self._lock.acquire()
        self._after_locking()
        remove_stale_temporaries(self.root)

    def unlock(self) -> None:
        self._lock.release()
        for fd in (self._shared_fd, self._append_fd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._shared_fd = self._append_fd = None

    def lock_shared(self) -> None:
        if self.readonly:
            raise DesiruError("this store was opened read-only", path=self.name)
        if self._shared_fd is not None:
            return
        fd = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise JournalLockedError("an exclusive writer holds this journal", path=self.name,
                                     hint="close it, or open every writer with shared=True") from None
        self._shared_fd = fd
        self._after_locking()

    def _writing(self) -> bool:
        """Whether this object may append now: the exclusive writer, or a shared one inside append_new."""
        return self._lock.held or self._appending

    def append_new(self, make: Callable[[int], Sequence[tuple[int, bytes]]]) -> Sequence[tuple[int, bytes]]:
        """A shared writer: under the append lock, catch up on the other writers' records, cut what a
        crashed one left torn, then append what ``make(last)`` builds."""
        if self._shared_fd is None:
            return super().append_new(make)
        fd = self._append_fd
        if fd is None:  # opened once: flock and unlock per append on the same descriptor
            fd = self._append_fd = os.open(self.root / APPEND_LOCK_FILE,
                                           os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks while another writer appends (one append's time)
            self._appending = True
            last = self._catch_up()
            records = make(last)
            if records:
                self.append(records)
            return records
        finally:
            self._appending = False
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _catch_up(self) -> int:
        """Shared writer under the append lock: the true last seq, the tail cut of torn bytes."""
        self._roll = False
        self.damage = None
        last = self.last_seq()  # the reader's incremental look, over every writer's records
        if self.damage is not None:  # valid records after damage: never cut or append after it
            raise self.damage
        if self._segments and self._tail_pos[0] != self._segments[-1]:
            last = self._scan_last()  # no view of the last segment yet: scan it whole
            if self.damage is not None:
                raise self.damage
        if self._fd is not None and not (self._segments and self._fd_segment == self._segments[-1]):
            self._leave_segment()  # another writer rolled to a new segment: the next append opens it
        if self._segments:
            first = self._segments[-1]
            size = os.stat(self._seg_file(first)).st_size
            good_end = self._tail_pos[1]
            if good_end < size:  # a writer died mid-append (it held this lock): its bytes go aside
                self._cut(first, good_end, size, last, "torn tail of a writer that died mid-append")
                self._tail_pos = (first, good_end)
            self._end = good_end  # where this append goes, whoever wrote last
        self._last_seq = last
        return last

    # -- records --------------------------------------------------------------------------------------
    def last_seq(self) -> int:
        if self._lock.held:
            return self._last_seq
        if self._quiet():
            return self._last_seq
        # a reader: pick up new segments and records since the last look
        segments = self._list_segments()
        if segments != self._segments:
            self._segments = segments
            if not segments:
                self._last_seq = 0
                return 0
            if self._tail_pos[0] != segments[-1]:
                self._tail_pos = (segments[-1], 0)
                self._tail_mark = None
                self._last_seq = segments[-1] - 1
        if not self._segments:
            return 0
        first, offset = self._tail_pos
        if offset:
            try:
                if self._tail_rewritten(first, os.stat(self._seg_file(first)).st_size):
                    self._forget_tail(first)  # another writer cut below this view: read the segment again
                    offset = 0
            except OSError:
                pass  # gone: the scan below says how
        start = -1
        try:
            for base, records in self._scan_chunks(first, offset, tail_ok=True,
                                                   expect=self._last_seq + 1 if offset else first):
                self._mark_chunk(first, base, records)
                seq, off, payload = records[-1]
                self._last_seq = seq
                start = base + off
                self._tail_pos = (first, start + RECORD_HEADER + len(payload))
            if start >= 0:
                self._remember_tail(first, start)
        except CorruptDataError as exc:
            if not self._vanished(first):
                self.damage = exc
            # else a compaction removed the segment while we read it: the next look lists anew
        return self._last_seq

    def wait_for_append(self, after_seq: int, timeout: float, poll: float = 0.02) -> bool:
        """As the default (a look every ``poll`` s), woken at once by inotify where there is one."""
        if self._lock.held or self._watch is False:
            return super().wait_for_append(after_seq, timeout, poll)
        if self._watch is None:
            self._watch = FolderWatch.open(str(self.root / LOG_DIR)) or False
            if self._watch is False:
                return super().wait_for_append(after_seq, timeout, poll)
        watch = self._watch
        assert isinstance(watch, FolderWatch)
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            watch.drain()  # events before this look are covered by it
            if self.last_seq() > after_seq:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            watch.wait(min(poll, left))

    def _quiet(self) -> bool:
        """A reader's O(1) look: its last segment has not grown and no segment follows it."""
        first, offset = self._tail_pos
        if not self._segments or first != self._segments[-1] or self.damage is not None:
            return False
        try:
            if os.stat(self._seg_file(first)).st_size != offset:
                return False
            mark = self._tail_mark  # the same size, but another writer may have cut and written anew
            if mark is not None and mark[0] == first and self._header_at(first, mark[1]) != mark[2]:
                return False
        except OSError:
            return False
        return not os.path.lexists(self._seg_file(self._last_seq + 1))

    def first_seq(self) -> int:
        if not self._lock.held:
            self._segments = self._list_segments()
        return self._segments[0] if self._segments else self._last_seq + 1

    def append(self, records: Sequence[tuple[int, bytes]]) -> None:
        if not (self._lock.held or self._appending):
            raise DesiruError("append needs the writer lock", path=self.name)
        if not records:
            return
        # an empty store starts wherever the first record says (a rewrite of a compacted journal)
        first = records[0][0]
        expected = self._last_seq + 1 if self._segments else first
        frame, salt = _engine.frame_encode, self.salt
        parts = []
        for seq, payload in records:
            if seq != expected:
                raise DesiruError(f"append of seq {seq}, expected {expected}", path=self.name)
            parts.append(frame(payload, seq, salt))
            expected += 1
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        fd = self._writer_fd(first)
        segment = self._segments[-1]
        pos = start = self._end
        marks = self._marks.get(segment)
        if marks is not None and marks[0] and first + len(records) <= marks[0][-1] + MARK_EVERY:
            pass  # the common case: no record of this append is marked (one in MARK_EVERY is)
        else:
            for (seq, _payload), part in zip(records, parts):
                self._mark(segment, seq, pos)
                pos += len(part)
        # at our own end: a cut tail never leaves a hole before new records
        self._end = start + write_all(fd, data, start)
        self._last_seq = expected - 1
        if self._tail_pos == (segment, start):  # a shared writer's view of the tail moves on
            self._tail_pos = (segment, self._end)
            self._tail_mark = (segment, self._end - len(parts[-1]), parts[-1][:RECORD_HEADER])

    def _writer_fd(self, next_seq: int) -> int:
        if self._fd is not None and self._segments and not self._roll and self._end < SEGMENT_BYTES \
                and self._segments[-1] != next_seq:
            return self._fd  # the common case: the open segment has room
        if self._segments and not self._roll and self._segments[-1] != next_seq:
            if self._fd is None:
                self._open_last()
            if self._end >= SEGMENT_BYTES:  # a full segment: the next append starts a new one
                self._roll = True
        if self._roll or not self._segments:
            self._roll = False
            if not (self._segments and self._segments[-1] == next_seq):
                if self._fd is not None:
                    self._leave_segment()
                real_dir(self.root / LOG_DIR, journal=self.name)  # a link planted since the open is refused
                fd = open_file(self._seg_path(next_seq), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.file_mode,
                               journal=self.name)
                os.fchmod(fd, self.file_mode)
                fsync_dir(self.root / LOG_DIR)
                self._segments.append(next_seq)
                self._tail_pos, self._tail_mark = (next_seq, 0), None  # the view moves to the new segment
                self._fd, self._end, self._fd_segment = fd, 0, next_seq
                return fd
        if self._fd is None:
            self._open_last()
        assert self._fd is not None
        return self._fd

    def _open_last(self) -> None:
        """Open the last segment for appending, at its end."""
        fd = open_file(self._seg_file(self._segments[-1]), os.O_WRONLY, journal=self.name)
        self._end = os.lseek(fd, 0, os.SEEK_END)
        self._fd, self._fd_segment = fd, self._segments[-1]

    def start_at(self, first_seq: int) -> None:
        """Writer of an empty store: the log begins at ``first_seq`` (a rewrite of a compacted journal)."""
        if self._segments or self._last_seq:
            raise DesiruError("start_at() needs an empty store", path=self.name)
        self._writer_fd(first_seq)
        self._last_seq = first_seq - 1

    def sync(self) -> None:
        if self._fd is not None:
            # fdatasync where there is one (as SQLite does): it still flushes the size an append
            # changed, and skips the timestamps
            getattr(os, "fdatasync", os.fsync)(self._fd)

    def _leave_segment(self) -> None:
        """Sync the segment this writer appended to, then close it: a later sync flushes only the
        segment it appends to then, and appends not yet synced here ("batch") must not be left behind."""
        try:
            self.sync()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, bytes]]:
        for chunk in self.read_chunks(start, stop):
            for seq, _off, payload in chunk:
                yield seq, payload

    def read_chunks(self, start: int = 0, stop: int | None = None
                    ) -> Iterator[list[tuple[int, Any, bytes]]]:
        segments = list(self._segments) if self._lock.held else self._list_segments()
        if not segments:
            return
        start = max(start, segments[0])
        # the segment holding ``start``: the last whose first seq is <= start
        idx = bisect.bisect_right(segments, start) - 1
        for i in range(idx, len(segments)):
            first = segments[i]
            if stop is not None and first >= stop:
                return
            is_last = i == len(segments) - 1
            offset, expect = 0, first
            c_first, c_next, c_off = self._cursor
            if c_first == first and first < c_next <= start:  # resume where the last read stopped
                offset, expect = c_off, c_next
            mark = self._nearest_mark(first, start)
            if mark is not None and mark[0] > expect:  # or start at the nearest record we know
                expect, offset = mark
            last_seen = expect - 1
            want = None if stop is None else stop - expect
            for base, records in self._scan_chunks(first, offset, tail_ok=is_last, expect=expect, want=want):
                lo = records[0][0]
                self._mark_chunk(first, base, records)
                last_seen, last_off, last_payload = records[-1]
                self._cursor = (first, last_seen + 1, base + last_off + RECORD_HEADER + len(last_payload))
                if last_seen < start:
                    continue
                cut_lo = max(0, start - lo)
                cut_hi = len(records) if stop is None else min(len(records), stop - lo)
                if cut_lo < cut_hi:
                    yield records[cut_lo:cut_hi] if (cut_lo or cut_hi < len(records)) else records
                if stop is not None and last_seen >= stop - 1:
                    return  # do not scan on into bytes nobody asked for
            if not is_last and last_seen != segments[i + 1] - 1:
                raise CorruptDataError(
                    f"log segment ends at seq {last_seen} but the next one starts at {segments[i + 1]}",
                    path=str(self._seg_path(first)), seq=last_seen + 1,
                    hint="run desiru.journal.repair(path)")

    def _write_file(self, path: Path, data: Any) -> None:
        """Write one file of the journal (snapshot, index checkpoint, damaged bytes) atomically, in its mode."""
        atomic_write(path, data, mode=self.file_mode)

    def size(self) -> int:
        total = 0
        for folder in (self.root / LOG_DIR, self.root / SNAPSHOT_DIR, self.root / INDEX_DIR):
            with contextlib.suppress(FileNotFoundError):
                total += sum(e.stat(follow_symlinks=False).st_size for e in os.scandir(folder)
                             if e.is_file(follow_symlinks=False))
        with contextlib.suppress(FileNotFoundError):
            total += (self.root / HEADER_FILE).stat().st_size
        return total


def is_file_journal(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a journal directory (its header starts with the journal magic)."""
    try:
        fd = open_file(Path(path) / HEADER_FILE, os.O_RDONLY)
    except (OSError, DesiruError):  # missing, unreadable, or a link: not a journal
        return False
    try:
        return os.pread(fd, len(MAGIC), 0) == MAGIC
    except OSError:
        return False
    finally:
        os.close(fd)


__all__ = ["HEADER_FILE", "LOG_DIR", "MAGIC", "RECORD_HEADER", "SEGMENT_BYTES", "SNAPSHOT_DIR", "FileStore",
           "HeaderMismatchError", "decode_header", "encode_header", "is_file_journal", "peek_version"]
