"""Pure-Python twin of ``desiru._native.StreamWriter``: a document's state written at its place in a
file on a second thread while the next module is encoded, hashed there (the same bytes and digests)."""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

import xxhash

from desiru._pure.codec import packb
from desiru.atomic import WRITEBACK_STEP, start_writeback, write_all

#: pieces queued for the writer at most; the encoder waits beyond that
IN_FLIGHT = 4


def size_at_least(obj: Any, need: int) -> bool:
    """Whether ``packb(obj)`` is surely at least ``need`` bytes long.

    A lower bound (every value takes a byte, a str one more per code point, bytes one per byte,
    a dict key likewise) is summed only until it reaches ``need``, so a large value is decided
    from its first few items; containers are walked through iterators (memory bounded by ``need``).
    """
    total = _visit(obj)
    stack: list[Any] = [_children(obj)] if isinstance(obj, (dict, list, tuple)) else []
    while total < need:
        if not stack:
            return False
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
            continue
        if isinstance(item, _Entry):
            total += 1 + (len(item.key) if isinstance(item.key, str) else 0)
            item = item.value
        total += _visit(item)
        if isinstance(item, (dict, list, tuple)):
            stack.append(_children(item))
    return True


_END = object()


class _Entry:
    """A dict item met by ``size_at_least``: its key counts as well as its value."""

    __slots__ = ("key", "value")

    def __init__(self, key: Any, value: Any) -> None:
        self.key, self.value = key, value


def _children(obj: Any) -> Any:
    return (_Entry(k, v) for k, v in obj.items()) if isinstance(obj, dict) else iter(obj)


def _visit(obj: Any) -> int:
    return 1 + len(obj) if isinstance(obj, (str, bytes)) else 1


class StreamWriter:
    """Writes pieces to a duplicate of ``fd`` from ``offset`` on; ``finish()`` waits and returns
    ``(bytes, whole, rest, [module, ...])``, the hashes as 16-byte XXH3-128 (big-endian).

    Roles: 0 outside the modules' span (the whole and the ``rest`` hash), 1 inside it but not a
    module (the whole hash), 2 a module (the whole hash and its own).
    """

    def __init__(self, fd: int, offset: int) -> None:
        if fd < 0:
            raise ValueError("fd must be an open file descriptor")
        self._fd = os.dup(fd)  # its own descriptor: a late write never lands in a reused one
        self._base, self._pos, self._synced = offset, 0, 0
        self._whole, self._rest = xxhash.xxh3_128(), xxhash.xxh3_128()
        self._modules: list[bytes] = []
        self._error: OSError | None = None
        self._queue: queue.Queue[tuple[bytes, int] | None] = queue.Queue(IN_FLIGHT)
        self._thread: threading.Thread | None = threading.Thread(target=self._run, name="desiru-write", daemon=True)
        self._thread.start()

    def put(self, data: bytes, role: int) -> None:
        """Write ``data`` next."""
        if role not in (0, 1, 2):
            raise ValueError("role must be 0, 1 or 2")
        self._send(bytes(data), role)

    def put_module(self, obj: Any) -> int:
        """Encode ``obj`` canonically and write it next as a module; returns its length."""
        data = packb(obj, canonical=True)
        self._send(data, 2)
        return len(data)

    def finish(self) -> tuple[int, bytes, bytes, list[bytes]]:
        """Wait until every piece is written; the first write error as an OSError."""
        self._stop()
        if self._error is not None:
            raise self._error
        return self._pos, self._whole.digest(), self._rest.digest(), self._modules

    def close(self) -> None:
        """Stop after what is queued and wait, discarding any error."""
        if self._thread is not None:
            self._stop()

    def _send(self, data: bytes, role: int) -> None:
        if self._thread is None:
            raise ValueError("the StreamWriter is finished or closed")
        if self._error is not None:
            self._stop()
            raise self._error
        self._queue.put((data, role))

    def _stop(self) -> None:
        if self._thread is None:
            raise ValueError("the StreamWriter is finished or closed")
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                if self._error is None:
                    try:
                        self._write(*item)
                    except BaseException as exc:  # e.g. MemoryError: kept for the caller; the queue keeps
                        self._error = exc  # draining, so a put() never waits on a thread that is gone
        finally:
            os.close(self._fd)

    def _write(self, data: bytes, role: int) -> None:
        self._whole.update(data)
        if role == 0:
            self._rest.update(data)
        elif role == 2:
            self._modules.append(xxhash.xxh3_128_digest(data))
        try:
            self._pos += write_all(self._fd, data, self._base + self._pos)
        except OSError as exc:
            self._error = exc
            return
        if self._pos - self._synced >= WRITEBACK_STEP:
            start_writeback(self._fd, self._base + self._synced, self._pos - self._synced)
            self._synced = self._pos
