"""A small optimization task for tests of tracked dspy runs, and a script that runs one.

``python tests/dspy_runs.py OPTIMIZER JOURNAL KILL_AT [lm]`` runs OPTIMIZER (rs, mipro or gepa)
tracked into JOURNAL with resume=True (and with ``lm``, record_lm=True: LM answers kept in
the journal and replayed), SIGKILLs itself at the KILL_AT-th metric call (0: never), and
prints one JSON line: metric calls, LM calls, the tracker's stats and the best trial.

``python tests/dspy_runs.py measure`` runs each optimizer uninterrupted, killed half-way and
resumed, without and with record_lm, and prints the metric and LM calls of each run (the
table of docs/dspy.md).
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


def run(args: list[str]) -> dict[str, Any] | None:
    """This script in a fresh process; its JSON line (None when it was SIGKILLed as asked)."""
    import subprocess

    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=600)
    if args[2] != "0":  # asked to die at a metric call: it must have
        if proc.returncode != -signal.SIGKILL:
            raise RuntimeError(f"expected SIGKILL, exit {proc.returncode}: {proc.stderr[-2000:]}")
        return None
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def recorded_keys(path: str | Path) -> list[str]:
    """The request keys of the LM answers a journal holds, in order."""
    import desiru as ds

    with ds.Journal.open(path, readonly=True) as journal:
        return [e.payload["key"] for e in journal.events() if e.type == "LMResponseRecorded"]


def measure() -> None:
    """Metric / LM calls of uninterrupted and resumed runs, without and with recorded LM answers."""
    import tempfile

    rows = ["| optimizer | record_lm | uninterrupted: metric / LM calls | resumed after SIGKILL: metric / LM calls |",
            "|---|---|---|---|"]
    for name in ("rs", "mipro", "gepa"):
        for lm in ([], ["lm"]):
            with tempfile.TemporaryDirectory() as tmp:
                full = run([name, f"{tmp}/full", "0", *lm])
                assert full is not None
                run([name, f"{tmp}/crashed", str(full["metric_calls"] // 2), *lm])
                resumed = run([name, f"{tmp}/crashed", "0", *lm])
                assert resumed is not None
            rows.append(f"| {name} | {'on' if lm else 'off'} | {full['metric_calls']} / {full['lm_calls']} "
                        f"| {resumed['metric_calls']} / {resumed['lm_calls']} |")
    print("\n".join(rows))


def main() -> None:
    import logging

    import desiru as ds
    from desiru.interop import dspy as dd

    logging.disable(logging.WARNING)
    if sys.argv[1:] == ["measure"]:
        measure()
        return
    name, path, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    record_lm = sys.argv[4:] == ["lm"]
    lm = RuleLM()
    dspy.configure(lm=lm)
    metric = Counter(kill_at)
    with ds.Journal.open(path) as journal, dd.track(journal, run=name, resume=True, record_lm=record_lm) as tracker:
        compiled = compile_with(optimizer(name, metric, lm), name)
        best = journal.trial(f"{name}/best")
        same = journal.replay(tag=f"{name}/best", into=dspy.Predict("question -> answer")).dump_state() == \
            compiled.dump_state()
    print(json.dumps({"metric_calls": metric.calls, "lm_calls": lm.calls, "stats": tracker.stats,
                      "best_score": best.score, "best_hash": best.content_hash, "best_is_compiled": same}))


if __name__ == "__main__":
    main()
