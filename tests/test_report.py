"""Run reports (docs/report.md): what is gathered from a journal, the plotly figures, the page,
the terminal plot, and the CLI. The page itself is opened in a real browser in test_report_browser.py."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from tracked_run import INSTRUCTIONS, write_run

import desiru.report
from desiru.cli import cli
from desiru.errors import DesiruError
from desiru.journal import Journal
from desiru.journal.runs import Trial
from desiru.report import data, figures, gather, render, write_report
from desiru.report.charts import score_figure
from desiru.report.terminal import plot_trials

KEY = "cd" * 32


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "run.journal"
    write_run(path, 40)
    return path


def _trial(i: int, score: float | None, parent: int | None = None, **metrics: float) -> Trial:
    return Trial(seq=i + 1, parent=parent, score=score, metrics=metrics, params={"i": i}, tags=(),
                 timestamp=1.7e9 + i, content_hash=None, writer="w", first_seq=i + 1)


def _synthetic(trials: list[Trial], mode: str = "max") -> data.RunData:
    """RunData for trials that were never written (large runs in unit tests), as gather() builds it."""
    scored = [t for t in trials if t.score is not None]
    ranked = sorted(scored, key=lambda t: ((-t.score if mode == "max" else t.score), t.seq))  # type: ignore[operator]
    best = ranked[0] if ranked else None
    by_seq = {t.seq: t for t in trials}
    line = []
    seq = best.seq if best else None
    while seq is not None:
        line.append(seq)
        seq = by_seq[seq].parent
    facts = data.Facts("mem", len(trials), len(scored), None, None, {"w": len(trials)}, 0, None, len(trials), {})
    return data.RunData(trials, data.metric_names(trials), None, mode, best, line[::-1], ranked[:50],
                        data.depths(trials), None, facts)


# -- gathering --------------------------------------------------------------------------------------
def test_gather_matches_the_journal(run: Path) -> None:
    with Journal.open(run, readonly=True) as j:
        d = gather(j)
        assert d.trials == j.trials() and len(d.trials) == 40
        assert d.best == j.best() and d.top == j.best(k=50)
        assert d.best_line == [t.seq for t in j.lineage(j.best().seq)]
        assert d.metrics == ["em", "cost_usd"]
        assert d.facts.trials == 40 and d.facts.size == j.size() and d.facts.encryption is None
        assert d.facts.tags == {"best": j.best().seq} and d.facts.head == j.head
        cheapest = gather(j, metric="cost_usd", mode="min")
        assert cheapest.best == j.best(metric="cost_usd", mode="min")
        with pytest.raises(DesiruError, match="no trial of this run has a metric 'nope'"):
            gather(j, metric="nope")
        with pytest.raises(DesiruError, match="mode must be"):
            gather(j, mode="up")


def test_the_diff_is_the_best_against_the_first_commit(run: Path) -> None:
    with Journal.open(run, readonly=True) as j:
        d = gather(j)
        first, best = j.replay(seq=d.trials[0].seq), j.replay(seq=d.best.seq)  # type: ignore[union-attr]
    diff = d.diff
    assert diff is not None and diff.base == d.trials[0].seq and diff.target == d.best.seq  # type: ignore[union-attr]
    answer = next(m for m in diff.modules if m.path == "answer")
    assert answer.instructions == (first.answer.signature.instructions, best.answer.signature.instructions)
    assert best.answer.signature.instructions in INSTRUCTIONS
    before = [dict(e) for e in first.answer.demos]
    after = [dict(e) for e in best.answer.demos]
    assert [d for d in answer.demos_added] == [d for d in after if d not in before]
    assert sorted(map(str, answer.demos_removed)) == sorted(str(d) for d in before if d not in after)
    params = {k: (old, new) for k, old, new, _how in answer.parameters}
    assert params["temperature"] == (first.answer.parameters["temperature"], best.answer.parameters["temperature"])
    assert all(m.path != "retrieve" for m in diff.modules)  # untouched modules are not listed


def test_best_so_far_steps_and_depths() -> None:
    assert data.best_so_far([None, 0.2, 0.1, 0.5, 0.5, 0.7]) == [1, 3, 5]
    assert data.best_so_far([0.5, 0.7, 0.2, None, 0.1], mode="min") == [0, 2, 4]
    trials = [_trial(0, 0.1), _trial(1, 0.2, parent=1), _trial(2, 0.3, parent=2), _trial(3, 0.4, parent=1)]
    assert data.depths(trials) == {1: 0, 2: 1, 3: 2, 4: 1}


@given(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), max_size=3000), st.integers(4, 400))
def test_sampling_keeps_what_it_must_and_stays_small(values: list[float | None], limit: int) -> None:
    steps = set(data.best_so_far(values))
    keep = steps | {i for i in range(0, len(values), 97) if values[i] is not None}
    shown = data.sample(values, keep, limit=limit)
    present = [i for i, v in enumerate(values) if v is not None]
    assert shown == sorted(set(shown)) and keep <= set(shown) and set(shown) <= set(present)
    if len(present) <= limit:
        assert shown == present
    else:
        assert len(shown) <= limit + len(keep)
        assert max(present, key=values.__getitem__) in shown  # type: ignore[arg-type]


# -- figures ----------------------------------------------------------------------------------------
def test_figures_hold_every_trial_the_best_so_far_and_the_lineage(run: Path) -> None:
    with Journal.open(run, readonly=True) as j:
        figs = figures(j)
        trials, best, line = j.trials(), j.best(), j.lineage(j.best().seq)
    assert set(figs) == {"score", "lineage"}
    score = {t.uid: t for t in figs["score"].data}
    assert list(score["trials"].customdata) == [t.seq for t in trials]
    assert list(score["trials"].y) == [t.score for t in trials]
    running, expected = float("-inf"), []
    for t in trials:
        if t.score is not None and t.score > running:
            running = t.score
            expected.append(t.score)
    assert list(score["best-so-far"].y) == [*expected, expected[-1]]
    assert list(score["best"].customdata) == [best.seq] and list(score["ancestry"].customdata) == [t.seq for t in line]
    # a menu with score and each metric; the cost entry plots the cost of every trial
    buttons = figs["score"].layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["score", "em", "cost_usd"]
    assert list(buttons[2].args[0]["y"][0]) == [t.metrics["cost_usd"] for t in trials]
    lineage = {t.uid: t for t in figs["lineage"].data}
    assert list(lineage["candidates"].customdata) == [t.seq for t in trials]
    assert list(lineage["best-line"].customdata) == [t.seq for t in line]
    assert len(lineage["edges"].x) == 3 * sum(t.parent is not None for t in trials)
    # hover: score, metrics and params, the user's text escaped
    text = score["trials"].hovertext[3]
    assert f"seq {trials[3].seq}" in text and "em " in text and "cost_usd" in text and "instruction_idx" in text
    assert "&lt;script&gt;" in text and "<script>" not in text


def test_a_large_run_is_thinned_keeping_the_best_the_steps_and_the_lineage() -> None:
    n = 30_000
    trials = []
    for i in range(n):
        score = ((i * 7919) % 1000) / 1000 * (0.5 + i / (2 * n))
        trials.append(_trial(i, score, parent=(i // 2) + 1 if i else None))
    d = _synthetic(trials)
    fig = score_figure(d)
    t = {tr.uid: tr for tr in fig.data}
    shown = list(t["trials"].customdata)
    steps = [trials[i].seq for i in data.best_so_far(d.values(None))]
    assert len(shown) <= data.MAX_POINTS + len(steps)
    assert set(steps) <= set(shown) and d.best.seq in shown  # type: ignore[union-attr]
    assert list(t["best-so-far"].customdata)[:-1] == steps  # exact, not thinned
    assert list(t["ancestry"].customdata) == d.best_line
    assert "drawn" in fig.layout.title.text and fig.layout.meta["trials"] == n
    lineage = {tr.uid: tr for tr in figures(d)["lineage"].data}
    assert list(lineage["best-line"].customdata) == d.best_line


def test_a_deep_ancestry_is_drawn_whole_as_a_line() -> None:
    n = 20_000  # one line of commits: the best's ancestry is every trial before it
    d = _synthetic([_trial(i, ((i * 7919) % 1000) / 1000 + i / n, parent=i if i else None) for i in range(n)])
    assert len(d.best_line) > 15_000
    score = {tr.uid: tr for tr in score_figure(d).data}
    assert list(score["ancestry"].customdata) == d.best_line and score["ancestry"].mode == "lines"
    assert len(score["trials"].hovertext) <= data.MAX_POINTS + len(data.best_so_far(d.values(None)))
    lineage = {tr.uid: tr for tr in figures(d)["lineage"].data}
    assert list(lineage["best-line"].customdata) == d.best_line and lineage["best-line"].mode == "lines"
    assert len(lineage["candidates"].hovertext) <= data.MAX_POINTS + len(data.best_so_far(d.values(None)))
    assert list(lineage["best-node"].customdata) == [d.best.seq]  # type: ignore[union-attr]


# -- the page ----------------------------------------------------------------------------------------
def test_the_page_is_self_contained_and_shows_the_run(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    with Journal.open(run, readonly=True) as j:
        assert write_report(j, out) == out
        best = j.best()
    text = out.read_text()
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    for tag in ("<script src", "<link", "<img src=\"http", "@import"):
        assert tag not in text
    assert text.count("<script") == 5  # plotly config, plotly.js, ours, one per figure: all inline
    assert f'data-best="{best.seq}"' in text and f"<tr id=seq-{best.seq} class=best>" in text
    assert "<script>alert(1)</script>" not in text  # a param's text is escaped everywhere
    assert "holds decrypted content" not in text and stat.S_IMODE(out.stat().st_mode) != 0o600


def test_an_encrypted_run_needs_the_key_and_the_report_says_it_is_decrypted(tmp_path: Path) -> None:
    path = tmp_path / "secret.journal"
    write_run(path, 6, key=KEY)
    out = tmp_path / "secret.html"
    res = CliRunner().invoke(cli, ["report", str(path), "-o", str(out)])
    assert res.exit_code == 2 and "encrypted" in res.stderr and "--key-env" in res.stderr and not out.exists()
    res = CliRunner().invoke(cli, ["report", str(path), "-o", str(out), "--key-env", "K"], env={"K": KEY})
    assert res.exit_code == 0, res.stderr
    assert "holds the run's content decrypted" in res.stderr
    text = out.read_text()
    assert "This report holds decrypted content" in text and "key id" in text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_render_of_a_run_without_scores(tmp_path: Path) -> None:
    import desiru as ds

    with Journal.open(tmp_path / "plain.journal") as j:
        j.commit(ds.Program())
        page = render(j)
        assert "no best to compare" in page and "0 scored" in page


def test_a_compacted_run_still_reports(tmp_path: Path) -> None:
    path = tmp_path / "c.journal"
    write_run(path, 30)
    with Journal.open(path) as j:
        j.snapshot()
        j.compact(keep_best=3)
    with Journal.open(path, readonly=True) as j:
        d = gather(j)
        assert len(d.trials) == 30 and d.best == j.best() and d.diff is not None
        page = render(d)
    assert f"<tr id=seq-{d.best.seq} class=best>" in page  # type: ignore[union-attr]


# -- CLI ---------------------------------------------------------------------------------------------
def test_cli_report_writes_the_page(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.html"
    res = CliRunner().invoke(cli, ["report", str(run), "-o", str(out), "--top", "5", "--title", "QA run"])
    assert res.exit_code == 0, res.stderr
    assert res.stdout.startswith(f"wrote {out} (40 trials, ")
    text = out.read_text()
    assert text.count("<tr id=seq-") == 5 and "<title>QA run</title>" in text
    res = CliRunner().invoke(cli, ["report", f"{run}@tag:best", "-o", str(out)])
    assert res.exit_code == 2 and "a report covers the whole run" in res.stderr
    res = CliRunner().invoke(cli, ["report", str(run), "-o", str(out), "--metric", "nope"])
    assert res.exit_code == 2 and "known metrics: em, cost_usd" in res.stderr


@pytest.mark.parametrize("columns", [70, 130])
def test_cli_plot_prints_the_chart_as_wide_as_the_terminal(run: Path, columns: int) -> None:
    res = CliRunner().invoke(cli, ["report", str(run), "--plot"], env={"COLUMNS": str(columns)})
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.rstrip("\n").split("\n")
    assert max(len(line) for line in lines) == columns and "score over 40 trials" in lines[0]
    assert "best so far (max)" in res.stdout and "\x1b[" not in res.stdout
    res = CliRunner().invoke(cli, ["report", str(run), "--plot", "--metric", "cost_usd", "--min"],
                             env={"COLUMNS": "90"})
    assert res.exit_code == 0 and "cost_usd over 40 trials" in res.stdout and "best so far (min)" in res.stdout
    res = CliRunner().invoke(cli, ["report", str(run), "--plot", "--metric", "nope"])
    assert res.exit_code == 2 and "known metrics: em, cost_usd" in res.stderr
    res = CliRunner().invoke(cli, ["report", str(run)])
    assert res.exit_code == 2 and "give -o FILE" in res.stderr


def test_trials_plot_draws_the_trials_that_pass_the_filters(run: Path) -> None:
    with Journal.open(run, readonly=True) as j:
        passing = sum(t.score is not None and t.score > 0.5 for t in j.trials())
    res = CliRunner().invoke(cli, ["trials", str(run), "--plot"], env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.rstrip("\n").split("\n")
    assert max(len(line) for line in lines) == 100 and "score over 40 trials" in lines[0]
    res = CliRunner().invoke(cli, ["trials", str(run), "--plot", "--where", "score>0.5", "--metric", "em", "--min"],
                             env={"COLUMNS": "100"})
    assert res.exit_code == 0, res.stderr
    assert f"em over {passing} trials" in res.stdout and "best so far (min)" in res.stdout
    res = CliRunner().invoke(cli, ["trials", str(run), "--plot", "--json"])
    assert res.exit_code == 2 and "give one of --json, --csv and --plot" in res.stderr


def test_a_run_in_postgresql_reports_as_a_directory_does(pg_url: str, tmp_path: Path) -> None:
    location = f"{pg_url}#report-{os.getpid()}"
    write_run(location, 12)
    out = tmp_path / "pg.html"
    res = CliRunner().invoke(cli, ["report", location, "-o", str(out)])
    assert res.exit_code == 0, res.stderr
    assert "password" not in res.stdout
    with Journal.open(location, readonly=True) as j:
        best = j.best()
    text = out.read_text()
    assert f"<tr id=seq-{best.seq} class=best>" in text and "12 (12 scored)" in text


BLOCK = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("blocked for this test: " + name)
sys.meta_path.insert(0, Block())
for m in list(sys.modules):
    if m.split(".")[0] in {blocked!r}:
        del sys.modules[m]
from desiru.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("blocked", [["plotly"], ["plotly", "plotext"]])
def test_without_the_extra_the_report_says_which_to_install(run: Path, tmp_path: Path, blocked: list[str]) -> None:
    out = tmp_path / "r.html"
    res = subprocess.run([sys.executable, "-c", BLOCK.format(blocked=set(blocked)), "report", str(run), "-o",
                          str(out)], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"},
                         timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip() == ('error: run reports need plotly, which is not installed '
                                  '(install the report extra: pip install "desiru[report]")')
    assert not out.exists()


def test_without_plotext_the_cli_plot_says_which_extra(run: Path) -> None:
    res = subprocess.run([sys.executable, "-c", BLOCK.format(blocked={"plotext"}), "report", str(run), "--plot"],
                         capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip() == ('error: run reports need plotext, which is not installed '
                                  '(install the report extra: pip install "desiru[report]")')


def test_without_plotext_the_terminal_plot_says_which_extra(tmp_path: Path) -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["plotext"] = None  # what Python does for a module that cannot be imported
        from desiru.report.terminal import plot_trials
        from desiru.errors import DesiruError
        try:
            plot_trials([], 80)
        except DesiruError as exc:
            print(exc)
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert 'plotext, which is not installed' in res.stdout and 'pip install "desiru[report]"' in res.stdout


# -- terminal ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("width", [60, 100, 157])
def test_the_terminal_plot_fits_the_width(run: Path, width: int) -> None:
    with Journal.open(run, readonly=True) as j:
        trials = j.trials()
    text = plot_trials(trials, width, height=18)
    lines = text.rstrip("\n").split("\n")
    assert max(len(line) for line in lines) == width and len(lines) == 18
    assert "\x1b[" not in text
    assert "score over 40 trials" in lines[0] and "best so far (max)" in text
    assert "\x1b[" in plot_trials(trials, width, color=True)


def test_the_terminal_plot_of_a_metric_and_of_a_large_run() -> None:
    trials = [_trial(i, (i % 97) / 97, cost=((i * 31) % 1009) / 1009 + 1 / (i + 1)) for i in range(100_000)]
    text = plot_trials(trials, 80, metric="cost", mode="min")
    assert "cost over 100,000 trials (" in text and " drawn)" in text and "best so far (min)" in text
    assert "no trial has a score" in plot_trials([_trial(0, None)], 80)


def test_the_package_exports() -> None:
    assert {"write_report", "figures", "gather", "render"} <= set(desiru.report.__all__)
