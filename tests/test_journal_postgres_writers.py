"""Many writers on one PostgreSQL journal: threads, processes, followers, and faults.

Writers use ``append_new`` (the store allocates seqs inside the commit transaction);
each commit is two ParameterSet records keyed by writer and number, so afterwards
every commit can be found exactly once and the journal must replay and verify.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import threading
import time
from typing import Any

import pytest
from journal_contract import _program
from pg_server import PgServer, wait_ready
from test_journal_postgres import fresh_name

import desiru as ds
from desiru.journal import Journal, ParameterSet
from desiru.journal.codec import RecordCodec
from desiru.journal.postgres_store import PostgresStore

SPAWN = multiprocessing.get_context("spawn")


def _start_journal(url: str, name: str) -> None:
    with Journal.open(url, name=name) as j:
        j.commit(_program(), tag="start")


def commit_pair(store: PostgresStore, codec: RecordCodec, writer: str, i: int) -> list[tuple[int, bytes]]:
    """One commit of two records, sealed with the seqs the store hands out."""
    def make(last: int) -> list[tuple[int, bytes]]:
        ts = time.time()
        events = [ParameterSet(path="answer", payload={"key": f"{writer}.{i}", "value": i}, seq=last + 1, timestamp=ts),
                  ParameterSet(path="answer", payload={"key": f"{writer}.{i}.b", "value": -i}, seq=last + 2,
                               timestamp=ts)]
        return [(e.seq, codec.encode_event(e, last + 1, last + 2)) for e in events]

    return list(store.append_new(make))


def _process_writer(url: str, name: str, writer: str, n: int) -> None:
    store = PostgresStore(url, name)
    meta = store.open()
    codec = RecordCodec(meta["journal_id"], None, store.name)
    for i in range(n):
        commit_pair(store, codec, writer, i)
    store.close()


def check_all_landed(url: str, name: str, writers: list[str], n: int) -> None:
    with Journal.open(url, name=name, readonly=True) as r:
        events = list(r.events())
        seqs = [e.seq for e in events]
        assert seqs == list(range(1, len(seqs) + 1))  # gap-free
        keys = [e.payload["key"] for e in events if e.type == "ParameterSet" and "." in e.payload["key"]]
        want = sorted(f"{w}.{i}{b}" for w in writers for i in range(n) for b in ("", ".b"))
        assert sorted(keys) == want  # every record exactly once
        params = r.replay_state()["modules"][0]["parameters"]
        assert all(params[f"{w}.{i}"] == i and params[f"{w}.{i}.b"] == -i for w in writers for i in range(n))
        # the two records of each commit are adjacent: commits never interleave
        pairs = {e.payload["key"]: e.seq for e in events if e.type == "ParameterSet"}
        assert all(pairs[f"{w}.{i}.b"] == pairs[f"{w}.{i}"] + 1 for w in writers for i in range(n))
        assert r.verify().ok


def test_threads_sharing_one_store_commit_every_record_once(pg_url: str) -> None:
    name = fresh_name("threads")
    _start_journal(pg_url, name)
    store = PostgresStore(pg_url, name)
    codec = RecordCodec(store.open()["journal_id"], None, store.name)
    writers, n = [f"t{k}" for k in range(6)], 25
    threads = [threading.Thread(target=lambda w=w: [commit_pair(store, codec, w, i) for i in range(n)])
               for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    check_all_landed(pg_url, name, writers, n)


def test_processes_commit_every_record_once_gap_free(pg_url: str) -> None:
    name = fresh_name("procs")
    _start_journal(pg_url, name)
    writers, n = [f"p{k}" for k in range(4)], 40
    procs = [SPAWN.Process(target=_process_writer, args=(pg_url, name, w, n)) for w in writers]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    check_all_landed(pg_url, name, writers, n)


def test_an_exclusive_writer_keeps_shared_writers_out(pg_url: str) -> None:
    name = fresh_name("excl")
    _start_journal(pg_url, name)
    shared = PostgresStore(pg_url, name)
    codec = RecordCodec(shared.open()["journal_id"], None, shared.name)
    with Journal.open(pg_url, name=name):
        with pytest.raises(ds.JournalLockedError):
            commit_pair(shared, codec, "s", 0)
    commit_pair(shared, codec, "s", 0)  # free again
    shared.close()


def test_a_follower_on_another_connection_is_woken_by_notify(pg_url: str) -> None:
    name = fresh_name("follow")
    _start_journal(pg_url, name)
    seen: list[tuple[int, float]] = []
    with Journal.open(pg_url, name=name, readonly=True) as r:
        start = r.head + 1
        ready = threading.Event()

        def follow() -> None:
            ready.set()
            # a poll of 5 s: only NOTIFY can wake the follower in time
            for event in r.follow(start=start, timeout=3.0, poll=5.0):
                seen.append((event.seq, time.monotonic()))

        t = threading.Thread(target=follow)
        t.start()
        ready.wait()
        time.sleep(0.2)
        store = PostgresStore(pg_url, name)
        codec = RecordCodec(store.open()["journal_id"], None, store.name)
        done: dict[int, float] = {}
        for i in range(30):
            for seq, _ in commit_pair(store, codec, "f", i):
                done[seq] = time.monotonic()
            time.sleep(0.02)
        store.close()
        t.join(30)
    assert [s for s, _ in seen] == list(range(start, start + 60))  # every event once, in order
    lags = sorted(at - done[s] for s, at in seen)
    assert statistics.median(lags) < 0.05 and lags[int(len(lags) * 0.9)] < 0.05, lags
    assert lags[-1] < 1.0  # far below the 5 s poll


# -- faults ---------------------------------------------------------------------------------------------
@pytest.fixture
def own_server() -> Any:
    """A server of this test's own, to crash and restart."""
    with PgServer() as server:
        yield server


