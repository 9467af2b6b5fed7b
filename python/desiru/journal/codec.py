"""Bytes of journal records and snapshots: msgpack (Rust codec), zstd, AES-256-GCM.

A record payload is the msgpack array ``[type, schema_version, seq, timestamp,
path, payload, first, last]`` (zstd-compressed when large), sealed with
``crypto.seal_record`` when the journal is encrypted. ``first..last`` is the
commit group the event belongs to: a reader tells a whole commit from one a
crash cut in the middle. Readers get ``to_record()``-style dicts from ``decode``.
A snapshot blob is ``u32 len | sealed(packb(meta)) | sealed(zstd(packb(state)))``
so that the small meta (tags, checkpoints) reads without decoding the state.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Mapping
from typing import Any

import zstandard

from desiru import _engine
from desiru.errors import CorruptDataError, DecryptionError, DesiruError
from desiru.journal.events import EVENT_TYPES, Event, event_from_record

#: zstd level for snapshots: fast beats small (a snapshot is written while the run waits)
SNAPSHOT_ZSTD_LEVEL = 1
#: records of at least this many bytes are zstd-compressed (kept only when that saves >= 10 %);
#: a msgpack record starts with a map byte, never with the zstd magic, so readers tell them apart
RECORD_COMPRESS_MIN = 512
RECORD_ZSTD_LEVEL = 3
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: bound on a decompressed record, so a crafted record cannot claim gigabytes
MAX_RECORD_DECOMPRESSED = 1 << 30
_U32 = struct.Struct("<I")
_SNAPSHOT_AAD_SUFFIX = b"/snapshot"
_SNAPSHOT_META_AAD_SUFFIX = b"/snapshot-meta"
#: a record is the msgpack array [type, schema_version, seq, timestamp, path, payload, first, last]
#: (first..last: the seqs of its commit group); an array decodes 3x faster than a map of the same
R_TYPE, R_SCHEMA, R_SEQ, R_TIMESTAMP, R_PATH, R_PAYLOAD, R_FIRST, R_LAST = range(8)
RECORD_FIELDS = 8
#: current schema version of each event type, for the upcast fast path
CURRENT_SCHEMA = {name: cls.schema_version for name, cls in EVENT_TYPES.items()}
_CURRENT_SCHEMA = CURRENT_SCHEMA  # the same dict under its first name (tests patch it)


def _array_of_map(rec: dict[str, Any], seq: int) -> Any:
    """A record written as a map (keys of ``Event.to_record()`` plus "commit") as the array layout."""
    try:
        first, last = rec.get("commit") or (seq, seq)
        return [rec["type"], rec.get("schema_version", 1), rec["seq"], rec["timestamp"], rec.get("path", ""),
                rec.get("payload") or {}, first, last]
    except (KeyError, TypeError, ValueError):
        return None


def _upcaster() -> Any:
    try:
        from desiru.serialization.migrations import upcast_event
    except ImportError:  # pragma: no cover - a build without migrations
        return None
    return upcast_event


class RecordCodec:
    """Encodes and decodes the payloads of one journal (its id and key bind the encryption)."""

    def __init__(self, journal_id: bytes, key: Any = None, name: str | None = None) -> None:
        self.journal_id = journal_id
        self.key = key
        self.name = name
        self._upcast = _upcaster()
        self._zc = zstandard.ZstdCompressor(level=RECORD_ZSTD_LEVEL)
        self._zd = zstandard.ZstdDecompressor()
        #: the store whose log snapshots are checked against (see snapshot_binding); None: unchecked
        self._bound: Any = None

    def bind(self, store: Any) -> None:
        """Check every snapshot read through this codec against ``store``'s log, and bind new ones to it."""
        self._bound = store

    def _record_timestamp(self, seq: int, payload: bytes) -> float:
        return float(self.decode_array(seq, payload)[R_TIMESTAMP])

    def _check_bound(self, seq: int, meta: dict[str, Any]) -> None:
        if self._bound is not None:
            from desiru.journal.snapshot_binding import check_binding

            check_binding(self._bound, seq, meta, self._record_timestamp)

    # -- records ------------------------------------------------------------------------------
    def _seal_payload(self, raw: bytes, seq: int) -> bytes:
        if len(raw) >= RECORD_COMPRESS_MIN:
            packed = self._zc.compress(raw)
            if len(packed) * 10 <= len(raw) * 9:
                raw = packed
        if self.key is None:
            return raw
        from desiru import crypto

        return crypto.seal_record(self.key, self.journal_id, seq, raw)

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """The payload of a record dict (``to_record()`` plus optional ``"commit": [first, last]``)."""
        seq = record["seq"]
        first, last = record.get("commit") or (seq, seq)
        return self._seal_payload(_engine.packb([
            record["type"], record["schema_version"], seq, record["timestamp"], record["path"],
            dict(record["payload"]), first, last]), seq)

    def encode_event(self, ev: Event, first: int, last: int) -> bytes:
        """The payload of an event of the commit group first..last (the write fast path)."""
        raw = _engine.packb([ev.type, ev.schema_version, ev.seq, ev.timestamp, ev.path, dict(ev.payload), first, last])
        if self.key is None and len(raw) < RECORD_COMPRESS_MIN:
            return raw  # the common small event: nothing more to do
        return self._seal_payload(raw, ev.seq)

    def decode_array(self, seq: int, payload: bytes) -> list[Any]:
        """The record stored at ``seq`` as its array (see ``R_*``), upcast to the current schema."""
        if self.key is not None:
            from desiru import crypto

            try:
                payload = crypto.open_record(self.key, self.journal_id, seq, payload)
            except DecryptionError as exc:
                raise DecryptionError(exc.message, path=self.name, seq=seq, hint=exc.hint) from None
        try:
            if payload[:4] == ZSTD_MAGIC:
                try:
                    payload = self._zd.decompress(payload, max_output_size=MAX_RECORD_DECOMPRESSED)
                except zstandard.ZstdError as exc:
                    raise CorruptDataError(f"compressed record is damaged: {exc}") from None
            rec = _engine.unpackb(payload)
        except CorruptDataError as exc:
            raise CorruptDataError(f"event record is malformed: {exc.message}", path=self.name, seq=seq,
                                   hint="run journal.verify()") from None
        if type(rec) is dict:  # the map layout of the first 2.0.0 writers: still read
            rec = _array_of_map(rec, seq)
        if type(rec) is not list or len(rec) != RECORD_FIELDS or rec[R_SEQ] != seq:
            raise CorruptDataError("event record is malformed or does not match its seq", path=self.name,
                                   seq=seq, hint="run journal.verify()")
        if CURRENT_SCHEMA.get(rec[R_TYPE]) != rec[R_SCHEMA] and self._upcast is not None:
            up = self._upcast({"type": rec[R_TYPE], "schema_version": rec[R_SCHEMA], "seq": seq,
                               "timestamp": rec[R_TIMESTAMP], "path": rec[R_PATH], "payload": rec[R_PAYLOAD]})
            try:
                rec = [up["type"], up["schema_version"], seq, up["timestamp"], up.get("path", ""),
                       up.get("payload") or {}, rec[R_FIRST], rec[R_LAST]]
            except (KeyError, TypeError):
                raise CorruptDataError("an upcaster returned a malformed record", path=self.name,
                                       seq=seq) from None
        if (type(rec[R_PAYLOAD]) is not dict or type(rec[R_PATH]) is not str
                or type(rec[R_TIMESTAMP]) not in (float, int) or type(rec[R_FIRST]) is not int
                or type(rec[R_LAST]) is not int or not rec[R_FIRST] <= seq <= rec[R_LAST]):
            raise CorruptDataError("event record is malformed", path=self.name, seq=seq,
                                   hint="run journal.verify()")
        return rec

    def decode(self, seq: int, payload: bytes) -> dict[str, Any]:
        """The record dict stored at ``seq`` (``to_record()`` keys plus ``"commit"``), upcast."""
        rec = self.decode_array(seq, payload)
        return {"type": rec[R_TYPE], "schema_version": rec[R_SCHEMA], "seq": seq,
                "timestamp": rec[R_TIMESTAMP], "path": rec[R_PATH], "payload": rec[R_PAYLOAD],
                "commit": [rec[R_FIRST], rec[R_LAST]]}

    def event(self, record: Mapping[str, Any]) -> Event:
        """The typed event of a decoded record dict."""
        return event_from_record(record, path=self.name)

    def event_of(self, rec: list[Any]) -> Event:
        """The typed event of a decoded record array."""
        cls = EVENT_TYPES.get(rec[R_TYPE])
        if cls is None or rec[R_SCHEMA] != cls.schema_version:
            return event_from_record({"type": rec[R_TYPE], "schema_version": rec[R_SCHEMA], "seq": rec[R_SEQ],
                                      "timestamp": rec[R_TIMESTAMP], "path": rec[R_PATH],
                                      "payload": rec[R_PAYLOAD]}, path=self.name)
        return cls(path=rec[R_PATH], payload=rec[R_PAYLOAD], seq=rec[R_SEQ], timestamp=float(rec[R_TIMESTAMP]))

    # -- snapshots ------------------------------------------------------------------------------
    def _seal(self, data: bytes, seq: int, suffix: bytes) -> bytes:
        if self.key is None:
            return data
        from desiru import crypto

        return crypto.seal_record(self.key, self.journal_id + suffix, seq, data)

    def _open(self, data: bytes, seq: int, suffix: bytes) -> bytes:
        if self.key is None:
            return data
        from desiru import crypto

        try:
            return crypto.open_record(self.key, self.journal_id + suffix, seq, data)
        except DecryptionError as exc:
            raise DecryptionError(f"snapshot: {exc.message}", path=self.name, seq=seq, hint=exc.hint) from None

    def encode_snapshot(self, seq: int, meta: dict[str, Any], state: dict[str, Any], *, bound: bool = False
                        ) -> bytes:
        """A snapshot blob; its meta bound to the record at ``seq`` (``bind_meta``), unless ``bound`` says
        the caller did so already (under its lock: the encoding itself may then run outside it)."""
        if not bound:
            meta = self.bind_meta(seq, meta)
        body = _engine.packb(state)
        threads = -1 if len(body) > (1 << 20) else 0
        packed = zstandard.ZstdCompressor(level=SNAPSHOT_ZSTD_LEVEL, threads=threads).compress(body)
        head = self._seal(_engine.packb({**meta, "seq": seq}), seq, _SNAPSHOT_META_AAD_SUFFIX)
        return _U32.pack(len(head)) + head + self._seal(packed, seq, _SNAPSHOT_AAD_SUFFIX)

    def bind_meta(self, seq: int, meta: dict[str, Any]) -> dict[str, Any]:
        """``meta`` with ``record_hash`` of the record at ``seq`` in the bound store's log (any old one dropped)."""
        from desiru.journal.snapshot_binding import RECORD_HASH, record_hash

        meta = {k: v for k, v in meta.items() if k != RECORD_HASH}
        if self._bound is not None:
            bound = record_hash(self._bound, seq)
            if bound is None and seq in self._bound.snapshot_seqs():
                # the record was compacted away: a snapshot rewritten there keeps the binding it had
                with contextlib.suppress(DesiruError):
                    bound = self.snapshot_meta(seq, self._bound.get_snapshot(seq)).get(RECORD_HASH)
            if bound is not None:
                meta[RECORD_HASH] = bound
        return meta

    def snapshot_meta(self, seq: int, blob: bytes) -> dict[str, Any]:
        """The meta dict of a snapshot blob (tags, checkpoints, timestamp) without its state."""
        if len(blob) < 4:
            raise CorruptDataError("snapshot blob is truncated", path=self.name, seq=seq)
        (n,) = _U32.unpack_from(blob, 0)
        meta = _engine.unpackb(self._open(blob[4: 4 + n], seq, _SNAPSHOT_META_AAD_SUFFIX))
        if type(meta) is not dict or meta.get("seq") != seq:
            raise CorruptDataError("snapshot meta does not match its seq", path=self.name, seq=seq)
        self._check_bound(seq, meta)
        return meta

    def snapshot_state(self, seq: int, blob: bytes) -> dict[str, Any]:
        """The state tree stored in a snapshot blob (after its meta was checked against the log)."""
        self.snapshot_meta(seq, blob)
        (n,) = _U32.unpack_from(blob, 0)
        packed = self._open(blob[4 + n:], seq, _SNAPSHOT_AAD_SUFFIX)
        from desiru.serialization.container import MAX_DOCUMENT_SIZE, decompress

        try:  # bounded like a document (a snapshot is one), never by ratio: states can be very repetitive
            body = decompress(packed, "zstd", max_size=MAX_DOCUMENT_SIZE)
        except CorruptDataError as exc:
            raise CorruptDataError(f"snapshot state is damaged: {exc.message}", path=self.name, seq=seq) from None
        state = _engine.unpackb(body)
        if type(state) is not dict:
            raise CorruptDataError("snapshot state is not a program state", path=self.name, seq=seq)
        return state


def check_fsync_mode(mode: str) -> str:
    """``mode`` if it is one of "always", "batch", "never"."""
    if mode not in ("always", "batch", "never"):
        raise DesiruError(f"unknown fsync mode {mode!r}", hint='use fsync="always", "batch" or "never"')
    return mode


__all__ = ["RecordCodec", "check_fsync_mode"]
