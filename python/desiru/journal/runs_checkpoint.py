"""Run index checkpoints: the commit table up to a seq, kept beside the log (``index/<seq>.runs``).

A first use of the run index then reads only the log after the newest checkpoint instead of
the whole log. A checkpoint is a cache, never trusted over the records: it is used only when
it is whole (the store's framing checks it against the journal's salt), its fields are
well formed, the checkpoints chain without a gap from seq 1, and the last one names the hash
of the record at its seq as the log holds it now; otherwise the log is read instead.
"""

from __future__ import annotations

from typing import Any

from desiru import _engine

VERSION = 1


def encode(lo: int, hi: int, tail: bytes, rows: list[list[Any]], late: list[list[Any]],
           orphans: list[list[Any]]) -> bytes:
    """The checkpoint of seqs lo..hi: its commits' rows, results naming older commits, orphan results.

    ``tail`` is the xxh3-128 of the record at ``hi``: the log a checkpoint describes.
    """
    return _engine.packb({"v": VERSION, "lo": lo, "hi": hi, "tail": tail, "rows": rows, "late": late,
                          "orphans": orphans})


def decode(blob: bytes | None, hi: int) -> dict[str, Any] | None:
    """The checkpoint's fields, or None when it is missing, damaged, of another version or malformed."""
    if blob is None:
        return None
    try:
        ck = _engine.unpackb(blob)
    except Exception:
        return None
    if type(ck) is not dict or ck.get("v") != VERSION or ck.get("hi") != hi:
        return None
    lo = ck.get("lo")
    if type(lo) is not int or not 1 <= lo <= hi or type(ck.get("tail")) is not bytes:
        return None
    for field in ("rows", "late", "orphans"):
        items = ck.get(field)
        if type(items) is not list or any(type(x) is not list for x in items):
            return None
    if any(len(r) != 10 or type(r[0]) is not int or type(r[1]) is not int or not lo <= r[0] <= r[1] <= hi
           or type(r[2]) is not int for r in ck["rows"]):
        return None
    if any(len(x) != 3 or type(x[0]) is not int or not lo <= x[0] <= hi or type(x[2]) is not dict
           for x in ck["late"]):
        return None
    if any(len(x) != 2 or type(x[0]) is not int or not lo <= x[0] <= hi for x in ck["orphans"]):
        return None
    return ck


def record_hash(payload: bytes) -> bytes:
    """What a checkpoint remembers of the record at its seq."""
    return _engine.xxh3_128(payload)


__all__ = ["VERSION", "decode", "encode", "record_hash"]
