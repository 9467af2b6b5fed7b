"""The contract every journal store must pass (subclass ``StoreContract`` once per backend).

A backend supplies ``connect(location, readonly=False)`` returning a new connection
to the store at ``location`` (a tmp path here), the way eventsourcing's
persistence tests are subclassed per database. The second half runs the journal's
own logic on the store, so a new backend is known to work end to end.
"""

from __future__ import annotations

from typing import Any

import pytest

import desiru as ds
from desiru.journal import Journal, JournalStore


def _program(n_demos: int = 3) -> ds.Program:
    p = ds.Program()
    p.answer = ds.ChainOfThought("question -> answer", temperature=0.1)
    p.answer.demos = [ds.Example(question=f"q{i}", answer=f"a{i}") for i in range(n_demos)]
    p.configuration = {"optimizer": "test"}
    return p


class StoreContract:
    """Behaviour the journal relies on; each test gets a fresh, empty location."""

    def connect(self, location: Any, readonly: bool = False) -> JournalStore:  # pragma: no cover - abstract
        raise NotImplementedError

    @pytest.fixture
    def location(self, tmp_path: Any) -> Any:
        return tmp_path / "store.journal"

    def writer(self, location: Any, meta: dict[str, Any] | None = None) -> JournalStore:
        store = self.connect(location)
        if not store.exists():
            store.create(meta or {"journal_id": b"j" * 16, "encryption": None})
        store.open()
        store.lock()
        return store

    # -- lifecycle ------------------------------------------------------------------------------
    def test_create_then_open_returns_the_meta(self, location: Any) -> None:
        store = self.connect(location)
        assert not store.exists()
        meta = {"journal_id": b"\x01" * 16, "encryption": None, "extra": [1, "x"]}
        store.create(meta)
        assert store.exists()
        assert self.connect(location).open() == meta
        store.close()

    def test_create_twice_keeps_the_first(self, location: Any) -> None:
        self.connect(location).create({"journal_id": b"a" * 16, "encryption": None})
        self.connect(location).create({"journal_id": b"b" * 16, "encryption": None})
        assert self.connect(location).open()["journal_id"] == b"a" * 16

    # -- records ---------------------------------------------------------------------------------
    def test_append_then_read_in_order(self, location: Any) -> None:
        store = self.writer(location)
        records = [(i, f"payload {i}".encode() * (i % 5 + 1)) for i in range(1, 51)]
        store.append(records[:10])
        store.append(records[10:])
        store.sync()
        assert list(store.read()) == records
        assert list(store.read(20, 25)) == records[19:24]
        assert list(store.read(51)) == []
        assert store.last_seq() == 50 and store.first_seq() == 1
        store.close()

    def test_empty_store(self, location: Any) -> None:
        store = self.writer(location)
        assert store.last_seq() == 0 and store.first_seq() == 1
        assert list(store.read()) == []
        store.append([])
        assert store.last_seq() == 0
        store.close()

    def test_append_refuses_a_gap_or_a_repeat(self, location: Any) -> None:
        store = self.writer(location)
        store.append([(1, b"a"), (2, b"b")])
        with pytest.raises(ds.DesiruError):
            store.append([(4, b"d")])
        with pytest.raises(ds.DesiruError):
            store.append([(2, b"again")])
        assert [s for s, _ in store.read()] == [1, 2]
        store.close()

    def test_append_needs_the_lock(self, location: Any) -> None:
        self.writer(location).close()
        store = self.connect(location)
        store.open()
        with pytest.raises(ds.DesiruError):
            store.append([(1, b"x")])

    def test_readers_see_appends(self, location: Any) -> None:
        store = self.writer(location)
        reader = self.connect(location, readonly=True)
        reader.open()
        assert reader.last_seq() == 0
        store.append([(1, b"one"), (2, b"two")])
        assert reader.last_seq() == 2
        assert list(reader.read()) == [(1, b"one"), (2, b"two")]
        store.append([(3, b"three")])
        assert reader.last_seq() == 3
        assert list(reader.read(3)) == [(3, b"three")]
        with pytest.raises(ds.DesiruError):
            reader.lock()
        reader.close()
        store.close()

    def test_payloads_are_opaque_bytes(self, location: Any) -> None:
        store = self.writer(location)
        odd = [b"", b"\x00" * 100, bytes(range(256)), b"\xff" * 70_000]
        store.append([(i + 1, p) for i, p in enumerate(odd)])
        assert [p for _, p in store.read()] == odd
        store.close()

    # -- one writer ------------------------------------------------------------------------------
    def test_second_writer_is_refused_at_once(self, location: Any) -> None:
        first = self.writer(location)
        second = self.connect(location)
        second.open()
        with pytest.raises(ds.JournalLockedError):
            second.lock()
        first.unlock()
        second.lock()  # free again
        second.close()
        first.close()

    def test_close_releases_the_lock(self, location: Any) -> None:
        self.writer(location).close()
        self.writer(location).close()

    # -- snapshots -------------------------------------------------------------------------------
    def test_snapshots_put_get_list_delete(self, location: Any) -> None:
        store = self.writer(location)
        store.append([(i, b"r") for i in range(1, 6)])
        store.put_snapshot(2, b"two")
        store.put_snapshot(5, b"five" * 1000)
        assert store.snapshot_seqs() == [2, 5]
        assert store.get_snapshot(5) == b"five" * 1000
        store.put_snapshot(2, b"two again")
        assert store.get_snapshot(2) == b"two again"
        store.delete_snapshot(2)
        store.delete_snapshot(2)  # absent: no error
        assert store.snapshot_seqs() == [5]
        with pytest.raises(ds.DesiruError):
            store.get_snapshot(2)
        store.close()

    def test_appends_continue_after_a_snapshot_at_the_head(self, location: Any) -> None:
        store = self.writer(location)
        store.append([(1, b"a"), (2, b"b")])
        store.put_snapshot(2, b"S")
        store.append([(3, b"c")])
        store.close()
        store = self.writer(location)
        store.append([(4, b"d")])
        assert list(store.read()) == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]
        store.close()

    # -- cutting and dropping ------------------------------------------------------------------------
    def test_cut_after_removes_the_tail_and_keeps_it_aside(self, location: Any) -> None:
        store = self.writer(location)
        store.append([(i, b"x" * i) for i in range(1, 11)])
        report = store.cut_after(6, "test")
        assert report is not None and report.nbytes > 0 and report.after_seq == 6
        assert store.last_seq() == 6
        assert [s for s, _ in store.read()] == list(range(1, 7))
        store.append([(7, b"new")])
        assert list(store.read(7)) == [(7, b"new")]
        assert store.cut_after(7, "nothing after") is None
        store.close()

    def test_drop_before_keeps_every_record_after(self, location: Any) -> None:
        store = self.writer(location)
        store.append([(i, b"r%d" % i) for i in range(1, 11)])
        store.put_snapshot(10, b"S")
        store.append([(i, b"r%d" % i) for i in range(11, 16)])
        freed = store.drop_before(10)
        assert freed > 0
        seqs = [s for s, _ in store.read()]
        assert seqs[-6:] == list(range(10, 16))[1:] or seqs[-5:] == list(range(11, 16))
        assert seqs == list(range(seqs[0], 16)) and seqs[0] <= 11
        assert store.first_seq() == seqs[0] and store.last_seq() == 15
        store.close()

    def test_drop_before_everything_keeps_the_head(self, location: Any) -> None:
        store = self.writer(location)
        store.append([(i, b"r") for i in range(1, 6)])
        store.put_snapshot(5, b"S")
        store.drop_before(5)
        assert store.last_seq() == 5 and store.first_seq() == 6
        assert list(store.read()) == []
        store.close()
        store = self.writer(location)
        assert store.last_seq() == 5 and store.first_seq() == 6
        store.append([(6, b"six")])
        assert list(store.read()) == [(6, b"six")]
        store.close()

    @pytest.mark.parametrize("cut", [3, 10, 12, 15])
    def test_first_kept_says_where_drop_before_leaves_the_log(self, location: Any, cut: int) -> None:
        store = self.writer(location)
        store.append([(i, b"r%d" % i) for i in range(1, 11)])
        store.put_snapshot(10, b"S")  # a file store starts a new segment here
        store.append([(i, b"r%d" % i) for i in range(11, 16)])
        if cut == 15:
            store.put_snapshot(15, b"S")
        kept = store.first_kept(cut)
        assert 1 <= kept <= cut + 1
        store.drop_before(cut)
        assert store.first_seq() == kept  # compaction carries the LM answers before it, and only those
        store.close()

    def test_check_reports_no_fault_on_a_sound_store(self, location: Any) -> None:
        store = self.writer(location)
        store.append([(i, b"ok") for i in range(1, 21)])
        count, faults = store.check()
        assert count == 20 and faults == []
        store.close()

    # -- the journal on this store ---------------------------------------------------------------------
    def journal(self, location: Any, **kw: Any) -> Journal:
        return Journal(self.connect(location, readonly=kw.get("readonly", False)), **kw)

    def test_journal_commit_replay_tags(self, location: Any) -> None:
        p = _program()
        with self.journal(location) as j:
            j.commit(p, tag="v1")
            p.answer.demos.insert(1, ds.Example(question="new", answer="n"))
            p.answer.parameters["temperature"] = 0.5
            r = j.commit(p, tag="v2")
            assert [e.type for e in r.events] == ["DemoAdded", "ParameterSet", "CheckpointTagged"]
            assert j.commit(p).events == ()
            assert j.replay(tag="v1") == _program()
            assert j.replay(tag="v2") == p
        with self.journal(location, readonly=True) as r:
            assert r.tags() == {"v1": 2, "v2": 5}
            assert r.replay() == p

    def test_journal_snapshot_and_compact_change_no_replay(self, location: Any) -> None:
        p = _program(5)
        with self.journal(location) as j:
            states = {}
            for i in range(6):
                p.answer.demos[i % 5] = ds.Example(question=f"changed {i}", answer="x")
                j.commit(p, tag=f"t{i}")
                states[f"t{i}"] = p.to_state()
                if i == 3:
                    j.snapshot()
            before = {t: j.replay_state(tag=t) for t in ("t3", "t4", "t5")}
            j.compact(keep_tags=False)
            for t in ("t3", "t4", "t5"):
                assert j.replay_state(tag=t) == before[t] == states[t]
            assert "t0" not in j.tags()
        with self.journal(location) as j:
            assert j.replay_state() == states["t5"]
            assert j.verify().ok

    def test_compact_keeps_recorded_lm_answers(self, location: Any) -> None:
        from desiru.journal.events import LMResponseRecorded

        def answers(j: Journal) -> list[tuple[str, Any]]:
            return [(e.payload["key"], e.payload["outputs"]) for e in j.events() if isinstance(e, LMResponseRecorded)]

        p = _program(3)
        with self.journal(location) as j:
            j.commit(p)
            j.append_many([LMResponseRecorded(payload={"key": f"k{i}", "model": "m", "outputs": [f"answer {i}"]})
                           for i in range(5)])
            p.answer.demos[0] = ds.Example(question="changed", answer="x")
            j.commit(p)
            floor = j.snapshot()
            recorded = answers(j)
            j.compact()
            assert j.store.first_seq() > floor and answers(j) == recorded
            p.answer.demos[1] = ds.Example(question="changed too", answer="y")
            j.commit(p)
            floor = j.snapshot()  # after the answers carried: the next compaction moves them once more
            j.compact()
            assert j.store.first_seq() > floor and answers(j) == recorded  # never doubled
        with self.journal(location, readonly=True) as r:
            assert answers(r) == recorded and r.replay() == p
