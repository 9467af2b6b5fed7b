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
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as _dt
import errno
import fcntl
import os
import re
import secrets
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from desiru import _engine
from desiru.atomic import atomic_write, fsync_dir
from desiru.errors import CorruptDataError, DesiruError, FormatError, IncompatibleVersionError, JournalLockedError
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
from desiru.journal.store import CutReport, Fault, JournalStore
from desiru.journal.watch import FolderWatch
from desiru.serialization.version import CURRENT_VERSION, Version

#: first 8 bytes of a journal header file: a high byte (binary), "DSRJ", CR LF SUB
MAGIC = b"\x89DSRJ\r\n\x1a"
HEADER_FILE = "header"
LOCK_FILE = "lock"
APPEND_LOCK_FILE = "append.lock"
LOG_DIR = "log"
SNAPSHOT_DIR = "snapshots"
INDEX_DIR = "index"
INDEX_SUFFIX = ".runs"
DAMAGED_DIR = "damaged"
LOG_SUFFIX = ".log"
SNAPSHOT_SUFFIX = ".snap"
#: the framing's record header size and the largest record it accepts
RECORD_HEADER = 24
MAX_RECORD = 256 * 1024 * 1024
#: a writer starts a new segment once the last one holds this many bytes, so what an open scans (the
#: last segment, to find the last whole record) stays bounded whatever the journal's length
SEGMENT_BYTES = 4 * 1024 * 1024
#: one record in this many is remembered in the sparse seq -> offset index of a segment
MARK_EVERY = 64
#: the first window of a read that needs only a few records
SMALL_WINDOW = 16 * 1024
#: bytes read per pread while scanning: bounds the memory of a scan, whatever the log size
SCAN_CHUNK = 1024 * 1024
#: snapshot blobs are split into framed chunks of at most this size
SNAPSHOT_CHUNK = 64 * 1024 * 1024
_HEADER_TAIL = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_TORN = ("torn header", "torn payload")
_WRITE_HINT = ("a writer needs write access to the journal folder and its files; check their owner and "
               "permissions (or free space), or open it with readonly=True to read")


