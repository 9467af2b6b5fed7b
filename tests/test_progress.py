"""Progress callbacks (desiru.progress) from the library, and the bars the CLI draws from them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from programs import sample_program

import desiru as ds
from desiru.journal import ParameterSet

N = 20_000


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "qa.journal"
    with ds.Journal.open(path, fsync="never", snapshot_every=10**9) as j:  # no snapshot: replays read every event
        j.commit(sample_program())
        j.append_many([ParameterSet(path="answer", payload={"key": "k", "value": i}) for i in range(N)])
    return path


def calls() -> tuple[list[tuple[int, int]], object]:
    seen: list[tuple[int, int]] = []
    return seen, lambda done, total: seen.append((done, total))


def check(seen: list[tuple[int, int]], total: int) -> None:
    """Reported now and then (not per unit), never backwards, ending with done == total."""
    assert 3 <= len(seen) < total / 100, len(seen)
    assert all(t == total for _, t in seen)
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and dones[0] == 0 and dones[-1] == total


def test_verify_and_replay_report_progress(journal: Path) -> None:
    with ds.Journal.open(journal, readonly=True) as j:
        head = j.head
        seen, cb = calls()
        assert j.verify(progress=cb).ok
        check(seen, head)
        seen, cb = calls()
        program = j.replay(progress=cb)
        check(seen, head)
        assert program.answer.parameters["k"] == N - 1


def test_rekey_and_migrate_report_progress(journal: Path) -> None:
    with ds.Journal.open(journal, readonly=True) as j:
        head = j.head
    seen, cb = calls()
    ds.rekey(journal, None, "ab" * 32, progress=cb)
    check(seen, head)
    seen, cb = calls()
    ds.rekey(journal, "ab" * 32, None, progress=cb)
    check(seen, head)


def test_a_callback_that_raises_stops_the_work_and_changes_nothing(journal: Path) -> None:
    before = {p: p.read_bytes() for p in journal.rglob("*") if p.is_file()}

    def stop(done: int, total: int) -> None:
        if done > total // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ds.rekey(journal, None, "ab" * 32, progress=stop)
    assert {p: p.read_bytes() for p in journal.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in journal.parent.iterdir()) == ["qa.journal"]  # no temporary copy left


@pytest.mark.parametrize("command", [["verify", "{j}"], ["replay", "{j}", "-o", "{out}"],
                                     ["rekey", "{j}", "--new-key-env", "K"]])
def test_the_cli_draws_a_bar_with_a_count(journal: Path, tmp_path: Path, command: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(ds.__file__).parent.parent), "FORCE_COLOR": "1",
           "COLUMNS": "120", "K": "cd" * 32}
    args = [a.format(j=journal, out=tmp_path / "out.json") for a in command]
    result = subprocess.run([sys.executable, "-m", "desiru", *args], env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stderr)
    with ds.Journal.open(journal, readonly=True, key="cd" * 32 if "rekey" in command else None) as j:
        head = j.head
    assert f"{head}/{head}" in plain and "100%" in plain, plain[-400:]
    quiet = subprocess.run([sys.executable, "-m", "desiru", "-q", "verify", str(journal), "--key-env", "K"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "100%" not in quiet.stderr


def test_compact_and_copy_report_progress(tmp_path: Path) -> None:
    from desiru.journal.copy import copy_journal

    path = tmp_path / "run.journal"
    with ds.Journal.open(path) as j:
        root = j.commit(sample_program(), score=0.1)
        for i in range(5):
            p = sample_program()
            p.answer.parameters["i"] = i
            j.commit(p, parent=root, score=i / 10, tag=f"t{i}")
        j.snapshot()
        compact_calls: list[tuple[int, int]] = []
        j.compact(progress=lambda done, total: compact_calls.append((done, total)))
        # one tick per tagged commit given a snapshot of its own, then the end
        assert compact_calls[0][0] == 0 and compact_calls[-1][0] == compact_calls[-1][1] >= 5
        head = j.head
    copy_calls: list[tuple[int, int]] = []
    result = copy_journal(path, tmp_path / "copy.journal", progress=lambda d, t: copy_calls.append((d, t)))
    assert copy_calls[-1] == (result.records, result.records) and copy_calls[0][0] == 0
    with ds.Journal.open(tmp_path / "copy.journal", readonly=True) as c:
        assert c.head == head and c.verify().ok


def test_convert_draws_bars_for_reading_and_writing_in_bytes(tmp_path: Path) -> None:
    program = ds.Program(answer=ds.Predict("question -> answer",
                                           demos=[{"question": f"q{i}", "answer": "a" * 50} for i in range(2000)]))
    src = program.save(tmp_path / "big.msgpack").path
    env = {**os.environ, "PYTHONPATH": str(Path(ds.__file__).parent.parent), "FORCE_COLOR": "1", "COLUMNS": "140"}
    result = subprocess.run([sys.executable, "-m", "desiru", "convert", str(src), str(tmp_path / "big.json")],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", result.stderr)
    lines = [line for line in plain.splitlines() if "100%" in line]
    read = [line for line in lines if "reading big.msgpack" in line]
    written = [line for line in lines if "writing big.json" in line]
    assert read and written, plain[-600:]
    size_in = f"{src.stat().st_size / 1000:.1f}"  # rich shows sizes in kB (1000 bytes): "149.6/149.6 kB"
    assert f"{size_in}/{size_in} kB" in read[-1], read[-1]
    assert "kB" in written[-1] and ds.load(tmp_path / "big.json") == program


def test_load_document_and_atomic_write_report_bytes(tmp_path: Path) -> None:
    from desiru import atomic
    from desiru.serialization.documents import load_document

    seen, report = calls()
    data = os.urandom(3 * 1024 * 1024 + 7)
    atomic.atomic_write(tmp_path / "blob", [data[:100], data[100:]], progress=report)  # type: ignore[arg-type]
    assert (tmp_path / "blob").read_bytes() == data
    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    seen, report = calls()
    path = sample_program().save(tmp_path / "p.json").path
    load_document(path, progress=report)  # type: ignore[arg-type]
    assert seen[0] == (0, path.stat().st_size) and seen[-1] == (path.stat().st_size,) * 2
