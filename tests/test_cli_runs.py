"""The run commands of ``desiru``: trials (sort, --top, --where, --metric, --json, --csv), lineage,
tag of any point (--move), log's parent and score columns, diff across branches, encrypted runs
and the demo's trials table, on real journals holding a tree of commits."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from programs import QA, sample_program

import desiru as ds
from desiru import _engine
from desiru.cli import cli
from desiru.cli.app import EXIT_DIFFERENT, EXIT_ERROR
from desiru.journal import state_hash

KEY = "cd" * 32


def run(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def assert_error(result: Result, *needles: str) -> str:
    assert result.exit_code == EXIT_ERROR, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@dataclass
class Run:
    path: Path
    seqs: dict[str, int]
    programs: dict[str, QA]


def variant(base: QA, **changes: object) -> QA:
    p = base.copy()
    if "demo" in changes:
        p.answer.demos.append(ds.Example(question=str(changes["demo"]), context="c", reasoning="r", answer="a"))
    if "temperature" in changes:
        p.answer.parameters["temperature"] = changes["temperature"]
    if "drop" in changes:
        p.retrieve.demos = []
    return p


def build(path: Path, key: str | None = None) -> Run:
    """A tree: root -> a -> a2 (branch A), root -> b (branch B); b tagged best; a's score recorded late."""
    root = sample_program()
    programs = {"root": root, "a": variant(root, demo="qa"), "b": variant(root, temperature=0.7, drop=True)}
    programs["a2"] = variant(programs["a"], demo="qa2")
    with ds.Journal.open(path, key=key) as j:
        r = j.commit(root, tag="baseline", score=0.5, metrics={"em": 0.5, "cost": 0.01}, params={"lr": 1})
        a = j.commit(programs["a"], parent=r, score=0.7, metrics={"em": 0.7, "cost": 0.03},
                     params={"lr": 2, "opt": "adam"})
        b = j.commit(programs["b"], parent=r, score=0.9, metrics={"em": 0.85, "cost": 0.02}, params={"lr": 3})
        a2 = j.commit(programs["a2"], parent=a, score=0.6, metrics={"em": 0.6}, params={"lr": 4})
        j.record(a, score=0.75)  # the evaluation finished after the commit
        j.tag("best", b)
    return Run(path, {"root": r.seq, "a": a.seq, "b": b.seq, "a2": a2.seq}, programs)


@pytest.fixture
def tree(tmp_path: Path) -> Run:
    return build(tmp_path / "run.journal")


def rows(result: Result) -> list[list[str]]:
    """The body rows of a trials table, split into cells (no cell of these runs holds a space)."""
    assert result.exit_code == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
    assert lines[0][:3] == ["seq", "parent", "score"], lines[0]
    return [line for line in lines[2:]]  # header, rule, rows


def seqs(result: Result) -> list[int]:
    return [int(r[0].rstrip("*")) for r in rows(result)]


# -- trials ----------------------------------------------------------------------------------------
def test_trials_best_first_with_every_column(tree: Run) -> None:
    s = tree.seqs
    result = run("trials", tree.path)
    assert seqs(result) == [s["b"], s["a"], s["a2"], s["root"]]
    header = result.stdout.splitlines()[0].split()
    assert header == ["seq", "parent", "score", "em", "cost", "params", "tags", "age"]
    by_seq = {int(r[0]): r for r in rows(result)}
    assert by_seq[s["b"]][1:6] == [str(s["root"]), "0.9", "0.85", "0.02", "lr=3"]
    assert by_seq[s["b"]][6] == "best"
    assert by_seq[s["a"]][1:7] == [str(s["root"]), "0.75", "0.7", "0.03", "lr=2", 'opt="adam"']
    assert by_seq[s["a2"]][1:6] == [str(s["a"]), "0.6", "0.6", "-", "lr=4"]
    assert by_seq[s["root"]][1:7] == ["-", "0.5", "0.5", "0.01", "lr=1", "baseline"]
    assert "4 of 4 trials shown" in result.stderr


