"""When appended records reach the disk: fsync "always", "batch" (group commit) or "never".

"batch" bounds what a crash of the machine may lose: at most BATCH_MAX_RECORDS
records, and nothing older than BATCH_MAX_DELAY seconds (a background thread
fsyncs a pending batch when it is that old). A crash of the process alone loses
nothing that returned in any mode: every append is handed to the OS (write)
before it returns. A failed fsync or write poisons the writer: the OS may have
dropped the dirty pages (or kept part of a write), so the log is no longer known
to hold what we wrote.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from desiru.errors import DesiruError

#: a batch is fsynced once it holds this many records ...
BATCH_MAX_RECORDS = 1000
#: ... or once its oldest record is this old (seconds)
BATCH_MAX_DELAY = 0.05

#: bumped in every child a fork makes, so a writer sees it was inherited without a getpid()
#: system call on every append (os.register_at_fork; a process made by spawn starts at 0 anew)
_forks = [0]
os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))


class SyncPolicy:
    """Calls ``sync`` after appends according to the mode; remembers a failure (poison)."""

    def __init__(self, mode: str, sync: Callable[[], None], lock: threading.RLock, name: str) -> None:
        self.mode = mode
        self._sync = sync
        self._lock = lock  # the journal's write lock: a sync never runs during an append
        self.name = name
        self.poisoned: BaseException | None = None
        #: what failed and poisoned the writer ("an fsync", "a write"), for the message
        self.poisoned_by = "an fsync"
        self._pending = 0
        self._oldest = 0.0
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        #: the process that opened the writer: a forked child inherits the object, never the right to write
        self.pid = os.getpid()
        self._forks = _forks[0]

    def poison(self, exc: BaseException, what: str) -> None:
        """Refuse further appends: ``what`` ("an fsync", "a write") failed with ``exc``."""
        self.poisoned, self.poisoned_by = exc, what

    def forked(self) -> bool:
        """Whether this is a process forked from the one that opened the writer."""
        return _forks[0] != self._forks

    def check(self) -> None:
        """Raise if this process did not open the writer (a fork), or a failed fsync or write poisoned it.

        Every write path of a journal passes here first (the write guard).
        """
        if self.forked():
            raise DesiruError(
                f"this journal writer was opened by another process (pid {self.pid}) and cannot write from "
                f"this one (pid {os.getpid()}, a fork): the two would overwrite each other's commits",
                path=self.name,
                hint="open the journal in the child (after the fork), or use the multiprocessing 'spawn' "
                "start method; the parent's writer is unharmed",
            )
        if self.poisoned is not None:
            raise DesiruError(
                f"the journal writer is poisoned: {self.poisoned_by} failed ({self.poisoned})",
                path=self.name,
                hint="close and reopen the journal: it recovers the log to what is really on disk",
            )

    def appended(self, n: int) -> None:
        """Called (under the write lock) after ``n`` records were handed to the OS."""
        if self.mode == "never" or n == 0:
            return
        if self.mode == "always":
            self.sync_now()
            return
        if self._pending == 0:
            self._oldest = time.monotonic()
        self._pending += n
        if self._pending >= BATCH_MAX_RECORDS:
            self.sync_now()
        elif self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"desiru-journal-sync {self.name}", daemon=True)
            self._thread.start()
        else:
            self._wake.set()

    def sync_now(self) -> None:
        """fsync what is pending; on failure poison the writer and raise."""
        with self._lock:
            if self.poisoned is not None:
                self.check()
            try:
                self._sync()
            except BaseException as exc:
                self.poison(exc, "an fsync")
                raise DesiruError(f"fsync of the journal failed: {exc}", path=self.name,
                                  hint="the writer is now poisoned; close and reopen the journal") from exc
            self._pending = 0

    def _run(self) -> None:
        while not self._closed:
            if self._pending == 0:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            wait = self._oldest + BATCH_MAX_DELAY - time.monotonic()
            if wait > 0:
                time.sleep(wait)
                continue
            try:
                self.sync_now()
            except DesiruError:
                return  # poisoned: the next append reports it

    def close(self) -> None:
        """Sync what is pending (unless poisoned or forked) and stop the background thread."""
        try:
            if self.poisoned is None and not self.forked() and self._pending and self.mode != "never":
                self.sync_now()
        finally:
            self._closed = True
            self._wake.set()
            if self._thread is not None:
                self._thread.join(timeout=5)


__all__ = ["BATCH_MAX_DELAY", "BATCH_MAX_RECORDS", "SyncPolicy"]
