"""dspy programs: commit of a live module after one demo changed, and load into a dspy module.

    python benchmarks/bench_dspy.py            # full run; writes the "DSPy" section of docs/benchmarks.md
    python benchmarks/bench_dspy.py --quick    # 1,000 demos, prints only

Targets (issue 13): committing a live dspy module with 10,000 demos after one demo
changed < 20 ms (only the changed demos are converted again); ``dd.load(path,
into=module)`` within 2x of dspy's own ``module.load("x.json")`` for the same program.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dspy
from report import machine, median_time, table, write_section

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1,000 demos, prints only")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per figure (median reported)")
    args = parser.parse_args()
    n = 1_000 if args.quick else 10_000
    runs = args.runs or (3 if args.quick else 7)
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

        own = median_time(dspy_load, runs=runs)
        ours = median_time(desiru_load, runs=runs)
        assert dd.load(folder / "qa.msgpack", into=QA()).dump_state() == qa.dump_state()
    rows = [
        [f"commit after one demo changed ({n:,} demos)", ms(commit),
         f"< 20 ms: {'met' if commit < 0.020 else 'MISSED'}"],
        ["commit, nothing changed", ms(unchanged), ""],
        ["dd.from_dspy (every demo converted)", ms(first), "what a commit cost before the cache"],
        ["dspy's own load of its .json (QA().load)", ms(own), ""],
        ["dd.load(.msgpack, into=QA())", ms(ours),
         f"{ours / own:.2f}x dspy's: within 2x {'met' if ours <= 2 * own else 'MISSED'}"],
        ["journal.replay(into=QA()) at the head", ms(replay), ""],
    ]
    body = "\n".join([
        f"Measured on {machine()}; dspy {dspy.__version__}. Median of {runs} runs, garbage collection kept",
        "out of the timings (as for every figure here). A program of a Predict and a ChainOfThought",
        f"whose predictor holds {n:,} `dspy.Example` demos (question, context, reasoning, answer;",
        "~90 words each).",
        "",
        table(["work", "time", "note"], rows),
        "",
        "A commit converts only the demos that changed since the journal's last commit of that",
        "module (`desiru.interop.dspy.cache`); a load builds the `dspy.Example` objects as",
        "`dspy.Example(fields).with_inputs(*keys)` does, without its copies",
        "(`desiru.interop.dspy.examples`). dspy's own load leaves demos as dicts; desiru's gives",
        "back Examples with their input keys.",
        "",
        "Command: `python benchmarks/bench_dspy.py`",
    ])
    print(body)
    if not args.quick:
        write_section("DSPy", body)


if __name__ == "__main__":
    main()
