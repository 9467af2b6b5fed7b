"""Pure-Python twin of the Rust record framing (``rust/src/frame.rs``).

A record is a 24-byte little-endian header followed by its payload::

    u32 payload length | u64 seq | u64 xxh3_64(payload, salt) | u32 low32(xxh3_64(header[:20], salt))

The salt is per journal, so bytes from another journal or an old file never
validate; a length is trusted only once the header checksum holds. The layout
is specified in docs/FORMAT.md ("Record framing").
"""

from __future__ import annotations

import operator
import struct
from typing import Any

import xxhash

from desiru.errors import SerializationError

#: Size of a record header in bytes.
HEADER_LEN = 24
#: Largest payload a record may carry (256 MiB); longer claimed lengths are faults.
MAX_RECORD = 256 * 1024 * 1024

TORN_HEADER = "torn header"
TORN_PAYLOAD = "torn payload"
BAD_HEADER_CHECKSUM = "bad header checksum"
BAD_PAYLOAD_CHECKSUM = "bad payload checksum"
LENGTH_OVER_LIMIT = "length over limit"
SEQ_NOT_INCREASING = "seq not increasing"

_U64 = 1 << 64
_I64_MIN = -(1 << 63)
_I64_MAX = (1 << 63) - 1
_FIRST = struct.Struct("<IQQ")  # the first 20 header bytes
_HEADER = struct.Struct("<IQQI")
_xxh3_64 = xxhash.xxh3_64_intdigest

Record = tuple[int, int, bytes]
Fault = tuple[int, str]


def _u64(value: Any, what: str) -> int:
    """An int in the u64 range, with the same errors the Rust binding raises."""
    v = operator.index(value)
    if v < 0:
        raise OverflowError(f"{what} must be non-negative, got {v}")
    if v >= _U64:
        raise OverflowError(f"{what} does not fit in 64 bits")
    return v


def _i64(value: Any, what: str) -> int:
    v = operator.index(value)
    if not _I64_MIN <= v <= _I64_MAX:
        raise OverflowError(f"{what} does not fit in 64 bits")
    return v


def _header_checksum(first20: bytes, salt: int) -> int:
    return _xxh3_64(first20, seed=salt) & 0xFFFFFFFF


def frame_encode(payload: bytes, seq: int, salt: int) -> bytes:
    """One framed record: the 24-byte header, then ``payload``."""
    seq = _u64(seq, "seq")
    salt = _u64(salt, "salt")
    data = memoryview(payload).cast("B")
    n = data.nbytes
    if n > MAX_RECORD:
        raise SerializationError(
            f"record payload of {n} bytes exceeds MAX_RECORD ({MAX_RECORD} bytes)",
            hint="split the change into smaller events",
        )
    first = _FIRST.pack(n, seq, _xxh3_64(data, seed=salt))
    return first + _header_checksum(first, salt).to_bytes(4, "little") + data.tobytes()


def frame_scan(
    buf: Any, salt: int, offset: int = 0, max_record: int = MAX_RECORD
) -> tuple[list[Record], int, Fault | None]:
    """Scan records from ``offset``: (records, good_end, fault).

    ``records`` holds ``(seq, offset, payload)`` of every good record in order,
    ``good_end`` is the offset just past the last of them, and ``fault`` is
    ``(offset, reason)`` of the first torn or corrupt record, or None when the
    buffer ends exactly at a record boundary.
    """
    salt = _u64(salt, "salt")
    offset = _i64(offset, "offset")
    max_record = _i64(max_record, "max_record")
    if max_record < 0:
        raise ValueError(f"max_record must be non-negative, got {max_record}")
    data = memoryview(buf).cast("B")
    size = data.nbytes
    if offset < 0 or offset > size:
        raise ValueError(f"scan offset {offset} is out of range for a buffer of {size} bytes")
    records: list[Record] = []
    pos = offset
    last_seq = -1
    fault: Fault | None = None
    while pos < size:
        if size - pos < HEADER_LEN:
            fault = (pos, TORN_HEADER)
            break
        length, seq, payload_sum, header_sum = _HEADER.unpack_from(data, pos)
        if _header_checksum(data[pos : pos + 20], salt) != header_sum:
            fault = (pos, BAD_HEADER_CHECKSUM)
            break
        if length > max_record:
            fault = (pos, LENGTH_OVER_LIMIT)
            break
        start = pos + HEADER_LEN
        end = start + length
        if end > size:
            fault = (pos, TORN_PAYLOAD)
            break
        payload = data[start:end]
        if _xxh3_64(payload, seed=salt) != payload_sum:
            fault = (pos, BAD_PAYLOAD_CHECKSUM)
            break
        if seq <= last_seq:
            fault = (pos, SEQ_NOT_INCREASING)
            break
        records.append((seq, pos, payload.tobytes()))
        last_seq = seq
        pos = end
    return records, pos, fault


__all__ = [
    "BAD_HEADER_CHECKSUM",
    "BAD_PAYLOAD_CHECKSUM",
    "HEADER_LEN",
    "LENGTH_OVER_LIMIT",
    "MAX_RECORD",
    "SEQ_NOT_INCREASING",
    "TORN_HEADER",
    "TORN_PAYLOAD",
    "frame_encode",
    "frame_scan",
]
