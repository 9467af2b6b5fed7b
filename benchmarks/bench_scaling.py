"""Journal scaling: costs that should not grow with history, measured at 10k/100k/1M events beside SQLite.

    python benchmarks/bench_scaling.py            # full run (10k, 100k, 1M); writes "Journal scaling"
    python benchmarks/bench_scaling.py --quick    # 10k and 100k, prints only
    python benchmarks/bench_scaling.py --10m      # full run plus 10M events (minutes, ~2 GB of disk)
    python benchmarks/bench_scaling.py --sizes 10000,100000,1000000,10000000

Per journal length it measures a reader's open, a writer's open plus its first commit,
a follower's lag behind commits, a small commit, a replay to the head and a read of
every event; SQLite (sqlite3, WAL, synchronous=NORMAL) stores the same record bytes in
one table and is measured the same way in the same run. Each cost's growth is fitted as
``cost ~ length ** exponent`` over the lengths measured: ~0 is constant, 1 is linear (issue 16
wants 0 for every row but the full read).
"""

from __future__ import annotations

import argparse
import math
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, med_p90, table, timings, write_section

import desiru as ds
from desiru import _engine
from desiru.journal import Journal, ParameterSet

BATCH = 10_000


def small_program() -> ds.Program:
    p = ds.Program()
    p.answer = ds.ChainOfThought("question -> answer", temperature=0.1)
    p.answer.demos = [ds.Example(question=f"q{i}", answer=f"a{i}") for i in range(8)]
    return p


def events(n: int, base: int) -> list[ParameterSet]:
    return [ParameterSet(path="answer", payload={"key": f"k{i % 50}", "value": (base + i) * 0.25}) for i in range(n)]


def build(path: Path, n: int) -> int:
    """A journal of ``n`` small events (a commit, then ParameterSet groups of BATCH); its head."""
    with Journal.open(path, fsync="never") as j:
        j.commit(small_program())
        done = j.head
        while done < n:
            k = min(BATCH, n - done)
            j.append_many(events(k, done))
            done += k
        return j.head


