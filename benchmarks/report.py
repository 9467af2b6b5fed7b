"""Shared helpers for the benchmark scripts: timing medians, the machine, and docs/benchmarks.md sections.

Each script owns one "## Title" section of docs/benchmarks.md and replaces only that
section, so the scripts can run in any order and separately.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"

HEADER = """# Benchmarks

Method: every figure is the median of several runs of the same operation on the
same data in one process run, with the peers measured side by side in that run,
so ratios are comparable even on a noisy machine. Each section says the command
that produced it. Data: `benchmarks/data.py` (small = 5 modules x 8 demos; large =
50 modules x 2,000 demos of realistic text, about 100 MB as msgpack).

"""


def median_time(fn: Callable[[], Any], runs: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds, with garbage collection kept out of the timings."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        finally:
            gc.enable()
    return statistics.median(times)


def timings(fn: Callable[[], Any], runs: int, warmup: int = 0) -> list[float]:
    """Wall times of ``fn()`` in seconds, ``runs`` of them (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def med_p90(times: list[float]) -> tuple[float, float]:
    """Median and 90th percentile (the nearest rank: the largest time of fewer than 10 runs)."""
    ordered = sorted(times)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]


def cpu_model() -> str:
    """The CPU model from /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def rustc_version() -> str:
    """What ``rustc --version`` prints."""
    try:
        return subprocess.run(["rustc", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "rustc not found"


def machine() -> str:
    """One line describing the machine, Python and Rust."""
    return f"{os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}; {rustc_version()}"


def write_section(title: str, body: str) -> None:
    """Replace (or add) the ``## title`` section of docs/benchmarks.md."""
    text = DOC.read_text() if DOC.exists() else HEADER
    if not text.startswith("# Benchmarks"):
        text = HEADER + text
    section = f"## {title}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    DOC.write_text(text)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def fsync_floor(folder: Path, record_bytes: int = 300, calls: int = 300) -> list[float]:
    """Seconds of each of ``calls`` bare durable writes on the disk under ``folder``.

    The cheapest durable write there is: one ``pwrite`` of ``record_bytes`` into a file whose
    blocks were written and synced beforehand (so the file's size and block map never change),
    then ``fdatasync``; about a third cheaper than appending at the end on ext4. No encoding,
    no lock, no bookkeeping: what any store that makes every call durable before it returns
    pays at least. It bounds the ratio such a store can reach against a peer that also syncs
    each call: peer time / floor.
    """
    path = folder / f"fsync-floor-{os.getpid()}-{time.monotonic_ns()}.bin"
    sync = getattr(os, "fdatasync", os.fsync)
    record = b"\x5a" * record_bytes
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.pwrite(fd, bytes(record_bytes * calls + 4096), 0)
        os.fsync(fd)
        out = []
        for i in range(calls):
            t0 = time.perf_counter()
            os.pwrite(fd, record, i * record_bytes)
            sync(fd)
            out.append(time.perf_counter() - t0)
        return out
    finally:
        os.close(fd)
        path.unlink()


def durable_verdict(ratio: float, target: float, peer_seconds: float, floor_seconds: float, text: str) -> str:
    """A target line for "at equal durability" ratios, saying when the disk alone puts the target out of reach.

    ``peer_seconds`` is the peer's time per call, ``floor_seconds`` the median cheapest durable write
    (``fsync_floor``) measured in the same run: no store that syncs each call can beat
    peer_seconds / floor_seconds.
    """
    if ratio >= target:
        return f"{text}: met"
    ceiling = peer_seconds / floor_seconds
    if ceiling >= target:
        return f"{text}: MISSED"
    return (f"{text}: MISSED, out of reach on this disk: the cheapest durable write (a pwrite into blocks "
            f"written beforehand + fdatasync, nothing else) takes {floor_seconds * 1e6:,.0f} us here, so a store "
            f"that syncs every call records at most {ceiling:.1f}x the peer's rate "
            f"({peer_seconds * 1e6:,.0f} us per call)")
