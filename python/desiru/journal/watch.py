"""Wake a follower when a journal's log folder changes (Linux inotify through ctypes; None elsewhere).

A follower otherwise sleeps ``poll`` seconds between looks; with a watch it wakes as soon as a
writer appends to or creates a segment, and still looks every ``poll`` seconds (a file system
that sends no events, such as a network mount, is followed as before).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import sys

IN_MODIFY = 0x00000002
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
_MASK = IN_MODIFY | IN_MOVED_TO | IN_CREATE | IN_DELETE


class FolderWatch:
    """An inotify descriptor watching one folder; ``wait(timeout)`` returns when it changed or at timeout."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    @classmethod
    def open(cls, folder: str) -> FolderWatch | None:
        """A watch of ``folder``, or None where inotify is missing or refused (then callers poll)."""
        if not sys.platform.startswith("linux"):
            return None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
            if fd < 0:
                return None
            if libc.inotify_add_watch(fd, os.fsencode(folder), _MASK) < 0:
                os.close(fd)
                return None
        except (OSError, AttributeError):
            return None
        return cls(fd)

    def wait(self, timeout: float) -> None:
        """Sleep until the folder changes or ``timeout`` seconds pass; the pending events are consumed."""
        with contextlib.suppress(InterruptedError):
            select.select([self.fd], [], [], max(0.0, timeout))
        self.drain()

    def drain(self) -> None:
        """Forget the events seen so far (the caller is about to look at the folder itself)."""
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self.fd, 65536):
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


__all__ = ["FolderWatch"]
