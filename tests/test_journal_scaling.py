"""Journal costs that must not grow with history: bounded segments, tail marks, cheap looks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import desiru as ds
from desiru.journal import Journal, JournalWarning, ParameterSet, file_store


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


# -- run index checkpoints -----------------------------------------------------------------------
def build_runs(path: Path, commits: int = 30) -> None:
    """Commits with scores (a snapshot, hence a checkpoint, every few), results on old commits, a tag."""
    p = small_program()
    with Journal.open(path, fsync="never", snapshot_every=6) as j:
        first = j.commit(p, score=0.0).seq
        for i in range(1, commits):
            p.answer.parameters["temperature"] = i / 100
            j.commit(p, score=i, metrics={"em": i / commits}, params={"i": i}, tag="best" if i == 7 else None)
            if i % 9 == 0:
                j.record(first, metrics={"late": float(i)})  # results naming a commit an older checkpoint holds
        j.append_many(params(3))


def trials_of(path: Path) -> list:
    with Journal.open(path, readonly=True) as r:
        return r.trials()


def scanned_trials(path: Path, tmp_path: Path) -> list:
    """The trials as a scan of the whole log gives them (no checkpoints)."""
    import shutil

    bare = tmp_path / "bare.journal"
    shutil.copytree(path, bare)
    shutil.rmtree(bare / "index")
    return trials_of(bare)


def index_files(path: Path) -> list[Path]:
    return sorted((path / "index").glob("*.runs"))


def test_checkpoints_give_the_table_a_scan_gives(tmp_path: Path) -> None:
    path = tmp_path / "j.journal"
    build_runs(path)
    assert len(index_files(path)) >= 3
    expected = scanned_trials(path, tmp_path)
    assert trials_of(path) == expected
    assert expected[0].metrics["late"] == 27.0
    with Journal.open(path, readonly=True) as r:
        assert r.verify().ok


def test_checkpoints_are_merged_so_their_number_stays_bounded(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Every CHECKPOINT_MERGE-th checkpoint holds the whole table and the older files go: at 10 M events
    the index's first use read 500 files. A crash before the old files went changes nothing read."""

    from desiru.journal import runs

    monkeypatch.setattr(runs, "CHECKPOINT_MERGE", 4)
    path = tmp_path / "j.journal"
    build_runs(path, commits=80)  # a snapshot (and a checkpoint) every 6 events: about 40 of them
    kept = index_files(path)
    assert 1 <= len(kept) <= 4
    expected = scanned_trials(path, tmp_path)
    assert trials_of(path) == expected
    assert expected[0].metrics["late"] == 72.0  # a late result the merged rows carry
    # a crash after each merged checkpoint was written, before the older files were deleted: all are left
    stale = tmp_path / "stale.journal"
    monkeypatch.setattr(file_store.FileStore, "delete_index", lambda self, hi: None)
    build_runs(stale, commits=80)
    assert len(index_files(stale)) > 12
    assert trials_of(stale) == scanned_trials(stale, tmp_path / "s") != []
    with Journal.open(path, readonly=True) as r:
        assert r.verify().ok