def test_immediate_stop_loses_no_acknowledged_commit_and_the_writer_goes_on(own_server: PgServer) -> None:
    url, name = own_server.url, "crash"
    p = _program()
    with Journal.open(url, name=name, fsync="always") as j:
        for i in range(5):
            p.answer.demos.append(ds.Example(question=f"before {i}", answer="x"))
            j.commit(p)
        acked = p.to_state()
        head = j.head
        own_server.stop("immediate")
        p.answer.demos.append(ds.Example(question="during", answer="x"))
        with pytest.raises(ds.CommitFailedError, match="did not happen") as e:
            j.commit(p)
        assert "\n" not in str(e.value) and e.value.__cause__ is None  # no raw psycopg error
        assert j.head == head
        own_server.start()
        r = j.commit(p, tag="after")  # the same Journal object: it reconnects, nothing to reopen
        assert r.changed and j.head > head
    wait_ready(url)
    with Journal.open(url, name=name, readonly=True) as rd:
        assert rd.replay_state(seq=head) == acked
        assert rd.replay(tag="after") == p and rd.verify().ok


def test_commits_against_a_stopped_server_fail_after_bounded_retries(own_server: PgServer) -> None:
    from desiru.journal import postgres_store as pgs

    url = own_server.url
    with Journal.open(url, name="down") as j:
        j.commit(_program())
        own_server.stop("immediate")
        p = _program(5)
        with pytest.raises(ds.CommitFailedError):
            j.commit(p)  # meets the dead connection
        t0 = time.monotonic()
        with pytest.raises(ds.CommitFailedError, match="cannot connect"):
            j.commit(p)  # reconnects RECONNECT_ATTEMPTS times, then gives up
        took = time.monotonic() - t0
        budget = sum(pgs.RECONNECT_DELAY * 2 ** k for k in range(pgs.RECONNECT_ATTEMPTS - 1))
        assert budget * 0.9 <= took < budget + 5
        own_server.start()
        assert j.commit(p).changed


def _killed_mid_commit(url: str, name: str, pipe: Any) -> None:
    """Runs one commit whose transaction stops after every INSERT, before COMMIT, and waits to be killed."""
    import psycopg

    real = psycopg.Connection.execute

    def execute(self: Any, query: Any, *args: Any, **kw: Any) -> Any:
        out = real(self, query, *args, **kw)
        if "pg_notify" in str(query):
            pipe.send("inside")
            time.sleep(120)
        return out

    psycopg.Connection.execute = execute  # type: ignore[method-assign]
    store = PostgresStore(url, name)
    codec = RecordCodec(store.open()["journal_id"], None, store.name)
    commit_pair(store, codec, "killed", 0)


def test_a_writer_killed_in_the_middle_of_a_commit_leaves_nothing(pg_url: str) -> None:
    name = fresh_name("kill")
    _start_journal(pg_url, name)
    store = PostgresStore(pg_url, name)
    codec = RecordCodec(store.open()["journal_id"], None, store.name)
    before = store.last_seq()
    ours, theirs = SPAWN.Pipe()
    proc = SPAWN.Process(target=_killed_mid_commit, args=(pg_url, name, theirs))
    proc.start()
    assert ours.poll(60) and ours.recv() == "inside"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    got = commit_pair(store, codec, "after", 0)  # waits for the server to see the death, then goes on
    assert [s for s, _ in got] == [before + 1, before + 2]
    store.close()
    with Journal.open(pg_url, name=name, readonly=True) as r:
        keys = [e.payload.get("key") for e in r.events() if e.type == "ParameterSet"]
        assert keys == ["after.0", "after.0.b"] and r.verify().ok


# -- a run: commits from random parents, with results -----------------------------------------------------
def _run_writer(url: str, name: str, writer: str, n: int, seed: int, out: Any = None) -> list[Any]:
    """``n`` commits, each from a random earlier commit of this writer (or the base), each with results."""
    import random

    from run_commits import commit_run

    rng = random.Random(seed)
    store = PostgresStore(url, name)
    codec = RecordCodec(store.open()["journal_id"], None, store.name)
    with Journal.open(url, name=name, readonly=True) as r:
        base = r.trials()[0].seq
        known = {base: r.replay_state(seq=base)}
    done = []
    for i in range(n):
        parent = rng.choice(sorted(known))
        state = _engine_copy(known[parent])
        state["modules"][0]["demos"].append({"question": f"{writer} {i}", "answer": str(parent)})
        score, params = round(rng.random(), 4), {"writer": writer, "i": i, "parent": parent}
        seq, digest = commit_run(store, codec, parent=parent, parent_state=known[parent], state=state,
                                 writer=writer, score=score, params=params)
        known[seq] = state
        done.append((seq, parent, digest.hex(), score, params))
    store.close()
    if out is not None:
        out.put(done)
    return done


