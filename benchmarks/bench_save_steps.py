"""What each step of the streamed save buys, on the large program, in one run (issue 16 item 2).

    python benchmarks/bench_save_steps.py [--rounds N]

Each round times, in alternating order, the same durable save (temp file, fsync, rename, folder
fsync) of the large program, built up one step at a time:
- "before": the save of the previous release: the whole document encoded to chunks, written
  through a buffered file, sha256 of the bytes on a second thread (both checksums);
- "no sha256": the same without the sha256 (only the XXH3-128 the header records);
- "+ writeback": the same, its disk writeback started every 8 MiB (``atomic_write`` now);
- "+ streamed (Python writer thread)": written while encoded (this engine's encoder, a fresh bytes
  object per module), written and hashed on a Python thread (the pure-Python ``StreamWriter``);
- "+ streamed (Rust writer)": the same through the Rust one: ``program.save`` as it is.
ormsgpack.packb + write, without and with fsync of the file and its folder, are the peers.
Prints median and p90 of each, and the load average before and after; writes the "Eager save,
step by step" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ormsgpack
from bench_documents import BigProgram
from data import large_state
from report import machine, med_p90, table, write_section

from desiru import _engine
from desiru._pure import filewrite
from desiru.atomic import atomic_write, fsync_dir
from desiru.serialization import documents


def _old_write(path: Path, chunks: list[bytes]) -> None:
    """The previous release's atomic write: a buffered file, fsync, rename, folder fsync."""
    tmp = path.with_name(f".{path.name}.old.tmp")
    with open(tmp, "wb") as f:
        for chunk in chunks:
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _sha256(chunks: list[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


class _ThreadWriter(filewrite.StreamWriter):
    """The pure-Python writer (a Python thread: os.pwrite, the xxhash package) fed by this engine's
    encoder, so that only the writing side differs from the Rust one."""

    def put_module(self, obj: Any) -> int:
        data = _packb(obj, canonical=True)
        self.put(data, 2)
        return len(data)


_packb = _engine.packb


@contextlib.contextmanager
def _python_writer() -> Iterator[None]:
    saved = _engine.StreamWriter
    _engine.StreamWriter = _ThreadWriter
    try:
        yield
    finally:
        _engine.StreamWriter = saved


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    program = BigProgram.from_state(large_state())
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        path, orm = folder / "p.msgpack", folder / "p.ormsgpack"

        def chunks() -> list[bytes]:
            return documents.msgpack_parts(program.to_state(copy=False), "program", None)[0]

        def before() -> None:
            parts = chunks()
            with ThreadPoolExecutor(1) as pool:
                digest = pool.submit(_sha256, parts)
                _old_write(path, parts)
                digest.result()

        def no_sha256() -> None:
            _old_write(path, chunks())

        def writeback() -> None:
            atomic_write(path, chunks())

        def streamed_python() -> None:
            with _python_writer():
                program.save(path)

        def streamed_rust() -> None:
            program.save(path)

        def orm_save() -> None:
            orm.write_bytes(ormsgpack.packb(program.to_state(copy=False)))

        def orm_durable() -> None:
            with open(orm, "wb") as f:
                f.write(ormsgpack.packb(program.to_state(copy=False)))
                f.flush()
                os.fsync(f.fileno())
            fsync_dir(folder)

        cases: list[tuple[str, Callable[[], None]]] = [
            ("before (sha256 + xxh3, buffered write)", before), ("no sha256", no_sha256),
            ("+ writeback every 8 MiB", writeback), ("+ streamed (Python writer thread)", streamed_python),
            ("+ streamed (Rust writer) = save now", streamed_rust), ("ormsgpack + write", orm_save),
            ("ormsgpack + write + fsync", orm_durable)]
        times: dict[str, list[float]] = {name: [] for name, _ in cases}
        for _, fn in cases:
            fn()
        load_before = os.getloadavg()
        for r in range(args.rounds):
            for name, fn in cases if r % 2 == 0 else cases[::-1]:
                gc.collect()
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        load_after = os.getloadavg()
    rows = []
    for name, values in times.items():
        med, p90 = med_p90(values)
        rows.append([name, f"{med * 1e3:.0f}", f"{p90 * 1e3:.0f}"])
    body = "\n".join([
        f"Command: `python benchmarks/bench_save_steps.py --rounds {args.rounds}`; engine: {_engine.BACKEND}. "
        f"Machine: {machine()}. Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in load_before)}, "
        f"after: {', '.join(f'{x:.2f}' for x in load_after)}.",
        "",
        table(["durable save of the large program", "median ms", "p90 ms"], rows),
        "",
        "Each row adds one step to the row above (the script's docstring says what each is). Without sha256 the "
        "save does 80 ms less CPU work; that shows in its time when the second core is busy. The peers write "
        "without checking anything.",
    ])
    print(body)
    write_section("Eager save, step by step", body)


if __name__ == "__main__":
    main()
