"""The plotly figures of a run report (charts.py, not figures.py: `desiru.report.figures` is the function).

Each point carries its seq in ``customdata`` (the page links a clicked point to it) and a
hover text with score, metrics and params. Runs larger than ``data.MAX_POINTS`` are thinned
by :func:`desiru.report.data.sample`; the best, the best-so-far steps and the best's
ancestry are always drawn, so those stay exact at any size.
"""

from __future__ import annotations

import html
from typing import Any

from desiru.journal.runs import Trial
from desiru.report.data import MAX_POINTS, RunData, best_so_far, sample, short
from desiru.report.extra import require

#: colours: trials, the best so far, the best and its ancestry
TRIAL, STEP, BEST = "#5b7fbf", "#2a9d4b", "#e4572e"
#: an ancestry up to this long is drawn commit by commit (rings); a longer one as a line
RINGED = 500


def hover(t: Trial, number: int) -> str:
    """Hover text of one trial (HTML-escaped: params are the user's text)."""
    lines = [f"<b>seq {t.seq}</b> · trial {number}" + (f" · parent {t.parent}" if t.parent is not None else "")]
    lines.append("score " + ("-" if t.score is None else f"{t.score:.6g}"))
    lines += [f"{html.escape(k)} {v:.6g}" for k, v in list(t.metrics.items())[:8]]
    if t.params:
        lines.append("params: " + html.escape(short(dict(t.params), 120)))
    if t.tags:
        lines.append("tags: " + html.escape(", ".join(t.tags)))
    return "<br>".join(lines)


def _choices(data: RunData) -> list[str | None]:
    """What the metric menu offers: the score (None) and each metric, the one the report ranks by first."""
    choices: list[str | None] = [None, *data.metrics]
    if data.metric is not None:
        choices.remove(data.metric)
        choices.insert(0, data.metric)
    return choices