def _seq_patterns(lo: int, hi: int) -> list[re.Pattern[bytes]]:
    """Regexes matching at the start of every record header whose seq field could lie in [lo, hi].

    The seqs in the range share their high bytes (at most two values of them, the range
    being smaller than the low bytes' span): those bytes, at their place in the header,
    are what a hit must have. When they are zero, the low bytes must not be (seq >= 1),
    so that runs of zeros (a hole a crash left) are not a hit at every byte.
    """
    k = max(1, ((lo ^ hi).bit_length() + 7) // 8)
    pats = []
    for v in range(lo >> (8 * k), (hi >> (8 * k)) + 1):
        high = re.escape(v.to_bytes(8 - k, "little")) if k < 8 else b""
        low = b"(?!\\x00{%d})" % k if v == 0 else b""
        pats.append(re.compile(b"(?=[\\s\\S]{4}" + low + b"[\\s\\S]{%d}" % k + high + b")"))
    return pats


def _seg_name(first_seq: int) -> str:
    return f"{first_seq:020d}{LOG_SUFFIX}"


def _snap_name(seq: int) -> str:
    return f"{seq:020d}{SNAPSHOT_SUFFIX}"


def encode_header(salt: int, meta: dict[str, Any], version: Version = CURRENT_VERSION) -> bytes:
    """Header bytes: magic, u8 len + version text, u32 len + msgpack body, xxh3-128 of all before."""
    text = str(version).encode("ascii")
    body = _engine.packb({"salt": salt, "meta": meta})
    head = MAGIC + bytes([len(text)]) + text + _HEADER_TAIL.pack(len(body)) + body
    return head + _engine.xxh3_128(head)


def peek_version(data: bytes, path: str | None = None) -> Version:
    """The format version of a header, read before anything else in it is trusted."""
    if not data.startswith(MAGIC):
        raise FormatError("not a desiru journal header (bad magic)", path=path,
                          hint="is this path a journal made by desiru.Journal.open()?")
    n = data[len(MAGIC)] if len(data) > len(MAGIC) else 0
    text = data[len(MAGIC) + 1: len(MAGIC) + 1 + n]
    try:
        return Version(text.decode("ascii"))
    except (UnicodeDecodeError, DesiruError):
        raise CorruptDataError("the journal header's version is unreadable", path=path, offset=len(MAGIC),
                               hint="the header is damaged; restore the journal from a copy") from None


def decode_header(data: bytes, path: str | None = None, *, check_version: bool = True) -> tuple[Version, dict]:
    """(format version, {"salt", "meta"}) of header bytes; version checked first, then the checksum."""
    version = peek_version(data, path)
    if check_version and version.major != CURRENT_VERSION.major:
        raise IncompatibleVersionError(
            f"journal format {version} cannot be read by this release (format {CURRENT_VERSION})",
            path=path,
            hint="run desiru.journal.migrate_journal(path) with a release that reads both"
            if version < CURRENT_VERSION else "upgrade desiru to read this journal",
        )
    pos = len(MAGIC) + 1 + data[len(MAGIC)]
    if len(data) < pos + 4 + 16:
        raise CorruptDataError("the journal header is truncated", path=path, offset=len(data))
    (n,) = _HEADER_TAIL.unpack_from(data, pos)
    end = pos + 4 + n
    if len(data) != end + 16 or _engine.xxh3_128(data[:end]) != data[end:]:
        raise CorruptDataError("the journal header fails its checksum", path=path, offset=0,
                               hint="the header is damaged; restore the journal from a copy")
    try:
        body = _engine.unpackb(data[pos + 4: end])
    except CorruptDataError as exc:
        raise CorruptDataError(f"the journal header body is malformed: {exc.message}", path=path,
                               offset=pos + 4) from None
    _check_body(body, path, pos + 4)
    return version, body


def _check_body(body: Any, path: str | None, offset: int) -> None:
    """CorruptDataError naming the field unless every header field has its type and range (docs/FORMAT.md).

    The checksum only says the bytes are what was written; a header written by anything
    else must not reach the code that trusts its fields (AttributeError, TypeError, a
    scrypt asked for terabytes).
    """
    def bad(what: str) -> CorruptDataError:
        return CorruptDataError(f"the journal header is malformed: {what}", path=path, offset=offset,
                                hint="the header was altered or written by something else; restore the "
                                "journal from a copy")

    if type(body) is not dict or type(body.get("meta")) is not dict:
        raise bad("its body is not a map with a meta map")
    salt = body.get("salt")
    if type(salt) is not int or not 0 <= salt < 1 << 64:
        raise bad(f"salt {salt!r:.40} is not an unsigned 64-bit integer")
    meta = body["meta"]
    if type(meta.get("journal_id", b"")) is not bytes:
        raise bad(f"journal_id is a {type(meta.get('journal_id')).__name__}, not bytes")
    enc = meta.get("encryption")
    if enc is None:
        return
    if type(enc) is not dict:
        raise bad(f"encryption is a {type(enc).__name__}, not a map or nil")
    if enc.get("cipher") != "AES-256-GCM" or type(enc.get("key_id")) is not str:
        raise bad(f"encryption names cipher {enc.get('cipher')!r:.40} and key id {enc.get('key_id')!r:.40}")
    from desiru import crypto

    try:
        crypto.check_kdf(enc.get("kdf"), path)
    except CorruptDataError as exc:
        raise bad(f"encryption kdf: {exc.message}") from None


class HeaderMismatchError(CorruptDataError):
    """The log's records are whole but fail the checksums the header's salt seeds: the header is not theirs."""


class FileStore(JournalStore):
    """A journal directory on a local file system (see the module docstring for the layout)."""

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
        # a shared writer: holds the lock file in shared mode for its life, and the append lock
        # (``append.lock``) for one append at a time
        self._shared_fd: int | None = None
        self._appending = False
        self._segments: list[int] = []  # first seqs, ascending
        self._last_seq = 0
        self._fd: int | None = None  # the writer's append descriptor, on the last segment
        self._end = 0  # the writer's offset at the end of the last segment
        self._roll = False  # start a new segment at the next append (a snapshot was taken at the head)
        # reader's incremental view of the last segment: (segment first seq, scanned offset)
        self._tail_pos: tuple[int, int] = (0, 0)
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
        self._segments = self._list_segments()
        self._last_seq = self._scan_last()
        snaps = self.snapshot_seqs()
        # a snapshot at the head: the next append starts a new segment (so compaction can drop this one)
        self._roll = (bool(snaps) and bool(self._segments) and snaps[-1] == self._last_seq
                      and self._last_seq >= self._segments[-1])
        return dict(body["meta"])

    def close(self) -> None:
        if isinstance(self._watch, FolderWatch):
            self._watch.close()
        self._watch = None
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        self._lock.release()
        self.unlock()

    def lock(self) -> None:
        if self.readonly:
            raise DesiruError("this store was opened read-only", path=self.name)
        with os_errors("taking the journal's writer lock", self.name, _WRITE_HINT):
            self._lock.acquire()
        remove_stale_temporaries(self.root)

    def unlock(self) -> None:
        self._lock.release()
        fd, self._shared_fd = self._shared_fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

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

    def _writing(self) -> bool:
        """Whether this object may append now: the exclusive writer, or a shared one inside append_new."""
        return self._lock.held or self._appending

    def append_new(self, make: Callable[[int], Sequence[tuple[int, bytes]]]) -> Sequence[tuple[int, bytes]]:
        """A shared writer: under the append lock, catch up on the other writers' records, cut what a
        crashed one left torn, then append what ``make(last)`` builds."""
        if self._shared_fd is None:
            return super().append_new(make)
        fd = os.open(self.root / APPEND_LOCK_FILE, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
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
            os.close(fd)

    def _catch_up(self) -> int:
        """Shared writer under the append lock: the true last seq, the tail cut of torn bytes."""
        if self._fd is not None:  # another writer may have rolled to a new segment: reopen at the end
            os.close(self._fd)
            self._fd = None
        self._roll = False
        self.damage = None
        last = self.last_seq()  # the reader's incremental look, over every writer's records
        if self.damage is not None:  # valid records after damage: never cut or append after it
            raise self.damage
        if self._segments and self._tail_pos[0] != self._segments[-1]:
            last = self._scan_last()  # no view of the last segment yet: scan it whole
            if self.damage is not None:
                raise self.damage
        if self._segments:
            first = self._segments[-1]
            size = self._seg_path(first).stat().st_size
            good_end = self._tail_pos[1]
            if good_end < size:  # a writer died mid-append (it held this lock): its bytes go aside
                self._cut(first, good_end, size, last, "torn tail of a writer that died mid-append")
                self._tail_pos = (first, good_end)
        self._last_seq = last
        return last

    # -- segments ---------------------------------------------------------------------------------
    def _list_segments(self) -> list[int]:
        firsts = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root / LOG_DIR):
                stem = entry.name[: -len(LOG_SUFFIX)]
                if entry.name.endswith(LOG_SUFFIX) and stem.isdigit():
                    firsts.append(int(stem))
        return sorted(firsts)

    def _seg_path(self, first: int) -> Path:
        return self.root / LOG_DIR / _seg_name(first)

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
        path = self._seg_path(first)
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
                if reason in _TORN and pos + len(buf) < size:
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
        so the search looks for the bytes those seqs share (see ``_seq_patterns``) and checks
        each hit with the framing's checksums. Memory stays one window whatever the size.
        """
        if at >= size:
            return None
        hi = expected + (size - at) // RECORD_HEADER + 1
        patterns = _seq_patterns(expected, hi)
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
                seq = _U64.unpack_from(buf, hit + 4)[0]
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
            last, offset = first - 1, 0  # an empty last segment continues the one before it
            try:
                for base, records in self._scan_chunks(first, tail_ok=True):
                    self._mark_chunk(first, base, records)
                    last, off, payload = records[-1]
                    offset = base + off + RECORD_HEADER + len(payload)
            except CorruptDataError as exc:
                if self._vanished(first):  # a reader raced the writer's compaction: look again
                    self._segments = self._list_segments()
                    continue
                self.damage = exc
            break
        self._tail_pos = (first, offset)
        return last

    def _vanished(self, first: int) -> bool:
        """Whether the segment starting at ``first`` is gone (a compaction removed it while we read)."""
        return not self._lock.held and not self._seg_path(first).exists()

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
                self._last_seq = segments[-1] - 1
        if not self._segments:
            return 0
        first, offset = self._tail_pos
        try:
            for base, records in self._scan_chunks(first, offset, tail_ok=True,
                                                   expect=self._last_seq + 1 if offset else first):
                self._mark_chunk(first, base, records)
                seq, off, payload = records[-1]
                self._last_seq = seq
                self._tail_pos = (first, base + off + RECORD_HEADER + len(payload))
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
            if os.stat(self._seg_path(first)).st_size != offset:
                return False
        except OSError:
            return False
        return not os.path.lexists(self._seg_path(self._last_seq + 1))

    def first_seq(self) -> int:
        if not self._lock.held:
            self._segments = self._list_segments()
        return self._segments[0] if self._segments else self._last_seq + 1

    def append(self, records: Sequence[tuple[int, bytes]]) -> None:
        if not self._writing():
            raise DesiruError("append needs the writer lock", path=self.name)
        if not records:
            return
        # an empty store starts wherever the first record says (a rewrite of a compacted journal)
        expected = self._last_seq + 1 if self._segments else records[0][0]
        parts = []
        for seq, payload in records:
            if seq != expected:
                raise DesiruError(f"append of seq {seq}, expected {expected}", path=self.name)
            parts.append(_engine.frame_encode(payload, seq, self.salt))
            expected += 1
        data = b"".join(parts)
        fd = self._writer_fd(records[0][0])
        pos = start = self._end
        for (seq, _payload), part in zip(records, parts):
            self._mark(self._segments[-1], seq, pos)
            pos += len(part)
        view = memoryview(data)
        while view:  # pwrite at our own end: a cut tail never leaves a hole before new records
            n = os.pwrite(fd, view, self._end)
            view = view[n:]
            self._end += n
        self._last_seq = expected - 1
        if self._tail_pos == (self._segments[-1], start):  # a shared writer's view of the tail moves on
            self._tail_pos = (self._segments[-1], self._end)

    def _writer_fd(self, next_seq: int) -> int:
        if self._segments and not self._roll and self._segments[-1] != next_seq:
            if self._fd is None:
                self._open_last()
            if self._end >= SEGMENT_BYTES:  # a full segment: the next append starts a new one
                self._roll = True
        if self._roll or not self._segments:
            self._roll = False
            if not (self._segments and self._segments[-1] == next_seq):
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                real_dir(self.root / LOG_DIR, journal=self.name)  # a link planted since the open is refused
                fd = open_file(self._seg_path(next_seq), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.file_mode,
                               journal=self.name)
                os.fchmod(fd, self.file_mode)
                fsync_dir(self.root / LOG_DIR)
                self._segments.append(next_seq)
                self._tail_pos = (next_seq, 0)  # the view of the tail moves to the new segment
                self._fd, self._end = fd, 0
                return fd
        if self._fd is None:
            self._open_last()
        assert self._fd is not None
        return self._fd

    def _open_last(self) -> None:
        """Open the last segment for appending, at its end."""
        fd = open_file(self._seg_path(self._segments[-1]), os.O_WRONLY, journal=self.name)
        self._end = os.lseek(fd, 0, os.SEEK_END)
        self._fd = fd

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
        idx = max(i for i, first in enumerate(segments) if first <= start)
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

    def recover(self) -> CutReport | None:
        """Cut a torn/corrupt tail of the last segment into damaged/ (never appending after garbage).

        Damage with valid records after it is not a tail: CorruptDataError naming seq and offset.
        """
        if self.damage is not None:
            raise self.damage
        with os_errors("checking the end of the journal's log", self.name, _WRITE_HINT):
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
        self._tail_pos = (first, offset)
        return CutReport(after_seq=after_seq, reason=reason, nbytes=len(cut), kept_in=kept)

    def _keep_aside(self, data: bytes, label: str) -> str:
        folder = real_dir(self.root / DAMAGED_DIR, journal=self.name, create=self.dir_mode)
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        target = folder / f"{stamp}-{label}.bin"
        atomic_write(target, data, mode=self.file_mode)
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
            self._tail_pos = (first, end)
        self._last_seq = seq
        self.damage = None
        return CutReport(after_seq=seq, reason=reason, nbytes=nbytes, kept_in=", ".join(k for k in kept if k))

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
                                    file=str(self.root / SNAPSHOT_DIR / _snap_name(seq))))
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

    # -- snapshots -------------------------------------------------------------------------------------
    def put_snapshot(self, seq: int, blob: bytes) -> None:
        view = memoryview(blob)
        pieces = [view[i: i + SNAPSHOT_CHUNK] for i in range(0, len(view), SNAPSHOT_CHUNK)] or [view[:0]]
        meta = _engine.packb({"seq": seq, "chunks": len(pieces), "size": len(blob)})
        frames = [_engine.frame_encode(meta, 0, self.salt)]
        frames.extend(_engine.frame_encode(bytes(p), i + 1, self.salt) for i, p in enumerate(pieces))
        atomic_write(real_dir(self.root / SNAPSHOT_DIR, journal=self.name) / _snap_name(seq), frames,
                     mode=self.file_mode)
        if seq == self._last_seq:
            self._roll = True

    def get_snapshot(self, seq: int) -> bytes:
        path = self.root / SNAPSHOT_DIR / _snap_name(seq)
        try:
            data = read_file(path, journal=self.name)
        except FileNotFoundError:
            raise DesiruError(f"no snapshot at seq {seq}", path=str(path), seq=seq) from None
        records, _end, fault = _engine.frame_scan(data, self.salt, 0, MAX_RECORD)
        if fault is not None or not records:
            off = fault[0] if fault else 0
            raise CorruptDataError(f"snapshot is damaged ({fault[1] if fault else 'empty'})", path=str(path),
                                   seq=seq, offset=off, hint="delete this snapshot file; replay falls back "
                                   "to an older snapshot or the log")
        try:
            meta = _engine.unpackb(records[0][2])
            ok = meta["seq"] == seq and meta["chunks"] == len(records) - 1 and records[0][0] == 0
        except Exception:
            ok = False
        if not ok:
            raise CorruptDataError("snapshot file does not match its name or is incomplete", path=str(path),
                                   seq=seq)
        blob = b"".join(r[2] for r in records[1:])
        if len(blob) != meta["size"]:
            raise CorruptDataError("snapshot size does not match", path=str(path), seq=seq)
        return blob

    def snapshot_seqs(self) -> list[int]:
        seqs = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root / SNAPSHOT_DIR):
                stem = entry.name[: -len(SNAPSHOT_SUFFIX)]
                if entry.name.endswith(SNAPSHOT_SUFFIX) and stem.isdigit():
                    seqs.append(int(stem))
        return sorted(seqs)

    def delete_snapshot(self, seq: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / SNAPSHOT_DIR / _snap_name(seq)).unlink()
        fsync_dir(self.root / SNAPSHOT_DIR)

    def quarantine_snapshot(self, seq: int) -> str | None:
        """Move a snapshot file into damaged/ (repair uses this for damaged or orphaned snapshots)."""
        path = self.root / SNAPSHOT_DIR / _snap_name(seq)
        try:
            data = read_file(path, journal=self.name)
        except FileNotFoundError:
            return None
        kept = self._keep_aside(data, f"snapshot-{seq:020d}")
        self.delete_snapshot(seq)
        return kept

    # -- index checkpoints ---------------------------------------------------------------------------
    def put_index(self, hi: int, blob: bytes) -> None:
        frame = _engine.frame_encode(blob, hi, self.salt)  # checksummed, and bound to this journal's salt
        folder = real_dir(self.root / INDEX_DIR, journal=self.name, create=self.dir_mode)
        atomic_write(folder / f"{hi:020d}{INDEX_SUFFIX}", frame, mode=self.file_mode)

    def get_index(self, hi: int) -> bytes | None:
        try:
            data = read_file(self.root / INDEX_DIR / f"{hi:020d}{INDEX_SUFFIX}", journal=self.name)
        except (OSError, DesiruError):
            return None
        records, end, fault = _engine.frame_scan(data, self.salt, 0, MAX_RECORD)
        if fault is not None or len(records) != 1 or records[0][0] != hi or end != len(data):
            return None
        return records[0][2]

    def index_seqs(self) -> list[int]:
        seqs = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root / INDEX_DIR):
                stem = entry.name[: -len(INDEX_SUFFIX)]
                if entry.name.endswith(INDEX_SUFFIX) and stem.isdigit():
                    seqs.append(int(stem))
        return sorted(seqs)

    def delete_index(self, hi: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / INDEX_DIR / f"{hi:020d}{INDEX_SUFFIX}").unlink()

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


__all__ = ["MAGIC", "FileStore", "HeaderMismatchError", "decode_header", "encode_header", "is_file_journal",
           "peek_version"]
