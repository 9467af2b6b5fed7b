"""Bytes of journal records and snapshots: msgpack (Rust codec), zstd, AES-256-GCM.

A record payload is ``packb(event.to_record() + {"commit": [first, last]})``,
sealed with ``crypto.seal_record`` when the journal is encrypted. The commit
range lets a reader tell a whole commit from one a crash cut in the middle.
A snapshot blob is ``u32 len | sealed(packb(meta)) | sealed(zstd(packb(state)))``
so that the small meta (tags, checkpoints) reads without decoding the state.
"""

from __future__ import annotations

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
#: current schema version of each event type, for the upcast fast path
_CURRENT_SCHEMA = {name: cls.schema_version for name, cls in EVENT_TYPES.items()}


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

    # -- records ------------------------------------------------------------------------------
    def encode(self, record: dict[str, Any]) -> bytes:
        raw = _engine.packb(record)
        if len(raw) >= RECORD_COMPRESS_MIN:
            packed = self._zc.compress(raw)
            if len(packed) * 10 <= len(raw) * 9:
                raw = packed
        if self.key is None:
            return raw
        from desiru import crypto

        return crypto.seal_record(self.key, self.journal_id, record["seq"], raw)

    def decode(self, seq: int, payload: bytes) -> dict[str, Any]:
        """The record dict stored at ``seq``, upcast to the current schema of its event type."""
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
            record = _engine.unpackb(payload)
        except CorruptDataError as exc:
            raise CorruptDataError(f"event record is malformed: {exc.message}", path=self.name, seq=seq,
                                   hint="run journal.verify()") from None
        if type(record) is not dict or record.get("seq") != seq:
            raise CorruptDataError("event record does not match its seq", path=self.name, seq=seq,
                                   hint="run journal.verify()")
        if _CURRENT_SCHEMA.get(record.get("type")) != record.get("schema_version") and self._upcast is not None:
            commit = record.pop("commit", None)
            record = self._upcast(record)
            if commit is not None:
                record["commit"] = commit
        return record

    def event(self, record: Mapping[str, Any]) -> Event:
        """The typed event of a decoded record."""
        return event_from_record(record, path=self.name)

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

    def encode_snapshot(self, seq: int, meta: dict[str, Any], state: dict[str, Any]) -> bytes:
        body = _engine.packb(state)
        threads = -1 if len(body) > (1 << 20) else 0
        packed = zstandard.ZstdCompressor(level=SNAPSHOT_ZSTD_LEVEL, threads=threads).compress(body)
        head = self._seal(_engine.packb({**meta, "seq": seq}), seq, _SNAPSHOT_META_AAD_SUFFIX)
        return _U32.pack(len(head)) + head + self._seal(packed, seq, _SNAPSHOT_AAD_SUFFIX)

    def snapshot_meta(self, seq: int, blob: bytes) -> dict[str, Any]:
        """The meta dict of a snapshot blob (tags, checkpoints, timestamp) without its state."""
        if len(blob) < 4:
            raise CorruptDataError("snapshot blob is truncated", path=self.name, seq=seq)
        (n,) = _U32.unpack_from(blob, 0)
        meta = _engine.unpackb(self._open(blob[4: 4 + n], seq, _SNAPSHOT_META_AAD_SUFFIX))
        if type(meta) is not dict or meta.get("seq") != seq:
            raise CorruptDataError("snapshot meta does not match its seq", path=self.name, seq=seq)
        return meta

    def snapshot_state(self, seq: int, blob: bytes) -> dict[str, Any]:
        """The state tree stored in a snapshot blob."""
        (n,) = _U32.unpack_from(blob, 0)
        packed = self._open(blob[4 + n:], seq, _SNAPSHOT_AAD_SUFFIX)
        try:
            body = zstandard.ZstdDecompressor().decompress(packed)
        except zstandard.ZstdError as exc:
            raise CorruptDataError(f"snapshot state is damaged: {exc}", path=self.name, seq=seq) from None
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
