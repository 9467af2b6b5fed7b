"""One writer, many readers, followers, and writers killed by SIGKILL at random moments."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from programs import sample_program

import desiru as ds
from desiru.journal import Journal, JournalWarning

TESTS = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}


def test_second_writer_is_refused_in_process(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    with Journal.open(path) as j:
        j.commit(sample_program())
        started = time.monotonic()
        with pytest.raises(ds.JournalLockedError, match="another writer") as info:
            Journal.open(path)
        assert time.monotonic() - started < 1.0  # at once, no waiting
        assert f"pid {os.getpid()}" in str(info.value)
        with Journal.open(path, readonly=True) as r:  # readers are welcome
            assert r.head == 1
    with Journal.open(path) as j:  # released on close
        assert j.head == 1


def test_second_writer_is_refused_across_processes(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    code = textwrap.dedent(f"""
        import sys, desiru as ds
        try:
            ds.Journal.open({str(path)!r})
        except ds.JournalLockedError as exc:
            print("LOCKED", exc); sys.exit(3)
        print("OPENED")
    """)
    with Journal.open(path) as j:
        j.commit(sample_program())
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
        assert out.returncode == 3 and "LOCKED" in out.stdout, out.stderr
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert out.returncode == 0 and "OPENED" in out.stdout, out.stderr


def _step_program(i: int) -> ds.Program:
    p = sample_program()
    p.answer.demos = [ds.Example(question=f"q{k}", answer=f"a{k}") for k in range(i % 7)]
    p.answer.parameters["step"] = i
    p.metadata["step"] = i
    return p


def test_a_follower_sees_every_event_once_in_order(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    with Journal.open(path, fsync="never") as j:
        j.commit(_step_program(0))
    seen: list[Any] = []
    reader = Journal.open(path, readonly=True)
    follower = reader.follow(timeout=1.0, poll=0.005)
    done = threading.Event()

    def write() -> None:
        with Journal.open(path, fsync="never", snapshot_every=15) as w:
            for i in range(1, 60):
                w.commit(_step_program(i), tag=f"s{i}" if i % 10 == 0 else None)
                time.sleep(0.001)
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    for event in follower:
        seen.append(event)
        if done.is_set() and event.seq == reader.head:
            break
    thread.join()
    reader.close()
    seqs = [e.seq for e in seen]
    assert seqs == list(range(2, seqs[-1] + 1))
    with Journal.open(path, readonly=True) as r:
        assert seqs[-1] == r.head
        tags = {e.payload["tag"] for e in seen if e.type == "CheckpointTagged"}
        assert tags == {f"s{i}" for i in range(10, 60, 10)}


def test_a_follower_behind_a_compaction_is_told(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    with Journal.open(path, fsync="never") as j:
        j.commit(_step_program(0))
        reader = Journal.open(path, readonly=True)
        follower = reader.follow(timeout=0.5, poll=0.005)
        for i in range(1, 6):
            j.commit(_step_program(i))
        j.snapshot()
        j.compact()
        j.commit(_step_program(99))
        with pytest.raises(ds.DesiruError, match="compacted away"):
            next(follower)
        reader.close()


def test_follow_times_out_and_starts_where_asked(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    with Journal.open(path) as j:
        for i in range(5):
            j.commit(_step_program(i))
        head = j.head
        t0 = time.monotonic()
        assert list(j.follow(timeout=0.05)) == []
        assert time.monotonic() - t0 < 1.0
        assert [e.seq for e in j.follow(start=2, timeout=0.01)] == list(range(2, head + 1))


def test_a_follower_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    with Journal.open(path, fsync="never") as j:
        j.commit(_step_program(0))
    code = textwrap.dedent(f"""
        import desiru as ds
        with ds.Journal.open({str(path)!r}, readonly=True) as r:
            events = r.follow(timeout=10.0, poll=0.005)  # starts after the head as it is now
            print("READY", r.head, flush=True)
            for e in events:
                print(e.seq, e.type, flush=True)
                if e.type == "CheckpointTagged" and e.payload["tag"] == "end":
                    break
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith("READY")
    with Journal.open(path, fsync="never") as w:
        for i in range(1, 25):
            w.commit(_step_program(i), tag="end" if i == 24 else None)
        head = w.head
    out, _ = proc.communicate(timeout=60)
    seqs = [int(line.split()[0]) for line in out.splitlines()]
    assert seqs == list(range(2, head + 1))


WRITER = textwrap.dedent("""
    import sys
    import desiru as ds
    from test_journal_concurrency import _step_program

    path = sys.argv[1]
    with ds.Journal.open(path, fsync="always") as j:
        start = j.replay().metadata["step"] + 1 if j.head else 0
        print("READY", start, flush=True)
        i = start
        while True:
            r = j.commit(_step_program(i), tag=f"step{i}")
            print(i, r.seq, flush=True)
            if i % 9 == 4:
                j.snapshot()
            if i % 13 == 7:
                j.compact()
            i += 1
""")


def test_writers_killed_at_random_moments_lose_nothing_that_returned(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    rng = random.Random(20261128)
    returned: dict[int, int] = {}  # step -> seq of its tag, as the writer printed after commit returned
    trials = 24
    for _trial in range(trials):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                                env=ENV)
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("READY"), ready
        time.sleep(rng.uniform(0.0, 0.12))
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        for line in out.split("\n")[:-1]:  # only whole lines: the kill may cut the last one
            step, seq = map(int, line.split())
            returned[step] = seq
        # the journal opens (perhaps cutting a torn tail, with a warning) and holds every returned commit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", JournalWarning)
            j = Journal.open(path, fsync="never")
        with j:
            assert j.head >= max(returned.values(), default=0)
            tags = j.tags()
            oldest = j.first_replayable()
            for step, seq in returned.items():
                if seq >= oldest:
                    assert tags[f"step{step}"] == seq
            last = max(returned) if returned else None
            if last is not None:
                assert j.replay_state(tag=f"step{last}") == _step_program(last).to_state()
    assert len(returned) > trials  # the writers got real work done between kills
    with Journal.open(path) as j:
        assert j.verify().ok
        sample = [s for s, q in returned.items() if q >= j.first_replayable()]
        for step in rng.sample(sample, min(10, len(sample))):
            assert j.replay(tag=f"step{step}") == _step_program(step)
        j.commit(_step_program(10_000))  # and stays writable
        assert j.replay() == _step_program(10_000)
