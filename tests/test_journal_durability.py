"""Crash safety: torn tails, bit flips, stale bytes, failed fsync, half-written commits, repair."""

from __future__ import annotations

import os
import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
from programs import sample_program

import desiru as ds
from desiru.journal import Journal, JournalWarning, repair
from desiru.journal.file_store import LOG_DIR, SNAPSHOT_DIR


def _segments(path: Path) -> list[Path]:
    return sorted((path / LOG_DIR).iterdir())


def _build(path: Path, commits: int = 6, **kw: Any) -> dict[int, dict[str, Any]]:
    """A journal of single-event commits (after the first); returns {seq: state}."""
    p = sample_program()
    states = {}
    with Journal.open(path, fsync="never", **kw) as j:
        j.commit(p)
        states[j.head] = p.to_state()
        for i in range(commits):
            p.answer.parameters["step"] = i
            j.commit(p)
            states[j.head] = p.to_state()
    return states


def _record_offsets(segment: Path, salt: int) -> list[tuple[int, int, int]]:
    from desiru import _engine

    records, _, fault = _engine.frame_scan(segment.read_bytes(), salt, 0)
    assert fault is None
    return [(seq, off, 24 + len(payload)) for seq, off, payload in records]


def _salt(path: Path) -> int:
    from desiru.journal.file_store import decode_header

    return decode_header((path / "header").read_bytes())[1]["salt"]