def _engine_copy(state: dict[str, Any]) -> dict[str, Any]:
    from desiru import _engine

    return _engine.unpackb(_engine.packb(state))


def check_run(url: str, name: str, done: list[Any]) -> None:
    """Every commit once in trials(), with its parent and results, and it replays to what was committed."""
    from desiru.journal import state_hash

    with Journal.open(url, name=name, readonly=True) as r:
        trials = {t.seq: t for t in r.trials()}
        assert len(trials) == len(done) + 1  # and the base
        for seq, parent, digest, score, params in done:
            t = trials[seq]
            assert (t.parent, t.content_hash, t.score, dict(t.params)) == (parent, digest, score, params)
            assert state_hash(r.replay_state(seq=seq)).hex() == digest
        assert r.verify().ok


def test_threads_commit_candidates_from_random_parents(pg_url: str) -> None:
    name = fresh_name("run-threads")
    _start_journal(pg_url, name)
    results: list[Any] = []
    threads = [threading.Thread(target=lambda k=k: results.extend(_run_writer(pg_url, name, f"t{k}", 12, k)))
               for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check_run(pg_url, name, results)


def test_processes_commit_candidates_from_random_parents(pg_url: str) -> None:
    name = fresh_name("run-procs")
    _start_journal(pg_url, name)
    out = SPAWN.Queue()
    procs = [SPAWN.Process(target=_run_writer, args=(pg_url, name, f"p{k}", 15, k, out)) for k in range(4)]
    for p in procs:
        p.start()
    results = [item for _ in procs for item in out.get(timeout=120)]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    check_run(pg_url, name, results)


def test_a_store_used_in_a_forked_child_is_refused_and_the_parent_is_unharmed(pg_url: str) -> None:
    name = fresh_name("fork")
    _start_journal(pg_url, name)
    with Journal.open(pg_url, name=name) as j:
        head = j.head
        pid = os.fork()
        if pid == 0:  # the child: the inherited writer is refused, and dropping it must not touch the session
            code = 1
            try:
                j.commit(_program(6))
            except ds.DesiruError as exc:
                code = 0 if "another process" in str(exc) else 2
            finally:
                j.close()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        r = j.commit(_program(7), tag="parent")  # the parent's session and lock are intact
        assert r.seq > head
    with Journal.open(pg_url, name=name, readonly=True) as rd:
        assert rd.replay(tag="parent") == _program(7) and rd.verify().ok


def test_a_connection_lost_before_the_commit_is_confirmed_is_looked_up(pg_url: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The server dies between INSERT and COMMIT: the store reconnects, finds nothing, says so."""
    import psycopg

    name = fresh_name("doubt")
    _start_journal(pg_url, name)
    store = PostgresStore(pg_url, name)
    codec = RecordCodec(store.open()["journal_id"], None, store.name)
    before = store.last_seq()
    real = psycopg.Connection.execute

    def execute(self: Any, query: Any, *args: Any, **kw: Any) -> Any:
        out = real(self, query, *args, **kw)
        if "pg_notify" in str(query) and self is store._conn:
            with psycopg.connect(pg_url, autocommit=True) as killer:
                killer.execute("SELECT pg_terminate_backend(%s)", (self.info.backend_pid,))
        return out

    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    with pytest.raises(ds.CommitFailedError, match="did not happen"):
        commit_pair(store, codec, "lost", 0)
    monkeypatch.undo()
    assert store.last_seq() == before
    assert [s for s, _ in commit_pair(store, codec, "next", 0)] == [before + 1, before + 2]
    store.close()


def test_a_commit_whose_answer_was_lost_is_found_and_returns(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """COMMIT went through but the connection broke before its answer: the store looks and finds it."""
    import psycopg

    name = fresh_name("acklost")
    _start_journal(pg_url, name)
    store = PostgresStore(pg_url, name)
    codec = RecordCodec(store.open()["journal_id"], None, store.name)
    before = store.last_seq()
    real_exit = psycopg.Transaction.__exit__

    def exit_(self: Any, *exc: Any) -> Any:
        out = real_exit(self, *exc)
        if exc[0] is None and self.connection is store._conn:
            self.connection.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return out

    monkeypatch.setattr(psycopg.Transaction, "__exit__", exit_)
    got = commit_pair(store, codec, "acked", 0)
    monkeypatch.undo()
    assert [s for s, _ in got] == [before + 1, before + 2] and store.last_seq() == before + 2
    store.close()
