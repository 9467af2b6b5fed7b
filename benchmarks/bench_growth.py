"""What commit() costs, and how a reader's open and a follower's lag grow with the log, with the
library's automatic snapshots or without any. Prints a table; writes nothing.

    python benchmarks/bench_growth.py                  # up to 1,000,000 events (about two minutes)
    python benchmarks/bench_growth.py --no-snapshots   # the same journal with no automatic snapshot
    python benchmarks/bench_growth.py --max 100000     # smaller
"""

from __future__ import annotations

import argparse
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, table

import desiru as ds
from desiru.journal import Journal, ParameterSet


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 0.01 else f"{seconds * 1000:,.0f} ms"


def small_program() -> ds.Program:
    return ds.Program(answer=ds.Predict("question -> answer", temperature=0.0))


def commit_rate(folder: Path, n: int) -> float:
    """Small commits per second: one parameter changed per commit (fsync="batch", the default)."""
    p = small_program()
    with Journal.open(folder / "commits.journal") as j:
        j.commit(p)
        start = time.perf_counter()
        for i in range(n):
            p.answer.parameters["step"] = i
            j.commit(p)
        return n / (time.perf_counter() - start)


def append_rate(folder: Path, n: int) -> float:
    """Hand-built events per second, one append() each (fsync="batch")."""
    with Journal.open(folder / "appends.journal") as j:
        j.commit(small_program())
        events = [ParameterSet(path="answer", payload={"key": "step", "value": i}) for i in range(n)]
        start = time.perf_counter()
        for e in events:
            j.append(e)
        return n / (time.perf_counter() - start)


def grow(path: Path, to: int, snapshot_every: int | None) -> None:
    """Append small events until the journal holds ``to`` of them (fsync="never": building, not measuring)."""
    with Journal.open(path, fsync="never", snapshot_every=snapshot_every) as j:
        if j.head == 0:
            j.commit(small_program())
        while j.head < to:
            n = min(10_000, to - j.head)
            j.append_many([ParameterSet(path="answer", payload={"key": "k", "value": j.head + i}) for i in range(n)])


def reader_open(path: Path, runs: int = 3) -> float:
    """Seconds to open a reader and learn its head (median)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        with Journal.open(path, readonly=True) as r:
            assert r.head > 0
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def follower_lag(path: Path, commits: int = 5) -> float:
    """Seconds from a writer's commit returning to a follower (another thread) yielding it (median)."""
    got: queue.Queue[float] = queue.Queue()
    with Journal.open(path) as w:
        start_seq = w.head + 1

        def follow() -> None:
            with Journal.open(path, readonly=True) as r:
                for n, _event in enumerate(r.follow(start=start_seq, timeout=30, poll=0.02), 1):
                    got.put(time.perf_counter())
                    if n == commits:
                        return

        t = threading.Thread(target=follow)
        t.start()
        time.sleep(1.0)  # the follower has opened and is waiting
        lags = []
        p = w.replay()
        for i in range(commits):
            p.answer.parameters["temperature"] = (i + 1) / 10  # a real change each time
            w.commit(p)
            done = time.perf_counter()
            lags.append(got.get(timeout=60) - done)
        t.join()
    return statistics.median(lags)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", type=int, default=1_000_000, help="largest journal, in events")
    parser.add_argument("--no-snapshots", action="store_true",
                        help="grow the journal with snapshot_every=10**12, i.e. no automatic snapshots")
    args = parser.parse_args()
    every = 10**12 if args.no_snapshots else None  # None: the library's default
    folder = Path(tempfile.mkdtemp(prefix="desiru-growth-"))
    try:
        print(f"Machine: {machine()}")
        print(f"commit() of a small change: {commit_rate(folder, 5_000):,.0f}/s; "
              f"append() of one event: {append_rate(folder, 20_000):,.0f}/s (fsync='batch')")
        rows = []
        path = folder / "grow.journal"
        for size in [s for s in (10_000, 100_000, 1_000_000) if s <= args.max]:
            grow(path, size, every)
            rows.append([f"{size:,}", ms(reader_open(path)), ms(follower_lag(path))])
            print(rows[-1], flush=True)
        with Journal.open(path) as j:  # what a snapshot at the head changes (snapshot_every takes them as it goes)
            j.snapshot()
            size = j.head
        rows.append([f"{size:,}, snapshot at the head", ms(reader_open(path)), ms(follower_lag(path))])
        print(rows[-1], flush=True)
        with Journal.open(path) as j:  # and dropping the history before it
            j.compact()
        rows.append([f"{size:,}, compacted to that snapshot", ms(reader_open(path)), ms(follower_lag(path))])
        print(rows[-1], flush=True)
        print(table([f"events in the log ({'no snapshots' if args.no_snapshots else 'default snapshot_every'})",
                     "open a reader", "follower lag after a commit"], rows))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
