"""Run commands: trials, lineage and tag (any point), and the parent/score columns of ``log``.

A journal is the record of an optimization run: every commit is a trial with a parent,
a score, metrics and params (docs/journal.md, "Runs"). These commands read that table
from the journal's run index, never by replaying programs, so they answer at once on
a run of 100,000 commits and work while the optimizer is still writing.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import operator
import re
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import click
from rich import box
from rich.markup import escape
from rich.table import Table

from desiru.cli import complete, keys, render, sources
from desiru.cli.app import cli, env_of
from desiru.errors import DesiruError

#: the comparisons --where understands, longest first so ">=" is not read as ">"
_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt,
}
_WHERE = re.compile(r"^\s*([^\s<>=!]+)\s*(>=|<=|==|!=|>|<)\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$")
WHERE_HINT = "write NAME OP NUMBER, e.g. 'score>0.8' or 'cost_usd<=0.02' (OP: > >= < <= == !=)"


# -- parsing -------------------------------------------------------------------------------------------
def parse_where(text: str) -> tuple[str, str, float]:
    """``"em>=0.8"`` -> ("em", ">=", 0.8); a DesiruError naming the expression otherwise."""
    match = _WHERE.match(text)
    if match is None:
        raise DesiruError(f"cannot read the filter {text!r}", hint=WHERE_HINT)
    name, op, number = match.groups()
    value = float(number)
    if not math.isfinite(value):
        raise DesiruError(f"the filter {text!r} compares with a number that is not finite", hint=WHERE_HINT)
    return name, op, value


def value_of(trial: Any, name: str) -> float | None:
    """The score (``name == "score"``) or a metric of a trial; None when not recorded."""
    return trial.score if name == "score" else trial.metrics.get(name)


def _split_names(values: Sequence[str]) -> list[str]:
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def select(trials: list[Any], *, where: Sequence[str] = (), sort: str = "score", metric: str | None = None,
           mode: str = "max", top: int | None = None) -> list[Any]:
    """The trials that pass every ``where`` filter, ranked and cut to ``top``.

    Ranked by ``metric`` (or the score), best first per ``mode``, ties to the older; trials
    without that value come last, oldest first. ``sort="seq"`` keeps them oldest first.
    """
    known = {"score"} | {m for t in trials for m in t.metrics}
    filters = [parse_where(w) for w in where]
    for name in [f[0] for f in filters] + ([metric] if metric else []):
        if trials and name not in known:
            raise DesiruError(f"no trial of this run has a metric {name!r}",
                              hint=f"known: {', '.join(sorted(known))}")
    out = []
    for t in trials:
        values = [value_of(t, name) for name, _op, _v in filters]
        if all(v is not None and _OPS[op](v, ref) for v, (_n, op, ref) in zip(values, filters)):
            out.append(t)
    if sort == "score":
        key = metric or "score"
        sign = -1.0 if mode == "max" else 1.0
        scored = [t for t in out if value_of(t, key) is not None]
        rest = [t for t in out if value_of(t, key) is None]
        scored.sort(key=lambda t: (sign * value_of(t, key), t.seq))  # type: ignore[operator]
        out = scored + rest
    return out[:top] if top is not None else out


# -- rendering -------------------------------------------------------------------------------------
def number(value: float | None) -> str:
    """A score or metric for a table cell: 4 significant digits, "-" when absent."""
    return "-" if value is None else f"{value:.4g}"


def age(timestamp: float, now: float | None = None) -> str:
    """How long ago, in the largest unit that fits: ``42s``, ``7m``, ``3h``, ``12d``."""
    seconds = max(0.0, (time.time() if now is None else now) - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def metric_names(trials: Sequence[Any], chosen: Sequence[str] = ()) -> list[str]:
    """The metric columns: those chosen, else every metric recorded, in the order first met."""
    if chosen:
        return list(chosen)
    names: dict[str, None] = {}
    for t in trials:
        names.update(dict.fromkeys(t.metrics))
    return list(names)


def trials_table(trials: Sequence[Any], metrics: Sequence[str], *, title: str | None = None,
                 now: float | None = None) -> Table:
    """A rich table of trials: seq, parent, score, the metrics, params, tags, age."""
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("seq", justify="right")
    table.add_column("parent", justify="right")
    table.add_column("score", justify="right")
    for name in metrics:
        table.add_column(escape(name), justify="right")
    table.add_column("params")
    table.add_column("tags")
    table.add_column("age", justify="right")
    for t in trials:
        seq = str(t.seq) if t.replayable else f"{t.seq}*"
        table.add_row(seq, "-" if t.parent is None else str(t.parent), number(t.score),
                      *(number(t.metrics.get(m)) for m in metrics), escape(render.params_text(dict(t.params))),
                      escape(", ".join(t.tags)), age(t.timestamp, now))
    return table


def results_text(payload: Any) -> str:
    """What a ResultsRecorded event holds, for ``log``: ``score 0.91 em=0.9 | trial=3`` (its commit when late)."""
    parts = []
    if payload.get("commit") is not None:
        parts.append(f"for seq {payload['commit']}:")
    if payload.get("score") is not None:
        parts.append(f"score {number(payload['score'])}")
    parts.extend(f"{k}={number(v)}" for k, v in (payload.get("metrics") or {}).items())
    if payload.get("params"):
        parts.append(render.params_text(dict(payload["params"]), 80))
    return " ".join(parts)


def tag_target_text(payload: Any) -> str:
    """`` -> seq 9 (moved from 4)`` for a tag event that names a commit other than where it stands."""
    target, moved = payload.get("target"), payload.get("moved_from")
    text = f" -> seq {target}" if isinstance(target, int) else ""
    return text + (f" (moved from {moved})" if isinstance(moved, int) else "")


def trial_record(trial: Any) -> dict[str, Any]:
    """A trial as a JSON-ready dict (what --json prints)."""
    return {"seq": trial.seq, "parent": trial.parent, "score": trial.score, "metrics": dict(trial.metrics),
            "params": dict(trial.params), "tags": list(trial.tags), "timestamp": trial.timestamp,
            "content_hash": trial.content_hash, "writer": trial.writer, "first_seq": trial.first_seq,
            "replayable": trial.replayable}


def write_csv(trials: Sequence[Any], metrics: Sequence[str]) -> None:
    """Trials as CSV on stdout: one column per metric, params as JSON, tags joined by ';'."""
    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["seq", "parent", "score", *metrics, "params", "tags", "timestamp", "content_hash", "writer"])
    for t in trials:
        out.writerow([t.seq, "" if t.parent is None else t.parent, "" if t.score is None else repr(t.score),
                      *("" if t.metrics.get(m) is None else repr(t.metrics[m]) for m in metrics),
                      json.dumps(dict(t.params), ensure_ascii=False, sort_keys=True), ";".join(t.tags),
                      f"{t.timestamp:.6f}", t.content_hash or "", t.writer or ""])


def _run_arg(text: str) -> sources.Source:
    """A journal path, where a point (@tag:x) is refused: the command reads the whole run."""
    src = sources.parse_source(text)
    if src.has_point:
        raise DesiruError(f"{text!r} names a point; this command takes the whole run", hint=f"use {src.path}")
    return src


def _point_of(src: sources.Source) -> Any:
    """What Journal.tag / lineage take for a source's point: a seq, a tag name, or None (the head)."""
    return src.seq if src.seq is not None else src.tag


