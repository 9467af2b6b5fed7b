"""See a run: a self-contained HTML report with plotly figures, and a plotext chart for the terminal.

    from desiru.report import write_report, figures
    with desiru.Journal.open("runs/qa.journal", readonly=True) as j:
        write_report(j, "report.html")       # one file, opens with no network
        figs = figures(j)                    # {"score": Figure, "lineage": Figure} for a notebook

Needs the optional extra: ``pip install "desiru[report]"`` (plotly, plotext). docs/report.md
says what the page shows and how large runs are thinned.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from desiru.atomic import atomic_write
from desiru.journal import Journal
from desiru.report.data import TOP, RunData, gather
from desiru.report.extra import INSTALL, require


def _data(source: Journal | RunData, metric: str | None, mode: str, top: int) -> RunData:
    if isinstance(source, RunData):
        return source
    return gather(source, metric=metric, mode=mode, top=top)


def figures(journal: Journal | RunData, *, metric: str | None = None, mode: str = "max",
            top: int = TOP) -> dict[str, Any]:
    """The report's plotly figures by name (``"score"``, ``"lineage"``), e.g. to show in a notebook."""
    require("plotly")
    from desiru.report import charts

    return charts.build(_data(journal, metric, mode, top))


def render(journal: Journal | RunData, *, metric: str | None = None, mode: str = "max", top: int = TOP,
           title: str | None = None) -> str:
    """The report page as one HTML string."""
    require("plotly")
    from desiru.report import charts, html

    data = _data(journal, metric, mode, top)
    return html.page(data, charts.specs(data), title=title)


def write_report(journal: Journal | RunData, path: str | os.PathLike[str], *, metric: str | None = None,
                 mode: str = "max", top: int = TOP, title: str | None = None) -> Path:
    """Write the run's report to ``path`` (atomically) and return the path.

    Ranks by the score, or by ``metric``, higher is better unless ``mode="min"``. The report of an
    encrypted journal holds its content in clear text: it is written readable by its owner only.
    """
    data = _data(journal, metric, mode, top)
    text = render(data, title=title)
    atomic_write(path, text.encode("utf-8"))
    if data.facts.encryption:
        os.chmod(path, 0o600)
    return Path(path)


__all__ = ["INSTALL", "RunData", "figures", "gather", "render", "write_report"]