def _layout(title: str, xtitle: str, ytitle: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The layout both figures share (the plotly_white template spelled out, as plotly.js needs it)."""
    pio = require("plotly.io")
    return {"title": {"text": title, "font": {"size": 15}}, "xaxis": {"title": {"text": xtitle}},
            "yaxis": {"title": {"text": ytitle}}, "hovermode": "closest",
            "template": pio.templates["plotly_white"].to_plotly_json(), "legend": {"orientation": "h", "y": -0.18},
            "margin": {"t": 60, "l": 60, "r": 20, "b": 40}, "height": 460, "meta": meta}


def score_spec(data: RunData) -> dict[str, Any]:
    """Score over trials: every trial a point, the best-so-far step line, the best's ancestry and the best;
    with several metrics a menu switches what is plotted. A plotly figure as a plain dict.

    The trials drawn are the same for every metric (the union of each one's sample), so the menu
    changes only numbers: the hover texts, the page's bulk, are written once.
    """
    trials = data.trials
    choices = _choices(data)
    values = {m: data.values(m) for m in choices}
    steps = {m: best_so_far(values[m], data.mode) for m in choices}
    index = {t.seq: i for i, t in enumerate(trials)}
    line = [index[s] for s in data.best_line if s in index]
    limit = max(200, MAX_POINTS // len(choices))
    shown = sorted(set().union(*(sample(values[m], steps[m], limit) for m in choices)))
    seqs = [t.seq for t in trials]

    def numbers(m: str | None) -> dict[str, list[Any]]:
        """x, y and customdata of the four traces (trials, best so far, ancestry, best) for metric ``m``."""
        v, st = values[m], steps[m]
        ends = st + st[-1:]  # the line runs on flat from the last improvement to the last trial
        best = st[-1:]
        return {"x": [[i + 1 for i in shown], [i + 1 for i in st] + ([len(v)] if st else []),
                      [i + 1 for i in line], [i + 1 for i in best]],
                "y": [[v[i] for i in shown], [v[i] for i in ends], [v[i] for i in line], [v[i] for i in best]],
                "customdata": [[seqs[i] for i in shown], [seqs[i] for i in ends], [seqs[i] for i in line],
                               [seqs[i] for i in best]]}

    first = numbers(choices[0])
    label = choices[0] or "score"

    def cols(k: int) -> dict[str, Any]:
        return {key: first[key][k] for key in ("x", "y", "customdata")}

    ringed = len(line) <= RINGED  # a deep ancestry (thousands of commits) is one line, not thousands of rings
    traces = [
        {"type": "scatter", "name": "trial", "mode": "markers", "uid": "trials", "hoverinfo": "text",
         "hovertext": [hover(trials[i], i + 1) for i in shown],
         "marker": {"color": TRIAL, "size": 6, "opacity": 0.7}, **cols(0)},
        {"type": "scatter", "name": f"best so far ({data.mode})", "mode": "lines", "uid": "best-so-far",
         "line": {"color": STEP, "width": 2, "shape": "hv"},
         "hovertemplate": "best so far %{y:.6g}<br>since seq %{customdata}<extra></extra>", **cols(1)},
        {"type": "scatter", "name": "best's ancestry", "mode": "markers" if ringed else "lines", "uid": "ancestry",
         "hovertemplate": "best's ancestry: seq %{customdata}, %{y:.6g}<extra></extra>",
         "marker": {"color": "rgba(0,0,0,0)", "size": 11, "line": {"color": BEST, "width": 2}},
         "line": {"color": BEST, "width": 1}, **cols(2),
         # deep, it would cover the trials: listed in the legend, drawn on a click there
         **({} if ringed else {"visible": "legendonly"})},
        {"type": "scatter", "name": "best", "mode": "markers", "uid": "best",
         "hovertemplate": "best: seq %{customdata}, %{y:.6g}<extra></extra>",
         "marker": {"color": BEST, "size": 15, "symbol": "star"}, **cols(3)},
    ]
    present = sum(any(values[m][i] is not None for m in choices) for i in range(len(trials)))
    note = "" if len(shown) == present else f" ({len(shown):,} drawn)"
    layout = _layout(f"{label} over {len(trials):,} trials{note}", "trial (in commit order)", label,
                     {"trials": len(trials), "drawn": len(shown)})
    if len(choices) > 1:
        buttons = [{"label": m or "score", "method": "update",
                    "args": [numbers(m), {"yaxis.title.text": m or "score",
                                          "title.text": f"{m or 'score'} over {len(trials):,} trials{note}"}]}
                   for m in choices]
        # above the plot's right corner, below plotly's tool bar
        layout["margin"]["t"] = 90
        layout["updatemenus"] = [{"buttons": buttons, "x": 1.0, "xanchor": "right", "y": 1.03, "yanchor": "bottom",
                                  "showactive": True}]
        layout["annotations"] = [{"text": "plot:", "x": 0.89, "xanchor": "right", "y": 1.05, "yanchor": "bottom",
                                  "xref": "paper", "yref": "paper", "showarrow": False}]
    return {"data": traces, "layout": layout}


def lineage_spec(data: RunData) -> dict[str, Any]:
    """The candidates as a tree: x the trial, y its generation (steps from its root), an edge to its parent;
    colour is the score; the best's ancestry is the thick line. A plotly figure as a plain dict."""
    trials = data.trials
    index = {t.seq: i for i, t in enumerate(trials)}
    values = [t.value(data.metric) for t in trials]
    line = [index[s] for s in data.best_line if s in index]
    keep = set(best_so_far(values, data.mode))
    shown = sample(values, keep) if any(v is not None for v in values) else list(range(len(trials)))
    shown = sorted(set(shown) | keep) if len(trials) > MAX_POINTS else list(range(len(trials)))
    depth = data.depth
    ex: list[float | None] = []
    ey: list[float | None] = []
    for i in shown:
        t = trials[i]
        if t.parent is not None and t.parent in index:
            ex += [index[t.parent] + 1, i + 1, None]
            ey += [depth[t.parent], depth[t.seq], None]
    texts = [hover(trials[i], i + 1) for i in shown]
    label = data.metric or "score"
    scored = [n for n, i in enumerate(shown) if values[i] is not None]
    unscored = [n for n, i in enumerate(shown) if values[i] is None]

    def nodes(ns: list[int]) -> dict[str, Any]:
        return {"x": [shown[n] + 1 for n in ns], "y": [depth[trials[shown[n]].seq] for n in ns],
                "customdata": [trials[shown[n]].seq for n in ns], "hovertext": [texts[n] for n in ns],
                "hoverinfo": "text"}

    traces = [
        {"type": "scatter", "name": "derived from", "mode": "lines", "x": ex, "y": ey, "hoverinfo": "skip",
         "uid": "edges", "line": {"color": "rgba(120,120,120,0.35)", "width": 1}},
        {"type": "scatter", "name": "candidate", "mode": "markers", "uid": "candidates", **nodes(scored),
         "marker": {"size": 8, "color": [values[shown[n]] for n in scored], "colorscale": "Viridis",
                    "showscale": True, "colorbar": {"title": {"text": label}, "thickness": 12}, "line": {"width": 0}}},
    ]
    if unscored:
        traces.append({"type": "scatter", "name": f"no {label}", "mode": "markers", "uid": "unscored",
                       **nodes(unscored), "marker": {"size": 7, "color": "#b0b5bd"}})
    traces.append({
        "type": "scatter", "name": "best's ancestry", "mode": "lines+markers" if len(line) <= RINGED else "lines",
        "uid": "best-line", "x": [i + 1 for i in line], "y": [depth[trials[i].seq] for i in line],
        "customdata": [trials[i].seq for i in line],
        "hovertemplate": "best's ancestry: seq %{customdata}, generation %{y}<extra></extra>",
        "line": {"color": BEST, "width": 3}, "marker": {"color": BEST, "size": 8}})
    traces.append({
        "type": "scatter", "name": "best", "mode": "markers", "uid": "best-node", "x": [i + 1 for i in line[-1:]],
        "y": [depth[trials[i].seq] for i in line[-1:]], "customdata": [trials[i].seq for i in line[-1:]],
        "hovertext": [hover(trials[i], i + 1) for i in line[-1:]], "hoverinfo": "text",
        "marker": {"color": BEST, "size": 16, "symbol": "star"}})
    note = "" if len(shown) == len(trials) else f" ({len(shown):,} drawn, the best's ancestry whole)"
    layout = _layout(f"lineage of {len(trials):,} candidates{note}", "trial (in commit order)",
                     "generation (commits from the root)", {"trials": len(trials), "drawn": len(shown)})
    layout["showlegend"] = True
    return {"data": traces, "layout": layout}


def specs(data: RunData) -> dict[str, dict[str, Any]]:
    """The report's figures as plain dicts (what the page embeds; no validation pass over big arrays)."""
    return {"score": score_spec(data), "lineage": lineage_spec(data)}


def score_figure(data: RunData) -> Any:
    """:func:`score_spec` as a plotly Figure."""
    return require("plotly.graph_objects").Figure(score_spec(data))


def lineage_figure(data: RunData) -> Any:
    """:func:`lineage_spec` as a plotly Figure."""
    return require("plotly.graph_objects").Figure(lineage_spec(data))


def build(data: RunData) -> dict[str, Any]:
    """The report's figures by name, as plotly Figures: ``"score"`` and ``"lineage"``."""
    go = require("plotly.graph_objects")
    return {name: go.Figure(spec) for name, spec in specs(data).items()}


__all__ = ["build", "hover", "lineage_figure", "lineage_spec", "score_figure", "score_spec", "specs"]
