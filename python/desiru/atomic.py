"""Atomic file writes: a reader sees the old file or the new one, never a mix.

Temp file in the same folder, write, fsync, rename over the target, fsync the
folder. A failed write leaves the old file untouched and no temp file behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from desiru.errors import DesiruError
from desiru.progress import ProgressCallback, Ticker


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename or create in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: with a progress callback, bytes are written (and reported) in steps of this size
WRITE_STEP = 8 << 20


def atomic_write(path: str | os.PathLike[str], data: bytes | Iterable[bytes], *, durable: bool = True,
                 mode: int | None = None, progress: ProgressCallback | None = None) -> int:
    """Replace ``path`` with ``data`` atomically; returns the number of bytes written.

    The new file keeps the mode of the file it replaces; a new file gets ``mode`` (exactly,
    e.g. the mode of its journal's other files) or, without one, 0o644 less the umask.
    ``progress(done, total)`` is told the bytes written (chunks are counted first to know the total).
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise DesiruError(f"folder {str(folder)!r} does not exist", path=target, hint="create it first")
    tmp = folder / f".{target.name}.{secrets.token_hex(6)}.tmp"
    exact = mode is not None
    if mode is None:
        mode = 0o644
    with contextlib.suppress(OSError):
        mode = target.stat().st_mode & 0o777
        exact = True
    size = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        if exact:
            os.fchmod(fd, mode)  # not widened by the umask, not narrowed either: the mode it replaces
        with os.fdopen(fd, "wb") as f:
            chunks = [data] if isinstance(data, (bytes, bytearray, memoryview)) else data
            if progress is not None:
                chunks = list(_steps(chunks))
                tick = Ticker(progress, sum(map(len, chunks)), step=1)
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
                if progress is not None:
                    tick(size)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise DesiruError(f"could not write the file: {exc.strerror or exc}", path=target,
                              hint="check the path, permissions and free space; "
                              "the previous file is unchanged") from exc
        raise
    if durable:
        fsync_dir(folder)
    if progress is not None:
        tick.end()
    return size


def _steps(chunks: Iterable[bytes]) -> Iterable[memoryview]:
    """The chunks cut into WRITE_STEP pieces (views, no copies), so that progress moves on a large one."""
    for chunk in chunks:
        view = memoryview(chunk)
        for at in range(0, len(view), WRITE_STEP):
            yield view[at:at + WRITE_STEP]
        if not view:
            yield view
