"""Follow a growing journal: yield each new event once, in order, as commits complete."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

from desiru.journal.events import Event


class Followed(Protocol):
    """What following needs of a journal: its head, its events, and its store's wait for appends
    (a Protocol, so this module does not import the Journal that calls it)."""

    @property
    def head(self) -> int: ...
    @property
    def store(self) -> Any: ...
    def events(self, start: int = ..., stop: int | None = ...) -> Iterator[Event]: ...


def follow(journal: Followed, start: int | None = None, timeout: float | None = None,
           poll: float = 0.02) -> Iterator[Event]:
    """Events from ``start`` (default: after the current head) as they are committed.

    Waits in the store's ``wait_for_append`` (a file store polls every ``poll`` seconds,
    PostgreSQL wakes on NOTIFY); only whole commits are yielded (a reader
    never sees half of one). Ends when no new event came for ``timeout`` seconds
    (None: follows until the caller stops iterating).
    """
    # the start is fixed now, not at the first next(): events committed in between are not missed
    return _follow(journal, journal.head + 1 if start is None else max(start, 1), timeout, poll)


def _follow(journal: Followed, next_seq: int, timeout: float | None, poll: float) -> Iterator[Event]:
    deadline = None if timeout is None else time.monotonic() + timeout
    woken = False
    while True:
        head = journal.head  # a reader refreshes its view here
        if head >= next_seq:
            for event in journal.events(next_seq, head + 1):
                next_seq = event.seq + 1
                yield event
            if timeout is not None:
                deadline = time.monotonic() + timeout
            woken = False
            continue
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            return
        left = 1.0 if deadline is None else deadline - now
        if woken:  # records are there but no whole commit yet (a writer midway): look again shortly
            time.sleep(min(poll, left))
        # the store wakes us when something is appended (PostgreSQL: LISTEN/NOTIFY; files: polling)
        woken = journal.store.wait_for_append(next_seq - 1, left, poll)


__all__ = ["follow"]
