"""Recorded LM answers (track(journal, record_lm=True)) on a long run: lookups, and compact() carrying them.

    python benchmarks/bench_lm_record.py            # 20,000 answers; writes the "Recorded LM answers" section
    python benchmarks/bench_lm_record.py --quick    # 2,000 answers, prints only

The journal looks like a long dspy run: one commit of a small program after every 10 LM
answers (an answer is one ~800-character completion). Measured with ``LMRecords``, the
index the LM wrapper uses (no dspy needed): building it once (the first lookup of a run
reads the log), a lookup that hits (the answer is read back by its seq), a miss plus the
append of the new answer at the end of the long log, and ``compact()`` with and without
the answers in the log it drops (it appends them again after the head first).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, table, write_section

import desiru as ds
from desiru.interop.dspy.lm_record import LMRecords
from desiru.journal import Journal
from desiru.journal.events import LMResponseRecorded

ANSWER = "[[ ## reasoning ## ]]\n" + "step by step " * 50 + "\n\n[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]"
PER_COMMIT = 10


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def us(values: list[float]) -> str:
    """Median and p90, in us (or ms when the median is 10 ms or more)."""
    scale, unit = (1e3, "ms") if statistics.median(values) >= 0.01 else (1e6, "us")
    return f"median {statistics.median(values) * scale:,.0f} {unit}, p90 {p90(values) * scale:,.0f} {unit}"


def build(path: Path, n: int, *, answers: bool) -> None:
    """A journal of ``n`` answers (or none) with a commit after every PER_COMMIT, and a snapshot at its head."""
    program = ds.Program()
    program.answer = ds.Predict("question -> answer")
    with Journal.open(path, fsync="never") as j:
        j.commit(program)
        batch = []
        for i in range(n):
            if answers:
                batch.append(LMResponseRecorded(payload={"key": f"{i:032x}", "model": "openai/gpt-4o-mini",
                                                         "outputs": [f"{i} {ANSWER}"]}))
            if (i + 1) % PER_COMMIT == 0:
                if batch:
                    j.append_many(batch)
                    batch = []
                program.answer.parameters["step"] = i
                j.commit(program)
        j.snapshot()


def measure(folder: Path, n: int, runs: int) -> tuple[str, str]:
    builds, hits, puts, compacts, bases, carried = [], [], [], [], [], []
    sizes: tuple[int, int] = (0, 0)
    for _ in range(runs):
        path = folder / f"lm-{uuid.uuid4().hex}.journal"
        build(path, n, answers=True)
        with Journal.open(path, fsync="never") as j:
            records = LMRecords(j)
            t0 = time.perf_counter()
            assert records.get("missing") == (False, None)  # the first lookup builds the index
            builds.append(time.perf_counter() - t0)
            rng = random.Random(1)
            for i in rng.sample(range(n), 500):
                t0 = time.perf_counter()
                found, outputs = records.get(f"{i:032x}")
                hits.append(time.perf_counter() - t0)
                assert found and outputs[0].startswith(f"{i} ")
            for i in range(200):
                key = f"new{i:029d}"
                t0 = time.perf_counter()
                records.get(key)
                records.put(key, "openai/gpt-4o-mini", [ANSWER])
                puts.append(time.perf_counter() - t0)
            j.snapshot()
            before = j.size()
            t0 = time.perf_counter()
            j.compact()
            compacts.append(time.perf_counter() - t0)
            sizes = (before, j.size())
            keys = [e.payload["key"] for e in j.events() if isinstance(e, LMResponseRecorded)]
            assert len(keys) == len(set(keys)) == n + 200
            carried.append(len(keys))
        shutil.rmtree(path)
        base = folder / f"base-{uuid.uuid4().hex}.journal"
        build(base, n, answers=False)
        with Journal.open(base, fsync="never") as j:
            t0 = time.perf_counter()
            j.compact()
            bases.append(time.perf_counter() - t0)
        shutil.rmtree(base)
    commits = n // PER_COMMIT
    rows = [
        [f"index built (first lookup of a run), {n:,} answers + {commits:,} commits in the log", us(builds)],
        ["lookup that hits (500 random keys per run)", us(hits)],
        ["lookup that misses + append of the answer (200 per run)", us(puts)],
        [f"compact(), carrying {carried[-1]:,} answers ({sizes[0] / 1e6:,.1f} MB -> {sizes[1] / 1e6:,.1f} MB)",
         us(compacts)],
        [f"compact() of the same journal without answers ({commits:,} commits)", us(bases)],
    ]
    return table(["what", "time"], rows), f"{runs} runs; {machine()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    n = 2_000 if args.quick else 20_000
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        body, note = measure(Path(tmp), n, args.runs)
    note += f"; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (shared machine)"
    text = (f"`python benchmarks/bench_lm_record.py` ({note}). A long dspy run with `record_lm=True`: "
            f"one commit after every {PER_COMMIT} LM answers of about 800 characters.\n\n{body}")
    print(text)
    if not args.quick:
        write_section("Recorded LM answers", text)


if __name__ == "__main__":
    main()