def test_first_use_reads_only_the_log_after_the_last_checkpoint(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j.journal"
    build_runs(path)
    last = int(index_files(path)[-1].name.split(".")[0])
    starts: list[int] = []
    real = file_store.FileStore.read_chunks

    def spy(self: file_store.FileStore, start: int = 0, stop: int | None = None):  # type: ignore[no-untyped-def]
        starts.append(start)
        return real(self, start, stop)

    monkeypatch.setattr(file_store.FileStore, "read_chunks", spy)
    with Journal.open(path, readonly=True) as r:
        starts.clear()
        r.trials()
    assert starts and min(starts) >= last  # the checkpoint's own record, then what follows it


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "missing middle"])
def test_damaged_or_missing_checkpoints_are_rebuilt_from_the_log(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "j.journal"
    build_runs(path)
    expected = scanned_trials(path, tmp_path)
    files = index_files(path)
    target = files[len(files) // 2]
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x10
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(bytes(data[:-5]))
    elif damage == "garbage":
        target.write_bytes(b"\x00" * len(data))
    else:
        target.unlink()
    assert trials_of(path) == expected
    if damage != "missing middle":
        with Journal.open(path, readonly=True) as r:
            assert any("run index checkpoint" in f.reason for f in r.verify().faults)
        from desiru.journal import repair

        repair(path)
        assert index_files(path) == []
        assert trials_of(path) == expected


def test_checkpoints_of_a_log_cut_and_written_again_are_not_trusted(tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "j.journal"
    build_runs(path)
    saved = tmp_path / "saved-index"
    shutil.copytree(path / "index", saved)
    cut_at = int(index_files(path)[1].name.split(".")[0])  # a commit's end: the log stays whole
    with Journal.open(path, fsync="never", snapshot_every=10**9) as j:
        j.store.cut_after(cut_at, "test: cut the log")
    p = small_program()
    with pytest.warns(JournalWarning, match="past the head"), \
            Journal.open(path, fsync="never", snapshot_every=10**9) as j:  # a new history past the cut
        assert [int(f.name.split(".")[0]) for f in index_files(path)][-1] == cut_at  # later ones were deleted
        for i in range(40):
            p.answer.parameters["temperature"] = 5 + i
            j.commit(p, score=-i, tag="other" if i == 3 else None)
    shutil.rmtree(path / "index")
    shutil.copytree(saved, path / "index")  # the old checkpoints come back: they describe another log
    assert trials_of(path) == scanned_trials(path, tmp_path)


# -- following ----------------------------------------------------------------------------------
def test_a_look_at_a_quiet_journal_reads_no_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j.journal"
    with Journal.open(path, fsync="never") as j, Journal.open(path, readonly=True) as r:
        j.commit(small_program())
        assert r.head == j.head
        scans: list[int] = []
        real = file_store.FileStore._scan_chunks

        def spy(self: file_store.FileStore, first: int, offset: int = 0, **kw: object):  # type: ignore[no-untyped-def]
            scans.append(first)
            return real(self, first, offset, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(file_store.FileStore, "_scan_chunks", spy)
        for _ in range(50):
            assert r.head == j.head
        assert scans == []
        j.append_many(params(2))
        assert r.head == j.head and scans  # a change is seen at the next look


def test_a_reader_sees_a_new_segment_after_a_quiet_look(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_store, "SEGMENT_BYTES", 1)  # every append starts a new segment
    path = tmp_path / "j.journal"
    with Journal.open(path, fsync="never", snapshot_every=10**9) as j, Journal.open(path, readonly=True) as r:
        j.commit(small_program())
        assert r.head == j.head
        for k in range(5):
            j.append_many(params(1, k))
            assert r.head == j.head
        assert len(segments(path)) == 6


def test_a_follower_is_woken_by_an_append_not_by_its_poll(tmp_path: Path) -> None:
    import threading
    import time

    from desiru.journal.watch import FolderWatch

    path = tmp_path / "j.journal"
    with Journal.open(path, fsync="never") as j:
        j.commit(small_program())
        probe = FolderWatch.open(str(path / "log"))
        if probe is None:
            pytest.skip("no inotify here: followers poll")
        probe.close()
        got: list[float] = []
        with Journal.open(path, readonly=True) as r:
            stream = r.follow(poll=30.0, timeout=60.0)  # a look every 30 s: only a wake-up is quick
            reader = threading.Thread(target=lambda: got.append((next(stream), time.monotonic())[1]))
            reader.start()
            time.sleep(0.3)  # the follower is asleep in its wait
            t0 = time.monotonic()
            j.append_many(params(1))
            reader.join(timeout=20)
        assert got and got[0] - t0 < 5.0


def test_a_commit_does_not_list_the_snapshots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j.journal"
    p = small_program()
    with Journal.open(path, fsync="never", snapshot_every=4) as j:
        for i in range(12):  # a few snapshots
            p.answer.parameters["temperature"] = i
            j.commit(p)
        calls: list[int] = []
        real = file_store.FileStore.snapshot_seqs

        def spy(self: file_store.FileStore) -> list[int]:
            calls.append(1)
            return real(self)

        monkeypatch.setattr(file_store.FileStore, "snapshot_seqs", spy)
        p.answer.parameters["temperature"] = 99
        j.commit(p)
        assert calls == []


def test_folder_listings_are_reused_while_the_folder_is_unchanged(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader's look lists log/ and snapshots/ again only when the folder changed (one stat otherwise):
    with 500 segments, listing on every look made a follower's lag grow with history."""
    from desiru.journal import file_layout

    folder = tmp_path / "log"
    folder.mkdir()
    for seq in (1, 20_002, 40_003):
        (folder / f"{seq:020d}.log").write_bytes(b"")
    (folder / "notes.txt").write_bytes(b"")
    listing = file_layout.FolderSeqs(".log")
    assert listing.get(folder) == [1, 20_002, 40_003]
    (folder / f"{60_004:020d}.log").write_bytes(b"")  # just changed: never taken from a stale listing
    assert listing.get(folder) == [1, 20_002, 40_003, 60_004]
    (folder / f"{1:020d}.log").unlink()  # a compaction
    assert listing.get(folder) == [20_002, 40_003, 60_004]
    # a folder that settled: its listing is reused while its (inode, mtime) stay; any change moves the mtime
    monkeypatch.setattr(file_layout, "LISTING_SETTLE_NS", 0)
    old = folder.stat()
    assert listing.get(folder) == [20_002, 40_003, 60_004]
    planted = folder / f"{80_005:020d}.log"
    planted.write_bytes(b"")
    os.utime(folder, ns=(old.st_atime_ns, old.st_mtime_ns))  # hide the change: the listing is reused
    assert listing.get(folder) == [20_002, 40_003, 60_004]
    os.utime(folder)  # the next change of the folder moves its mtime
    assert listing.get(folder) == [20_002, 40_003, 60_004, 80_005]
    got = listing.get(folder)
    got.append(1)  # the caller's own list
    assert listing.get(folder) == [20_002, 40_003, 60_004, 80_005]
    assert file_layout.FolderSeqs(".log").get(tmp_path / "missing") == []


def test_a_reader_sees_segments_and_snapshots_a_writer_adds_and_drops(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(file_store, "SEGMENT_BYTES", 1)  # every append starts a new segment
    path = tmp_path / "j.journal"
    p = small_program()
    with Journal.open(path, fsync="never", snapshot_every=3) as j, Journal.open(path, readonly=True) as r:
        for i in range(8):
            p.answer.parameters["temperature"] = i
            j.commit(p)
            assert r.head == j.head and r.store.snapshot_seqs() == j.store.snapshot_seqs()
        j.compact()
        assert r.head == j.head and r.store.first_seq() == j.store.first_seq()
        assert r.store.snapshot_seqs() == j.store.snapshot_seqs()
        assert r.replay_state() == j.replay_state() == p.to_state()
