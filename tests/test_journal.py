"""The journal API: commits, events, replay (seq, tag, time), snapshots, compaction, errors."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from pathlib import Path

import pytest
from programs import QA, Outer, sample_program

import desiru as ds
from desiru import _engine
from desiru.journal import (
    EVENT_TYPES,
    CheckpointTagged,
    DemoAdded,
    DemoRemoved,
    Event,
    Journal,
    ModuleImported,
    ParameterSet,
    ProgramCreated,
    event_from_edit,
    event_from_record,
    is_journal,
)


def test_first_commit_is_program_created_and_nothing_changed_appends_nothing(tmp_path: Path) -> None:
    p = sample_program()
    with Journal.open(tmp_path / "qa.journal") as j:
        assert j.head == 0 and j.tags() == {}
        r = j.commit(p)
        assert r.seq == 1 and [type(e) for e in r.events] == [ProgramCreated]
        assert r.events[0].payload["state"] == p.to_state()
        again = j.commit(p)
        assert again.seq == 1 and again.events == () and not again.changed
        assert j.head == 1


def test_one_changed_demo_is_one_removal_and_one_addition(tmp_path: Path) -> None:
    p = sample_program()
    with Journal.open(tmp_path / "qa.journal") as j:
        j.commit(p)
        p.answer.demos[1] = ds.Example(question="Colour of grass?", context="day", reasoning="x", answer="green")
        r = j.commit(p)
        assert [type(e) for e in r.events] == [DemoRemoved, DemoAdded]
        assert all(e.path == "answer" for e in r.events)
        assert r.events[1].payload == {"index": 1, "demo": p.answer.demos[1].to_dict()}
        assert [e.seq for e in r.events] == [2, 3] and r.seq == 3


def test_every_edit_op_has_an_event_type_and_back() -> None:
    ops = {cls.op for cls in EVENT_TYPES.values() if cls.op}
    assert ops == {"program_created", "module_added", "module_removed", "signature_set", "demo_added",
                   "demo_removed", "demos_reordered", "parameter_set", "parameter_unset", "metadata_set",
                   "configuration_set", "custom_data_set"}
    edit = {"op": "parameter_set", "path": "answer", "key": "temperature", "value": 0.3}
    ev = event_from_edit(edit, seq=7, timestamp=1.5)
    assert isinstance(ev, ParameterSet) and ev.to_edit() == edit
    assert event_from_record(ev.to_record()) == ev
    assert ev.time == dt.datetime.fromtimestamp(1.5, tz=dt.timezone.utc)
    with pytest.raises(ds.DesiruError):
        event_from_edit({"op": "nonsense", "path": ""})
    for bad in ({"path": ""}, {"op": ["parameter_set"], "path": "answer"},
                {"op": "parameter_set", "path": "answer", "key": "temperature"},
                {"op": "parameter_set", "path": 3, "key": "temperature", "value": 0.3}):
        with pytest.raises(ds.DesiruError) as info:
            event_from_edit(bad)
        assert info.value.hint  # says what to do


def test_events_are_immutable() -> None:
    ev = DemoRemoved(path="answer", payload={"index": 0})
    with pytest.raises(AttributeError):
        ev.seq = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        ev.payload["index"] = 3  # type: ignore[index]
    with pytest.raises(ds.DesiruError):
        DemoAdded(path="answer", payload={"index": 0})  # no demo


def test_structure_changes_replay_exactly(tmp_path: Path) -> None:
    p = Outer()
    p.qa.answer.demos = [ds.Example(question=str(i), answer=str(i)) for i in range(6)]
    states = []
    with Journal.open(tmp_path / "o.journal") as j:
        j.commit(p, tag="s0")
        states.append(p.to_state())
        p.qa.answer.demos.reverse()  # demos reordered
        p.extra = ds.Predict("a -> b")  # module added
        del p.first  # module removed
        p.qa.answer.signature = p.qa.answer.signature.with_instructions("Be terse.")
        p.qa.retrieve.parameters.pop("temperature")
        p.configuration = {"k": [1, 2]}
        p.custom_data = {"blob": b"\x00"}
        p.metadata = {"m": None}
        r = j.commit(p, tag="s1")
        states.append(p.to_state())
        types = {e.type for e in r.events}
        assert {"DemosReordered", "ModuleAdded", "ModuleRemoved", "SignatureSet", "ParameterUnset",
                "ConfigurationSet", "CustomDataSet", "MetadataSet", "CheckpointTagged"} <= types
        first = j.replay(tag="s0")
        assert type(first) is Outer and first.to_state() == states[0]
        assert list(first.modules) == ["first", "qa"]
        last = j.replay(tag="s1")
        assert list(last.modules) == ["qa", "extra"]
        assert [d.question for d in last.qa.answer.demos] == [str(i) for i in reversed(range(6))]
        assert last.to_state() == states[1]


def test_replay_by_seq_tag_and_time(tmp_path: Path) -> None:
    p = sample_program()
    with Journal.open(tmp_path / "qa.journal") as j:
        j.commit(p, tag="a")
        t_a = time.time()
        time.sleep(0.02)
        p.answer.parameters["temperature"] = 0.9
        r = j.commit(p, tag="b")
        assert j.tags() == {"a": 2, "b": 4}
        assert j.replay(seq=1) == sample_program()
        assert j.replay(seq=3).answer.parameters["temperature"] == 0.9
        assert j.replay(at=t_a) == sample_program()
        assert j.replay(at=dt.datetime.fromtimestamp(t_a, tz=dt.timezone.utc)) == sample_program()
        assert j.replay(at=time.time()) == p
        assert j.replay() == p and r.seq == j.head
        with pytest.raises(ds.DesiruError, match="no tag"):
            j.replay(tag="missing")
        with pytest.raises(ds.DesiruError, match="out of range"):
            j.replay(seq=99)
        with pytest.raises(ds.DesiruError, match="at most one"):
            j.replay(seq=1, tag="a")


def test_a_tag_on_an_unchanged_program_is_recorded_and_can_move(tmp_path: Path) -> None:
    p = sample_program()
    with Journal.open(tmp_path / "qa.journal") as j:
        j.commit(p)
        r = j.commit(p, tag="best")
        assert [type(e) for e in r.events] == [CheckpointTagged] and r.events[0].tag == "best"
        p.metadata["run"] = "r2"
        # a commit whose tag would move it is refused whole, naming where the tag points now
        with pytest.raises(ds.DesiruError, match=r"tag 'best' already points at seq 2.*move=True"):
            j.commit(p, tag="best")
        assert j.head == 2
        r = j.commit(p)
        j.tag("best", r, move=True)
        assert j.tags() == {"best": 3}
        assert j.replay(tag="best").metadata["run"] == "r2"
        assert [(m.tag, m.seq, m.moved_from) for m in j.tags(history=True)] == [("best", 2, None), ("best", 3, 2)]


def test_append_hand_built_events(tmp_path: Path) -> None:
    p = sample_program()
    with Journal.open(tmp_path / "qa.journal") as j:
        with pytest.raises(ds.DesiruError, match="ProgramCreated"):
            j.append(ParameterSet(path="answer", payload={"key": "x", "value": 1}))
        created = j.append(ProgramCreated(payload={"state": p.to_state()}))
        assert created.seq == 1 and created.timestamp > 0
        stored = j.append(ParameterSet(path="answer", payload={"key": "x", "value": 1}))
        assert stored.seq == 2
        mod = ds.Predict("a -> b").to_state()
        j.append(ModuleImported(path="imported", payload={"index": 0, "state": {"name": "imported", **mod},
                                                          "source": "m.json"}))
        with pytest.raises(ds.UnknownModuleError):
            j.append(ParameterSet(path="nope", payload={"key": "x", "value": 1}))
        assert j.head == 3  # the refused event was not written
        j.append(CheckpointTagged(payload={"tag": "manual"}))
        replayed = j.replay()
        assert replayed.answer.parameters["x"] == 1
        assert next(iter(replayed.modules)) == "imported"
        assert j.tags() == {"manual": 4}
        # the events handed out stay as they were, though the head moved on
        assert created.payload["state"] == p.to_state()
        events = list(j.events())
        assert [e.seq for e in events] == [1, 2, 3, 4]
        assert events[2].payload["source"] == "m.json"
        # a commit after appends diffs against the appended head
        r = j.commit(replayed)
        assert r.events == ()
    with Journal.open(tmp_path / "qa.journal") as j:
        assert j.replay() == replayed


def test_events_range_and_types(tmp_path: Path) -> None:
    p = sample_program()
    with Journal.open(tmp_path / "qa.journal") as j:
        j.commit(p)
        for i in range(5):
            p.answer.parameters["step"] = i
            j.commit(p)
        assert [e.seq for e in j.events(3)] == [3, 4, 5, 6]
        assert [e.seq for e in j.events(2, 4)] == [2, 3]
        assert all(isinstance(e, Event) for e in j.events())
        assert [e.payload["value"] for e in j.events(2)] == [0, 1, 2, 3, 4]


def test_snapshot_every_and_compaction(tmp_path: Path) -> None:
    p = sample_program()
    path = tmp_path / "qa.journal"
    states = {}
    with Journal.open(path, snapshot_every=5) as j:
        for i in range(23):
            p.answer.parameters["i"] = i
            j.commit(p, tag=f"t{i}" if i % 4 == 0 else None)
            states[j.head] = p.to_state()
        snaps = j.store.snapshot_seqs()
        assert snaps and all(b - a >= 5 for a, b in itertools.pairwise(snaps))
        replays = {s: j.replay_state(seq=s) for s in states}
        assert replays == states
        size_before = j.size()
        freed = j.compact()
        assert freed > 0 and j.size() < size_before
        newest = j.store.snapshot_seqs()[-1]
        tagged = set(j.tags().values())
        # a compaction keeps every tagged commit replayable (each keeps a snapshot of its own)
        assert set(j.store.snapshot_seqs()) <= tagged | {newest}
        assert len(tagged) == 6
        for s, state in states.items():
            if s >= newest or s in tagged:
                assert j.replay_state(seq=s) == state
            else:
                with pytest.raises(ds.DesiruError, match="compacted"):
                    j.replay_state(seq=s)
        for tag, seq in j.tags().items():
            assert j.replay_state(tag=tag) == states[seq]
        # the trials table survives: every commit is still listed, the dropped ones as not replayable
        trials = j.trials()
        assert [t.seq for t in trials] == sorted(states)
        assert {t.seq for t in trials if not t.replayable} == {s for s in states if s < newest and s not in tagged}
    with Journal.open(path) as j:
        assert j.replay_state() == p.to_state()
        assert j.verify().ok
        j.commit(p, tag="after")
        assert j.replay(tag="after") == p


def test_compaction_keeps_tags_at_the_snapshot(tmp_path: Path) -> None:
    p = sample_program()
    with Journal.open(tmp_path / "qa.journal") as j:
        j.commit(p, tag="old")
        p.metadata["x"] = 1
        j.commit(p, tag="kept")
        j.snapshot()
        old = j.replay(tag="old")
        p.metadata["x"] = 2
        j.commit(p)
        p.metadata["x"] = 3
        j.commit(p, tag="after")
        j.snapshot()
        j.compact()
        # tagged commits stay replayable across compaction (each keeps its own snapshot)
        assert j.tags() == {"old": 2, "kept": 4, "after": 7}
        assert j.replay(tag="old") == old
        with pytest.raises(ds.DesiruError, match="compacted"):
            j.replay(seq=5)
    with Journal.open(tmp_path / "qa.journal", readonly=True) as r:
        assert r.tags() == {"old": 2, "kept": 4, "after": 7}
        assert r.replay(tag="old") == old and r.replay(tag="after") == p


def test_reader_mode(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    with pytest.raises(ds.DesiruError, match="no journal"):
        Journal.open(path, readonly=True)
    with pytest.raises(ds.DesiruError, match="no journal"):
        Journal.open(path, create=False)
    with Journal.open(path) as w:
        w.commit(sample_program())
        with Journal.open(path, readonly=True) as r:
            assert r.head == 1
            with pytest.raises(ds.DesiruError, match="read-only"):
                r.commit(sample_program())
            p = sample_program()
            p.metadata["v"] = 2
            w.commit(p)
            assert r.head == 2 and r.replay() == p


def test_closed_journal_refuses_work(tmp_path: Path) -> None:
    j = Journal.open(tmp_path / "qa.journal")
    j.commit(sample_program())
    j.close()
    j.close()
    with pytest.raises(ds.DesiruError, match="closed"):
        j.commit(sample_program())
    with pytest.raises(ds.DesiruError, match="closed"):
        list(j.events())


def test_layout_is_one_directory_that_can_be_moved(tmp_path: Path) -> None:
    p = sample_program()
    with Journal.open(tmp_path / "a.journal") as j:
        j.commit(p, tag="x")
    assert is_journal(tmp_path / "a.journal") and not is_journal(tmp_path)
    (tmp_path / "a.journal").rename(tmp_path / "b.journal")
    with Journal.open(tmp_path / "b.journal") as j:
        assert j.replay(tag="x") == p


def test_header_version_is_checked_first(tmp_path: Path) -> None:
    from desiru.journal.file_store import MAGIC, encode_header

    path = tmp_path / "qa.journal"
    with Journal.open(path) as j:
        j.commit(sample_program())
    header = path / "header"
    good = header.read_bytes()
    header.write_bytes(encode_header(1, {"journal_id": b"x" * 16, "encryption": None},
                                     ds.serialization.Version("3.0.0")))
    with pytest.raises(ds.IncompatibleVersionError, match="3.0.0"):
        Journal.open(path)
    # a newer major whose body this release cannot even parse is still refused by version
    header.write_bytes(MAGIC + b"\x059.0.0" + b"\xff" * 10)
    with pytest.raises(ds.IncompatibleVersionError):
        Journal.open(path)
    header.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(ds.CorruptDataError, match="checksum"):
        Journal.open(path)
    header.write_bytes(b"not a journal")
    with pytest.raises(ds.FormatError):
        Journal.open(path)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ds.DesiruError, match="fsync"):
        Journal.open(tmp_path / "x.journal", fsync="sometimes")
    with Journal.open(tmp_path / "x.journal") as j:
        with pytest.raises(ds.DesiruError):
            j.commit("not a program")  # type: ignore[arg-type]
        with pytest.raises(ds.DesiruError):
            j.commit(QA(), tag=3)  # type: ignore[arg-type]
        with pytest.raises(ds.DesiruError, match="seq 0"):
            j.replay()
        with pytest.raises(ds.DesiruError):
            j.snapshot()


def test_head_state_is_not_replayed_per_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = sample_program()
    with Journal.open(tmp_path / "qa.journal") as j:
        j.commit(p)
        calls = []
        real = _engine.apply_edits
        monkeypatch.setattr(_engine, "apply_edits", lambda *a: calls.append(len(a[1])) or real(*a))
        for i in range(5):
            p.answer.parameters["i"] = i
            j.commit(p)
        assert calls == [1] * 5  # each commit applies its own edit to the head state it keeps, nothing more


def test_commit_with_unregistered_class_replays_through_the_registry(tmp_path: Path) -> None:
    state = sample_program().to_state()
    state["class"] = "nowhere.Unknown"
    with Journal.open(tmp_path / "qa.journal") as j:
        j._commit_state(state, None)
        assert j.replay_state() == state
        with pytest.raises(ds.UnknownClassError):
            j.replay()


def test_compaction_in_a_later_session_frees_the_log(tmp_path: Path) -> None:
    p = sample_program()
    path = tmp_path / "qa.journal"
    with Journal.open(path) as j:
        for i in range(10):
            p.answer.parameters["i"] = i
            j.commit(p)
        j.snapshot()
    with Journal.open(path) as j:
        size = j.size()
        assert j.compact() > 0 and j.size() < size
        assert j.replay() == p
        p.metadata["next"] = 1
        j.commit(p)
    with Journal.open(path) as j:
        assert j.replay() == p and j.verify().ok


def test_records_in_the_first_map_layout_still_read(tmp_path: Path) -> None:
    from desiru.journal.file_store import FileStore

    p = sample_program()
    path = tmp_path / "qa.journal"
    with Journal.open(path) as j:
        j.commit(p)
    store = FileStore(path)
    store.open()
    store.lock()
    event = ParameterSet(path="answer", payload={"key": "temperature", "value": 0.9}, seq=2, timestamp=time.time())
    store.append([(2, _engine.packb({**event.to_record(), "commit": [2, 2]}))])
    store.close()
    with Journal.open(path) as j:
        assert [type(e) for e in j.events(2)] == [ParameterSet]
        assert j.replay().answer.parameters["temperature"] == 0.9
        assert j.verify().ok


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS/VmHWM from /proc")
def test_replay_memory_follows_the_state_not_the_journal(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "long.journal"
    events = [ParameterSet(path="answer", payload={"key": f"k{i % 20}", "value": i}) for i in range(10_000)]
    with Journal.open(path, fsync="never") as j:
        j.commit(sample_program())
        for _ in range(40):
            j.append_many(events)
        size = j.size()
        head = j.replay_state()
    assert size > 30_000_000  # 400,000 events
    code = f"""
