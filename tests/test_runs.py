"""Runs: commits with parents, results beside the state, and the queries over them (docs/journal.md)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from programs import sample_program

import desiru as ds
from desiru.journal import Journal


def _variant(i: int) -> ds.Program:
    p = sample_program()
    p.answer.demos = [ds.Example(question=f"q{i}", answer=f"a{i}")]
    p.answer.parameters["i"] = i
    return p


def test_a_branch_costs_its_own_change_and_replays_exactly(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "r.journal") as j:
        root = j.commit(sample_program(), score=0.1)
        line = []
        for i in range(20):  # another line of candidates in between
            line.append((j.commit(_variant(i), score=i / 100), _variant(i)))
        branch = sample_program()
        branch.answer.parameters["temperature"] = 0.9
        r = j.commit(branch, parent=root, score=0.5, metrics={"em": 0.5}, params={"k": [1, 2]})
        # the diff against the parent, not against the line's head: one parameter set
        assert [e.type for e in r.events] == ["Committed", "ParameterSet", "ResultsRecorded"]
        assert r.parent == root.seq
        assert r.content_hash is not None and len(r.content_hash) == 32
        assert j.replay(seq=r.seq) == branch
        for c, p in line:
            assert j.replay(seq=c.seq) == p
        # replaying a scored commit gives the program without its score
        assert j.replay(seq=root.seq) == sample_program()
        assert "score" not in j.replay(seq=r.seq).metadata


def test_trials_best_lineage_find_and_record(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "r.journal") as j:
        a = j.commit(_variant(0), score=0.2, params={"idx": 0})
        b = j.commit(_variant(1), parent=a, score=0.6, metrics={"em": 0.4, "cost": 2.0})
        c = j.commit(_variant(2), parent=b, metrics={"em": 0.9, "cost": 1.0})
        d = j.commit(_variant(3), parent=a, score=0.6)
        # results that arrive later merge, later values winning key by key
        assert j.record(c, score=0.7, params={"idx": 2}) == c.seq
        j.record(c.seq, metrics={"cost": 0.5})
        trials = {t.seq: t for t in j.trials()}
        assert list(trials) == [a.seq, b.seq, c.seq, d.seq]
        assert trials[c.seq].score == 0.7 and trials[c.seq].metrics == {"em": 0.9, "cost": 0.5}
        assert trials[c.seq].params == {"idx": 2} and trials[c.seq].parent == b.seq
        assert trials[a.seq].parent is None and trials[a.seq].writer == j.writer
        assert j.best().seq == c.seq
        assert [t.seq for t in j.best(k=3)] == [c.seq, b.seq, d.seq]  # a tie goes to the older
        assert j.best(metric="em").seq == c.seq
        assert j.best(metric="cost", mode="min").seq == c.seq
        assert j.best(metric="nope") is None and j.best(k=2, metric="nope") == []
        assert [t.seq for t in j.lineage(c)] == [a.seq, b.seq, c.seq]
        assert [t.seq for t in j.lineage(trials[d.seq])] == [a.seq, d.seq]
        assert [t.seq for t in j.find(_variant(2))] == [c.seq]
        assert [t.seq for t in j.find(c.content_hash)] == [c.seq]
        assert j.find(sample_program()) == []
    with Journal.open(tmp_path / "r.journal", readonly=True) as r:  # rebuilt from the log by a reader
        assert [(t.seq, t.parent, t.score, t.metrics, t.params) for t in r.trials()] == \
               [(t.seq, t.parent, t.score, t.metrics, t.params) for t in trials.values()]


def test_tags_point_anywhere_and_every_move_is_recorded(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "r.journal") as j:
        a = j.commit(_variant(0), score=0.1)
        b = j.commit(_variant(1), score=0.2)
        assert j.tag("best", a) == a.seq
        with pytest.raises(ds.DesiruError, match=rf"tag 'best' already points at seq {a.seq}"):
            j.tag("best", b)
        with pytest.raises(ds.DesiruError, match="already points at"):
            j.commit(_variant(2), tag="best")
        j.tag("best", b, move=True)
        assert j.tags() == {"best": b.seq}
        assert [(m.seq, m.moved_from) for m in j.tags(history=True)] == [(a.seq, None), (b.seq, a.seq)]
        assert j.replay(tag="best") == _variant(1)
        assert j.trial("best").tags == ("best",)


def _nested(levels: int) -> list:
    """A list nested ``levels`` deep around a 0."""
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("bad, match", [
    ({"parent": 999}, "parent: seq 999 does not exist"),
    ({"parent": "nope"}, "parent: no tag 'nope'"),
    ({"parent": 1.5}, "parent takes a seq"),
    ({"score": math.nan}, "score must be finite"),
    ({"score": "high"}, "score must be a number"),
    ({"metrics": {"em": "x"}}, r"metrics\['em'\] must be a number"),
    ({"metrics": [1]}, "metrics must be a dict"),
    ({"params": {"f": object()}}, r"params\['f'\] cannot be stored"),
    ({"params": {"x": math.inf}}, "must be finite"),
    ({"params": {"a": [1, {"b": (2, object())}]}}, r"params\['a'\]\[1\]\['b'\]\[1\] cannot be stored"),
    ({"params": {"a": [0, 1 << 64]}}, r"params\['a'\]\[1\] = \d+ does not fit in 64 bits"),
    ({"params": {1: "x"}}, r"params has a key 1 that is not a str"),
    ({"params": {"deep": _nested(32)}}, r"params nest deeper than 32 levels at params\['deep'\](\[0\]){32}$"),
])
def test_bad_arguments_name_the_argument_and_write_nothing(tmp_path: Path, bad: dict, match: str) -> None:
    with Journal.open(tmp_path / "r.journal") as j:
        j.commit(_variant(0))
        head = j.head
        with pytest.raises(ds.DesiruError, match=match):
            j.commit(_variant(1), **bad)
        assert j.head == head
        with pytest.raises(ds.DesiruError, match="point: seq 42 does not exist"):
            j.record(42, score=1.0)
        with pytest.raises(ds.DesiruError, match="needs score="):
            j.record(head)
        assert j.head == head


def test_compaction_keeps_the_lineage_of_the_best_and_the_trials_table(tmp_path: Path) -> None:
    path = tmp_path / "r.journal"
    with Journal.open(path) as j:
        root = j.commit(_variant(0), score=0.0)
        good = j.commit(_variant(1), parent=root, score=0.9)
        others = [j.commit(_variant(i), parent=root, score=0.1) for i in range(2, 8)]
        last = j.commit(_variant(8), parent=good, score=0.5)
        j.snapshot()
        j.compact(keep_best=1)
        assert j.replay(seq=good.seq) == _variant(1) and j.replay(seq=root.seq) == _variant(0)
        assert j.replay(seq=last.seq) == _variant(8)
        for o in others:
            with pytest.raises(ds.DesiruError, match="compacted away"):
                j.replay(seq=o.seq)
        assert j.verify().ok
    with Journal.open(path, readonly=True) as r:
        trials = r.trials()
        assert len(trials) == 9 and r.best().seq == good.seq
        assert [t.seq for t in r.lineage(last)] == [root.seq, good.seq, last.seq]
        assert {t.seq for t in trials if not t.replayable} == {o.seq for o in others}


def test_a_long_line_is_snapshotted_so_replay_stays_bounded(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "r.journal", snapshot_every=50) as j:
        parent = None
        for i in range(120):
            parent = j.commit(_variant(i), parent=parent, score=float(i))
        snaps = j.store.snapshot_seqs()
        assert snaps, "a line longer than snapshot_every gets snapshots"
        # branch from an early commit: its line is short, so it needs no snapshot of its own
        j.commit(_variant(999), parent=3, score=1.0)
        assert j.store.snapshot_seqs() == snaps


def test_a_journal_of_release_0_1_0_is_a_one_line_run(tmp_path: Path) -> None:
    import shutil

    vector = Path(__file__).parent / "vectors" / "documents" / "journal_2_0_0.journal"
    path = tmp_path / "old.journal"
    shutil.copytree(vector, path)
    with Journal.open(path) as j:
        trials = j.trials()
        assert trials and all(t.content_hash is None for t in trials)
        assert [t.parent for t in trials[1:]] == [t.seq for t in trials[:-1]]  # one line
        head = j.replay()
        r = j.commit(head, parent=trials[0].seq, score=0.5)  # appends as a run from now on
        assert j.replay(seq=r.seq) == head
        assert j.replay(seq=trials[-1].seq) == head
        assert j.verify().ok


_KILL_WRITER = textwrap.dedent("""
    import sys, random
    sys.path.insert(0, {tests!r})
    import desiru as ds
    from programs import sample_program
    j = ds.Journal.open({path!r}, fsync="always")
    rng = random.Random(7)
    seqs = [t.seq for t in j.trials()]
    i = len(seqs)
    while True:
        p = sample_program()
        p.answer.demos = [ds.Example(question="q" + str(i), answer="a" * (i % 50))]
        parent = rng.choice(seqs) if seqs else None
        r = j.commit(p, parent=parent, score=i / 1000, params={{"i": i}})
        print("C", r.seq, i, flush=True)
        j.record(r, metrics={{"late": float(i)}})
        print("R", r.seq, flush=True)
        seqs.append(r.seq)
        i += 1
