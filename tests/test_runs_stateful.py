"""A hypothesis state machine over a tree of commits: random parents, results, tags, moves, snapshots,
compactions and reopenings, checked against a plain-Python model of the run."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from programs import sample_program

import desiru as ds
from desiru.journal import Journal


class RunMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="desiru-runs-sm-"))
        self.path = self.dir / "run.journal"
        self.journal = Journal.open(self.path, fsync="never", snapshot_every=7)
        self.states: dict[int, dict[str, Any]] = {}
        self.parents: dict[int, int | None] = {}
        self.scores: dict[int, float | None] = {}
        self.params: dict[int, dict[str, Any]] = {}
        self.tags: dict[str, int] = {}

    def teardown(self) -> None:
        self.journal.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _pick(self, n: int) -> int:
        seqs = sorted(self.states)
        return seqs[n % len(seqs)]

    @rule(n=st.integers(0, 50), demos=st.lists(st.text(max_size=3), max_size=3),
          temp=st.floats(0, 1), score=st.one_of(st.none(), st.floats(0, 1)), from_root=st.booleans(),
          tag=st.one_of(st.none(), st.sampled_from(["x", "y"])))
    def commit(self, n: int, demos: list[str], temp: float, score: float | None, from_root: bool,
               tag: str | None) -> None:
        p = sample_program()
        p.answer.demos = [ds.Example(question=d, answer=d) for d in demos]
        p.answer.parameters["temperature"] = temp
        parent = None if (from_root or not self.states) else self._pick(n)
        if parent is not None and not self.journal.trial(parent).replayable and tag not in self.tags:
            with pytest.raises(ds.DesiruError, match="compacted away"):
                self.journal.commit(p, parent=parent, score=score)
            return
        if tag in self.tags:
            with pytest.raises(ds.DesiruError, match="already points at"):
                self.journal.commit(p, tag=tag, parent=parent, score=score)
            return
        r = self.journal.commit(p, tag=tag, parent=parent, score=score, params={"n": n})
        if not r.events:
            return
        self.states[r.seq] = p.to_state()
        self.parents[r.seq] = r.parent
        self.scores[r.seq] = score
        self.params[r.seq] = {"n": n}
        if parent is not None:
            assert r.parent == parent
        if tag is not None:
            self.tags[tag] = r.seq

    @precondition(lambda self: self.states)
    @rule(n=st.integers(0, 50), score=st.floats(-1, 2))
    def record(self, n: int, score: float) -> None:
        seq = self._pick(n)
        self.journal.record(seq, score=score)
        self.scores[seq] = score

    @precondition(lambda self: self.states)
    @rule(n=st.integers(0, 50), name=st.sampled_from(["x", "y", "z"]))
    def move_tag(self, n: int, name: str) -> None:
        seq = self._pick(n)
        if not self.journal.trial(seq).replayable:
            with pytest.raises(ds.DesiruError, match="compacted away"):
                self.journal.tag(name, seq, move=True)
            return
        self.journal.tag(name, seq, move=True)
        self.tags[name] = seq

    @precondition(lambda self: self.states)
    @rule()
    def snapshot(self) -> None:
        self.journal.snapshot()

    @precondition(lambda self: self.states)
    @rule(k=st.integers(0, 3))
    def compact(self, k: int) -> None:
        self.journal.compact(keep_best=k)

    @rule()
    def reopen(self) -> None:
        self.journal.close()
        self.journal = Journal.open(self.path, fsync="never", snapshot_every=7)

    @invariant()
    def trials_agree_with_the_model(self) -> None:
        trials = self.journal.trials()
        assert [t.seq for t in trials] == sorted(self.states)
        for t in trials:
            assert t.parent == self.parents[t.seq]
            assert t.score == self.scores[t.seq]
            assert t.params == self.params[t.seq]
        scored = [(-s, seq) for seq, s in self.scores.items() if s is not None]
        best = self.journal.best()
        assert (best.seq if best else None) == (min(scored)[1] if scored else None)
        assert self.journal.tags() == self.tags

    @invariant()
    def every_surviving_commit_replays_as_committed(self) -> None:
        trials = {t.seq: t for t in self.journal.trials()}
        must = set(self.tags.values())
        for seq in must:
            assert trials[seq].replayable
        for seq, state in self.states.items():
            if trials[seq].replayable:
                assert self.journal.replay_state(seq=seq) == state
            else:
                with pytest.raises(ds.DesiruError, match="compacted away"):
                    self.journal.replay_state(seq=seq)
        for seq in list(self.states)[-2:]:
            lineage = [t.seq for t in self.journal.lineage(seq)]
            want = []
            s: int | None = seq
            while s is not None:
                want.append(s)
                s = self.parents[s]
            assert lineage == want[::-1]

    @precondition(lambda self: self.states)
    @invariant()
    def a_reader_agrees(self) -> None:
        with Journal.open(self.path, readonly=True) as r:
            assert [(t.seq, t.parent, t.score) for t in r.trials()] == \
                   [(s, self.parents[s], self.scores[s]) for s in sorted(self.states)]


RunMachine.TestCase.settings = settings(max_examples=10, stateful_step_count=20, deadline=None)
TestRunMachine = RunMachine.TestCase