def test_trials_sort_top_where_and_metric(tree: Run) -> None:
    s = tree.seqs
    assert seqs(run("trials", tree.path, "--sort", "seq")) == [s["root"], s["a"], s["b"], s["a2"]]
    assert seqs(run("trials", tree.path, "--top", "2")) == [s["b"], s["a"]]
    # several --where combine with AND; a trial without the metric fails its filter
    assert seqs(run("trials", tree.path, "--where", "em>0.55", "--where", "cost <= 0.025")) == [s["b"]]
    assert seqs(run("trials", tree.path, "--where", "score>=0.75", "--sort", "seq")) == [s["a"], s["b"]]
    assert seqs(run("trials", tree.path, "--where", "score==0.6")) == [s["a2"]]
    assert seqs(run("trials", tree.path, "--where", "score!=0.6", "--where", "score<0.8")) == [s["a"], s["root"]]
    # ranked by a metric, lowest first; the trial without it comes last
    assert seqs(run("trials", tree.path, "--metric", "cost", "--min")) == [s["root"], s["b"], s["a"], s["a2"]]
    assert seqs(run("trials", tree.path, "--metric", "em", "--top", "1")) == [s["b"]]
    header = run("trials", tree.path, "--metrics", "cost").stdout.splitlines()[0].split()
    assert header == ["seq", "parent", "score", "cost", "params", "tags", "age"]


def test_trials_json_and_csv_hold_the_index(tree: Run) -> None:
    with ds.Journal.open(tree.path, readonly=True) as j:
        expected = {t.seq: t for t in j.trials()}
    out = json.loads(run("trials", tree.path, "--json", "--sort", "seq").stdout)
    assert [t["seq"] for t in out] == sorted(expected)
    for t in out:
        trial = expected[t["seq"]]
        assert (t["parent"], t["score"], t["metrics"], t["params"], tuple(t["tags"]), t["content_hash"],
                t["writer"], t["timestamp"]) == (trial.parent, trial.score, dict(trial.metrics),
                                                  dict(trial.params), trial.tags, trial.content_hash,
                                                  trial.writer, trial.timestamp)
    b = next(t for t in out if t["seq"] == tree.seqs["b"])
    assert b["content_hash"] == state_hash(tree.programs["b"].to_state()).hex()

    table = list(csv.DictReader(io.StringIO(run("trials", tree.path, "--csv", "--top", "2").stdout)))
    assert [int(r["seq"]) for r in table] == [tree.seqs["b"], tree.seqs["a"]]
    assert list(table[0])[:5] == ["seq", "parent", "score", "em", "cost"]
    assert (float(table[0]["score"]), float(table[0]["em"]), json.loads(table[0]["params"]), table[0]["tags"]) == \
        (0.9, 0.85, {"lr": 3}, "best")
    assert table[1]["parent"] == str(tree.seqs["root"]) and json.loads(table[1]["params"]) == {"lr": 2, "opt": "adam"}


@pytest.mark.parametrize("expr", ["score>", "em >> 0.5", "0.5<score", "score>abc", "score > 1 and em > 1", ""])
def test_a_bad_where_is_one_line(tree: Run, expr: str) -> None:
    assert_error(run("trials", tree.path, "--where", expr), "cannot read the filter", "NAME OP NUMBER")


def test_trials_errors(tree: Run, tmp_path: Path) -> None:
    assert_error(run("trials", tree.path, "--where", "f1>0.5"), "no trial of this run has a metric 'f1'",
                 "cost, em, score")
    assert_error(run("trials", tree.path, "--metric", "f1"), "'f1'")
    assert_error(run("trials", tree.path, "--json", "--csv"), "one of --json, --csv and --plot")
    assert_error(run("trials", f"{tree.path}@tag:best"), "names a point")
    assert_error(run("trials", tmp_path / "nope.journal"), "no such journal")


def test_trials_of_a_release_0_1_journal_is_one_line(tmp_path: Path) -> None:
    """Plain commits (no parent, no results): a line of trials, each the child of the one before."""
    path = tmp_path / "line.journal"
    with ds.Journal.open(path) as j:
        seqs_ = [j.commit(p).seq for p in (sample_program(), variant(sample_program(), demo="x"),
                                           variant(sample_program(), drop=True))]
    out = json.loads(run("trials", path, "--json").stdout)
    assert [(t["seq"], t["parent"], t["score"]) for t in out] == [
        (seqs_[0], None, None), (seqs_[1], seqs_[0], None), (seqs_[2], seqs_[1], None)]
    assert seqs(run("trials", path, "--where", "score>0")) == []