""")


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2])
def test_sigkill_during_commits_and_records_loses_nothing_acknowledged(tmp_path: Path, delay: float) -> None:
    path = tmp_path / "k.journal"
    script = _KILL_WRITER.format(tests=str(Path(__file__).parent), path=str(path))
    acked: dict[int, int] = {}
    recorded: set[int] = set()
    for _round in range(3):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONWARNINGS": "ignore"})
        assert proc.stdout is not None
        lines = []
        # wait until the writer is committing (a loaded machine starts it slowly), then kill it mid-run
        while len(lines) < 6:
            line = proc.stdout.readline()
            assert line, "the writer died before committing"
            lines.append(line)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        for line in [*lines, *out.splitlines()]:
            parts = line.split()
            # a line the kill cut short is no acknowledgement
            if len(parts) == 3 and parts[0] == "C":
                acked[int(parts[1])] = int(parts[2])
            elif len(parts) == 2 and parts[0] == "R":
                recorded.add(int(parts[1]))
    assert acked
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        j = Journal.open(path)
    with j:
        trials = {t.seq: t for t in j.trials()}
        for seq, i in acked.items():
            t = trials[seq]
            assert t.score == i / 1000 and t.params == {"i": i}
            assert j.replay(seq=seq).answer.demos[0]["question"] == f"q{i}"
        for seq in recorded:
            assert trials[seq].metrics == {"late": float(acked[seq])}
        assert j.verify().ok


def test_verify_checks_the_run_events(tmp_path: Path) -> None:
    from desiru.journal.events import Committed, ResultsRecorded

    with Journal.open(tmp_path / "r.journal") as j:
        a = j.commit(_variant(0), score=0.1)
        j.commit(_variant(1), parent=a, score=0.2)
        assert j.verify().ok
        # hand-made events that name no commit: appended (they change no state), then reported
        j.append(ResultsRecorded(payload={"commit": 2, "score": 1.0, "metrics": {}, "params": {}}))
        j.append(Committed(payload={"parent": 999, "hash": b"", "writer": "x"}))
        faults = [f.reason for f in j.verify().faults]
        assert any("results name seq 2" in f for f in faults)
        assert any("names parent 999" in f for f in faults)


def test_query_arguments_are_checked(tmp_path: Path) -> None:
    with Journal.open(tmp_path / "r.journal") as j:
        r = j.commit(_variant(0), score=0.5)
        with pytest.raises(ds.DesiruError, match="mode must be 'max' or 'min'"):
            j.best(mode="top")
        with pytest.raises(ds.DesiruError, match="k must be an int >= 1"):
            j.best(k=0)
        with pytest.raises(ds.DesiruError, match="not a content hash"):
            j.find("not-hex")
        with pytest.raises(ds.DesiruError, match="keep_best must be an int >= 0"):
            j.compact(keep_best=-1)
        with pytest.raises(ds.DesiruError, match="a tag must not be empty"):
            j.tag("", r)
        assert [t.seq for t in j.find(bytes.fromhex(r.content_hash or ""))] == [r.seq]
