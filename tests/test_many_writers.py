"""Many writers: threads sharing one Journal, processes sharing one file journal (shared=True),
and shared writers on PostgreSQL; every commit lands once and replays as its writer committed it."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from programs import sample_program

import desiru as ds
from desiru.journal import Journal

TESTS = str(Path(__file__).parent)


def _candidate(tag: str, i: int) -> ds.Program:
    p = sample_program()
    p.answer.demos = [ds.Example(question=f"{tag}-{i}", answer=str(i))]
    p.answer.parameters["writer"] = tag
    return p


def _check_run(j: Journal, committed: dict[int, str]) -> None:
    """Every acknowledged commit is listed once and replays to exactly its state; seqs are gap-free."""
    trials = j.trials()
    seqs = [t.seq for t in trials]
    assert len(seqs) == len(set(seqs))
    assert set(committed) <= set(seqs)
    by_seq = {t.seq: t for t in trials}
    for seq, digest in committed.items():
        assert by_seq[seq].content_hash == digest
        assert ds.journal.state_hash(j.replay_state(seq=seq)).hex() == digest
    assert [e.seq for e in j.events()] == list(range(1, j.head + 1))
    assert j.verify().ok


@pytest.mark.parametrize("fsync", ["batch", "never"])
def test_threads_share_one_journal(tmp_path: Path, fsync: str) -> None:
    committed: dict[int, str] = {}
    errors: list[BaseException] = []
    with Journal.open(tmp_path / "t.journal", fsync=fsync) as j:
        root = j.commit(sample_program(), score=0.0)
        committed[root.seq] = root.content_hash or ""
        lock = threading.Lock()

        def work(name: str) -> None:
            rng = random.Random(name)
            try:
                for i in range(25):
                    with lock:
                        parent = rng.choice(sorted(committed))
                    r = j.commit(_candidate(name, i), parent=parent, score=rng.random(), params={"w": name, "i": i})
                    j.record(r, metrics={"later": float(i)})
                    if i % 10 == 0:
                        j.tag(f"{name}-{i}", r)
                    with lock:
                        committed[r.seq] = r.content_hash or ""
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert len(committed) == 101
        _check_run(j, committed)
        assert all(t.metrics.get("later") is not None for t in j.trials() if t.seq != root.seq)
        assert len(j.tags()) == 12


_WORKER = textwrap.dedent("""
    import random, sys
    sys.path.insert(0, {tests!r})
    import desiru as ds
    from test_many_writers import _candidate
    name, n, location, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] or None
    kwargs = {{"name": "run"}} if location.startswith("postgresql") else {{}}
    rng = random.Random(name)
    with ds.Journal.open(location, key=key, shared=True, fsync="always", **kwargs) as j:
        for i in range(n):
            seqs = [t.seq for t in j.trials()]   # the others' commits too
            parent = rng.choice(seqs) if seqs else None
            r = j.commit(_candidate(name, i), parent=parent, score=rng.random(), params={{"w": name}})
            print(r.seq, r.content_hash, flush=True)
