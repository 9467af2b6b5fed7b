"""End-to-end documents: Program.save + ds.load against pickle, compression cost, peak memory.

    python benchmarks/bench_documents.py [--quick] [--runs N]

Writes the "Documents end to end" section of docs/benchmarks.md. Targets (issue 3):
save+load of the large program as msgpack faster than pickle.dump+pickle.load of the
same program object; with compress="zstd" at most 2x the uncompressed time; peak
memory of loading under 3x the decoded state's own size.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import large_state, small_state
from report import machine, median_time, table, write_section

import desiru as ds
from desiru import _engine


class BigProgram(ds.Program):
    """The class benchmarks/data.py names."""

    __desiru_name__ = "bench.BigProgram"


# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork+exec, so a child of this large
# process would report the parent's size as its own peak
_PEAK_SCRIPT = r"""
import gc, json, sys
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
import desiru as ds
class BigProgram(ds.Program):
    __desiru_name__ = "bench.BigProgram"
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
gc.collect()
base = rss()
program = ds.load(sys.argv[1])
gc.collect()
held = rss() - base
peak = hwm() - base
print(json.dumps({"held": held, "peak": peak}))
"""


def peak_memory(path: Path) -> dict[str, int]:
    """Peak and retained RSS growth of loading ``path`` in a fresh interpreter."""
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT, str(path)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data and few runs (a smoke test)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    runs = 2 if args.quick else args.runs
    state = small_state() if args.quick else large_state()
    program = BigProgram.from_state(state)
    size_mb = len(_engine.packb(state)) / 1e6
    rows = []
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)

        def ours(compress: str | None, fmt: str = "msgpack") -> tuple[float, float, Path]:
            target = folder / f"p.{fmt}"
            saved = program.save(target, compress=compress)
            t_save = median_time(lambda: program.save(target, compress=compress), runs)
            t_load = median_time(lambda: ds.load(saved.path), runs)
            return t_save, t_load, saved.path

        def pickled() -> tuple[float, float, Path]:
            target = folder / "p.pickle"

            def dump() -> None:
                with open(target, "wb") as f:
                    pickle.dump(program, f, protocol=5)

            def load() -> None:
                with open(target, "rb") as f:
                    pickle.load(f)

            dump()
            return median_time(dump, runs), median_time(load, runs), target

        cases = {
            "desiru msgpack": lambda: ours(None),
            "desiru msgpack+zstd": lambda: ours("zstd"),
            "desiru msgpack+gzip": lambda: ours("gzip") if args.quick else (float("nan"), float("nan"), None),
            "desiru json": lambda: ours(None, "json"),
            "pickle protocol 5": pickled,
        }
        paths = {}
        for name, case in cases.items():
            t_save, t_load, path = case()
            if path is None:
                continue
            paths[name] = path
            results[name] = t_save + t_load
            rows.append([name, f"{t_save * 1e3:.0f}", f"{t_load * 1e3:.0f}", f"{(t_save + t_load) * 1e3:.0f}",
                         f"{path.stat().st_size / 1e6:.1f}"])
        base = results["pickle protocol 5"]
        for row in rows:
            row.append(f"{base / results[row[0]]:.2f}x")
        mem = peak_memory(paths["desiru msgpack"])
    ratio_pickle = base / results["desiru msgpack"]
    ratio_zstd = results["desiru msgpack+zstd"] / results["desiru msgpack"]
    mem_ratio = mem["peak"] / max(mem["held"], 1)
    verdicts = [
        f"- save+load msgpack vs pickle: {ratio_pickle:.2f}x as fast (target > 1.0x): "
        + ("met" if ratio_pickle > 1.0 else f"MISSED: desiru takes {1 / ratio_pickle:.2f}x pickle's time"),
        f"- msgpack+zstd costs {ratio_zstd:.2f}x the uncompressed save+load (target <= 2x): "
        + ("met" if ratio_zstd <= 2.0 else f"MISSED: {ratio_zstd:.2f}x instead of at most 2x"),
        f"- peak memory of ds.load: {mem['peak'] / 1e6:.0f} MB for a state holding {mem['held'] / 1e6:.0f} MB = "
        f"{mem_ratio:.2f}x (target < 3x): " + ("met" if mem_ratio < 3 else "MISSED"),
    ]
    body = "\n".join([
        f"Command: `python benchmarks/bench_documents.py{' --quick' if args.quick else ''}`; "
        f"{'small' if args.quick else 'large'} program ({size_mb:.1f} MB as msgpack); medians of {runs} runs; "
        f"engine: {_engine.BACKEND}. Machine: {machine()}.",
        "",
        "desiru's save is durable (fsync of the file and its folder) and hashes its bytes once "
        "(XXH3-128, the checksum a load verifies; sha256 only with save(..., sha256=True)); pickle's dump "
        "is neither.",
        "",
        table(["what", "save ms", "load ms", "save+load ms", "file MB", "vs pickle"], rows),
        "",
        *verdicts,
    ])
    print(body)
    if not args.quick:
        write_section("Documents end to end", body)


if __name__ == "__main__":
    main()
