"""The demo run (desiru.demo and ``desiru demo``): a real optimization into a journal, replayed,
saved, loaded back and run; deterministic for a seed; and its command-line form."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import desiru as ds
from desiru import demo
from desiru.cli import cli
from desiru.cli.app import EXIT_ERROR


@pytest.fixture(autouse=True)
def _restore_lm() -> None:
    yield
    ds.configure(lm=None)


def test_run_demo_end_to_end(tmp_path: Path) -> None:
    seen: list[demo.Trial] = []
    report = demo.run_demo(tmp_path, trials=30, train=16, dev=8, seed=3, on_trial=seen.append)
    assert [t.number for t in seen] == list(range(1, 31)) and report.trials == seen
    assert report.commits == 31 and report.replay_matches and report.loads_match and report.journal_ok
    assert report.best_score == max([report.baseline_score] + [t.score for t in seen])
    assert report.best_score > report.baseline_score  # the search found something better
    best = [t for t in seen if t.best]
    assert best and best[-1].number == report.best_trial and best[-1].seq == report.best_seq
    # the journal: every trial streamed in, "baseline" and "best" tags, replayable
    with ds.Journal.open(report.journal, readonly=True) as j:
        assert j.head == report.events
        tags = j.tags()
        assert tags["best"] == report.best_seq
        program = j.replay(tag="best")
        assert isinstance(program, demo.ResearchQA)
        assert program.metadata == {}  # scores and choices live beside the program, never in it
        baseline = j.replay(tag="baseline")
        assert baseline == demo.ResearchQA()
        # every trial is in the trials table, with its score, its choices and the best as parent
        trials = j.trials()
        assert len(trials) == 31 and trials[0].tags == ("baseline",) and trials[0].parent is None
        assert [t.params["trial"] for t in trials] == list(range(31))
        assert [t.score for t in trials[1:]] == [t.score for t in seen]
        assert j.best().seq == report.best_seq and j.best().score == report.best_score
        assert j.lineage("best")[0].seq == trials[0].seq
    # the files: json and msgpack+zstd, both load back to the replayed program
    assert report.files["json"] == tmp_path / "best.json"
    assert report.files["msgpack+zstd"] == tmp_path / "best.msgpack.zst"
    from desiru import crypto  # a program compressed in per-module frames (docs/FORMAT.md, "Framed container")

    assert crypto.read_header(report.files["msgpack+zstd"].read_bytes()).compression == "zstd"
    assert demo.ResearchQA.load(report.files["json"]) == program
    assert ds.load(report.files["msgpack+zstd"]) == program
    assert {name for name in report.timings} >= {"optimize", "replay", "save json", "load msgpack+zstd", "forward"}
    assert len(report.answers) == 3 and all(a and g for _, a, g in report.answers)
    # the baseline and 30 trials, 8 dev examples each, 5 LM calls per example
    assert report.sizes["journal"] > 0 and report.lm_calls == 31 * 8 * 5


def test_demo_gives_back_the_callers_lm(tmp_path: Path) -> None:
    mine = ds.ScriptedLM(["hello"], cycle=True)
    ds.configure(lm=mine, temperature=0.5)
    demo.run_demo(tmp_path, trials=2, train=4, dev=2)
    from desiru.lm import current_lm

    assert current_lm() == (mine, {"temperature": 0.5}) and mine.calls == []


def test_demo_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = demo.run_demo(tmp_path / "a", trials=15, train=10, dev=6, seed=11)
    b = demo.run_demo(tmp_path / "b", trials=15, train=10, dev=6, seed=11)
    assert [(t.score, t.changes, t.seq) for t in a.trials] == [(t.score, t.changes, t.seq) for t in b.trials]
    assert ds.load(a.files["json"]) == ds.load(b.files["json"])


def test_the_metric_rewards_what_an_optimizer_changes() -> None:
    """Relevant demos, better instructions and a low temperature raise exact match: the search is real."""
    rng = random.Random(0)
    ds.configure(lm=demo.scripted_lm())
    train, dev = demo.make_dataset(60, rng), demo.make_dataset(150, rng)
    program = demo.ResearchQA()
    scores = [demo.evaluate(program, dev)]
    program.answer.parameters["temperature"] = 0.0
    scores.append(demo.evaluate(program, dev))
    program.answer.signature = program.answer.signature.with_instructions(demo.INSTRUCTIONS[5][0])
    scores.append(demo.evaluate(program, dev))
    program.answer.demos = [ds.Example(demo._answer_demo(ex)) for ex in train[:9]]
    scores.append(demo.evaluate(program, dev))
    assert scores == sorted(scores) and scores[-1] - scores[0] > 0.4, scores


def test_forward_of_the_demo_program() -> None:
    ds.configure(lm=demo.scripted_lm())
    program = demo.ResearchQA()
    program.answer.parameters["temperature"] = 0.0
    program.answer.signature = program.answer.signature.with_instructions(demo.INSTRUCTIONS[5][0])
    pred = program(question="What is 20 + 22?")
    assert pred.context == "20 plus 22 equals 42."
    assert pred.verdict in ("supported", "unsupported") and pred.citation == pred.context
    assert pred.reasoning.startswith("the context says")


def test_demo_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    demo.run_demo(tmp_path, trials=2, train=4, dev=2)
    with pytest.raises(ds.DesiruError, match="already here"):
        demo.run_demo(tmp_path, trials=2, train=4, dev=2)
    assert demo.run_demo(tmp_path, trials=3, train=4, dev=2, force=True).commits == 4
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / demo.JOURNAL_NAME).write_text("not a journal")
    with pytest.raises(ds.DesiruError, match="not a desiru journal"):
        demo.run_demo(tmp_path / "other", trials=2, train=4, dev=2, force=True)


def test_demo_command(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["demo", str(tmp_path / "d"), "--trials", "20", "--dev", "6", "--train", "12"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for needle in ("optimizing a 5-module QA program, 20 trials", "new best", "verified: yes",
                   "tagged 'best'", "same as the best trial: yes", "best.json", "best.msgpack.zst",
                   "same as the replayed program: yes", "forward()", "timings", "desiru diff"):
        assert needle in out, needle
    again = runner.invoke(cli, ["demo", str(tmp_path / "d"), "--trials", "2"])
    assert again.exit_code == EXIT_ERROR
    assert again.stderr.startswith("error: ") and "--force" in again.stderr
    quiet = runner.invoke(cli, ["-q", "demo", str(tmp_path / "d"), "--trials", "3", "--force"])
    assert quiet.exit_code == 0 and "new best" not in quiet.stdout and "journal" in quiet.stdout
    bad = runner.invoke(cli, ["demo", str(tmp_path / "e"), "--trials", "0"])
    assert bad.exit_code == 2 and "--trials" in bad.stderr


def test_demo_default_size_as_a_real_command(tmp_path: Path) -> None:
    """`desiru demo DIR` with the default sizes, as a new user runs it: well under a minute."""
    exe = shutil.which("desiru")
    assert exe is not None
    env = {k: v for k, v in os.environ.items() if k != "DESIRU_DEBUG"}
    start = time.perf_counter()
    out = subprocess.run([exe, "demo", str(tmp_path / "demo")], capture_output=True, text=True, env=env,
                         timeout=120)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert "200 trials" in out.stdout and "same as the replayed program: yes" in out.stdout
    assert elapsed < 30, elapsed
    follow = subprocess.run([sys.executable, "-m", "desiru", "diff", f"{tmp_path / 'demo' / 'qa.journal'}@tag:baseline",
                             f"{tmp_path / 'demo' / 'qa.journal'}@tag:best"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert follow.returncode == 1 and "answer" in follow.stdout
