"""Structural diff and record framing: Rust (desiru._native) against the pure-Python twin.

    python benchmarks/bench_diff.py [--quick] [--runs N]

Writes the "Diff and framing" section of docs/benchmarks.md (not with --quick). Target (issue 3):
diff of two 100,000-demo states that differ in one demo < 50 ms (Rust).
Framing has no target of its own; the journal's (issue 4) is >= 300,000 appended
events/s, so framing must cost a small fraction of that.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import program_state
from report import machine, median_time, table, write_section

from desiru import _native
from desiru._pure import diff as pure_diff
from desiru._pure import frame as pure_frame

DIFF_TARGET_MS = 50.0
SALT = 0x1234_5678_9ABC_DEF0


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f} ms"


def bench_diff(quick: bool, runs: int) -> tuple[list[list[Any]], list[str]]:
    shapes = [(5, 2_000), (1, 10_000)] if quick else [(50, 2_000), (1, 100_000)]
    rows: list[list[Any]] = []
    target_rows: list[str] = []
    for n_modules, n_demos in shapes:
        diff_shape(n_modules, n_demos, runs, rows, target_rows)
    return rows, target_rows


def diff_shape(n_modules: int, n_demos: int, runs: int, rows: list[list[Any]], target_rows: list[str]) -> None:
    """Rows for one program shape: equal / one changed / one moved, shared and separate, then apply."""
    total = n_modules * n_demos
    old = program_state(n_modules, n_demos, seed=7)
    # Two ways the new state can relate to the old one:
    # - "shared": fresh dicts and lists holding the same str objects, which is what
    #   Program.to_state() gives for the demos a run did not touch (copy.deepcopy
    #   shares immutable leaves the same way);
    # - "separate": built again from scratch, so no object is shared at all.
    variants: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("shared", lambda: copy.deepcopy(old)),
        ("separate", lambda: program_state(n_modules, n_demos, seed=7)),
    ]
    for variant, make in variants:
        label = f"{n_modules} x {n_demos:,} demos, {variant}"
        for name in ("equal states", "one demo changed", "one demo moved"):
            new = make()
            mid = new["modules"][n_modules // 2]["demos"]
            if name == "one demo changed":
                mid[n_demos // 2] = {**mid[n_demos // 2], "answer": "a changed answer"}
            elif name == "one demo moved":
                mid.insert(0, mid.pop(n_demos // 2))
            edits = _native.diff_states(old, new)
            assert pure_diff.diff_states(old, new) == edits, "Rust and Python disagree"
            rust = median_time(lambda new=new: _native.diff_states(old, new), runs=runs)
            pure = median_time(lambda new=new: pure_diff.diff_states(old, new), runs=max(1, runs // 3))
            floor = median_time(lambda new=new: old == new, runs=runs)
            ops = ", ".join(sorted({e["op"] for e in edits})) or "none"
            verdict = ""
            if name == "one demo changed" and total >= 100_000:
                got = rust * 1e3
                verdict = (
                    "met"
                    if got < DIFF_TARGET_MS
                    else f"missed by {got - DIFF_TARGET_MS:.0f} ms ({got / DIFF_TARGET_MS:.1f}x)"
                )
                target_rows.append(f"{label}: {got:.1f} ms, {verdict}")
            rows.append(
                [
                    label,
                    name,
                    f"{len(edits)} ({ops})",
                    ms(rust),
                    ms(pure),
                    f"{pure / rust:.1f}x",
                    ms(floor),
                    verdict,
                ]
            )
            print(rows[-1], flush=True)
    # Applying: the one-changed edits, re-applied to the same state each run (they stay valid).
    new = copy.deepcopy(old)
    mid = new["modules"][n_modules // 2]["demos"]
    mid[n_demos // 2] = {**mid[n_demos // 2], "answer": "a changed answer"}
    edits = _native.diff_states(old, new)
    rust = median_time(lambda: _native.apply_edits(new, edits), runs=runs)
    pure = median_time(lambda: pure_diff.apply_edits(new, edits), runs=runs)
    label = f"{n_modules} x {n_demos:,} demos"
    rows.append([label, "apply those 2 edits", "", ms(rust), ms(pure), f"{pure / rust:.1f}x", "", ""])
    print(rows[-1], flush=True)


def records(n: int, size: int) -> list[bytes]:
    base = bytes(range(256)) * (size // 256 + 1)
    return [base[i % 256 : i % 256 + size] for i in range(n)]


def bench_frame(quick: bool, runs: int) -> list[list[Any]]:
    shapes = [(20_000, 200), (16, 1 << 20)] if quick else [(200_000, 200), (64, 1 << 20)]
    rows: list[list[Any]] = []
    for n, size in shapes:
        payloads = records(n, size)
        volume = n * (size + 24)
        label = f"{n:,} records of {size:,} B"
        for impl, name in ((_native, "Rust"), (pure_frame, "Python")):
            enc = impl.frame_encode

            def encode_all(enc: Any = enc, payloads: list[bytes] = payloads) -> bytes:
                return b"".join([enc(p, i + 1, SALT) for i, p in enumerate(payloads)])

            buf = encode_all()
            found, good_end, fault = impl.frame_scan(buf, SALT)
            assert len(found) == n and good_end == len(buf) and fault is None
            r = runs if name == "Rust" or n < 100_000 else max(1, runs // 3)
            t_enc = median_time(encode_all, runs=r)
            t_scan = median_time(lambda impl=impl, buf=buf: impl.frame_scan(buf, SALT), runs=r)
            for what, t in (("encode", t_enc), ("scan", t_scan)):
                rows.append([label, name, what, ms(t), f"{n / t:,.0f} records/s", f"{volume / t / 1e9:.2f} GB/s"])
                print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer runs (a smoke run)")
    parser.add_argument("--runs", type=int, default=None, help="timed runs per figure (median reported)")
    args = parser.parse_args()
    runs = args.runs or (3 if args.quick else 7)
    load = os.getloadavg()[0]
    diff_rows, target_rows = bench_diff(args.quick, runs)
    frame_rows = bench_frame(args.quick, runs)
    cmd = "python benchmarks/bench_diff.py" + (" --quick" if args.quick else "")
    body = "\n".join(
        [
            f"Command: `{cmd}` (medians of {runs} runs for Rust, fewer for the slow pure-Python runs). "
            f"Machine: {machine()}; load average {load:.1f} when the run started "
            "(the machine is shared, so absolute times vary from run to run).",
            "",
            "### Structural diff",
            "",
            "`diff_states(old, new)`, Rust (`desiru._native`) against the pure-Python twin "
            "(`desiru._pure.diff`); both give identical edits (checked in the run). Data: "
            "`benchmarks/data.py` demos (7 fields, about 1 KB of text each). *shared*: the new state "
            "is made of fresh dicts and lists holding the same str objects as the old one, which is "
            "what `Program.to_state()` gives for demos a run did not touch; *separate*: built again "
            "from scratch, no object shared. `old == new` is Python's own comparison of the two trees, "
            "shown as a floor: it only answers yes/no.",
            "",
            table(["state", "change", "edits", "Rust", "Python", "Rust speedup", "old == new", "target"], diff_rows),
            "",
            f"Target (issue 3): one changed demo among 100,000 in < {DIFF_TARGET_MS:.0f} ms.",
            "",
            *[f"- {line}" for line in target_rows],
            "",
            "How it works and where the time goes: unchanged demos at both ends of each list are "
            "skipped by a strict, type-aware equality walk (equal objects are recognised by identity "
            "at once); only the demos between the first and last difference are hashed (xxh3-128 of "
            "canonical msgpack) and matched. When old and new share their strings, a demo costs a "
            "few dict lookups and pointer compares. When nothing is shared, every string of both "
            "states must be read and compared: about 1 KB per demo scattered over the heap, bound by "
            "memory latency rather than by our code: compare *equal states* with Python's own "
            "`old == new` (which, unlike a diff, may stop at the first difference). "
            "Closing that gap would need the previous state's demo hashes to be kept (the journal "
            "can cache them per head) *and* the new strings to be hashed anyway, so the floor stays "
            "a read of every new byte. A moved demo gives one `demos_reordered` whose `order` lists "
            "every demo of that module, and the demos between its old and new place are hashed.",
            "",
            "### Record framing",
            "",
            "24-byte header + payload (docs/FORMAT.md). Encode = one `frame_encode` call per record "
            "plus joining; scan = one `frame_scan` over the whole buffer, returning every payload as "
            "`bytes`. Throughput counts headers.",
            "",
            table(["records", "impl", "work", "time", "rate", "throughput"], frame_rows),
            "",
            "Small records are bound by the per-call and per-object cost of Python (one `bytes` and "
            "one tuple per record), where Rust is 2-3x the twin. Large records do the same work in "
            "both engines: xxh3 (the twin uses the `xxhash` C extension) and a copy of each payload "
            "into a new `bytes`. There the figures depend on the allocator: a profile of the Rust "
            "run shows about 45% of its time in kernel page faults for the fresh 1 MiB payload "
            "buffers (glibc handed the memory back to the OS between runs), and with the two "
            "engines' runs interleaved in one loop both take about 40 ms for 64 MiB. Not "
            "investigated further: journal events are small, and a snapshot record is read once.",
        ]
    )
    if args.quick:  # smoke numbers never replace the reference figures
        print(body)
        print("(quick run: docs/benchmarks.md left as it is; run without --quick to write it)")
        return
    write_section("Diff and framing", body)
    print("wrote the 'Diff and framing' section of docs/benchmarks.md")


if __name__ == "__main__":
    main()
