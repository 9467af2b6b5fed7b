"""The journal directory's layout: folder and file names, sizes, and the header file (docs/FORMAT.md)."""

from __future__ import annotations

import contextlib
import os
import re
import struct
import time
from pathlib import Path
from typing import Any

from desiru import _engine
from desiru.errors import CorruptDataError, DesiruError, FormatError, IncompatibleVersionError
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
HEADER_TAIL = struct.Struct("<I")
U64 = struct.Struct("<Q")
TORN = ("torn header", "torn payload")
WRITE_HINT = ("a writer needs write access to the journal folder and its files; check their owner and "
               "permissions (or free space), or open it with readonly=True to read")


def seq_patterns(lo: int, hi: int) -> list[re.Pattern[bytes]]:
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


def seg_name(first_seq: int) -> str:
    return f"{first_seq:020d}{LOG_SUFFIX}"


def snap_name(seq: int) -> str:
    return f"{seq:020d}{SNAPSHOT_SUFFIX}"


def encode_header(salt: int, meta: dict[str, Any], version: Version = CURRENT_VERSION) -> bytes:
    """Header bytes: magic, u8 len + version text, u32 len + msgpack body, xxh3-128 of all before."""
    text = str(version).encode("ascii")
    body = _engine.packb({"salt": salt, "meta": meta})
    head = MAGIC + bytes([len(text)]) + text + HEADER_TAIL.pack(len(body)) + body
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
    (n,) = HEADER_TAIL.unpack_from(data, pos)
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


#: a folder listing is reused only when the folder's mtime is older than this: a change in the same
#: clock tick as the one the listing saw (timestamps are coarse, up to seconds on some file systems)
#: could leave the mtime as it was
LISTING_SETTLE_NS = 2_000_000_000


class FolderSeqs:
    """The sorted seqs named by a folder's ``<seq><suffix>`` files, listed again only when the folder changed.

    A reader looks at the log and the snapshots on every refresh; listing 500 segment files each
    time made a look grow with history. The folder's (inode, mtime) is one stat; a listing is
    reused while they are unchanged and the mtime is older than LISTING_SETTLE_NS (see there).
    """

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self._key: tuple[int, int] | None = None
        self._seqs: list[int] = []

    def get(self, folder: Path) -> list[int]:
        """The seqs (a new list the caller may change)."""
        try:
            st = os.stat(folder)
        except FileNotFoundError:
            self._key = None
            return []
        key = (st.st_ino, st.st_mtime_ns)
        if key == self._key:
            return list(self._seqs)
        seqs = []
        suffix, cut = self.suffix, -len(self.suffix)
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                name = entry.name
                if name.endswith(suffix) and name[:cut].isdigit():
                    seqs.append(int(name[:cut]))
        seqs.sort()
        settled = time.time_ns() - st.st_mtime_ns > LISTING_SETTLE_NS
        self._key, self._seqs = (key if settled else None), seqs
        return list(seqs)