# -- lineage ---------------------------------------------------------------------------------------
def test_lineage_root_to_point(tree: Run) -> None:
    s = tree.seqs
    assert seqs(run("lineage", f"{tree.path}@seq:{s['a2']}")) == [s["root"], s["a"], s["a2"]]
    assert seqs(run("lineage", f"{tree.path}@tag:best")) == [s["root"], s["b"]]
    assert seqs(run("lineage", tree.path)) == [s["root"], s["a"], s["a2"]]  # the head
    out = json.loads(run("lineage", f"{tree.path}@seq:{s['a2']}", "--json").stdout)
    assert [(t["seq"], t["parent"], t["score"]) for t in out] == [
        (s["root"], None, 0.5), (s["a"], s["root"], 0.75), (s["a2"], s["a"], 0.6)]
    assert_error(run("lineage", f"{tree.path}@tag:nope"), "no tag 'nope'")
    assert_error(run("lineage", f"{tree.path}@seq:999"), "seq 999 does not exist")


# -- tag -------------------------------------------------------------------------------------------
def test_tag_any_point_and_moves_need_move(tree: Run) -> None:
    s = tree.seqs
    result = run("tag", f"{tree.path}@seq:{s['a']}", "candidate")
    assert result.exit_code == 0, result.stderr
    assert f"tagged candidate at seq {s['a']}" in result.stdout
    line = assert_error(run("tag", f"{tree.path}@seq:{s['a2']}", "best"), "tag 'best' already points at seq",
                        "--move")
    assert str(s["b"]) in line
    moved = run("tag", f"{tree.path}@seq:{s['a2']}", "best", "--move")
    assert f"tagged best at seq {s['a2']} (moved from seq {s['b']})" in moved.stdout
    same = run("tag", f"{tree.path}@tag:best", "best")  # already there: nothing to move, nothing written
    assert same.exit_code == 0 and "already names" in same.stdout
    assert "tagged head at seq" in run("tag", tree.path, "head").stdout
    with ds.Journal.open(tree.path, readonly=True) as j:
        assert j.tags() == {"baseline": s["root"], "best": s["a2"], "candidate": s["a"], "head": s["a2"]}
        history = [(m.tag, m.seq, m.moved_from) for m in j.tags(history=True)]
        assert j.replay(tag="candidate") == tree.programs["a"]
    assert ("best", s["a2"], s["b"]) in history and ("best", s["b"], None) in history
    assert len([h for h in history if h[0] == "best"]) == 2
    top = rows(run("trials", tree.path, "--top", "1"))[0]
    assert int(top[0]) == s["b"] and "best" not in top
    assert rows(run("trials", tree.path, "--where", "score==0.6"))[0][6:8] == ["best,", "head"]


def test_tag_errors(tree: Run) -> None:
    assert_error(run("tag", f"{tree.path}@seq:999", "x"), "seq 999 does not exist")
    assert_error(run("tag", f"{tree.path}@tag:nope", "x"), "no tag 'nope'")
    assert_error(run("tag", tree.path, " "), "cannot be empty")
    with ds.Journal.open(tree.path):
        assert_error(run("tag", tree.path, "x"), "run.journal")


# -- log, diff -------------------------------------------------------------------------------------
def test_log_shows_each_commits_parent_and_score(tree: Run) -> None:
    s = tree.seqs
    result = run("log", tree.path)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:6] == ["seq", "time", "(UTC)", "parent", "score", "type"]
    commits = {}
    for line in lines[1:]:
        cells = line.split()
        if len(cells) > 5 and cells[5] == "Committed":  # seq, date, time, parent, score, type
            commits[int(cells[0])] = cells[3:6]
    with ds.Journal.open(tree.path, readonly=True) as j:
        firsts = {t.first_seq: t.seq for t in j.trials()}
    assert sorted(commits) == sorted(firsts)
    by_commit = {firsts[k]: v for k, v in commits.items()}
    assert by_commit[s["root"]] == ["-", "0.5", "Committed"]
    assert by_commit[s["a"]] == [str(s["root"]), "0.75", "Committed"]  # the late record counts
    assert by_commit[s["a2"]] == [str(s["a"]), "0.6", "Committed"]
    assert any(f"for seq {s['a']}: score 0.75" in line for line in lines)  # the late record, described
    assert any(f"tag best -> seq {s['b']}" in line for line in lines)


