"""A small optimization task for tests of tracked dspy runs, and a script that runs one.

``python tests/dspy_runs.py OPTIMIZER JOURNAL KILL_AT`` runs OPTIMIZER (rs, mipro or gepa)
tracked into JOURNAL with resume=True, SIGKILLs itself at the KILL_AT-th metric call
(0: never), and prints one JSON line: metric calls, LM calls, the tracker's stats and the
best trial.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dspy
from rule_lm import RuleLM


def example(a: int, b: int) -> dspy.Example:
    return dspy.Example(question=f"What is {a} + {b}?", answer=str(a + b)).with_inputs("question")


TRAIN = [example(a, a % 3 + 1) for a in range(12)]
VAL = [example(a, 2) for a in range(12)]


class Counter:
    """The metric: exact match, counting its calls (and SIGKILLing the process at call ``kill_at``)."""

    def __init__(self, kill_at: int = 0) -> None:
        self.calls = 0
        self.kill_at = kill_at

    def __call__(self, gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> float:
        self.calls += 1
        if self.calls == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return float(gold.answer == pred.answer)


def optimizer(name: str, metric: Counter, lm: RuleLM) -> Any:
    """The optimizer ``name``, configured small (a run takes about a second)."""
    if name == "labeled":
        return dspy.LabeledFewShot(k=3)
    if name == "bootstrap":
        return dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=3, max_labeled_demos=3)
    if name == "rs":
        return dspy.BootstrapFewShotWithRandomSearch(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=2,
                                                     num_candidate_programs=3, num_threads=1)
    if name == "mipro":
        return dspy.MIPROv2(metric=metric, auto="light", num_threads=1, max_bootstrapped_demos=2,
                            max_labeled_demos=2, verbose=False)
    if name == "gepa":
        return dspy.GEPA(metric=metric, max_metric_calls=60, reflection_lm=lm, num_threads=1,
                         reflection_minibatch_size=3)
    raise ValueError(name)


def compile_with(opt: Any, name: str) -> Any:
    student = dspy.Predict("question -> answer")
    if name in ("labeled", "bootstrap"):
        return opt.compile(student, trainset=TRAIN)
    return opt.compile(student, trainset=TRAIN, valset=VAL)


def main() -> None:
    import logging

    import desiru as ds
    from desiru.interop import dspy as dd

    logging.disable(logging.WARNING)
    name, path, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    lm = RuleLM()
    dspy.configure(lm=lm)
    metric = Counter(kill_at)
    with ds.Journal.open(path) as journal, dd.track(journal, run=name, resume=True) as tracker:
        compiled = compile_with(optimizer(name, metric, lm), name)
        best = journal.trial(f"{name}/best")
        same = journal.replay(tag=f"{name}/best", into=dspy.Predict("question -> answer")).dump_state() == \
            compiled.dump_state()
    print(json.dumps({"metric_calls": metric.calls, "lm_calls": lm.calls, "stats": tracker.stats,
                      "best_score": best.score, "best_hash": best.content_hash, "best_is_compiled": same}))


if __name__ == "__main__":
    main()