# -- trials ----------------------------------------------------------------------------------------
@cli.command("trials", short_help="A run's trials: score, metrics, params, tags.")
@click.argument("run", metavar="RUN")
@click.option("--sort", type=click.Choice(["score", "seq"]), default="score", show_default=True,
              help="Best first by score (or --metric), or oldest first by seq.")
@click.option("--metric", metavar="NAME", help="Rank by this metric instead of the score.")
@click.option("--min", "lowest", is_flag=True, help="Lower is better (e.g. a loss or a cost).")
@click.option("--top", type=click.IntRange(min=1), metavar="K", help="Show the first K only.")
@click.option("--where", "where", multiple=True, metavar="EXPR",
              help="Only trials with NAME OP NUMBER, e.g. 'score>0.8' or 'cost_usd<=0.02'. Repeatable (AND).")
@click.option("--metrics", "chosen", multiple=True, metavar="NAMES",
              help="Metric columns to show, comma-separated (default: every metric recorded).")
@click.option("--json", "as_json", is_flag=True, help="Print the trials as a JSON array.")
@click.option("--csv", "as_csv", is_flag=True, help="Print the trials as CSV (params as JSON).")
@click.option("--plot", is_flag=True, help="Draw the score (or --metric) over the trials, with the best so far, "
              "as wide as the terminal (needs the report extra).")
