"""Progress callbacks: how long library work tells its caller how far it has got.

A callback is any callable ``progress(done, total)``: ``done`` units (records, events) of
``total`` so far. It is called now and then, not once per unit, and always at the end with
``done == total``. What it raises propagates, so raising KeyboardInterrupt (or anything)
stops the work; writes stay atomic. The ``desiru`` command draws these as progress bars::

    with ds.Journal.open("runs/qa.journal", readonly=True) as j:
        j.verify(progress=lambda done, total: print(f"{done}/{total}"))
"""

from __future__ import annotations

from collections.abc import Callable

#: ``progress(done, total)``
ProgressCallback = Callable[[int, int], None]


class Ticker:
    """Calls ``progress`` at most every ``step`` units (cheap to call per unit); a no-op without one."""

    __slots__ = ("_next", "_progress", "_step", "_total")

    def __init__(self, progress: ProgressCallback | None, total: int, step: int = 4096) -> None:
        self._progress = progress
        self._total = max(int(total), 0)
        self._step = step
        self._next = 0
        if progress is not None:
            progress(0, self._total)

    def __call__(self, done: int) -> None:
        """``done`` units so far; reports when a step has passed since the last report."""
        if self._progress is not None and done >= self._next:
            self._next = done + self._step
            self._progress(min(done, self._total), self._total)

    def end(self) -> None:
        """Report the work complete."""
        if self._progress is not None:
            self._progress(self._total, self._total)


__all__ = ["ProgressCallback", "Ticker"]
