"""Eager save and load of the large program against pickle and ormsgpack, in one run (issue 16 item 2).

    python benchmarks/bench_eager.py [--quick] [--rounds N]

Each round times, in alternating order so that a busy machine weighs on all alike:
- desiru: ``program.save(path)`` (durable: fsync of file and folder, atomic rename; the XXH3-128 content
  checksum taken once as the bytes are written, no sha256 unless asked) and ``ds.load(path)``;
- pickle protocol 5 of the same Program object: dump to a file, load from it;
- ormsgpack by hand: ``ormsgpack.packb(program.to_state())`` written to a file, and read +
  ``ormsgpack.unpackb`` + ``Program.from_state`` (no checksum, no fsync, no version).
The ormsgpack save is timed twice: a plain write, and with fsync of the file and its folder as
desiru's save does. Reports median and p90 of the rounds, the ratios of medians (and, for the save, of the
p90s), the load average before and after, the save's p90 / median, and the
peak memory of ``ds.load`` in a fresh interpreter against the loaded program's own size.
Targets: save+load >= 1.5x pickle; >= 1.0x the ormsgpack path in each direction; peak load
memory <= 1.3x the loaded program; save p90 within 1.5x its median.
Writes the "Eager save and load" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ormsgpack
from bench_documents import BigProgram, peak_memory
from data import large_state, small_state
from report import machine, med_p90, table, write_section

import desiru as ds
from desiru import _engine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small data and few rounds (a smoke test)")
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    rounds = 2 if args.quick else args.rounds
    state = small_state() if args.quick else large_state()
    program = BigProgram.from_state(state)
    times: dict[str, list[float]] = {k: [] for k in (
        "desiru save", "desiru load", "pickle dump", "pickle load", "ormsgpack save", "ormsgpack save+fsync",
    "ormsgpack load")}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        ours, pick, orm = folder / "p.msgpack", folder / "p.pickle", folder / "p.ormsgpack"

        def desiru_save() -> None:
            program.save(ours)

        def desiru_load() -> None:
            ds.load(ours)

        def pickle_dump() -> None:
            with open(pick, "wb") as f:
                pickle.dump(program, f, protocol=5)

        def pickle_load() -> None:
            with open(pick, "rb") as f:
                pickle.load(f)

        def orm_save() -> None:
            orm.write_bytes(ormsgpack.packb(program.to_state(copy=False)))

        def orm_save_durable() -> None:  # the same durability as desiru's save: the file and its folder synced
            with open(orm, "wb") as f:
                f.write(ormsgpack.packb(program.to_state(copy=False)))
                f.flush()
                os.fsync(f.fileno())
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        def orm_load() -> None:
            BigProgram.from_state(ormsgpack.unpackb(orm.read_bytes()), copy=False)

        cases = [("desiru save", desiru_save), ("pickle dump", pickle_dump), ("ormsgpack save", orm_save),
                 ("ormsgpack save+fsync", orm_save_durable), ("desiru load", desiru_load),
                 ("pickle load", pickle_load), ("ormsgpack load", orm_load)]
        for fn in (desiru_save, pickle_dump, orm_save):
            fn()  # files exist, caches warm
        load_before = os.getloadavg()
        for r in range(rounds):
            order = cases if r % 2 == 0 else cases[::-1]
            for name, fn in order:
                gc.collect()
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        load_after = os.getloadavg()
        mem = peak_memory(ours)  # RSS a loaded program holds, and the peak, in a fresh interpreter
        file_mb = ours.stat().st_size / 1e6
    stats = {k: med_p90(v) for k, v in times.items()}
    med = {k: v[0] for k, v in stats.items()}
    rows = [[k, f"{stats[k][0] * 1e3:.0f}", f"{stats[k][1] * 1e3:.0f}"] for k in times]
    both_pickle = (med["pickle dump"] + med["pickle load"]) / (med["desiru save"] + med["desiru load"])
    p90 = {k: v[1] for k, v in stats.items()}
    save_orm = med["ormsgpack save"] / med["desiru save"]
    save_orm_durable = med["ormsgpack save+fsync"] / med["desiru save"]
    save_orm_p90 = p90["ormsgpack save"] / p90["desiru save"]
    save_orm_durable_p90 = p90["ormsgpack save+fsync"] / p90["desiru save"]
    load_orm = med["ormsgpack load"] / med["desiru load"]
    peak_ratio = mem["peak"] / max(mem["held"], 1)
    tail = stats["desiru save"][1] / stats["desiru save"][0]

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    lines = [
        f"Command: `python benchmarks/bench_eager.py{' --quick' if args.quick else ''}`; "
        f"{'small' if args.quick else 'large'} program ({file_mb:.1f} MB as msgpack); {rounds} rounds, "
        f"alternating order; engine: {_engine.BACKEND}. Machine: {machine()}. Load average (1, 5, 15 min) "
        f"before: {_loads(load_before)}, after: {_loads(load_after)}.",
        "",
        table(["what", "median ms", "p90 ms"], rows),
        "",
        f"- save+load vs pickle protocol 5: {both_pickle:.2f}x as fast (target >= 1.5x): {verdict(both_pickle >= 1.5)}",
        f"- save vs ormsgpack.packb + write (no fsync): {save_orm:.2f}x at the median, {save_orm_p90:.2f}x at p90 "
        f"(target >= 1.0x): {verdict(save_orm >= 1.0)}",
        f"- save vs ormsgpack.packb + write + fsync of file and folder (desiru's durability): "
        f"{save_orm_durable:.2f}x at the median, {save_orm_durable_p90:.2f}x at p90",
        f"- load vs read + ormsgpack.unpackb + from_state: {load_orm:.2f}x (target >= 1.0x): "
        f"{verdict(load_orm >= 1.0)}",
        f"- peak memory of ds.load: {mem['peak'] / 1e6:.0f} MB above the start for a program holding "
        f"{mem['held'] / 1e6:.0f} MB = {peak_ratio:.2f}x (target <= 1.3x): {verdict(peak_ratio <= 1.3)}",
        f"- save p90 / median: {tail:.2f} (target <= 1.5): {verdict(tail <= 1.5)}",
        "",
        "desiru's save is durable (fsync of the file and its folder, atomic rename) and hashes the bytes once "
        "(XXH3-128: the content checksum and the module table, sha256 only with save(..., sha256=True)); a large "
        "program is written module by module while the next one is encoded, its writeback started as it goes "
        "(docs/FORMAT.md, \"Writing, and the checksums a save returns\"). The ormsgpack path checks nothing on load. "
        "What each step of the save buys: \"Eager save, step by step\" below (python benchmarks/bench_save_steps.py).",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.quick:
        write_section("Eager save and load", body)


def _loads(avg: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in avg)


if __name__ == "__main__":
    main()