""")


def _run_workers(location: str, key: str | None, workers: int, each: int, name: str = "run") -> dict[int, str]:
    code = _WORKER.format(tests=TESTS).replace('{"name": "run"}', repr({"name": name}))
    procs = [subprocess.Popen([sys.executable, "-c", code, f"p{n}", str(each), location, key or ""],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(workers)]
    committed: dict[int, str] = {}
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        for line in out.splitlines():
            seq, digest = line.split()
            assert int(seq) not in committed
            committed[int(seq)] = digest
    assert len(committed) == workers * each
    return committed


@pytest.mark.parametrize("key", [None, "a passphrase for the shared run"])
def test_processes_share_one_file_journal(tmp_path: Path, key: str | None) -> None:
    path = tmp_path / "p.journal"
    with Journal.open(path, key=key) as j:
        j.commit(sample_program(), score=0.0)
    follower = Journal.open(path, key=key, readonly=True)
    events = follower.follow(timeout=10.0, poll=0.01)
    committed = _run_workers(str(path), key, workers=3, each=12)
    seen = []
    for ev in events:
        seen.append(ev.seq)
        if ev.seq == follower.head:
            break
    assert seen == list(range(seen[0], follower.head + 1)) and seen[0] == 4  # every event once, in order
    follower.close()
    with Journal.open(path, key=key, readonly=True) as r:
        _check_run(r, committed)
        assert {t.writer.split(":")[1] for t in r.trials()[1:]} and len({t.writer for t in r.trials()[1:]}) == 3


def test_exclusive_and_shared_writers_refuse_each_other(tmp_path: Path) -> None:
    path = tmp_path / "x.journal"
    with Journal.open(path) as j:
        j.commit(sample_program())
        with pytest.raises(ds.JournalLockedError, match="exclusive writer"):
            Journal.open(path, shared=True)
    with Journal.open(path, shared=True) as a, Journal.open(path, shared=True) as b:
        with pytest.raises(ds.JournalLockedError):
            Journal.open(path)
        ra = a.commit(_candidate("a", 1), score=0.5)
        rb = b.commit(_candidate("b", 1), score=0.6)  # b catches up on a's commit before it appends
        assert rb.seq > ra.seq and b.head == rb.seq and a.head == rb.seq
        assert b.replay(seq=ra.seq) == _candidate("a", 1)
        with pytest.raises(ds.DesiruError, match="compact\\(\\) needs the only writer"):
            a.compact()


def test_shared_writers_follow_each_others_new_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shared writer keeps its segment open between appends: when another writer starts a new
    segment (the last one is full), its next append goes to the new one."""
    import desiru.journal.file_store as file_store

    monkeypatch.setattr(file_store, "SEGMENT_BYTES", 1500)  # a new segment every few commits
    path = tmp_path / "s.journal"
    with Journal.open(path) as j:
        j.commit(sample_program())
    committed: dict[int, str] = {}
    with Journal.open(path, shared=True) as a, Journal.open(path, shared=True) as b:
        writers = [a, b]
        rng = random.Random(7)
        for i in range(40):
            w = writers[rng.randrange(2)]
            r = w.commit(_candidate("ab"[writers.index(w)], i), parent=1, score=i / 40)
            committed[r.seq] = r.content_hash or ""
        segments = sorted(p.name for p in (path / "log").iterdir())
        assert len(segments) > 5
        _check_run(a, committed)
    with Journal.open(path, readonly=True) as r:
        _check_run(r, committed)
        assert [t.seq for t in r.trials()][1:] == sorted(committed)


@pytest.mark.parametrize("shared", [False, True])
def test_a_writer_syncs_the_segment_it_leaves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: bool) -> None:
    """With fsync="batch" the last appends wait for the batch's fdatasync, which flushes the segment the
    writer appends to then: a segment it moves on from is synced as it is left, not left behind."""
    import os

    import desiru.journal.file_store as file_store

    synced: set[int] = set()
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.add(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(file_store, "SEGMENT_BYTES", 1500)  # a new segment every few commits
    path = tmp_path / "r.journal"
    with Journal.open(path) as j:
        j.commit(sample_program())
    with Journal.open(path, shared=shared, fsync="batch") as w:
        for i in range(30):
            w.commit(_candidate("w", i), parent=1)
        left = sorted((path / "log").iterdir())[:-1]
        assert len(left) > 3
        assert all(p.stat().st_ino in synced for p in left[1:])  # the first was written before: not w's


@pytest.mark.parametrize("half, mine", [(60, 0), (1, 40)], ids=["cut-longer-than-new", "cut-shorter-than-new"])
def test_a_cut_by_another_writer_below_a_writers_view(tmp_path: Path, half: int, mine: int) -> None:
    """A writer died mid-commit, leaving whole records of a half commit. Shared writers A and C and a
    reader all read them; C cuts them and writes its own commit there. A and the reader must see
    the log as it is now (the file did not only grow): A must not take C's commit for a half one
    and cut it, nor read on from an offset inside C's records."""
    import os
    import warnings

    def cand(tag: str, size: int) -> ds.Program:
        p = sample_program()
        p.answer.demos = [ds.Example(question=f"{tag} " * (1 + size), answer=tag)]
        return p

    path = tmp_path / "h.journal"
    with Journal.open(path) as j:
        j.commit(sample_program())
        j.commit(cand("dead", half), parent=1, score=0.5)  # Committed, edits, ResultsRecorded
    segment = sorted((path / "log").iterdir())[-1]
    with Journal.open(path, readonly=True) as r:
        last_start = [off for chunk in r.store.read_chunks(0) for _seq, off, _p in chunk][-1]
    os.truncate(segment, last_start)  # its last record never reached the file
    a, c = Journal.open(path, shared=True), Journal.open(path, shared=True)
    reader = Journal.open(path, readonly=True)
    try:
        assert a.head == c.head == reader.head == 1  # the half commit is hidden from all
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rc = c.commit(cand("c", mine), parent=1, score=0.1)  # cuts the half commit, writes in its place
        ra = a.commit(cand("a", 2), parent=1, score=0.2)
        assert a.replay(seq=rc.seq) == cand("c", mine)
        assert [t.seq for t in reader.trials()] == [1, rc.seq, ra.seq]
        assert reader.replay(seq=ra.seq) == cand("a", 2)
    finally:
        a.close()
        c.close()
        reader.close()
    with Journal.open(path, readonly=True) as r:
        assert {t.seq: t.content_hash for t in r.trials()} == {1: r.trial(1).content_hash, rc.seq: rc.content_hash,
                                                               ra.seq: ra.content_hash}
        assert r.verify().ok


@pytest.mark.parametrize("shared", [False, True])
def test_a_compaction_between_open_and_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: bool) -> None:
    """A writer lists the log when it opens the journal, then takes the lock; the writer that held it
    may have compacted meanwhile. What the new writer reads and appends follows the log as it is."""
    from desiru.journal.file_store import FileStore

    path = tmp_path / "o.journal"
    with Journal.open(path) as j:
        c1 = j.commit(_candidate("a", 1)).seq
        j.snapshot()  # the next commit starts a new segment
        c2 = j.commit(_candidate("a", 2)).seq
        c3 = j.commit(_candidate("a", 3)).seq
    name = "lock_shared" if shared else "lock"
    real = getattr(FileStore, name)

    def compact_first(self: FileStore) -> None:
        monkeypatch.setattr(FileStore, name, real)
        with Journal.open(path) as x:  # the other writer, done before this one gets the lock
            x.commit(_candidate("a", 2), parent=c2)  # nothing new: its line moves to c2
            x.snapshot()
            x.compact()
        real(self)

    monkeypatch.setattr(FileStore, name, compact_first)
    with Journal.open(path, shared=shared) as w:
        assert w.store.first_seq() > c1
        trials = [t.seq for t in w.trials() if t.replayable]
        assert c2 in trials and c3 in trials
        r = w.commit(_candidate("b", 4), parent=c3, score=1.0)
        assert w.replay(seq=r.seq) == _candidate("b", 4)
    with Journal.open(path, readonly=True) as r2:
        assert r2.verify().ok and r2.replay(seq=c3) == _candidate("a", 3)