def test_diff_between_two_branches(tree: Run) -> None:
    s = tree.seqs
    a2, b = f"{tree.path}@seq:{s['a2']}", f"{tree.path}@seq:{s['b']}"
    result = run("diff", a2, b, "--json")
    assert result.exit_code == EXIT_DIFFERENT, result.stderr
    edits = json.loads(result.stdout)["edits"]
    assert edits == _engine.diff_states(tree.programs["a2"].to_state(), tree.programs["b"].to_state())
    assert sorted(e["op"] for e in edits) == ["demo_removed", "demo_removed", "demo_removed", "parameter_set"]
    text = run("diff", a2, b).stdout
    assert "temperature: 0.2 -> 0.7" in text and "demo #0" in text
    assert run("diff", f"{tree.path}@tag:best", b).exit_code == 0


# -- keys, demo ------------------------------------------------------------------------------------
def test_encrypted_runs_take_the_key(tmp_path: Path) -> None:
    enc = build(tmp_path / "enc.journal", key=KEY)
    env = {"RUN_KEY": KEY}
    assert seqs(run("trials", enc.path, "--key-env", "RUN_KEY", env=env)) == \
        [enc.seqs[k] for k in ("b", "a", "a2", "root")]
    assert seqs(run("lineage", f"{enc.path}@tag:best", "--key-env", "RUN_KEY", env=env)) == \
        [enc.seqs["root"], enc.seqs["b"]]
    assert run("tag", f"{enc.path}@seq:{enc.seqs['a']}", "x", "--key-env", "RUN_KEY", env=env).exit_code == 0
    assert_error(run("trials", enc.path), "--key-env")
    with ds.Journal.open(enc.path, key=KEY, readonly=True) as j:
        assert j.tags()["x"] == enc.seqs["a"]


def test_the_demo_shows_its_best_trials(tmp_path: Path) -> None:
    result = run("demo", tmp_path / "d", "--trials", "12", "--train", "8", "--dev", "4", "--seed", "2")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "the best trials, from the journal's run index" in out
    with ds.Journal.open(tmp_path / "d" / "qa.journal", readonly=True) as j:
        best = j.best(k=5)
        assert best[0].seq == j.tags()["best"]
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("the best trials"))
    shown = [line.split() for line in lines[start + 3: start + 3 + len(best)]]
    assert [int(c[0]) for c in shown] == [t.seq for t in best]
    assert [float(c[2]) for c in shown] == [round(t.score, 4) for t in best]
    assert "best" in shown[0]
    assert f"desiru trials {tmp_path / 'd' / 'qa.journal'} --top 10" in out


def test_trials_mark_commits_compacted_away(tmp_path: Path) -> None:
    path = tmp_path / "c.journal"
    base = sample_program()
    with ds.Journal.open(path) as j:
        root = j.commit(base, score=0.1)
        mid = j.commit(variant(base, demo="m"), parent=root, score=0.2)
        best = j.commit(variant(base, demo="n"), parent=root, score=0.9)
        j.snapshot()
        j.commit(variant(base, demo="o"), score=0.4)
        j.compact(keep_best=1)  # keeps the lineage of the best (root, best); mid's state goes
    out = {t["seq"]: t for t in json.loads(run("trials", path, "--json").stdout)}
    assert [out[r.seq]["replayable"] for r in (root, mid, best)] == [True, False, True]
    assert out[mid.seq]["score"] == 0.2 and out[mid.seq]["parent"] == root.seq  # the results survive
    table = {r[0]: r for r in rows(run("trials", path, "--sort", "seq"))}
    assert f"{mid.seq}*" in table and str(root.seq) in table and str(best.seq) in table
    assert_error(run("replay", f"{path}@seq:{mid.seq}", "-o", tmp_path / "x.json"), "compacted")
