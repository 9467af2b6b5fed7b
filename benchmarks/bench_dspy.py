"""dspy programs: commit of a live module after one demo changed, and load into a dspy module.

    python benchmarks/bench_dspy.py            # full run (quiet and busy); writes docs/benchmarks.md "DSPy"
    python benchmarks/bench_dspy.py --quick    # 1,000 demos, prints only

Targets (issue 13): committing a live dspy module with 10,000 demos after one demo
changed < 20 ms (only the changed demos are converted again); ``dd.load(path,
into=module)`` within 2x of dspy's own ``module.load("x.json")`` for the same program.

The two loads are timed in alternating rounds (the order swapped each round), so both
see the same machine; median and p90 of each are reported, on the machine as it is
("quiet") and with two busy-looping processes beside it ("busy": the 2 cores shared).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dspy
from report import machine, med_p90, median_time, table, write_section

import desiru as ds
from desiru.interop import dspy as dd

WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an "
         "they you were her she there been one all we their has would when if so what out up more about into than "
         "them can only other new some could time these two may then do first any my now such like our over").split()


class QA(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rewrite = dspy.Predict("question -> search_query")
        self.answer = dspy.ChainOfThought("question, context -> answer")


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def demo(rng: random.Random, i: int) -> dspy.Example:
    return dspy.Example(question=f"{text(rng, 10)}? ({i})", context=text(rng, 60), reasoning=text(rng, 20),
                        answer=text(rng, 3)).with_inputs("question", "context")


def program(n: int) -> QA:
    rng = random.Random(13)
    qa = QA()
    qa.answer.predict.demos = [demo(rng, i) for i in range(n)]
    qa.rewrite.demos = [dspy.Example(question=text(rng, 8), search_query=text(rng, 4)).with_inputs("question")
                        for _ in range(10)]
    return qa


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


@contextlib.contextmanager
def busy(n: int) -> Iterator[None]:
    """``n`` processes spinning on the CPU while the block runs (a busy machine)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5)  # let them get going
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def paired(a: Callable[[], object], b: Callable[[], object], runs: int) -> tuple[list[float], list[float]]:
    """Wall times of ``a()`` and ``b()`` in alternating rounds (order swapped each round), GC kept out."""
    a(), b()  # warm up
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(runs):
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            fn = (a, b)[which]
            gc.collect()
            gc.disable()
            try:
                t0 = time.perf_counter()
                fn()
                times[which].append(time.perf_counter() - t0)
            finally:
                gc.enable()
    return times


def load_rows(label: str, own: list[float], ours: list[float]) -> list[list[str]]:
    """Table rows comparing dspy's load with desiru's: median and p90 of each, and their ratios."""
    (own_med, own_p90), (our_med, our_p90) = med_p90(own), med_p90(ours)
    worst = max(our_med / own_med, our_p90 / own_p90)
    return [
        [f"dspy's own load of its .json (QA().load), {label}", f"{ms(own_med)} (p90 {ms(own_p90)})", ""],
        [f"dd.load(.msgpack, into=QA()), {label}", f"{ms(our_med)} (p90 {ms(our_p90)})",
         f"{our_med / own_med:.2f}x dspy's median, {our_p90 / own_p90:.2f}x its p90: within 2x "
         f"{'met' if worst <= 2 else 'MISSED'}"],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 demos, prints only")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per figure (median reported)")
    parser.add_argument("--load-runs", type=int, default=None, help="alternating rounds of the two loads")
    args = parser.parse_args()
    n = 1_000 if args.quick else 10_000
    runs = args.runs or (3 if args.quick else 7)
    load_runs = args.load_runs or (5 if args.quick else 31)
    qa = program(n)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with ds.Journal.open(folder / "run.journal", fsync="never") as journal:
            first = median_time(lambda: dd.from_dspy(qa), runs=runs)
            journal.commit(qa)

            def one_demo() -> None:
                qa.answer.predict.demos[rng.randrange(n)] = demo(rng, n + rng.randrange(10**6))
                journal.commit(qa)

            commit = median_time(one_demo, runs=runs, warmup=2)
            unchanged = median_time(lambda: journal.commit(qa), runs=runs)
            replay = median_time(lambda: journal.replay(into=QA()), runs=runs)
        qa.save(str(folder / "qa.json"))
        dd.save(qa, folder / "qa.msgpack")

        def dspy_load() -> None:
            QA().load(str(folder / "qa.json"))

        def desiru_load() -> None:
            dd.load(folder / "qa.msgpack", into=QA())

        quiet = paired(dspy_load, desiru_load, load_runs)
        with busy(0 if args.quick else 2):
            loaded = paired(dspy_load, desiru_load, load_runs)
        assert dd.load(folder / "qa.msgpack", into=QA()).dump_state() == qa.dump_state()
    rows = [
        [f"commit after one demo changed ({n:,} demos)", ms(commit),
         f"< 20 ms: {'met' if commit < 0.020 else 'MISSED'}"],
        ["commit, nothing changed", ms(unchanged), ""],
        ["dd.from_dspy (every demo converted)", ms(first), "what a commit cost before the cache"],
        *load_rows("quiet", *quiet),
        *([] if args.quick else load_rows("busy", *loaded)),
        ["journal.replay(into=QA()) at the head", ms(replay), ""],
    ]
    body = "\n".join([
        f"Measured on {machine()}; dspy {dspy.__version__}. Median of {runs} runs, garbage collection kept",
        "out of the timings (as for every figure here); the two loads: median and p90 of",
        f"{load_runs} alternating rounds each (the order swapped each round), on the machine as it was",
        "(\"quiet\") and beside two busy-looping processes (\"busy\": both cores shared). A program of a",
        f"Predict and a ChainOfThought whose predictor holds {n:,} `dspy.Example` demos (question,",
        "context, reasoning, answer; ~90 words each).",
        "",
        table(["work", "time", "note"], rows),
        "",
        "A commit converts only the demos that changed since the journal's last commit of that",
        "module (`desiru.interop.dspy.cache`); a load builds the `dspy.Example` objects as",
        "`dspy.Example(fields).with_inputs(*keys)` does, without its copies",
        "(`desiru.interop.dspy.examples`), taking the dicts the file decoded to (`dd.load` owns the",
        "program it read, so nothing is copied). dspy's own load leaves demos as dicts; desiru's",
        "gives back Examples with their input keys.",
        "",
        "Command: `python benchmarks/bench_dspy.py`",
    ])
    print(body)
    if not args.quick:
        write_section("DSPy", body)


if __name__ == "__main__":
    main()
