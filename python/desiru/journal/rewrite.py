"""Rewrite a whole journal: under a new key (rekey) or at the current format version (migrate).

The new journal is built beside the old one, fsynced, then swapped in with one
atomic exchange of the two directory names (renameat2 RENAME_EXCHANGE on Linux;
elsewhere two renames, and a crash between them leaves both copies on disk).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from desiru.errors import DesiruError, MissingKeyError
from desiru.journal.codec import RecordCodec
from desiru.journal.file_store import HEADER_FILE, LOG_DIR, SNAPSHOT_DIR, FileStore
from desiru.journal.journal import CIPHER
from desiru.progress import ProgressCallback, Ticker
from desiru.serialization.version import CURRENT_VERSION

#: records re-encoded per append while rewriting
_BATCH = 4096
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _source_codec(meta: dict[str, Any], key: Any, name: str) -> RecordCodec:
    enc = meta.get("encryption")
    if enc is None:
        if key is not None:
            raise DesiruError("this journal is not encrypted; old_key must be None", path=name)
        return RecordCodec(meta.get("journal_id", b""), None, name)
    if key is None:
        raise MissingKeyError(f"the journal is encrypted (key id {enc.get('key_id')}) and no key was given",
                              path=name, hint="pass the key it was written with")
    from desiru import crypto

    k = crypto.Key.from_user(key, enc.get("kdf"))
    crypto.check_key_id(k, enc.get("key_id", ""), path=name)
    return RecordCodec(meta.get("journal_id", b""), k, name)


def _exchange(a: Path, b: Path) -> None:
    """Swap two directory names atomically where the OS can, else with two renames."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        fn = None
    if fn is not None:
        r = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
        if r == 0:
            return
    aside = a.with_name(f".{a.name}.{secrets.token_hex(4)}.swap")
    os.rename(a, aside)
    os.rename(b, a)
    os.rename(aside, b)


def _copy_modes(src: Path, dst: Path) -> None:
    """Give the rebuilt journal the modes of the one it replaces (its folders and its header file)."""
    for sub in ("", LOG_DIR, SNAPSHOT_DIR, HEADER_FILE):
        with contextlib.suppress(FileNotFoundError):
            os.chmod(dst / sub if sub else dst, os.lstat(src / sub if sub else src).st_mode & 0o777)


def _rewrite(path: str | os.PathLike[str], old_key: Any, new_key: Any, *, keep_key: bool,
             progress: ProgressCallback | None = None) -> int:
    root = Path(path)
    name = os.fspath(path)
    src = FileStore(root, check_version=False)
    meta = src.open()
    src.lock()
    tmp = root.with_name(f".{root.name}.{secrets.token_hex(6)}.rewrite")
    try:
        src.recover()
        codec_old = _source_codec(meta, old_key, name)
        new_meta = {"journal_id": meta.get("journal_id", b""), "encryption": meta.get("encryption")}
        key = codec_old.key
        if not keep_key:
            key = None
            new_meta["encryption"] = None
            if new_key is not None:
                from desiru import crypto

                key = crypto.Key.from_user(new_key)
                new_meta["encryption"] = {"cipher": CIPHER, "key_id": key.key_id, "kdf": key.kdf}
        dst = FileStore(tmp)
        dst.create(new_meta)
        _copy_modes(root, tmp)
        dst.open()
        dst.lock()
        codec_new = RecordCodec(new_meta["journal_id"], key, str(tmp))
        codec_new.bind(dst)  # each snapshot is bound to its record as rewritten
        snaps = src.snapshot_seqs()
        count = 0
        try:
            def put_snapshots(upto: int) -> None:
                while snaps and snaps[0] <= upto:
                    s = snaps.pop(0)
                    blob = src.get_snapshot(s)
                    dst.put_snapshot(s, codec_new.encode_snapshot(
                        s, codec_old.snapshot_meta(s, blob), codec_old.snapshot_state(s, blob)))

            batch: list[tuple[int, bytes]] = []
            first = src.first_seq()
            if first > 1:  # compacted: the log starts after the snapshot there
                dst.start_at(first)
                put_snapshots(first - 1)
            tick = Ticker(progress, src.last_seq() - first + 1)
            for seq, payload in src.read(0):
                tick(count)
                if snaps and snaps[0] < seq:
                    dst.append(batch)
                    batch = []
                    put_snapshots(seq - 1)
                batch.append((seq, codec_new.encode(codec_old.decode(seq, payload))))
                count += 1
                if len(batch) >= _BATCH:
                    dst.append(batch)
                    batch = []
            dst.append(batch)
            put_snapshots(dst.last_seq())
            dst.sync()
            tick.end()
        finally:
            dst.close()
        _exchange(root, tmp)
        return count
    finally:
        src.close()
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(OSError):
            from desiru.atomic import fsync_dir

            fsync_dir(root.parent)


def rekey_journal(path: str | os.PathLike[str], old_key: Any, new_key: Any, *,
                  progress: ProgressCallback | None = None) -> int:
    """Re-encrypt every record and snapshot under ``new_key`` (None: decrypt); atomic; returns records.
    ``progress(done, total)`` is told the records rewritten (desiru.progress)."""
    return _rewrite(path, old_key, new_key, keep_key=False, progress=progress)


def migrate_journal(path: str | os.PathLike[str], key: Any = None, *,
                    progress: ProgressCallback | None = None) -> int:
    """Rewrite the journal at the current format version (events upcast); atomic; returns records.
    ``progress(done, total)`` is told the records rewritten (desiru.progress)."""
    return _rewrite(path, key, None, keep_key=True, progress=progress)


__all__ = ["CURRENT_VERSION", "migrate_journal", "rekey_journal"]