@keys.key_options
@click.pass_context
def trials_cmd(ctx: click.Context, run: str, sort: str, metric: str | None, lowest: bool, top: int | None,
               where: tuple[str, ...], chosen: tuple[str, ...], as_json: bool, as_csv: bool, plot: bool,
               key_env: str | None, ask_key: bool) -> None:
    """List the trials of a run (every commit of a journal), best first.

    Columns: seq (a * marks a commit compaction dropped the state of), parent, score,
    metrics, params, tags and age. Read from the journal's run index: no program is
    replayed, and it works while the optimizer is writing.

    \b
    Examples:
      desiru trials runs/qa.journal --top 10
      desiru trials runs/qa.journal --where 'score>=0.9' --where 'cost_usd<0.02' --sort seq
      desiru trials runs/qa.journal --metric cost_usd --min --top 5
      desiru trials runs/qa.journal --csv > trials.csv
      desiru trials runs/qa.journal --plot
    """
    env = env_of(ctx)
    src = _run_arg(run)
    if as_json + as_csv + plot > 1:
        raise DesiruError("give one of --json, --csv and --plot")
    for expr in where:
        parse_where(expr)  # a typo is reported before the journal is opened

    def read(k: str | None) -> list[Any]:
        with sources.open_journal(src.path, k) as j:
            return j.trials()

    every = keys.with_key(read, keys.input_key(key_env, ask_key))
    shown = select(every, where=where, sort=sort, metric=metric, mode="min" if lowest else "max", top=top)
    names = metric_names(every, _split_names(chosen))
    if metric and metric not in names:
        names.append(metric)
    if plot:  # every trial that passes --where, in commit order (docs/report.md)
        from desiru.cli.report_cmd import print_plot

        print_plot(env, select(every, where=where, sort="seq", metric=metric), metric=metric,
                   mode="min" if lowest else "max")
    elif as_json:
        click.echo(json.dumps([trial_record(t) for t in shown], indent=2, ensure_ascii=False))
    elif as_csv:
        write_csv(shown, metric_names(every, _split_names(chosen)))
    else:
        env.result(trials_table(shown, names))
        if not env.quiet:
            env.err.print(f"{len(shown):,} of {render.plural(len(every), 'trial')} shown", style="dim")


# -- lineage ---------------------------------------------------------------------------------------
@cli.command("lineage", short_help="The trials from the root to a point.")
@click.argument("point", metavar="RUN@POINT", shell_complete=complete.points)
@click.option("--json", "as_json", is_flag=True, help="Print the trials as a JSON array.")
@keys.key_options
@click.pass_context
def lineage_cmd(ctx: click.Context, point: str, as_json: bool, key_env: str | None, ask_key: bool) -> None:
    """Show where a candidate came from: every trial from the first commit to POINT.

    POINT is @tag:NAME, @seq:N or @head (a bare RUN means its head).

    \b
    Examples:
      desiru lineage runs/qa.journal@tag:best
      desiru lineage runs/qa.journal@seq:120 --json | jq '.[].score'
    """
    env = env_of(ctx)
    src = sources.parse_source(point)

    def read(k: str | None) -> list[Any]:
        with sources.open_journal(src.path, k) as j:
            target = _point_of(src)
            return j.lineage(j.head if target is None else target)

    line = keys.with_key(read, keys.input_key(key_env, ask_key))
    if as_json:
        click.echo(json.dumps([trial_record(t) for t in line], indent=2, ensure_ascii=False))
        return
    env.result(trials_table(line, metric_names(line)))
    if not env.quiet:
        env.err.print(f"{render.plural(len(line), 'trial')} from the root to seq {line[-1].seq}"
                      if line else "no trial", style="dim")