def test_a_shared_writer_killed_mid_run_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    import signal
    import time

    path = tmp_path / "k.journal"
    code = _WORKER.format(tests=TESTS)
    victim = subprocess.Popen([sys.executable, "-c", code, "victim", "100000", str(path), ""],
                              stdout=subprocess.PIPE, text=True)
    assert victim.stdout is not None
    acked: dict[int, str] = {}
    while len(acked) < 5:
        seq, digest = victim.stdout.readline().split()
        acked[int(seq)] = digest
    time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    out, _ = victim.communicate()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            acked[int(parts[0])] = parts[1]
    acked.update(_run_workers(str(path), None, workers=2, each=5))  # the others go on after it
    with Journal.open(path, readonly=True) as r:
        _check_run(r, acked)


def test_processes_share_one_postgres_journal(pg_url: str) -> None:
    import uuid

    name = f"shared-{uuid.uuid4().hex[:8]}"
    with Journal.open(pg_url, name=name) as j:
        j.commit(sample_program(), score=0.0)
    committed = _run_workers(pg_url, None, workers=3, each=8, name=name)
    with Journal.open(pg_url, name=name, readonly=True) as r:
        _check_run(r, committed)


def test_a_failed_commit_leaves_the_writers_state_as_the_log_has_it() -> None:
    """A store that reports a commit did not happen (CommitFailedError, e.g. PostgreSQL's connection
    lost): the writer goes on, and its next commits diff against what the log holds, not against
    the edits of the group that failed (append_many applies them to its head state first)."""
    from desiru.errors import CommitFailedError
    from desiru.journal.events import ParameterSet
    from desiru.journal.memory_store import MemoryStore

    class Flaky(MemoryStore):
        fail = False

        def append(self, records: Any) -> None:
            if self.fail:
                self.fail = False
                raise CommitFailedError("the connection was lost; the commit did not happen")
            super().append(records)

    store = Flaky()
    j = Journal(store)
    p = sample_program()
    j.commit(p)
    j.append(ParameterSet(path="answer", payload={"key": "t", "value": 0.1}))  # the head state's nodes now
    p.answer.parameters["t"] = 0.1                                            # are its own: changed in place
    store.fail = True
    with pytest.raises(CommitFailedError):
        j.append(ParameterSet(path="answer", payload={"key": "t", "value": 0.9}))
    r = j.commit(p)  # unchanged from the log's head: nothing to write
    assert r.events == ()
    p.answer.parameters["t"] = 0.5
    r = j.commit(p)
    assert j.replay(seq=r.seq) == p
    assert j.replay_state(seq=r.seq) == p.to_state()
