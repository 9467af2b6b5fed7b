"""The one-writer lock: an OS advisory lock (flock) on a file inside the journal.

flock locks belong to an open file description, so a second writer is refused
whether it lives in another process or in this one, and the OS drops the lock
when its holder dies (even by SIGKILL): no stale lock files to clean up.
"""

from __future__ import annotations

import contextlib
import os
import socket

from desiru.errors import DesiruError, JournalLockedError

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def open_lock_file(path: str, journal: str, mode: int = 0o644) -> int:
    """The lock file's descriptor, created if missing; never through a link (DesiruError for any failure)."""
    from desiru.journal.safe_fs import open_file

    try:
        return open_file(path, os.O_RDWR | os.O_CREAT, mode, journal=journal)
    except OSError as exc:
        raise DesiruError(f"cannot open the journal's lock file: {exc.strerror or exc}", path=journal,
                          hint="a writer needs write access to the journal folder; check its owner and "
                          "permissions, or open it with readonly=True to read") from None


class WriterLock:
    """An exclusive, non-blocking lock on ``path``; ``acquire`` raises JournalLockedError at once."""

    def __init__(self, path: str, journal: str) -> None:
        self.path = path
        self.journal = journal
        self._fd: int | None = None
        self._pid = 0  # the process that took the lock
        self.mode = 0o644  # of a new lock file (the journal's file mode)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise JournalLockedError naming the holder when known."""
        if self._fd is not None:
            return
        if fcntl is None:  # pragma: no cover
            raise DesiruError("journal writers need POSIX file locks (fcntl)", path=self.journal,
                              hint="open the journal with readonly=True on this platform")
        fd = open_lock_file(self.path, self.journal, self.mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = ""
            with contextlib.suppress(OSError):
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
            os.close(fd)
            raise JournalLockedError(
                "another writer holds this journal" + (f" ({holder})" if holder else ""),
                path=self.journal,
                hint="close the other writer first, or open with readonly=True to read while it writes",
            ) from None
        # who holds it, for the message a refused writer sees (information only; the flock is the lock)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
        self._fd, self._pid = fd, os.getpid()

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases the flock).

        In a forked child the descriptor is closed only: the lock (shared with the parent's
        descriptor) and the holder's note stay the parent's.
        """
        fd, self._fd = self._fd, None
        if fd is not None:
            if os.getpid() == self._pid:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
            with contextlib.suppress(OSError):
                os.close(fd)


__all__ = ["WriterLock"]
