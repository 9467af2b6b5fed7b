"""Score over trials in the terminal (``desiru report RUN --plot``), drawn by plotext.

The points are thinned as in the HTML report (:func:`desiru.report.data.sample`): a
terminal has a few hundred columns of dots, and the best, every step of the best-so-far
line and the best's ancestry are kept whatever the size of the run.
"""

from __future__ import annotations

from collections.abc import Sequence

from desiru.journal.runs import Trial
from desiru.report.data import best_so_far, sample
from desiru.report.extra import require

#: fewest columns and rows a plot is drawn in
MIN_WIDTH, MIN_HEIGHT = 40, 10


def plot_trials(trials: Sequence[Trial], width: int, height: int = 20, *, metric: str | None = None,
                mode: str = "max", color: bool = False) -> str:
    """Score (or ``metric``) over trials as text ``width`` columns wide: every trial a dot, the best so far
    a step line. Trials without that value are left out; ``color=False`` strips the ANSI codes."""
    plt = require("plotext")
    name = metric or "score"
    values = [t.value(metric) for t in trials]
    steps = best_so_far(values, mode)
    keep = set(steps)
    shown = sample(values, keep, limit=max(MIN_WIDTH, width) * 4)
    plt.clear_figure()
    plt.limitsize(False, False)  # the caller knows the width (plotext would cap it at what it detects)
    plt.plotsize(max(MIN_WIDTH, width), max(MIN_HEIGHT, height))
    plt.theme("clear")
    plt.title(f"{name} over {len(trials):,} trials" + ("" if len(shown) == sum(v is not None for v in values)
                                                       else f" ({len(shown):,} drawn)"))
    plt.xlabel("trial")
    if not shown:
        plt.text(f"no trial has a {name}", x=0.5, y=0.5)
        plt.xlim(0, 1)
        plt.ylim(0, 1)
    else:
        plt.scatter([i + 1 for i in shown], [values[i] for i in shown], marker="dot", label="trial")
        xs: list[float] = []
        ys: list[float] = []
        for n, i in enumerate(steps):  # the step line: flat until the next improvement
            end = steps[n + 1] if n + 1 < len(steps) else len(trials) - 1
            xs += [i + 1, end + 1]
            ys += [values[i], values[i]]  # type: ignore[list-item]
        plt.plot(xs, ys, label=f"best so far ({mode})", marker="braille")
    text = plt.build()
    plt.clear_figure()
    return str(text) if color else str(plt.uncolorize(text))


__all__ = ["plot_trials"]
