"""Journal costs that must not grow with history: bounded segments, tail marks, cheap looks."""

from __future__ import annotations

from pathlib import Path

import pytest

import desiru as ds
from desiru.journal import Journal, ParameterSet, file_store


def small_program() -> ds.Program:
    p = ds.Program()
    p.answer = ds.ChainOfThought("question -> answer", temperature=0.1)
    p.answer.demos = [ds.Example(question=f"q{i}", answer=f"a{i}") for i in range(3)]
    return p


def params(n: int, base: int = 0) -> list[ParameterSet]:
    return [ParameterSet(path="answer", payload={"key": f"k{i % 7}", "value": base + i}) for i in range(n)]


def segments(path: Path) -> list[Path]:
    return sorted((path / "log").glob("*.log"))


def test_segments_roll_by_size_and_read_back_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_store, "SEGMENT_BYTES", 4096)
    path = tmp_path / "j.journal"
    with Journal.open(path, fsync="never", snapshot_every=10**9) as j:
        j.commit(small_program())
        for k in range(40):
            j.append_many(params(5, 10 * k))
        head = j.head
        expected = j.replay_state()
    segs = segments(path)
    assert len(segs) >= 3
    # a group is never split across segments, and no segment grows far past the bound
    assert all(s.stat().st_size < 4096 + 2048 for s in segs)
    with Journal.open(path, readonly=True) as r:
        assert r.head == head
        assert [e.seq for e in r.events()] == list(range(1, head + 1))
        assert r.replay_state() == expected
    with Journal.open(path, fsync="never", snapshot_every=10**9) as j:  # a writer reopens at the end
        j.append_many(params(3, 999))
        assert j.head == head + 3
        assert j.verify().ok


def test_a_reader_open_reads_only_the_last_segment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_store, "SEGMENT_BYTES", 4096)
    path = tmp_path / "j.journal"
    with Journal.open(path, fsync="never", snapshot_every=10**9) as j:
        j.commit(small_program())
        for k in range(60):
            j.append_many(params(5, 10 * k))
    scanned: list[int] = []
    real = file_store.FileStore._scan_chunks

    def spy(self: file_store.FileStore, first: int, offset: int = 0, **kw: object):  # type: ignore[no-untyped-def]
        scanned.append(first)
        return real(self, first, offset, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(file_store.FileStore, "_scan_chunks", spy)
    with Journal.open(path, readonly=True) as r:
        last_first = int(segments(path)[-1].name.split(".")[0])
        assert set(scanned) == {last_first}
        assert r.head > last_first
