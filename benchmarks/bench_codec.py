"""Codec benchmark: encode/decode of the small and large program states against
msgpack, ormsgpack, msgspec, orjson and pickle (protocol 5), content-hash
throughput, and raw hash speed (xxh3-128, BLAKE3, sha256) on our data.

    python benchmarks/bench_codec.py            # full run, writes docs/benchmarks.md "## Codec"
    python benchmarks/bench_codec.py --quick    # tiny run (smaller large state, few rounds), no write

Method: every library is timed once per round, in turn (interleaved, so a busy
neighbour on the machine slows all of them alike), for several rounds; the table
shows medians. The garbage collector is kept out of the timings, as in the other
benchmarks (benchmarks/report.py). Ratios are msgpack-python's time over the
library's (higher = faster).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import os
import pickle
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report
from data import program_state, small_state

from desiru import _native
from desiru._pure import codec as _pure

ROOT = Path(__file__).resolve().parents[1]
DOC = report.DOC

# targets of issue 3 (speedups over msgpack-python / ormsgpack, GB/s)
TARGET_ENCODE_VS_MSGPACK = 2.5
TARGET_DECODE_VS_MSGPACK = 1.5
TARGET_VS_ORMSGPACK = 1.0
TARGET_HASH_GBPS = 1.0


def _optional(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


ormsgpack = _optional("ormsgpack")
msgspec = _optional("msgspec")
orjson = _optional("orjson")
blake3 = _optional("blake3")
if msgspec is not None:
    import msgspec.msgpack


def encoders() -> dict[str, Callable[[Any], bytes]]:
    out: dict[str, Callable[[Any], bytes]] = {
        "desiru": _native.packb,
        "desiru canonical": lambda s: _native.packb(s, canonical=True),
        "desiru pure-python": _pure.packb,
        "msgpack": lambda s: msgpack.packb(s, use_bin_type=True),
    }
    if ormsgpack is not None:
        out["ormsgpack"] = ormsgpack.packb
    if msgspec is not None:
        out["msgspec"] = msgspec.msgpack.encode
    if orjson is not None:
        out["orjson (JSON)"] = orjson.dumps
    out["pickle 5"] = lambda s: pickle.dumps(s, protocol=5)
    return out


def decoders(state: Any) -> dict[str, tuple[Callable[[bytes], Any], bytes]]:
    """Each decoder with the bytes it reads (its own format for JSON and pickle)."""
    mp = msgpack.packb(state, use_bin_type=True)
    out: dict[str, tuple[Callable[[bytes], Any], bytes]] = {
        "desiru": (_native.unpackb, mp),
        "desiru pure-python": (_pure.unpackb, mp),
        "msgpack": (lambda b: msgpack.unpackb(b, raw=False), mp),
    }
    if ormsgpack is not None:
        out["ormsgpack"] = (ormsgpack.unpackb, mp)
    if msgspec is not None:
        out["msgspec"] = (msgspec.msgpack.decode, mp)
    if orjson is not None:
        out["orjson (JSON)"] = (orjson.loads, orjson.dumps(state))
    out["pickle 5"] = (pickle.loads, pickle.dumps(state, protocol=5))
    return out


def sample(func: Callable[[Any], Any], arg: Any, min_time: float) -> float:
    """Seconds per call: one call, or a loop long enough to time small inputs.

    As in every desiru benchmark (benchmarks/report.py), the garbage collector
    is kept out of the timings. Results are kept until the clock stops, so
    freeing a decoded tree (the same for every library) is not counted."""
    gc.collect()
    n = 0
    kept: list[Any] = []
    elapsed = 0.0
    while elapsed < min_time or n == 0:
        gc.disable()
        try:
            start = time.perf_counter()
            kept.append(func(arg))
            elapsed += time.perf_counter() - start
        finally:
            gc.enable()
        n += 1
        if len(kept) > 100:
            kept.clear()
    del kept
    return elapsed / n


def interleaved(cases: dict[str, tuple[Callable[[Any], Any], Any]], rounds: int, min_time: float) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, (func, arg) in cases.items():
            times[name].append(sample(func, arg, min_time))
    return {name: statistics.median(ts) for name, ts in times.items()}


def fmt_time(seconds: float) -> str:
    if seconds >= 0.1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} us"


def machine() -> list[str]:
    cpu, rustc = report.cpu_model(), report.rustc_version()
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    versions = [f"msgpack {'.'.join(map(str, msgpack.version))}"]
    for mod in (ormsgpack, msgspec, orjson, blake3):
        if mod is not None:
            versions.append(f"{mod.__name__} {getattr(mod, '__version__', '?')}")
    versions.append(f"xxhash {xxhash.VERSION}")
    return [
        f"- CPU: {cpu}, `nproc` = {os.cpu_count()}; load average at the start (1/5/15 min): {load}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), {rustc}, "
        f"{platform.system()} {platform.release()}",
        f"- peers: {', '.join(versions)}",
    ]


def run(quick: bool, rounds: int) -> tuple[list[str], list[str]]:
    """Run everything; return (markdown lines, target summary lines)."""
    small = small_state()
    large = program_state(10, 200, seed=2) if quick else program_state(50, 2000, seed=2)
    md: list[str] = []
    summary: list[str] = []
    results: dict[str, dict[str, float]] = {}
    sizes = {}
    for label, state, min_time in (("small", small, 0.05), ("large", large, 0.0)):
        sizes[label] = len(msgpack.packb(state, use_bin_type=True))
        print(f"[{label}] {sizes[label] / 1e6:.2f} MB of msgpack", flush=True)
        enc_cases = {name: (f, state) for name, f in encoders().items()}
        if label == "large" and not quick:
            # the pure twin is msgpack plus a Python walk: too slow to repeat on 100 MB
            enc_cases.pop("desiru pure-python")
        enc = interleaved(enc_cases, rounds, min_time)
        dec_cases = dict(decoders(state).items())
        if label == "large" and not quick:
            dec_cases.pop("desiru pure-python")
        dec = interleaved(dec_cases, rounds, min_time)
        results[f"{label} encode"] = enc
        results[f"{label} decode"] = dec
    for what in ("encode", "decode"):
        md.append(f"### {what.capitalize()}")
        md.append("")
        md.append(
            "| library | small (5 x 8) | ratio vs msgpack | large (50 x 2,000) | ratio vs msgpack | vs ormsgpack |"
        )
        md.append("|---|---|---|---|---|---|")
        small_r = results[f"small {what}"]
        large_r = results[f"large {what}"]
        for name in small_r:
            s = small_r[name]
            lg = large_r.get(name)
            row = [name, fmt_time(s), f"{small_r['msgpack'] / s:.2f}x"]
            if lg is None:
                row += ["not run", "", ""]
            else:
                vs_orm = f"{large_r['ormsgpack'] / lg:.2f}x" if "ormsgpack" in large_r else "n/a"
                row += [fmt_time(lg), f"{large_r['msgpack'] / lg:.2f}x", vs_orm]
            md.append("| " + " | ".join(row) + " |")
        md.append("")
    # targets
    large_enc, large_dec = results["large encode"], results["large decode"]
    checks = [
        ("encode large vs msgpack", large_enc["msgpack"] / large_enc["desiru"], TARGET_ENCODE_VS_MSGPACK),
        ("decode large vs msgpack", large_dec["msgpack"] / large_dec["desiru"], TARGET_DECODE_VS_MSGPACK),
    ]
    if ormsgpack is not None:
        checks += [
            ("encode large vs ormsgpack", large_enc["ormsgpack"] / large_enc["desiru"], TARGET_VS_ORMSGPACK),
            ("decode large vs ormsgpack", large_dec["ormsgpack"] / large_dec["desiru"], TARGET_VS_ORMSGPACK),
        ]

    # content hash and raw hashes on the large state's bytes
    data = msgpack.packb(large, use_bin_type=True)
    canon = _native.packb(large, canonical=True)
    hash_cases: dict[str, tuple[Callable[[Any], Any], Any]] = {
        "desiru content_hash(state) (walk + canonical encode + xxh3-128)": (_native.content_hash, large),
        "desiru packb(state, canonical=True) alone": (lambda s: _native.packb(s, canonical=True), large),
        "desiru xxh3_128(bytes)": (_native.xxh3_128, canon),
        "xxhash.xxh3_128_digest(bytes)": (xxhash.xxh3_128_digest, canon),
        "desiru sha256(bytes)": (_native.sha256, canon),
        "hashlib.sha256(bytes)": (lambda b: hashlib.sha256(b).digest(), canon),
    }
    if blake3 is not None:
        hash_cases["blake3(bytes) (1 thread)"] = (lambda b: blake3.blake3(b).digest(), canon)
        hash_cases["blake3(bytes, max_threads=AUTO)"] = (
            lambda b: blake3.blake3(b, max_threads=blake3.blake3.AUTO).digest(),
            canon,
        )
    hashes = interleaved(hash_cases, rounds, 0.0)
    md.append(f"### Hashing ({len(canon) / 1e6:.1f} MB: the large state's canonical msgpack)")
    md.append("")
    md.append("| work | time | throughput (GB/s of msgpack bytes) |")
    md.append("|---|---|---|")
    for name, t in hashes.items():
        md.append(f"| {name} | {fmt_time(t)} | {len(canon) / t / 1e9:.2f} |")
    md.append("")
    if blake3 is None:
        md.append("(BLAKE3 not measured: `pip install blake3` to include it.)")
        md.append("")
    hash_gbps = len(data) / hashes["desiru content_hash(state) (walk + canonical encode + xxh3-128)"] / 1e9
    checks.append(("content hash of the large state (GB/s)", hash_gbps, TARGET_HASH_GBPS))

    md.append("### Targets (issue 3)")
    md.append("")
    md.append("| target | measured | wanted | verdict |")
    md.append("|---|---|---|---|")
    for name, got, want in checks:
        unit = "" if "GB/s" in name else "x"
        verdict = "met" if got >= want else f"missed by {(1 - got / want) * 100:.0f}%"
        md.append(f"| {name} | {got:.2f}{unit} | >= {want}{unit} | {verdict} |")
        summary.append(f"{name}: {got:.2f}{unit} (target >= {want}{unit}) -> {verdict}")
    md.append("")
    md.insert(
        0,
        f"Sizes: small {sizes['small'] / 1e3:.1f} kB, large {sizes['large'] / 1e6:.1f} MB of msgpack. "
        f"Medians of {rounds} interleaved rounds.",
    )
    md.insert(1, "")
    return md, summary


SECTION_INTRO = """Measured by `python benchmarks/bench_codec.py` (one run; all libraries on the
same data in the same process, interleaved round by round, medians, garbage
collector kept out of the timings, decoded trees freed after the clock). The data
is `benchmarks/data.py`: a program of 5 modules x 8 demos (small) and of 50
modules x 2,000 demos of realistic text (large), shaped as docs/STATE.md.
Ratios are msgpack-python's time over the library's: higher is faster.
orjson writes JSON and pickle its own format: they are there for scale."""


def write_section(body: list[str], notes: str) -> None:
    """Replace (or add) the "## Codec" section of docs/benchmarks.md, leaving the rest."""
    report.write_section("Codec", "\n".join([SECTION_INTRO, "", *machine(), "", *body, notes.rstrip()]))


# What the numbers mean; kept here so a rerun rewrites the whole section.
NOTES = """### Reading the numbers

