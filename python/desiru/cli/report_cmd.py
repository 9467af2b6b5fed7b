"""``desiru report RUN -o report.html``: a run as one self-contained HTML page; ``desiru report RUN --plot``:
score over trials in the terminal (``print_plot``, for any command that lists trials).

The page and the plot come from :mod:`desiru.report` (the optional ``report`` extra: plotly
and plotext); without it, both say which extra to install.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from desiru.cli import keys, render, sources
from desiru.cli.app import Env, cli, env_of
from desiru.errors import DesiruError


def _run_path(text: str) -> Path:
    """A journal path; a point (@tag:x) is refused, as the report covers the whole run."""
    src = sources.parse_source(text)
    if src.has_point:
        raise DesiruError(f"{text!r} names a point; a report covers the whole run", hint=f"use {src.path}")
    return src.path


def print_plot(env: Env, trials: Sequence[Any], *, metric: str | None = None, mode: str = "max") -> None:
    """Print score (or ``metric``) over trials as a chart as wide as the terminal."""
    from desiru.report.terminal import plot_trials

    width = env.out.width
    click.echo(plot_trials(trials, width, height=max(12, min(24, width // 5)), metric=metric, mode=mode,
                           color=env.out.is_terminal))


@cli.command("report", short_help="A run as one HTML page: plots, lineage, top trials, the best's diff.")
@click.argument("run", metavar="RUN")
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML file to write (replaced atomically); required unless --plot.")
@click.option("--plot", is_flag=True, help="Print the score (or --metric) over the trials in the terminal instead, "
              "with the best so far, as wide as the terminal.")
@click.option("--metric", metavar="NAME", help="Rank the trials by this metric instead of the score.")
@click.option("--min", "lowest", is_flag=True, help="Lower is better (e.g. a loss or a cost).")
@click.option("--top", type=click.IntRange(min=1), default=50, show_default=True, metavar="K",
              help="Rows of the top-trials table.")
@click.option("--title", metavar="TEXT", help="The page's title (default: the journal's path).")
@keys.key_options
@click.pass_context
def report_cmd(ctx: click.Context, run: str, out: Path | None, plot: bool, metric: str | None, lowest: bool,
               top: int, title: str | None, key_env: str | None, ask_key: bool) -> None:
    """Write a run's report: one HTML file that opens in any browser with no network.

    It shows the score over trials (every trial a point, the best-so-far line, a menu
    of metrics), the lineage tree of the candidates with the best's ancestry, a sortable
    table of the top trials, what the best changed against the first commit, and the
    run's facts. Needs the report extra: pip install "desiru[report]".

    The report of an encrypted journal holds its content decrypted: it says so, and is
    written readable by its owner only. --plot prints the score over trials in the
    terminal instead (plotext).

    \b
    Examples:
      desiru report runs/qa.journal -o report.html
      desiru report runs/qa.journal -o cost.html --metric cost_usd --min
      desiru report runs/secret.journal -o report.html --key-env DESIRU_KEY
      desiru report runs/qa.journal --plot
    """
    env = env_of(ctx)
    path = _run_path(run)
    from desiru.report import gather, write_report
    from desiru.report.data import metric_names
    from desiru.report.extra import require

    if plot:
        require("plotext")

        def read(k: str | None) -> list[Any]:
            with sources.about(path), sources.open_journal(path, k) as j:
                return j.trials()

        trials = keys.with_key(read, keys.input_key(key_env, ask_key))
        if metric is not None and metric not in metric_names(trials):
            raise DesiruError(f"no trial of this run has a metric {metric!r}", path=str(path),
                              hint=f"known metrics: {', '.join(metric_names(trials)) or '(none)'}")
        print_plot(env, trials, metric=metric, mode="min" if lowest else "max")
        return
    if out is None:
        raise click.UsageError("give -o FILE (the page to write), or --plot to print the chart in the terminal")
    require("plotly")  # before the journal is read: a missing extra is said at once

    def write(k: str | None) -> tuple[int, bool]:
        with sources.about(path), sources.open_journal(path, k) as j:
            data = gather(j, metric=metric, mode="min" if lowest else "max", top=top)
            write_report(data, out, title=title)
            return data.facts.trials, data.facts.encryption is not None

    n, encrypted = keys.with_key(write, keys.input_key(key_env, ask_key))
    env.result(f"wrote {out} ({render.plural(n, 'trial')}, {render.human_size(out.stat().st_size)})", markup=False)
    if encrypted:
        env.err.print(f"warning: {out} holds the run's content decrypted; keep it as you keep the key",
                      style="yellow", markup=False, soft_wrap=True)
