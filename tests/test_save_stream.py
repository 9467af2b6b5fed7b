"""Saving a large msgpack program while it is encoded (serialization/stream_write.py): the same bytes as
the plain writer, the fallback when the header's room was guessed wrong, and the old file kept on failure."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from engines import implementations

import desiru as ds
from desiru import _engine
from desiru._pure import backend as pure_backend
from desiru.serialization import documents, stream_write
from desiru.serialization.envelope import checksum_of

HERE = Path(__file__).resolve().parent


class Wide(ds.Program):
    """Modules of very different sizes: big ones (streamed) and small ones (encoded up front)."""

    __desiru_name__ = "tests.save_stream.Wide"

    def __init__(self, sizes: tuple[int, ...] = ()) -> None:
        super().__init__()
        for i, n in enumerate(sizes):
            step = ds.Predict("question -> answer")
            step.demos = [ds.Example(question=f"q{i}.{j} " + "é" * (j % 3) + "x" * 900, answer=f"a{j}")
                          for j in range(n)]
            setattr(self, f"m{i:02d}", step)


def wide(*sizes: int) -> Wide:
    return Wide(sizes)


def plain_bytes(program: ds.Program) -> tuple[bytes, int]:
    """The document the plain writer makes, and where its state starts."""
    chunks, start, _, _ = documents.msgpack_parts(program.to_state(copy=False), "program", None)
    return b"".join(chunks), sum(map(len, chunks[:start]))


def test_streamed_file_is_the_plain_writers_bytes(tmp_path: Path) -> None:
    program = wide(200, 0, 3, 120, 1)  # 180 KB, 0, 3 KB, 108 KB, 1 KB of demos
    state = program.to_state(copy=False)
    assert stream_write.plan(state, "program") == [True, False, False, True, False]
    r = program.save(tmp_path / "w.msgpack")
    data = r.path.read_bytes()
    want, start = plain_bytes(program)
    assert len(data) == r.size == len(want) and data[start:] == want[start:]  # the state, byte for byte
    header = documents.load_document(r.path).header
    _, _, module_table, _ = documents.msgpack_parts(state, "program", None)
    assert header["module_table"] == module_table and header["checksum"] == r.checksum == checksum_of(state)
    assert ds.load(r.path) == program and ds.load(r.path, lazy=True) == program
    assert Wide.load_module(r.path, "m03") == program.m03
    assert sorted(os.listdir(tmp_path)) == ["w.msgpack"]


def test_sha256_on_request_is_hashlib_of_the_file(tmp_path: Path) -> None:
    for program in (wide(100, 2), wide(2)):  # the streamed size and a small one
        r = program.save(tmp_path / "w.msgpack", sha256=True)
        assert r.sha256 == hashlib.sha256(r.path.read_bytes()).hexdigest()
        assert r.checksum == checksum_of(program.to_state())
        assert program.save(tmp_path / "w.msgpack").sha256 is None


def test_small_programs_are_not_streamed() -> None:
    assert stream_write.plan(wide(3, 2).to_state(copy=False), "program") is None
    assert stream_write.plan({"name": "m", "demos": ["x" * 100_000]}, "module") is None



def test_size_at_least_is_a_lower_bound() -> None:
    value = {"a": ["xyz", b"\x00" * 10, 1.5, None, ("t", [])], "é" * 5: {"k": "日本"}, 3: True}
    bound = 1 + 2 + 1 + 4 + 11 + 1 + 1 + 1 + 2 + 1 + 6 + 1 + 2 + 3 + 1 + 1  # what the walk sums: 39
    assert _engine.size_at_least(value, bound) and not _engine.size_at_least(value, bound + 1)
    assert bound <= len(_engine.packb(value))
    assert _engine.size_at_least({"a": ["x" * 10**6]}, 100) and _engine.size_at_least("é" * 65536, 65537)
    assert not _engine.size_at_least({}, 2) and _engine.size_at_least([], 1)
    deep: list[Any] = []
    for _ in range(100_000):  # deeper than any recursion: the walk keeps its own stack
        deep = [deep]
    assert _engine.size_at_least(deep, 50_000) and not _engine.size_at_least(deep, 100_002)
    loop: list[Any] = []
    loop.append(loop)  # a cycle still ends: every step adds to the bound
    assert _engine.size_at_least(loop, 1000)


def test_a_wrong_guess_of_the_header_falls_back_to_the_plain_writer(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # with BIG at 200, a module of 100 KB is placed as if its length took 2 bytes: the header
    # comes out longer than its room, and the file is written the plain way instead
    monkeypatch.setattr(stream_write, "BIG", 200)
    program = wide(100, 1)
    missed: list[str] = []
    real = stream_write.save

    def watched(*args: Any) -> tuple[int, str]:
        try:
            return real(*args)
        except stream_write.Misfit as exc:
            missed.append(str(exc))
            raise

    monkeypatch.setattr(stream_write, "save", watched)
    r = program.save(tmp_path / "w.msgpack")
    assert missed and "room" in missed[0]
    want, start = plain_bytes(program)
    assert r.path.read_bytes()[start:] == want[start:]
    assert ds.load(r.path) == program and r.checksum == checksum_of(program.to_state())
    assert sorted(os.listdir(tmp_path)) == ["w.msgpack"]


def test_a_failure_midway_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "w.msgpack"
    good = wide(100, 100)
    good.save(target)
    before = target.read_bytes()
    bad = wide(100, 100, 100)
    bad.m02.demos[-1] = ds.Example(question="late", answer=object())  # the last module fails to encode
    with pytest.raises(ds.SerializationError):
        bad.save(target)
    assert target.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["w.msgpack"]



_TOO_BIG = r"""
import os, resource, signal, sys
sys.path.insert(0, sys.argv[2])
import desiru as ds
from test_save_stream import wide
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
try:
    wide(400, 400, 400).save(sys.argv[1])  # about 1.1 MB: the writing thread fails near the end