import gc, sys, desiru as ds
def kb(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
sys.path.insert(0, {str(Path(__file__).parent)!r})
import programs
r = ds.Journal.open({str(path)!r}, readonly=True)
gc.collect()
before = kb("VmRSS:")
state = r.replay_state()
print(kb("VmHWM:") - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    grown_kb = int(out.stdout.split()[-1])
    print(f"replay grew the process by {grown_kb} KB for a journal of {size} bytes")
    # reading the journal into memory would take more than its 30 MB; replay holds a window and a batch
    assert grown_kb * 1024 < size / 3, (grown_kb, size)
    assert head["modules"][1]["parameters"]["k19"] == 9_999


def test_a_large_program_created_is_written_module_by_module(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from desiru.journal import journal as journal_module

    monkeypatch.setattr(journal_module, "SPLIT_DEMOS", 2)
    p = Outer()
    p.qa.answer.demos = [ds.Example(question=str(i), answer=str(i)) for i in range(3)]
    with Journal.open(tmp_path / "big.journal") as j:
        r = j.commit(p, tag="t")
        assert [e.type for e in r.events] == ["ProgramCreated", "ModuleAdded", "ModuleAdded", "CheckpointTagged"]
        assert r.events[0].payload["state"]["modules"] == []
        assert [e.path for e in r.events[1:3]] == ["first", "qa"]
    with Journal.open(tmp_path / "big.journal", readonly=True) as j:
        assert j.replay(tag="t") == p and list(j.replay().modules) == ["first", "qa"]
