"""Progress display for long work: a rich bar on a terminal, nothing otherwise.

Bars go to stderr so that piped stdout stays clean; they are off when stderr is
not a terminal or with ``--quiet``. Work of unknown length (one library call such
as a large save) shows a spinner with the elapsed time instead of a bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from desiru.progress import ProgressCallback

if TYPE_CHECKING:
    from desiru.cli.app import Env


class Ticker:
    """What a command advances while it works; a no-op when progress is hidden."""

    def __init__(self, progress: Progress | None = None, task: int | None = None) -> None:
        self._progress = progress
        self._task = task

    @property
    def shown(self) -> bool:
        """True when a bar is on screen."""
        return self._progress is not None

    def advance(self, n: float = 1) -> None:
        """Mark ``n`` more units done."""
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)  # type: ignore[arg-type]

    def update(self, *, description: str | None = None, total: float | None = None,
               completed: float | None = None) -> None:
        """Change the label, the total or the position."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description, total=total,  # type: ignore[arg-type]
                                  completed=completed)

    def log(self, text: str) -> None:
        """Print a line above the bar (so it does not tear the bar)."""
        if self._progress is not None:
            self._progress.console.print(text, highlight=False)


#: the bars on screen now, so that a prompt can take them down while the user types
_ACTIVE: list[Progress] = []


@contextmanager
def paused() -> Iterator[None]:
    """Take any bar off the screen for the duration (a key prompt must not fight a live display)."""
    active = list(_ACTIVE)
    for bar in active:
        bar.stop()
    try:
        yield
    finally:
        for bar in active:
            bar.start()


def enabled(env: Env) -> bool:
    """Bars only for a person watching a terminal."""
    return not env.quiet and env.err.is_terminal


@contextmanager
def callback(env: Env, description: str, unit: str = "items") -> Iterator[ProgressCallback]:
    """Progress driven by a library callback (desiru.progress): pass what this yields as
    ``progress=`` to verify, replay, compact, copy, rekey, migrate, convert. A spinner until the
    library first reports, then a bar with the count (sizes with ``unit="bytes"``) and an ETA."""
    if not enabled(env):
        yield lambda done, total: None
        return
    spinner = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=env.err,
                       transient=True)
    spinner.add_task(description, total=None)
    live: list[Progress] = [spinner]
    bar: list[tuple[Progress, TaskID]] = []
    spinner.start()
    _ACTIVE.append(spinner)

    def report(done: int, total: int) -> None:
        if not bar:  # the first report: the spinner gives way to a bar
            spinner.stop()
            _ACTIVE.remove(spinner)
            live.remove(spinner)
            progress = Progress(*_bar_columns(unit), console=env.err)
            bar.append((progress, progress.add_task(description, total=max(total, 1))))
            progress.start()
            _ACTIVE.append(progress)
            live.append(progress)
        progress, handle = bar[0]
        progress.update(handle, total=max(total, 1), completed=done)

    try:
        yield report
    finally:
        for display in live:
            display.stop()
            _ACTIVE.remove(display)


def _bar_columns(unit: str = "items") -> list[ProgressColumn]:
    count: ProgressColumn = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    return [TextColumn("{task.description}"), BarColumn(), count, TaskProgressColumn(),
            TimeElapsedColumn(), TimeRemainingColumn()]


@contextmanager
def task(env: Env, description: str, total: float | None = None) -> Iterator[Ticker]:
    """Show progress for one piece of work; ``total=None`` shows a spinner."""
    if not enabled(env):
        yield Ticker()
        return
    if total is None:
        columns = [SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
    else:
        columns = _bar_columns()
    with Progress(*columns, console=env.err, transient=total is None) as progress:
        handle = progress.add_task(description, total=total)
        _ACTIVE.append(progress)
        try:
            yield Ticker(progress, handle)
        finally:
            _ACTIVE.remove(progress)
