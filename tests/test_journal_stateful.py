"""Hypothesis state machine: random edits, commits, tags, snapshots, compactions and reopenings.

The model is a dict of every commit's state by seq; whatever the journal went
through, replay at every tag (and every seq still replayable) equals the program
as it was then, and a reader opened beside the writer agrees.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from programs import QA, sample_program, values

import desiru as ds
from desiru.journal import Journal

demo_values = st.one_of(st.text(max_size=8), st.integers(-5, 5), st.binary(max_size=4))
demos = st.builds(lambda q, a: ds.Example(question=q, answer=a), demo_values, demo_values)


class JournalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="desiru-journal-sm-"))
        self.path = self.dir / "sm.journal"
        self.journal = Journal.open(self.path, fsync="never")
        self.program: ds.Program = sample_program()
        self.states: dict[int, dict[str, Any]] = {}  # seq of each commit's last event -> state
        self.tags: dict[str, int] = {}
        self.floor = 0  # oldest replayable seq after compactions

    def teardown(self) -> None:
        self.journal.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- edits of the program (not yet committed) --------------------------------------------------
    @rule(demo=demos, where=st.integers(0, 10))
    def add_demo(self, demo: ds.Example, where: int) -> None:
        m = self.program.answer
        m.demos.insert(where % (len(m.demos) + 1), demo)

    @rule(where=st.integers(0, 10))
    def remove_demo(self, where: int) -> None:
        m = self.program.answer
        if m.demos:
            del m.demos[where % len(m.demos)]

    @rule(seed=st.randoms(use_true_random=False))
    def shuffle_demos(self, seed: Any) -> None:
        seed.shuffle(self.program.answer.demos)

    @rule(key=st.sampled_from(["temperature", "max_tokens", "k"]), value=values)
    def set_parameter(self, key: str, value: Any) -> None:
        self.program.retrieve.parameters[key] = value

    @rule(key=st.sampled_from(["temperature", "max_tokens", "k"]))
    def unset_parameter(self, key: str) -> None:
        self.program.retrieve.parameters.pop(key, None)

    @rule(value=st.dictionaries(st.text(max_size=4), values, max_size=3))
    def set_metadata(self, value: dict[str, Any]) -> None:
        self.program.metadata = value

    @rule(name=st.sampled_from(["extra", "other"]), instructions=st.text(max_size=10))
    def add_or_change_module(self, name: str, instructions: str) -> None:
        if name in self.program.modules:
            m = self.program.get_module(name)
            m.signature = m.signature.with_instructions(instructions)
        else:
            setattr(self.program, name, ds.Predict("a -> b"))

    @rule(name=st.sampled_from(["extra", "other"]))
    def remove_module(self, name: str) -> None:
        if name in self.program.modules:
            delattr(self.program, name)

    @rule()
    def replace_program_class(self) -> None:
        # the root class changes: the diff says ProgramCreated again
        state = self.program.to_state()
        state["class"] = "desiru.Program" if type(self.program) is QA else "programs.QA"
        self.program = ds.Program.from_state(state)

    # -- journal operations ------------------------------------------------------------------------
    @rule(tag=st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"])))
    def commit(self, tag: str | None) -> None:
        if tag in self.tags:  # a commit that would move a tag is refused whole
            head = self.journal.head
            with pytest.raises(ds.DesiruError, match="already points at"):
                self.journal.commit(self.program, tag=tag)
            assert self.journal.head == head
            return
        result = self.journal.commit(self.program, tag=tag)
        self.states[result.seq] = self.program.to_state()
        if tag is not None:
            self.tags[tag] = result.seq

    @precondition(lambda self: self.states)
    @rule()
    def snapshot(self) -> None:
        self.journal.snapshot()

    @precondition(lambda self: self.states)
    @rule()
    def compact(self) -> None:
        self.journal.compact(keep_tags=False)
        snaps = self.journal.store.snapshot_seqs()
        if snaps:
            self.floor = max(self.floor, snaps[-1])
            self.tags = {t: s for t, s in self.tags.items() if s >= self.floor}

    @rule()
    def reopen(self) -> None:
        self.journal.close()
        self.journal = Journal.open(self.path, fsync="never")

    # -- what must always hold -------------------------------------------------------------------------
    @invariant()
    def tags_replay_as_they_were(self) -> None:
        assert self.journal.tags() == self.tags
        for tag, seq in self.tags.items():
            want = self.states[max(s for s in self.states if s <= seq)]
            assert self.journal.replay_state(tag=tag) == want

    @invariant()
    def head_and_commits_replay(self) -> None:
        if not self.states:
            assert self.journal.head == 0
            return
        head = max(self.states)
        assert self.journal.head == head
        assert self.journal.replay_state() == self.states[head]
        for seq in sorted(self.states)[-3:]:
            if seq >= self.floor:
                assert self.journal.replay_state(seq=seq) == self.states[seq]

    @precondition(lambda self: self.states)
    @invariant()
    def a_reader_agrees(self) -> None:
        with Journal.open(self.path, readonly=True) as r:
            assert r.head == max(self.states)
            assert r.replay_state() == self.states[r.head]


JournalMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)
TestJournalMachine = JournalMachine.TestCase