# -- tag -------------------------------------------------------------------------------------------
@cli.command("tag", short_help="Tag any commit of a journal (default: its head).")
@click.argument("point", metavar="RUN[@POINT]", shell_complete=complete.points)
@click.argument("name")
@click.option("--move", is_flag=True, help="Move the tag if it already names another commit.")
@keys.key_options
@click.pass_context
def tag_cmd(ctx: click.Context, point: str, name: str, move: bool, key_env: str | None, ask_key: bool) -> None:
    """Tag a commit as NAME, to replay, diff or compare it later (default: the newest commit).

    POINT is @seq:N, @tag:OTHER or @head. A tag names one commit; moving it to another
    needs --move, and every tagging and move is kept in the journal's history.

    \b
    Examples:
      desiru tag runs/qa.journal deployed-2026-11
      desiru tag runs/qa.journal@seq:120 candidate
      desiru tag runs/qa.journal@tag:best deployed --move
      desiru diff runs/qa.journal@tag:deployed-2026-11 runs/qa.journal
    """
    env = env_of(ctx)
    src = sources.parse_source(point)
    if not name.strip():
        raise DesiruError("a tag name cannot be empty")

    def tag(k: str | None) -> tuple[int, int | None]:
        with sources.open_journal(src.path, k, write=True) as j:
            if j.head == 0:
                raise DesiruError("the journal is empty: there is nothing to tag", path=src.path)
            before = j.tags().get(name)
            try:
                seq = j.tag(name, _point_of(src), move=move)
            except DesiruError as exc:
                if exc.hint and "move=True" in exc.hint:
                    exc.hint = "pass --move to move it, or pick another name"
                raise
            return seq, before

    seq, before = keys.with_key(tag, keys.input_key(key_env, ask_key))
    if before == seq:
        env.say(f"[bold]{escape(name)}[/] already names seq {seq}")
    else:
        note = f" (moved from seq {before})" if before is not None else ""
        env.say(f"tagged [bold]{escape(name)}[/] at seq {seq}{note}")


# -- the parent and score columns of `desiru log` ---------------------------------------------------
class CommitColumns:
    """The parent and score of each commit, for ``log``'s table: on the first row shown of the commit
    (its Committed event, or whatever the filters leave of it), blank on its other rows."""

    def __init__(self, journal: Any) -> None:
        self._journal = journal
        self._upto = -1
        self._lasts: list[int] = []
        self._trials: list[Any] = []
        self._shown: int | None = None

    def cells(self, seq: int) -> tuple[str, str]:
        """(parent, score) for the event at ``seq``."""
        if seq > self._upto:  # the first look, or (--follow) events committed since the last one
            self._upto = self._journal.head
            self._trials = self._journal.trials()
            self._lasts = [t.seq for t in self._trials]
        i = bisect.bisect_left(self._lasts, seq)
        if i == len(self._lasts) or self._trials[i].first_seq > seq or self._shown == self._lasts[i]:
            return "", ""  # a tag or a late result (no commit of its own), or a row after the commit's first
        t = self._trials[i]
        self._shown = t.seq
        return ("-" if t.parent is None else str(t.parent)), number(t.score)


__all__ = ["CommitColumns", "age", "parse_where", "select", "trial_record", "trials_table"]
