"""Atomic file writes: a reader sees the old file or the new one, never a mix.

Temp file in the same folder, write, fsync, rename over the target, fsync the
folder. A failed write leaves the old file untouched and no temp file behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

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
#: a large write asks the kernel to start writing its bytes to disk every this many bytes
WRITEBACK_STEP = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Any:
    """libc's sync_file_range (Linux), or None where there is none."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range() if sys.platform.startswith("linux") else None


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes at ``offset`` of ``fd`` to disk now, without
    waiting (sync_file_range(SYNC_FILE_RANGE_WRITE), the GIL released): the fsync that ends a large
    write then has little left to do. A hint: a no-op where unsupported; it makes nothing durable."""
    if _sync_file_range is not None and length > 0:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def write_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> int:
    """Write all of ``data`` at ``offset`` (pwrite, retried after a short write); returns its length.

    A pwrite that writes nothing (no space left, without an error) raises OSError(ENOSPC) rather
    than looping."""
    done = os.pwrite(fd, data, offset)  # the common case: one call writes it all
    if done == (data.nbytes if isinstance(data, memoryview) else len(data)):
        return done
    view = memoryview(data).cast("B")
    while done < len(view):
        n = os.pwrite(fd, view[done:], offset + done)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        done += n
    return done


@contextlib.contextmanager
def atomic_fd(path: str | os.PathLike[str], *, durable: bool = True, mode: int | None = None) -> Iterator[int]:
    """A file descriptor of a temp file beside ``path`` that replaces ``path`` when the block ends.

    On a normal exit the file is fsynced (``durable``), renamed over ``path`` and its folder fsynced;
    on an exception the temp file is removed and ``path`` is untouched (an OSError becomes a
    DesiruError that says so). Modes as for ``atomic_write``.
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
    fd = -1
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        if exact:
            os.fchmod(fd, mode)  # not widened by the umask, not narrowed either: the mode it replaces
        yield fd
        if durable:
            os.fsync(fd)
        closing, fd = fd, -1  # never closed twice (an interrupt between the two would do it)
        os.close(closing)
        os.replace(tmp, target)
    except BaseException as exc:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise DesiruError(f"could not write the file: {exc.strerror or exc}", path=target,
                              hint="check the path, permissions and free space; "
                              "the previous file is unchanged") from exc
        raise
    if durable:
        fsync_dir(folder)


def atomic_write(path: str | os.PathLike[str], data: bytes | Iterable[bytes], *, durable: bool = True,
                 mode: int | None = None, progress: ProgressCallback | None = None) -> int:
    """Replace ``path`` with ``data`` atomically; returns the number of bytes written.

    The new file keeps the mode of the file it replaces; a new file gets ``mode`` (exactly,
    e.g. the mode of its journal's other files) or, without one, 0o644 less the umask.
    ``progress(done, total)`` is told the bytes written (chunks are counted first to know the total).
    A durable write starts the disk's writeback every WRITEBACK_STEP bytes, so its final fsync is short.
    """
    size = 0
    with atomic_fd(path, durable=durable, mode=mode) as fd:
        chunks: Iterable[bytes | bytearray | memoryview] = (
            [data] if isinstance(data, (bytes, bytearray, memoryview)) else data)
        if progress is not None:
            chunks = list(_steps(chunks))
            tick = Ticker(progress, sum(map(len, chunks)), step=1)
        synced = 0
        for chunk in chunks:
            size += write_all(fd, chunk, size)
            if progress is not None:
                tick(size)
            if durable and size - synced >= WRITEBACK_STEP:
                start_writeback(fd, synced, size - synced)
                synced = size
    if progress is not None:
        tick.end()
    return size


def _steps(chunks: Iterable[bytes | bytearray | memoryview]) -> Iterable[memoryview]:
    """The chunks cut into WRITE_STEP pieces (views, no copies), so that progress moves on a large one."""
    for chunk in chunks:
        view = memoryview(chunk)
        for at in range(0, len(view), WRITE_STEP):
            yield view[at:at + WRITE_STEP]
        if not view:
            yield view
