"""Run reports of large runs: writing the page of a 100,000-trial run, and opening it in a browser.

    python benchmarks/bench_report.py            # full run (~5 min); writes "Run report" in docs/benchmarks.md
    python benchmarks/bench_report.py --quick    # 2,000 trials, prints only

Targets (issue 17): the report of a 100,000-trial run written in < 10 s, and opened in a
browser (Debian's headless Chromium) in < 5 s. The run is an optimizer's tree: each
candidate derives from a random one of the 20 newest, changes a parameter and a demo,
and carries a score, two metrics and params.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, table, write_section

import desiru as ds
from desiru.journal import Journal
from desiru.report import gather, write_report


def write_run(path: Path, n: int, seed: int = 17) -> None:
    """``n`` scored commits in a tree, as an optimization run writes them."""
    rng = random.Random(seed)
    p = ds.Program()
    p.answer = ds.ChainOfThought("question, context -> answer", temperature=0.2)
    p.answer.demos = [ds.Example(question=f"q{k}", answer=f"a{k}") for k in range(8)]
    seqs: list[int] = []
    with Journal.open(path, fsync="never") as j:
        for i in range(n):
            parent = rng.choice(seqs[-20:]) if seqs else None
            p.answer.parameters["temperature"] = round(rng.random(), 3)
            p.answer.demos[rng.randrange(8)] = ds.Example(question=f"q{i}", answer=f"a{i}")
            score = min(1.0, 0.3 + 0.6 * (i / n) ** 0.5 + rng.uniform(-0.2, 0.05))
            r = j.commit(p, parent=parent, score=score, metrics={"em": score, "cost_usd": rng.uniform(0.01, 0.05)},
                         params={"instruction_idx": rng.randrange(10), "demo_set": rng.randrange(20)})
            seqs.append(r.seq)


def children_cpu() -> float:
    """User + system CPU seconds of the child processes that have ended (Chromium's included)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def chromium_open(page: Path) -> tuple[float, float]:
    """(seconds until the page's figures were drawn, as the page measures it; wall seconds of the whole
    headless Chromium run, start-up included) for one opening of ``page``."""
    exe = shutil.which("chromium")
    if exe is None:
        raise SystemExit("chromium is needed: apt-get install -y chromium")
    t0 = time.perf_counter()
    res = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          "--host-resolver-rules=MAP * ~NOTFOUND", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=300, check=True)
    wall = time.perf_counter() - t0
    match = re.search(r'data-rendered="(\d+)"', res.stdout)
    if match is None:
        raise SystemExit("the page did not finish drawing its figures")
    return int(match.group(1)) / 1e3, wall


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2,000 trials, print only")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    n = 2_000 if args.quick else 100_000
    rounds = 3
    tmp = Path(tempfile.mkdtemp(prefix="bench-report-"))
    try:
        run = tmp / "run.journal"
        t0 = time.perf_counter()
        write_run(run, n)
        built = time.perf_counter() - t0
        print(f"{n:,} trials written in {built:.1f} s", flush=True)
        cli, cli_cpu, api, gathered, rendered, walls = [], [], [], [], [], []
        page = tmp / "report.html"
        for _ in range(rounds):
            t0, c0 = time.perf_counter(), children_cpu()  # what a user waits for: a new process does it all
            subprocess.run([sys.executable, "-m", "desiru", "report", str(run), "-o", str(page)], check=True,
                           capture_output=True)
            cli.append(time.perf_counter() - t0)
            cli_cpu.append(children_cpu() - c0)
            with Journal.open(run, readonly=True) as j:
                t0 = time.perf_counter()
                data = gather(j)
                gathered.append(time.perf_counter() - t0)
                write_report(data, tmp / "api.html")
                api.append(time.perf_counter() - t0)
            drawn, wall = chromium_open(page)
            rendered.append(drawn)
            walls.append(wall)
        size = page.stat().st_size
        med = statistics.median
        rows = [
            ["`desiru report RUN -o report.html` (new process: import, open, index, write)", f"{med(cli):.2f} s",
             f"{med(cli_cpu):.2f} s"],
            ["in process: `gather(journal)` + `write_report(data, path)` on a journal just opened", f"{med(api):.2f} s",
             ""],
            ["of which `gather` (the run index built on first use, best, lineage, diff of the best)",
             f"{med(gathered):.2f} s", ""],
            ["page opened in headless Chromium: both figures drawn (`performance.now()` in the page)",
             f"{med(rendered):.2f} s", ""],
            ["headless Chromium run, start-up to DOM dumped and exit", f"{med(walls):.2f} s", ""],
            ["page size", f"{size / 1e6:.1f} MB", ""],
        ]
        verdicts = [f"written < 10 s: {'met' if med(cli) < 10 else 'MISSED'} ({med(cli):.2f} s wall, "
                    f"{med(cli_cpu):.2f} s of CPU)",
                    f"opened < 5 s: {'met' if med(rendered) < 5 else 'MISSED'} (figures drawn {med(rendered):.2f} s "
                    f"after the page was opened; {med(walls):.2f} s with Chromium's start-up and DOM dump)"]
        body = "\n".join([
            f"`python benchmarks/bench_report.py`: a run of {n:,} trials (a tree: each candidate derives from one "
            f"of the 20 newest; score, two metrics and params each), median of {rounds} rounds. {machine()}; "
            f"{subprocess.run(['chromium', '--version'], capture_output=True, text=True).stdout.strip()}; "
            f"load average during the run {os.getloadavg()[0]:.1f} (a shared machine: the times include waiting "
            "for a core).",
            "", table(["what", "wall time", "CPU time"], rows), "",
            "The page draws at most ~4,000 points per series (per bin the lowest and the highest, plus every "
            "step of the best-so-far line and the best's ancestry, which stay exact); see docs/report.md.", "",
            *[f"- {v}" for v in verdicts]])
        print(body)
        if not (args.quick or args.no_write):
            write_section("Run report", body)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