def test_truncation_at_every_byte_of_the_last_record(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine.journal"
    states = _build(pristine)
    seg = _segments(pristine)[-1]
    seq, start, length = _record_offsets(seg, _salt(pristine))[-1]
    full = seg.read_bytes()
    assert start + length == len(full)
    work = tmp_path / "work.journal"
    shutil.copytree(pristine, work)
    wseg = work / LOG_DIR / seg.name
    for cut in range(start, start + length):
        for kept in (work / "damaged").glob("*"):  # reset from the previous cut
            kept.unlink()
        wseg.write_bytes(full[:cut])
        # a reader never modifies the journal and sees the last whole commit
        with Journal.open(work, readonly=True) as r:
            assert r.head == seq - 1
            assert r.replay_state() == states[seq - 1]
        assert wseg.stat().st_size == cut
        if cut > start:
            with pytest.warns(JournalWarning, match=r"cut \d+ bytes after seq"):
                j = Journal.open(work, fsync="never")
        else:
            j = Journal.open(work, fsync="never")
        with j:
            assert j.head == seq - 1
            assert j.replay_state() == states[seq - 1]
            assert wseg.stat().st_size == start
            if cut > start:  # the cut bytes are kept, never replayed
                kept = list((work / "damaged").iterdir())
                assert len(kept) == 1 and kept[0].read_bytes() == full[start:cut]
            if cut % 8 == 0 or cut == start + length - 1:  # stays writable (checked on a sample of cuts)
                p = ds.Program.from_state(states[seq - 1])
                p.metadata["after"] = cut
                j.commit(p)
                j.close()
                with Journal.open(work, fsync="never") as again:
                    assert again.replay().metadata["after"] == cut
                    assert again.verify().ok


def test_random_bit_flips_are_never_replayed_as_data(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine.journal"
    states = _build(pristine, commits=8, snapshot_every=4)
    files = [f for f in sorted(pristine.rglob("*")) if f.is_file() and f.name != "lock" and f.stat().st_size]
    rng = random.Random(1234)
    outcomes = {"refused": 0, "cut": 0, "verify": 0}
    for trial in range(120):
        work = tmp_path / f"flip{trial}.journal"
        shutil.copytree(pristine, work)
        target = work / files[trial % len(files)].relative_to(pristine)
        data = bytearray(target.read_bytes())
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(data))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with Journal.open(work) as j:
                    # whatever replays must be a state that really existed at that seq
                    report = j.verify()
                    for seq in range(j.first_replayable() or 1, j.head + 1):
                        try:
                            assert j.replay_state(seq=seq) == states[seq], (target, pos)
                        except ds.DesiruError:
                            pass
            except ds.DesiruError:
                outcomes["refused"] += 1
                shutil.rmtree(work)
                continue
        if any(issubclass(w.category, JournalWarning) for w in caught):
            outcomes["cut"] += 1
        else:
            assert not report.ok, f"flip at {target.name}:{pos} went unnoticed"
            outcomes["verify"] += 1
        shutil.rmtree(work)
    assert outcomes["refused"] and outcomes["verify"]


def test_damage_before_the_tail_is_an_error_naming_seq_and_offset(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    states = _build(path)
    seg = _segments(path)[-1]
    offsets = _record_offsets(seg, _salt(path))
    seq, off, length = offsets[2]
    data = bytearray(seg.read_bytes())
    data[off + length - 1] ^= 0x10  # the last payload byte of seq 3
    seg.write_bytes(bytes(data))
    with pytest.raises(ds.CorruptDataError) as info:
        Journal.open(path)
    assert info.value.seq == seq and info.value.offset == off
    with pytest.warns(JournalWarning, match="before it only"):
        r = Journal.open(path, readonly=True)  # readers can still look, up to the damage
    with r:
        report = r.verify()
        assert not report.ok and report.faults[0].seq == seq and report.faults[0].offset == off
        assert r.head == seq - 1 and r.replay_state() == states[seq - 1]
    result = repair(path)
    assert result.changed and result.head == seq - 1 and result.cuts
    kept = list((path / "damaged").iterdir())
    assert sum(f.stat().st_size for f in kept) == len(data) - off
    with Journal.open(path) as j:
        assert j.head == seq - 1 and j.replay_state() == states[seq - 1]
        assert j.verify().ok
        j.commit(ds.Program.from_state(states[max(states)]))
    with Journal.open(path) as j:
        assert j.replay_state() == states[max(states)]
    assert not repair(path).changed


def test_garbage_and_stale_bytes_at_the_tail_are_cut_first(tmp_path: Path) -> None:
    other = tmp_path / "other.journal"
    _build(other)
    stale = _segments(other)[-1].read_bytes()  # valid records of another journal (another salt)
    path = tmp_path / "qa.journal"
    states = _build(path)
    seg = _segments(path)[-1]
    for junk in (stale, os.urandom(5000), b"\x00" * 4096):
        with open(seg, "ab") as f:
            f.write(junk)
        with pytest.warns(JournalWarning):
            j = Journal.open(path)
        with j:
            assert j.replay_state() == states[max(states)]
            p = ds.Program.from_state(j.replay_state())
            p.metadata["n"] = len(junk)
            j.commit(p)  # appended after the cut, never after garbage
            states[j.head] = p.to_state()
        with Journal.open(path) as j:
            assert j.replay_state() == states[j.head]
            assert j.verify().ok


def test_a_half_written_commit_is_cut_whole(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    p = sample_program()
    with Journal.open(path, fsync="never") as j:
        j.commit(p, tag="whole")
        before = p.to_state()
        p.answer.demos = [ds.Example(question=str(i), answer=str(i)) for i in range(5)]
        r = j.commit(p, tag="torn")
        assert len(r.events) >= 4
    seg = _segments(path)[-1]
    offsets = _record_offsets(seg, _salt(path))
    keep_upto = next(o for o in offsets if o[0] == r.events[2].seq)
    with open(seg, "r+b") as f:
        f.truncate(keep_upto[1] + keep_upto[2])  # the commit's first three events only
    with Journal.open(path, readonly=True) as reader:
        assert reader.head == 2 and reader.replay_state() == before
    with pytest.warns(JournalWarning, match="half written"):
        j = Journal.open(path)
    with j:
        assert j.head == 2 and j.tags() == {"whole": 2}
        assert j.replay_state() == before


def test_a_failed_fsync_poisons_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "qa.journal"
    p = sample_program()
    j = Journal.open(path, fsync="always")
    j.commit(p)
    good = p.to_state()

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    if hasattr(os, "fdatasync"):
        monkeypatch.setattr(os, "fdatasync", broken)
    p.metadata["x"] = 1
    with pytest.raises(ds.DesiruError, match="fsync"):
        j.commit(p)
    monkeypatch.undo()
    # what it reads is what the log holds (the commit was written, its fsync failed)
    assert j.head == 2 and j.replay_state()["metadata"] == {"run": "r1", "x": 1}
    p.metadata["x"] = 2
    with pytest.raises(ds.DesiruError, match="poisoned"):
        j.commit(p)
    with pytest.raises(ds.DesiruError, match="poisoned"):
        j.snapshot()
    j.close()
    with Journal.open(path) as j:
        assert j.replay_state(seq=1) == good
        j.commit(p)
        assert j.replay() == p


def test_batch_mode_syncs_within_its_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from desiru.journal import durability

    synced = []
    for name in ("fsync", "fdatasync"):
        if hasattr(os, name):
            real = getattr(os, name)
            monkeypatch.setattr(os, name, lambda fd, real=real: synced.append(time.monotonic()) or real(fd))
    p = sample_program()
    with Journal.open(tmp_path / "qa.journal", fsync="batch") as j:
        j.commit(p)
        t0 = time.monotonic()
        deadline = t0 + 2
        while not [t for t in synced if t >= t0] and time.monotonic() < deadline:
            time.sleep(0.005)
        late = [t for t in synced if t >= t0]
        assert late and late[0] - t0 < durability.BATCH_MAX_DELAY + 0.5
        n = len(synced)
        for i in range(durability.BATCH_MAX_RECORDS):
            p.answer.parameters["i"] = i
            j.commit(p)
        assert len(synced) > n  # the count bound forces a sync without waiting


def test_crash_leftovers_of_snapshot_and_compaction(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    p = sample_program()
    with Journal.open(path) as j:
        for i in range(4):
            p.answer.parameters["i"] = i
            j.commit(p, tag=f"t{i}")
            j.snapshot()
        final = p.to_state()
    # a snapshot interrupted before its rename leaves a temp file: ignored
    (path / SNAPSHOT_DIR / ".00000000000000000099.snap.abc.tmp").write_bytes(b"partial")
    # a compaction interrupted after deleting only the oldest segment
    _segments(path)[0].unlink()
    with Journal.open(path) as j:
        assert not list((path / SNAPSHOT_DIR).glob(".*.tmp"))  # the writer cleans up leftovers
        assert j.replay_state() == final
        assert j.replay_state(tag="t3") == final
        j.compact()
        assert j.replay_state() == final


def test_a_damaged_snapshot_falls_back_to_an_older_base(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    p = sample_program()
    with Journal.open(path) as j:
        j.commit(p)
        j.snapshot()
        p.metadata["x"] = 1
        j.commit(p)
        newest = j.snapshot()
    snap = path / SNAPSHOT_DIR / f"{newest:020d}.snap"
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 4
    snap.write_bytes(bytes(data))
    with Journal.open(path) as j:
        with pytest.warns(JournalWarning, match="damaged"):
            assert j.replay() == p
        report = j.verify()
        assert not report.ok and any(f.seq == newest for f in report.faults)
    result = repair(path)
    assert result.snapshots_removed == (newest,)
    with Journal.open(path) as j:
        assert j.verify().ok and j.replay() == p


def test_verify_reports_every_damaged_record(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    _build(path, commits=8)
    seg = _segments(path)[-1]
    offsets = _record_offsets(seg, _salt(path))
    data = bytearray(seg.read_bytes())
    for _seq, off, length in (offsets[2], offsets[5]):
        data[off + length - 2] ^= 0x01
    seg.write_bytes(bytes(data))
    with pytest.warns(JournalWarning):
        r = Journal.open(path, readonly=True)
    with r:
        faults = r.verify().faults
    assert [(f.seq, f.offset) for f in faults] == [(offsets[2][0], offsets[2][1]), (offsets[5][0], offsets[5][1])]
