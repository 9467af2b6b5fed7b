"""A file journal's snapshot files and run index checkpoints (one file each, written atomically)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from desiru import _engine
from desiru.atomic import fsync_dir
from desiru.errors import CorruptDataError, DesiruError
from desiru.journal.file_layout import (
    INDEX_DIR,
    INDEX_SUFFIX,
    MAX_RECORD,
    SNAPSHOT_CHUNK,
    SNAPSHOT_DIR,
    FolderSeqs,
    snap_name,
)
from desiru.journal.safe_fs import (
    read_file,
    real_dir,
)


class SnapshotFiles:
    """The snapshot and index checkpoint half of ``FileStore`` (files under snapshots/ and index/)."""

    root: Path
    _snapshot_files: FolderSeqs
    _index_files: FolderSeqs

    def put_snapshot(self, seq: int, blob: bytes) -> None:
        view = memoryview(blob)
        pieces = [view[i: i + SNAPSHOT_CHUNK] for i in range(0, len(view), SNAPSHOT_CHUNK)] or [view[:0]]
        meta = _engine.packb({"seq": seq, "chunks": len(pieces), "size": len(blob)})
        frames = [_engine.frame_encode(meta, 0, self.salt)]
        frames.extend(_engine.frame_encode(bytes(p), i + 1, self.salt) for i, p in enumerate(pieces))
        self._write_file(real_dir(self.root / SNAPSHOT_DIR, journal=self.name) / snap_name(seq), frames)
        if seq == self._last_seq:
            self._roll = True

    def get_snapshot(self, seq: int) -> bytes:
        path = self.root / SNAPSHOT_DIR / snap_name(seq)
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
        return self._snapshot_files.get(self.root / SNAPSHOT_DIR)

    def delete_snapshot(self, seq: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / SNAPSHOT_DIR / snap_name(seq)).unlink()
        fsync_dir(self.root / SNAPSHOT_DIR)

    def quarantine_snapshot(self, seq: int) -> str | None:
        """Move a snapshot file into damaged/ (repair uses this for damaged or orphaned snapshots)."""
        path = self.root / SNAPSHOT_DIR / snap_name(seq)
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
        self._write_file(folder / f"{hi:020d}{INDEX_SUFFIX}", frame)

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
        return self._index_files.get(self.root / INDEX_DIR)

    def delete_index(self, hi: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / INDEX_DIR / f"{hi:020d}{INDEX_SUFFIX}").unlink()
