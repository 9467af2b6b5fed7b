"""Regressions found in review: a reader's index after compaction, write failures, readers
racing a compaction (made deterministic by compacting from inside the reader's store
calls), a damaged only snapshot, and argument checks."""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from programs import sample_program

import desiru as ds
from desiru.journal import Journal, JournalWarning
from desiru.journal import file_store as fs
from desiru.journal.file_store import SNAPSHOT_DIR


def _states(j: Journal, n: int, start: int = 0, tag: str = "t") -> dict[str, dict[str, Any]]:
    """Commit ``n`` versions of the sample program tagged tag<i>; returns {tag: state}."""
    p = sample_program()
    out = {}
    for i in range(start, start + n):
        p.metadata = {"step": i}
        j.commit(p, tag=f"{tag}{i}")
        out[f"{tag}{i}"] = p.to_state()
    return out


# -- 1. a long-lived reader's tags after the writer compacts -------------------------------------------
def test_a_reader_index_follows_the_writers_compaction(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    w = Journal.open(path, fsync="never")
    want = _states(w, 1, tag="a")
    r = Journal.open(path, readonly=True)
    assert r.tags() == {"a0": 2}  # the reader's index now covers seq 2
    want.update(_states(w, 1, 1, tag="b"))
    w.snapshot()
    want.update(_states(w, 1, 2, tag="c"))
    w.compact(keep_tags=False)  # the log now starts after the snapshot: tag b lives only in its meta
    assert w.tags() == {"b1": 4, "c2": 6}
    assert r.tags() == w.tags()
    assert r.replay_state(tag="b1") == want["b1"] and r.replay_state(tag="c2") == want["c2"]
    with pytest.raises(ds.DesiruError, match="tag 'a0' .*was compacted away"):
        r.replay(tag="a0")
    # a second compaction, the reader still up to date: the floor is applied again
    want.update(_states(w, 1, 3, tag="d"))
    w.snapshot()
    w.compact(keep_tags=False)
    assert r.tags() == w.tags() == {"d3": 8}
    with pytest.raises(ds.DesiruError, match="tag 'b1' .*was compacted away"):
        r.replay(tag="b1")
    assert r.replay_state(tag="d3") == want["d3"]
    r.close()
    w.close()


# -- 2. write failures -----------------------------------------------------------------------------------
def test_a_failed_write_is_a_desiru_error_and_poisons_for_what_failed(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "qa.journal"
    p = sample_program()
    j = Journal.open(path, fsync="never")
    j.commit(p)
    good = p.to_state()

    def full(fd: int, data: Any, offset: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fs.os, "pwrite", full)
    p.metadata = {"x": 1}
    with pytest.raises(ds.DesiruError, match="writing the journal failed: No space left on device") as info:
        j.commit(p)
    assert not isinstance(info.value, OSError) and isinstance(info.value.__cause__, OSError)
    assert info.value.seq == 2 and info.value.path == str(path)
    monkeypatch.undo()
    with pytest.raises(ds.DesiruError, match="poisoned: a write failed") as info:
        j.commit(p)
    assert "fsync" not in info.value.message
    j.close()
    with Journal.open(path) as j:
        assert j.head == 1 and j.replay_state() == good
        assert j.commit(p).seq == 2


def test_a_failed_automatic_snapshot_warns_and_the_commit_returns(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "qa.journal"
    p = sample_program()
    j = Journal.open(path, fsync="never", snapshot_every=2)
    j.commit(p)

    def full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fs, "atomic_write", full)
    p.metadata = {"x": 1}
    with pytest.warns(JournalWarning, match="snapshot at seq 3 failed: No space left.*retried"):
        r = j.commit(p, tag="z")
    assert r.seq == 3 and j.head == 3 and j.store.snapshot_seqs() == []
    # an explicit snapshot says what failed, as a DesiruError; the writer is not poisoned
    with pytest.raises(ds.DesiruError, match="writing the snapshot at seq 3 failed") as info:
        j.snapshot()
    assert not isinstance(info.value, OSError) and info.value.seq == 3
    monkeypatch.undo()
    p.metadata = {"x": 2}
    assert j.commit(p).seq == 4  # and the automatic snapshot is retried
    assert j.store.snapshot_seqs() == [4]
    j.close()
    with Journal.open(path, readonly=True) as rd:
        assert rd.tags() == {"z": 3} and rd.replay_state(tag="z")["metadata"] == {"x": 1}


def test_a_failed_fsync_still_says_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = Journal.open(tmp_path / "qa.journal", fsync="always")
    p = sample_program()
    j.commit(p)

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    monkeypatch.setattr(os, "fdatasync", broken, raising=False)
    p.metadata = {"x": 1}
    with pytest.raises(ds.DesiruError, match="fsync"):
        j.commit(p)
    monkeypatch.undo()
    with pytest.raises(ds.DesiruError, match="poisoned: an fsync failed"):
        j.commit(p)
    j.close()


# -- 3. readers racing a compaction ------------------------------------------------------------------------
def _hook_once(monkeypatch: pytest.MonkeyPatch, obj: Any, name: str, before: Any, *, every: bool = False,
               when: Any = None) -> None:
    """Make ``obj.name`` run ``before()`` first (on its first call only, unless ``every``; only
    on calls whose arguments ``when(*args)`` accepts, if given)."""
    real = getattr(obj, name)
    fired = []

    def hooked(*args: Any, **kwargs: Any) -> Any:
        if (every or not fired) and (when is None or when(*args)):
            fired.append(1)
            before()
        return real(*args, **kwargs)

    monkeypatch.setattr(obj, name, hooked)


def test_a_snapshot_vanishing_under_a_reader_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "qa.journal"
    w = Journal.open(path, fsync="never")
    _states(w, 2)
    w.snapshot()
    want = _states(w, 2, 2)
    r = Journal.open(path, readonly=True)

    def compact() -> None:
        w.snapshot()
        w.compact(keep_tags=False)  # deletes the snapshot the reader is about to read

    _hook_once(monkeypatch, r.store, "get_snapshot", compact)
    assert r.replay_state() == want["t3"]
    # the index too: a vanished snapshot is a race, not a damaged one to skip (which lost tags)
    r2 = Journal.open(path, readonly=True)
    want.update(_states(w, 1, 4))
    _hook_once(monkeypatch, r2.store, "get_snapshot", compact)
    assert r2.tags() == w.tags() == {"t4": 10}
    r.close()
    r2.close()
    w.close()


def test_a_reader_raced_twice_gets_a_plain_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "qa.journal"
    w = Journal.open(path, fsync="never")
    _states(w, 2)
    w.snapshot()
    _states(w, 1, 2)
    r = Journal.open(path, readonly=True)
    step = iter(range(100, 200))

    def commit_and_compact() -> None:
        _states(w, 1, next(step))
        w.snapshot()
        w.compact(keep_tags=False)

    _hook_once(monkeypatch, r.store, "get_snapshot", commit_and_compact, every=True)
    with pytest.raises(ds.DesiruError, match="compacted while this reader read it") as info:
        r.replay_state()
    assert not isinstance(info.value, ds.CorruptDataError)
    # (looking up the oldest replayable seq for the hint raced the writer once more here)
    assert re.search(r"the oldest replayable seq is now \d+\)$", str(info.value))
    r.close()
    w.close()


def test_a_segment_vanishing_under_a_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "qa.journal"
    w = Journal.open(path, fsync="never")
    want = _states(w, 3)
    r = Journal.open(path, readonly=True)

    def compact() -> None:
        w.snapshot()
        w.compact(keep_tags=False)  # drops the segment the reader is about to open

    # replay: retried, now from the snapshot
    _hook_once(monkeypatch, r.store, "_scan_chunks", compact)
    assert r.replay_state() == want["t2"]
    monkeypatch.undo()
    # events(): it cannot hand out the gone events again; says so, not as corruption
    want.update(_states(w, 2, 3))
    r2 = Journal.open(path, readonly=True)
    r2.head  # noqa: B018 (the reader's tail position is now past the start of the segment)
    # fire when events() reads the segment from its start, not when head scans on from the tail
    _hook_once(monkeypatch, r2.store, "_scan_chunks", compact, when=lambda first, offset=0, *a: offset == 0)
    with pytest.raises(ds.DesiruError, match="compacted away while reading") as info:
        list(r2.events(0))
    assert not isinstance(info.value, ds.CorruptDataError)
    assert "the oldest replayable seq is 10" in str(info.value)
    r.close()
    r2.close()
    w.close()


def test_head_tolerates_its_record_vanishing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "qa.journal"
    w = Journal.open(path, fsync="never")
    _states(w, 1)
    r = Journal.open(path, readonly=True)
    _states(w, 1, 1)

    def compact() -> None:
        w.snapshot()
        w.compact(keep_tags=False)  # after the reader checked where the log starts, before it reads its head record

    # the reader's head: last_seq() says 4, first_seq() says the log holds it, then it vanishes
    real = r.store.first_seq
    fired = []

    def first_seq() -> int:
        seq = real()
        if not fired:
            fired.append(1)
            compact()
        return seq

    monkeypatch.setattr(r.store, "first_seq", first_seq)
    assert r.head == 4
    assert r.replay_state(tag="t1")["metadata"] == {"step": 1}
    r.close()
    w.close()


def test_a_reader_opening_during_compaction_sees_no_damage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "qa.journal"
    w = Journal.open(path, fsync="never")
    _states(w, 1)
    w.snapshot()
    _states(w, 1, 1)  # the snapshot rolled the log: seq 3.. is in a second segment
    w.snapshot()
    _states(w, 1, 2)  # and seq 5.. in a third

    real = fs.FileStore._list_segments
    stale: list[list[int]] = []

    def list_segments(self: fs.FileStore) -> list[int]:
        segs = real(self)
        if self.readonly and not stale:
            stale.append(segs)
            # the reader lists a segment as its last, then the writer drops it
            os.unlink(self._seg_path(segs[-1]))
            return segs
        return segs

    monkeypatch.setattr(fs.FileStore, "_list_segments", list_segments)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = Journal.open(path, readonly=True)
    assert r.store.damage is None
    r.close()
    w.close()


# -- 4. a damaged only snapshot of a compacted journal ---------------------------------------------------
def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def test_a_damaged_only_snapshot_is_a_corrupt_data_error(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    with Journal.open(path) as j:
        _states(j, 1, tag="a")
        j.snapshot()
        _states(j, 1, 1, tag="b")
        j.compact(keep_tags=False)
    snap = path / SNAPSHOT_DIR / "00000000000000000002.snap"
    _flip(snap)
    with Journal.open(path, readonly=True) as r:
        for call in (r.tags, lambda: r.replay(tag="b1"), lambda: r.replay(seq=4), r.first_replayable):
            with pytest.raises(ds.CorruptDataError, match="snapshot at seq 2 is damaged") as info:
                call()
            assert info.value.path == str(snap) and info.value.seq == 2
            assert "from a copy" in str(info.value)
        assert not r.verify().ok


def test_first_replayable_skips_a_damaged_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    with Journal.open(path) as j:
        _states(j, 1)
        j.snapshot()
        j.compact(keep_tags=False)
        want = _states(j, 1, 1)
        j.snapshot()
        _states(j, 1, 2)
    assert sorted(int(f.name.split(".")[0]) for f in (path / SNAPSHOT_DIR).iterdir()) == [2, 4]
    _flip(path / SNAPSHOT_DIR / "00000000000000000002.snap")
    with Journal.open(path, readonly=True) as r:
        assert r.first_replayable() == 4
        assert r.replay_state(tag="t1") == want["t1"]
        # seq 3 lies inside the commit 3..4: it replays as that commit, from the good snapshot at 4
        assert r.replay_state(seq=3) == want["t1"]
        assert any(f.seq == 2 for f in r.verify().faults)


# -- 5. argument checks -------------------------------------------------------------------------------------
def test_argument_checks(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "qa.journal") as j:
        p = sample_program()
        with pytest.raises(ds.DesiruError, match="must not be empty"):
            j.commit(p, tag="")
        assert j.head == 0
        j.commit(p)
        with pytest.raises(ds.DesiruError, match="seq= takes an int, got bool"):
            j.replay(seq=True)
        with pytest.raises(ds.DesiruError, match="at= takes"):
            j.replay(at=True)
        with pytest.raises(ds.DesiruError, match=r"no event at or before 1000\.0 \(1970-01-01T00:16:40\+00:00\)"):
            j.replay(at=1000.0)
        early = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
        with pytest.raises(ds.DesiruError, match="no event at or before 2000-01-01T00:00:00") as info:
            j.replay(at=early)
        assert "the first event is from" in str(info.value)
        # a naive datetime is local time: now (naive, local) is after the commit
        assert j.replay_state(at=dt.datetime.now()) == p.to_state()


def test_a_tag_compacted_away_stays_away_after_reopen_while_its_records_remain(tmp_path: Path) -> None:
    """compact(keep_tags=False) whose floor lies inside the first log segment (nothing is deleted):
    the writer said the tag was gone, a reopened journal showed it again (found by the state machine)."""
    path = tmp_path / "qa.journal"
    p = sample_program()
    j = Journal.open(path, fsync="never")
    j.commit(p, tag="a")
    p.metadata = {"x": 1}
    j.commit(p)
    p.metadata = {"x": 2}
    j.commit(p, tag="b")
    j.snapshot()
    j.compact(keep_tags=False)
    tags = j.tags()
    assert "a" not in tags and "b" in tags
    j.close()
    with Journal.open(path, readonly=True) as again:
        assert again.tags() == tags
        with pytest.raises(ds.DesiruError, match="compacted away"):
            again.replay(tag="a")


class _AttrDict(dict):  # type: ignore[type-arg]
    """A mapping whose attribute access answers anything (a common idiom): ``._data`` is None, not its fields."""

    __getattr__ = dict.get


def test_demos_that_are_mappings_with_permissive_attributes_are_committed_copied_and_saved_as_fields(
        tmp_path: Path) -> None:
    p = ds.Program()
    p.a = ds.Predict("q -> a")
    p.a.demos = [_AttrDict(q="x", a="y"), ds.Example(q="z", a="w")]  # type: ignore[list-item]
    expected = p.to_state()
    assert expected["modules"][0]["demos"] == [{"q": "x", "a": "y"}, {"q": "z", "a": "w"}]
    with ds.Journal.open(tmp_path / "j.journal") as j:
        j.commit(p)
        assert j.replay_state() == expected
    assert p.copy().to_state() == expected
    p.save(tmp_path / "p.msgpack")
    assert ds.load(tmp_path / "p.msgpack").to_state() == expected


def test_a_no_op_commit_hashes_the_state_it_returned_even_after_later_appends(tmp_path: Path) -> None:
    """The lazy hash of a no-op commit reads the head state; appends after it must not change it in place."""
    from desiru.journal.events import DemoAdded

    with ds.Journal.open(tmp_path / "j.journal") as j:
        p = ds.Program()
        p.a = ds.Predict("q -> a")
        j.commit(p)
        for q in ("1", "2"):  # the second makes the head state's nodes the writer's own (changed in place)
            j.append_many([DemoAdded(path="a", payload={"index": 0, "demo": {"q": q}})])
        result = j.commit(j.replay())
        assert not result.changed
        j.append_many([DemoAdded(path="a", payload={"index": 0, "demo": {"q": "3"}})])
        assert result.content_hash == ds.journal.state_hash(j.replay_state(seq=result.seq)).hex()