def build_sqlite(db: Path, journal: Path) -> int:
    """SQLite holding the same record bytes as the journal, one row per event."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE events (seq INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    with Journal.open(journal, readonly=True) as r:
        for chunk in r.store.read_chunks(1):
            con.executemany("INSERT INTO events VALUES (?, ?)", [(s, p) for s, _o, p in chunk])
        con.commit()
        head = r.head
    con.close()
    return head


def sqlite_connect(db: Path) -> sqlite3.Connection:
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("PRAGMA synchronous=NORMAL")
    return con


class Follower:
    """A reader following the journal in a thread: the time each event was yielded."""

    def __init__(self, path: Path) -> None:
        self.seen: dict[int, float] = {}
        self.reader = Journal.open(path, readonly=True)
        self.stop = False
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait()

    def _run(self) -> None:
        it = self.reader.follow(timeout=0.5)
        self.ready.set()
        while not self.stop:
            for ev in it:
                self.seen[ev.seq] = time.perf_counter()
                if self.stop:
                    break
            it = self.reader.follow(timeout=0.5)

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=5)
        self.reader.close()


def measure(folder: Path, n: int, runs: int, lag_commits: int) -> dict[str, list[float]]:
    path = folder / f"j{n}.journal"
    t0 = time.perf_counter()
    head = build(path, n)
    print(f"  built {head:,} events in {time.perf_counter() - t0:.1f} s", flush=True)
    db = folder / f"s{n}.sqlite"
    build_sqlite(db, path)
    res: dict[str, list[float]] = {}
    with Journal.open(path, readonly=True) as r:
        program = r.replay()
    value = [0.0]

    def changed() -> ds.Program:
        value[0] += 1
        program.answer.parameters["temperature"] = value[0]
        return program

    def reader_open() -> None:
        Journal.open(path, readonly=True).close()

    res["reader open"] = timings(reader_open, runs)

    def writer_first() -> None:
        with Journal.open(path, fsync="never") as j:
            j.commit(changed())

    res["writer open + first commit"] = timings(writer_first, runs)

    def lazy_runs() -> None:
        with Journal.open(path, readonly=True) as r:
            t = time.perf_counter()
            r.trials()
            res.setdefault("run index, first use", []).append(time.perf_counter() - t)
            t = time.perf_counter()
            r.tags()
            res.setdefault("tag index, first use", []).append(time.perf_counter() - t)

    for _ in range(max(1, runs // 4)):
        lazy_runs()

    # a writer's small commits, and a follower's lag behind each one
    with Journal.open(path, fsync="never") as j:
        j.commit(changed())
        k = 200
        t = time.perf_counter()
        for _ in range(k):
            j.commit(changed())
        res["small commit (fsync=never)"] = [(time.perf_counter() - t) / k]
        follower = Follower(path)
        try:
            lags = []
            for _ in range(lag_commits):
                c = j.commit(changed())
                t = time.perf_counter()
                deadline = t + 2
                while c.seq not in follower.seen and time.perf_counter() < deadline:
                    time.sleep(0.0002)
                lags.append(follower.seen.get(c.seq, deadline) - t)
                time.sleep(0.003)
        finally:
            follower.close()
        res["follower lag"] = lags

    def replay_head() -> None:
        with Journal.open(path, readonly=True) as r:
            r.replay_state()

    res["reader open + replay to head"] = timings(replay_head, max(1, runs // 4))

    def read_all() -> None:
        with Journal.open(path, readonly=True) as r:
            for _chunk in r.store.read_chunks(1):
                pass

    res["read every record"] = timings(read_all, max(1, runs // 8))

    # SQLite, the same records
    def sq_open() -> None:
        con = sqlite_connect(db)
        con.execute("SELECT max(seq) FROM events").fetchone()
        con.close()

    res["SQLite: open + head"] = timings(sq_open, runs)
    con = sqlite_connect(db)
    payload = _engine.packb({"small": "change"})
    top = [con.execute("SELECT max(seq) FROM events").fetchone()[0]]

    def sq_insert() -> None:
        top[0] += 1
        con.execute("BEGIN")
        con.execute("INSERT INTO events VALUES (?, ?)", (top[0], payload))
        con.execute("COMMIT")

    ins = timings(sq_insert, 200)
    res["SQLite: small insert (synchronous=NORMAL)"] = [statistics.mean(ins)]
    res["SQLite: a follower's look (max(seq))"] = timings(
        lambda: con.execute("SELECT max(seq) FROM events").fetchone(), runs)
    con.close()

    def sq_read() -> None:
        c = sqlite_connect(db)
        for _row in c.execute("SELECT seq, payload FROM events"):
            pass
        c.close()

    res["SQLite: read every record"] = timings(sq_read, max(1, runs // 8))
    shutil.rmtree(path, ignore_errors=True)
    db.unlink()
    for extra in folder.glob(f"s{n}.sqlite*"):
        extra.unlink()
    return res


def exponent(xs: list[int], ys: list[float]) -> float:
    """Least-squares slope of log(y) on log(x)."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(max(y, 1e-9)) for y in ys]
    mx, my = statistics.mean(lx), statistics.mean(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / den if den else 0.0


def fmt(s: float) -> str:
    return f"{s * 1e6:,.0f} us" if s < 1e-3 else f"{s * 1e3:,.2f} ms" if s < 1 else f"{s:,.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k events, prints only")
    parser.add_argument("--sizes", default=None, help="comma-separated journal lengths (prints only)")
    parser.add_argument("--10m", dest="ten_m", action="store_true", help="the full run plus 10,000,000 events")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per cost (median and p90)")
    parser.add_argument("--dir", default=None, help="where to build the journals (default: a temp dir)")
    args = parser.parse_args()
    sizes = ([int(s) for s in args.sizes.split(",")] if args.sizes
             else [10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    if args.ten_m and not args.sizes and not args.quick:
        sizes.append(10_000_000)
    folder = Path(tempfile.mkdtemp(prefix="desiru-bench-scaling-", dir=args.dir))
    results: dict[int, dict[str, list[float]]] = {}
    t0 = time.perf_counter()
    try:
        for n in sizes:
            print(f"{n:,} events", flush=True)
            results[n] = measure(folder, n, args.runs, 30 if args.quick else 60)
            for name, xs in results[n].items():
                med, p90 = med_p90(xs)
                print(f"  {name:45s} median {fmt(med):>10s}  p90 {fmt(p90):>10s}", flush=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    total = time.perf_counter() - t0
    names = list(results[sizes[0]])
    rows = []
    for name in names:
        meds = [med_p90(results[n][name])[0] for n in sizes]
        row = [name] + [f"{fmt(m)} ({fmt(med_p90(results[n][name])[1])})" for m, n in zip(meds, sizes)]
        row.append(f"{exponent(sizes, meds):+.2f}" if len(sizes) > 1 else "")
        rows.append(row)
    body = table(["cost: median (p90)"] + [f"{n:,} events" for n in sizes] + ["exponent"], rows)
    print(body)
    print(f"total {total:.0f} s")
    if not args.quick and not args.sizes:
        command = "python benchmarks/bench_scaling.py" + (" --10m" if args.ten_m else "")
        text = "\n\n".join([
            f"Command: `{command}`; {args.runs} runs per cost (the run and tag indexes, the replay and the "
            f"full reads fewer); engine: {_engine.BACKEND}; took {total:.0f} s. Machine: {machine()}.",
            "Journals of small events (a ParameterSet of one float per record, groups of 10,000, the default "
            "snapshot policy); the commits change one setting of a 1-module program. SQLite (WAL, "
            "synchronous=NORMAL) holds the same record bytes, one row each. The exponent is the slope of "
            "log(median) on log(length): about 0 is a cost independent of history, 1 grows with it. A "
            "follower's lag is from commit() returning to the event reaching a reader's follow() "
            "(default poll) in another thread.",
            body,
        ])
        write_section("Journal scaling", text)
        print("wrote the Journal scaling section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