- **Which hash.** Content hashes only name state trees we wrote ourselves (demo
  matching in diffs, dedup); nobody crafts collisions against them, so a
  cryptographic hash buys nothing. We pick **xxh3-128**: on our own bytes it is
  the fastest of the three measured above (BLAKE3 single-threaded is slower,
  sha256 far slower), byte-compatible with the `xxhash` package that the
  pure-Python twin uses, and 128 bits make accidental collisions negligible.
  sha256 stays for file checksums, where users expect a cryptographic digest.
  Either way `content_hash` is bound by walking the Python objects, not by the
  hash: see "content_hash(state)" against "xxh3_128(bytes)".
- **Encode.** About half of a large encode is walking the Python objects; the
  rest is filling the fresh ~110 MB bytes object: copying into it (~25% of
  the time, perf) and the kernel zeroing its pages (~20%, `clear_page_erms`),
  which every library pays once per call and msgpack-python twice (its
  buffer, then the bytes).
  desiru fills the output once at its exact size (large strs copied straight
  from the str objects), asks for huge pages and shares the fill between two
  threads; ormsgpack grows its bytes object in place with `_PyBytes_Resize`,
  which is outside the stable ABI (abi3) desiru is built for. The 2.5x target
  sits at the edge: across our runs the large encode came out at 2.2x to 2.6x
  msgpack and 1.1x to 1.3x ormsgpack, depending on how busy the shared machine
  was (one run under heavy load from other processes fell to 1.5x msgpack).
  What would clear it with margin is not creating the 110 MB bytes object at
  all: writing the encoding straight from desiru's reusable buffer to the file
  being saved (msgspec's `encode_into` with a reused buffer is the same idea).
- **Decode.** Decode time is dominated by CPython allocating the ~0.8 million
  decoded objects (and the page faults behind that memory), the same work for
  every library; desiru's own walk is under 10% of it (perf). desiru and
  ormsgpack trade places from run to run (0.91x to 1.07x in our runs). By
  instruction count desiru does ~9% more work than ormsgpack per decode
  (callgrind), all of it in building strs: ormsgpack builds them in place
  (`PyUnicode_New`, SIMD ASCII check), while abi3 offers only
  `PyUnicode_DecodeUTF8`, whose ASCII scan costs about an instruction per
  byte. A non-abi3 prototype (strs built in place, presized dicts) measured
  within run-to-run noise of the abi3 build, so it is not worth leaving abi3
  for. On this machine msgpack-python decodes relatively fast: ormsgpack itself
  is ~1.3x msgpack here (1.5x in the issue's measurement), so 1.5x would mean
  beating ormsgpack by ~15%. What could close it is less work rather than
  faster work: fewer objects to create (e.g. demos decoded lazily, on first
  access).
- **Noise.** The machine is shared by several processes (see the load average
  above); separate runs move by 10-15%. The ratios compare libraries within one
  run, interleaved, which is what the targets are judged on.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (10 x 200 large state, 3 rounds), no write")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per measurement (default 7, quick 3)")
    parser.add_argument("--no-write", action="store_true", help="print only; do not update docs/benchmarks.md")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 7)
    body, summary = run(args.quick, rounds)
    print("\n".join(body))
    print("\n".join(summary))
    if not (args.quick or args.no_write):
        write_section(body, NOTES)
        print(f"wrote the Codec section of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