except ds.DesiruError as exc:
    print(exc.message)
"""


def test_a_failed_write_stops_the_save_and_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "w.msgpack"
    wide(100, 100).save(target)
    before = target.read_bytes()
    out = subprocess.run([sys.executable, "-c", _TOO_BIG, str(target), str(HERE)], capture_output=True,
                         text=True, env=_env(), timeout=60)
    assert "could not write the file" in out.stdout, out.stderr
    assert target.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["w.msgpack"]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(ds.__file__).parents[1]), str(HERE)])}


_KILLED = r"""
import sys
sys.path.insert(0, sys.argv[2])
from test_save_stream import wide
program = wide(3000, 3000, 3000)  # about 8 MB
print("ready", flush=True)
while True:
    program.save(sys.argv[1])
"""


def test_a_save_killed_midway_leaves_a_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "w.msgpack"
    old = wide(50, 50)
    old.save(target)
    with subprocess.Popen([sys.executable, "-c", _KILLED, str(target), str(HERE)], stdout=subprocess.PIPE,
                          env=_env()) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
            time.sleep(0.3)  # some saves done, one under way
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    loaded = ds.load(target)  # the old program or a new one, whole and verified; never a mix
    assert loaded in (old, wide(3000, 3000, 3000))
    assert all(n.endswith(".tmp") for n in os.listdir(tmp_path) if n != "w.msgpack")  # SIGKILL leaves its temp


def test_big_is_the_first_uint32() -> None:
    # the room a big module's length takes is the width of BIG: 5 bytes (0xce + uint32)
    assert len(_engine.packb(stream_write.BIG)) == len(_engine.packb(2**32 - 1)) == 5
    assert len(_engine.packb(stream_write.BIG - 1)) == 3


WRITERS = implementations(pure_backend, "StreamWriter")


@pytest.mark.parametrize("impl", WRITERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_each_engine_writes_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: Any) -> None:
    # the Rust writer and its pure twin make the same bytes, which either engine then loads
    monkeypatch.setattr(_engine, "StreamWriter", impl.StreamWriter)
    monkeypatch.setattr(_engine, "size_at_least", impl.size_at_least)
    program = wide(150, 2, 90)
    r = program.save(tmp_path / "w.msgpack")
    want, start = plain_bytes(program)
    assert r.path.read_bytes()[start:] == want[start:]
    for pure in ("1", "0"):
        out = subprocess.run([sys.executable, "-c", _LOAD, str(r.path), str(HERE)], capture_output=True, text=True,
                             env={**_env(), "DESIRU_PURE_PYTHON": pure}, timeout=60)
        assert out.stdout.split() == ["True", r.checksum], out.stderr


_LOAD = r"""
import sys
sys.path.insert(0, sys.argv[2])
import desiru as ds
from desiru.serialization.documents import load_document
from test_save_stream import wide
print(ds.load(sys.argv[1]) == wide(150, 2, 90), load_document(sys.argv[1]).header["checksum"])
"""


@pytest.mark.parametrize("impl", WRITERS, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_stream_writer_pieces_offsets_and_digests(tmp_path: Path, impl: Any) -> None:
    path = tmp_path / "raw"
    with open(path, "wb") as f:
        writer = impl.StreamWriter(f.fileno(), 5)
        writer.put(b"ab", 0)
        writer.put(b"c", 1)
        n = writer.put_module({"b": [1, "é"], "a": None})
        writer.put(b"z", 0)
        written, whole, rest, modules = writer.finish()
        writer.close()  # after finish: nothing left to do
        with pytest.raises(ValueError):
            writer.put(b"late", 0)
    module = _engine.packb({"a": None, "b": [1, "é"]})  # canonical: keys sorted
    data = path.read_bytes()
    assert n == len(module) and written == 4 + n
    assert data == b"\0" * 5 + b"abc" + module + b"z"
    assert whole == _engine.xxh3_128(b"abc" + module + b"z") and rest == _engine.xxh3_128(b"abz")
    assert modules == [_engine.xxh3_128(module)]
    with pytest.raises(ValueError):
        impl.StreamWriter(-1, 0)
