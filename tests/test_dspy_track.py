"""track(journal): every candidate a dspy optimizer evaluates becomes a commit; resume after SIGKILL.

Real dspy optimizers with a rule-based LM (tests/rule_lm.py), so they really search.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

dspy = pytest.importorskip("dspy")

import desiru as ds  # noqa: E402
from desiru.interop import dspy as dd  # noqa: E402
from desiru.interop.dspy.track import (  # noqa: E402
    MINIBATCH_SCORE,
    EvalSetHasher,
    metric_name,
    pack_examples,
    unpack_examples,
)
from desiru.journal import JournalWarning  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dspy_runs import TRAIN, VAL, Counter, compile_with, optimizer, run  # noqa: E402
from rule_lm import RuleLM  # noqa: E402

SCRIPT = Path(__file__).resolve().parent / "dspy_runs.py"
# the rule LM is a dspy.BaseLM subclass with forward(), which dspy 3.4 still supports and warns about
pytestmark = pytest.mark.filterwarnings("ignore:Implementing custom LMs through BaseLM:DeprecationWarning")


class Spy(dspy.utils.callback.BaseCallback):
    """What dspy itself reports: the score of every Evaluate call, in order."""

    def __init__(self) -> None:
        self.scores: list[float] = []

    def on_evaluate_end(self, call_id: str, outputs: Any, exception: Any = None) -> None:
        if outputs is not None:
            self.scores.append(outputs.score)


@pytest.fixture(autouse=True)
def rule_lm() -> Any:
    logging.disable(logging.WARNING)
    lm = RuleLM()
    dspy.configure(lm=lm)
    yield lm
    dspy.configure(lm=None, callbacks=[])
    logging.disable(logging.NOTSET)


def evaluations(journal: ds.Journal, run: str) -> list[Any]:
    return [t for t in journal.trials() if t.params.get("run") == run and "metric" in t.params]


def value(trial: Any) -> float:
    return trial.score if trial.score is not None else trial.metrics[MINIBATCH_SCORE]


SETTING = {"rs": ("num_candidate_sets", 3), "mipro": ("auto", "light"), "gepa": ("max_metric_calls", 60)}


@pytest.mark.parametrize("name", ["rs", "mipro", "gepa"])
def test_every_evaluated_candidate_is_a_commit(tmp_path: Path, rule_lm: RuleLM, name: str) -> None:
    spy, metric = Spy(), Counter()
    opt = optimizer(name, metric, rule_lm)
    with ds.Journal.open(tmp_path / "run.journal") as j:
        tracker = dd.track(j, run=name, record_examples=True)
        with dspy.context(callbacks=[tracker, spy]):
            compiled = compile_with(opt, name)
        assert tracker.errors == []
        trials = evaluations(j, name)
        assert [value(t) for t in trials] == spy.scores  # each Evaluate call, with dspy's own score
        assert len(trials) == tracker.stats["evaluated"] >= 4
        assert len({t.content_hash for t in trials}) > 1  # the optimizer really searched
        (root,) = [t for t in j.trials() if t.params.get("role") == "student"]
        full = EvalSetHasher()(VAL)
        for t in trials:
            assert t.params["metric"] == "dspy_runs.Counter"
            assert t.params["optimizer"] == f"{type(opt).__module__}.{type(opt).__qualname__}"
            key, setting = SETTING[name]
            assert t.params["settings"][key] == setting
            assert j.lineage(t)[0].seq <= root.seq < t.seq
            assert root.seq in [x.seq for x in j.lineage(t)]
            if t.score is not None:  # a full evaluation: on the whole valset (MIPROv2 shuffles it first)
                assert t.params["eval_set"] == {"size": len(VAL), "hash": trials[0].params["eval_set"]["hash"]}
                assert name == "mipro" or t.params["eval_set"]["hash"] == full
            else:
                assert t.params["eval_set"]["size"] < len(VAL)
            scores = unpack_examples(t.params["examples"])
            assert scores is not None and len(scores) == t.params["eval_set"]["size"]
            assert round(100 * sum(scores) / len(scores), 2) == value(t)
        # the compiled result carries the run's tag, and replays as compiled
        best = j.trial(f"{name}/best")
        assert best.score == max(t.score for t in trials if t.score is not None)
        template = dspy.Predict("question -> answer")
        assert j.replay(tag=f"{name}/best", into=template).dump_state() == compiled.dump_state()
        if name == "mipro":  # the instruction and demo-set index chosen per predictor
            chosen = [t.params["choice"] for t in trials if "choice" in t.params]
            assert len(chosen) == len(trials) - 1  # all but the default program
            assert all(set(c) == {"0_predictor_instruction", "0_predictor_demos"} for c in chosen)
            assert len({json.dumps(c, sort_keys=True) for c in chosen}) > 1
        if name == "gepa":  # children derive from the GEPA candidate they mutate, not all from the root
            derived = [t for t in trials if t.parent != root.seq]
            assert derived
            assert all(j.trial(t.parent).content_hash != root.content_hash for t in derived)
        else:
            assert all(t.parent == root.seq for t in trials)


@pytest.mark.parametrize("name", ["labeled", "bootstrap"])
def test_optimizers_without_evaluations_commit_the_compiled_program(tmp_path: Path, rule_lm: RuleLM,
                                                                    name: str) -> None:
    metric = Counter()
    with ds.Journal.open(tmp_path / "run.journal") as j:
        dspy.configure(callbacks=[dd.track(j, run=name)])  # the one-line form
        try:
            compiled = compile_with(optimizer(name, metric, rule_lm), name)
            result = dspy.Evaluate(devset=VAL, metric=metric)(compiled)  # the user evaluates it afterwards
        finally:
            dspy.configure(callbacks=[])
        root, best, scored = j.trials()
        assert root.params["role"] == "student" and best.params["role"] == "compiled"
        assert best.parent == root.seq and best.tags == (f"{name}/best",)
        assert len(dd.to_dspy(j.replay(tag=f"{name}/best"), into=dspy.Predict("question -> answer")).demos) == 3
        assert scored.content_hash == best.content_hash and scored.score == result.score
        assert "optimizer" not in scored.params  # evaluated outside the compile


def test_two_runs_in_one_journal_keep_their_own_tags(tmp_path: Path, rule_lm: RuleLM) -> None:
    with ds.Journal.open(tmp_path / "run.journal") as j:
        for run, k in (("a", 2), ("b", 4), ("a", 3)):
            with dd.track(j, run=run):
                dspy.LabeledFewShot(k=k).compile(dspy.Predict("question -> answer"), trainset=TRAIN)
        tags = j.tags()
        assert set(tags) == {"a/best", "b/best"}
        assert len(j.replay(tag="a/best").get_module("self").demos) == 3  # moved by the second run of "a"
        assert len(j.replay(tag="b/best").get_module("self").demos) == 4
        assert len(j.tags(history=True)) == 3


def test_per_example_scores_are_stored_compactly() -> None:
    assert pack_examples([1.0, 0.0, 1.0]) == "101"
    assert unpack_examples("101") == [1.0, 0.0, 1.0]
    assert pack_examples([0.5, None, 1.0]) == [0.5, 0.0, 1.0]
    assert unpack_examples([0.5, 1]) == [0.5, 1.0]
    assert unpack_examples("1x") is None and unpack_examples([True]) is None and unpack_examples(None) is None


def exact(gold: Any, pred: Any, trace: Any = None) -> bool:
    return bool(gold.answer == pred.answer)


def test_metric_names_see_through_wrappers() -> None:
    @functools.wraps(exact)
    def wrapped(*args: Any) -> bool:
        return exact(*args)

    def closure() -> Any:
        metric = exact

        def wrapped_metric(gold: Any, pred: Any, trace: Any = None) -> bool:
            return metric(gold, pred, trace)
        return wrapped_metric

    name = f"{__name__}.exact"
    assert metric_name(exact) == metric_name(wrapped) == metric_name(closure()) == name
    assert metric_name(Counter()) == "dspy_runs.Counter"


def test_eval_set_hash_is_by_content() -> None:
    h = EvalSetHasher()
    assert h(VAL) == h(list(VAL)) == EvalSetHasher()([dspy_copy(e) for e in VAL])
    assert h(VAL) != h(VAL[:-1]) != h(TRAIN)
    changed = [*VAL[:-1], VAL[-1].copy(answer="wrong")]
    assert h(changed) != h(VAL)
    assert h([VAL[0].with_inputs("question", "answer")]) != h(VAL[:1])


def dspy_copy(e: Any) -> Any:
    return dspy.Example(**e.toDict()).with_inputs(*e.inputs().keys())


def test_track_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ds.DesiruError, match="needs a desiru Journal"):
        dd.track("runs/x.journal")  # type: ignore[arg-type]
    with ds.Journal.open(tmp_path / "run.journal") as j:
        for run in ("", "a/b", 3):
            with pytest.raises(ds.DesiruError, match="run must be"):
                dd.track(j, run=run)  # type: ignore[arg-type]


def test_journal_errors_are_kept_and_warned(tmp_path: Path) -> None:
    j = ds.Journal.open(tmp_path / "run.journal")
    tracker = dd.track(j, run="r")
    j.close()
    with pytest.warns(JournalWarning, match="could not record"), tracker:
        dspy.LabeledFewShot(k=1).compile(dspy.Predict("question -> answer"), trainset=TRAIN)
    assert tracker.errors and isinstance(tracker.errors[0], ds.DesiruError)


# -- resume ------------------------------------------------------------------------------------------
def run_script(name: str, journal: Path, kill_at: int = 0) -> dict[str, Any] | None:
    """The tracked run in a fresh process (None: SIGKILLed at metric call ``kill_at``, as asked)."""
    return run([name, str(journal), str(kill_at)])


@pytest.mark.parametrize("name", ["rs", "mipro", "gepa"])
def test_resume_after_sigkill_skips_what_was_scored(tmp_path: Path, name: str) -> None:
    full = run_script(name, tmp_path / "full.journal")
    assert full is not None
    crashed = tmp_path / "crashed.journal"
    run_script(name, crashed, kill_at=full["metric_calls"] // 2)  # SIGKILL in the middle of the run
    with ds.Journal.open(crashed) as j:
        scored_before = len(evaluations(j, name))
    assert scored_before >= 1
    resumed = run_script(name, crashed)
    assert resumed is not None
    # the same best program and score as the run that was never interrupted
    assert (resumed["best_score"], resumed["best_hash"]) == (full["best_score"], full["best_hash"])
    assert resumed["best_is_compiled"] and full["best_is_compiled"]
    # what was scored before the crash was answered from the journal, never evaluated again
    assert resumed["stats"]["resumed"] >= 1
    saved = resumed["stats"]["metric_calls_saved"] - full["stats"]["metric_calls_saved"]
    assert saved > 0
    assert resumed["metric_calls"] == full["metric_calls"] - saved
    assert resumed["lm_calls"] < full["lm_calls"]
    with ds.Journal.open(crashed) as j:  # the rerun added only the evaluations the crash cut off
        assert len(evaluations(j, name)) == scored_before + resumed["stats"]["evaluated"]
    # a third run finds everything scored: no candidate is evaluated again (GEPA: only the minibatches
    # it reflects on run again, since reflection needs their traces)
    again = run_script(name, crashed)
    assert again is not None
    assert (again["best_score"], again["best_hash"]) == (full["best_score"], full["best_hash"])
    if name == "gepa":
        assert again["metric_calls"] < resumed["metric_calls"]
    else:
        assert again["stats"]["evaluated"] == 0
