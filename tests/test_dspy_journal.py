"""Live dspy modules in journals and checkpoints: every committed state replays exactly."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

dspy = pytest.importorskip("dspy")

import desiru as ds  # noqa: E402
from desiru.interop import dspy as dd  # noqa: E402
from desiru.serialization import IncrementalSerializer  # noqa: E402


class Inner(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cot = dspy.ChainOfThought("question, context -> answer")


class QA(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rewrite = dspy.Predict("question -> search_query")
        self.sub = Inner()


def ex(i: int) -> dspy.Example:
    return dspy.Example(question=f"q{i}", context="c", answer=f"a{i}").with_inputs("question", "context")


def optimizer_run() -> list[QA]:
    """Candidates as an optimizer makes them: demos added, removed, reordered; instructions; LM settings."""
    p = QA()
    states = []
    cot = p.sub.cot.predict
    for step in range(6):
        if step == 1:
            cot.demos = [ex(i) for i in range(4)]
        elif step == 2:
            cot.signature = cot.signature.with_instructions("Answer in one word.")
            p.rewrite.lm = dspy.LM("openai/gpt-4o-mini", temperature=0.2, max_tokens=50)
        elif step == 3:
            cot.demos = [cot.demos[2], cot.demos[0], {"question": "plain", "context": "c", "answer": "dict"}]
        elif step == 4:
            p.rewrite.lm = dspy.LM("openai/gpt-4o-mini", temperature=0.9, max_tokens=50)
            p.rewrite.demos = [dspy.Example(question="x", search_query="y")]
        elif step == 5:
            p.rewrite.lm = None
            cot.demos = cot.demos[1:]
        states.append(p.deepcopy())
    return states


def demo_kinds(module: QA) -> list[object]:
    return [(type(d).__name__, getattr(d, "_input_keys", "dict")) for d in module.sub.cot.predict.demos]


def test_journal_of_dspy_states_replays_each_one_exactly(tmp_path: Path) -> None:
    candidates = optimizer_run()
    seqs = []
    with ds.Journal.open(tmp_path / "run.journal") as j:
        for i, candidate in enumerate(candidates):
            seqs.append(j.commit(candidate, tag=f"step{i}").seq)  # a live dspy module, as it is
    with ds.Journal.open(tmp_path / "run.journal") as j:
        template = QA()
        for i, (seq, candidate) in enumerate(zip(seqs, candidates)):
            by_seq = j.replay(seq=seq, into=template)
            by_tag = j.replay(tag=f"step{i}", into=template)
            assert by_seq.dump_state() == candidate.dump_state() == by_tag.dump_state()
            assert demo_kinds(by_seq) == demo_kinds(candidate)
            assert j.replay(seq=seq) == dd.from_dspy(candidate)
        assert template.dump_state() == QA().dump_state()  # the template is never changed


def test_one_changed_demo_appends_one_demo_edit(tmp_path: Path) -> None:
    p = QA()
    p.sub.cot.predict.demos = [ex(i) for i in range(50)]
    with ds.Journal.open(tmp_path / "run.journal") as j:
        j.commit(p)
        p.sub.cot.predict.demos[7] = ex(1000)
        result = j.commit(p)
        assert [e.type for e in result.events] == ["DemoRemoved", "DemoAdded"]
        assert {e.path for e in result.events} == {"sub.cot.predict"}
        assert j.commit(p).events == ()  # nothing changed, nothing appended
        assert j.replay(into=QA()).sub.cot.predict.demos[7].question == "q1000"


def test_encrypted_journal_of_a_dspy_module(tmp_path: Path) -> None:
    p = optimizer_run()[-1]
    with ds.Journal.open(tmp_path / "secret.journal", key="a passphrase") as j:
        j.commit(p, tag="best")
    with ds.Journal.open(tmp_path / "secret.journal", key="a passphrase") as j:
        assert j.replay(tag="best", into=QA()).dump_state() == p.dump_state()


def test_checkpoints_of_dspy_modules(tmp_path: Path) -> None:
    candidates = optimizer_run()
    ck = IncrementalSerializer(tmp_path / "qa")
    for i, candidate in enumerate(candidates[:3]):
        assert ck.save_checkpoint(candidate, tag=f"epoch{i}").version == i + 1
    for i, candidate in enumerate(candidates[:3]):
        restored = dd.to_dspy(ck.load_checkpoint(version=i + 1), into=QA())
        assert restored.dump_state() == candidate.dump_state()
    assert dd.to_dspy(ck.load_checkpoint(tag="epoch1"), into=QA()).dump_state() == candidates[1].dump_state()


def test_commit_refuses_other_objects(tmp_path: Path) -> None:
    with ds.Journal.open(tmp_path / "run.journal") as j:
        with pytest.raises(ds.DesiruError, match="dspy module"):
            j.commit({"not": "a program"})
        with pytest.raises(ds.DesiruError, match="no program"):
            j.replay(into=QA())  # nothing committed yet: still a clear DesiruError
        j.commit(ds.Program(answer=ds.Predict("question -> answer")))
        with pytest.raises(ds.DesiruError, match="into= must be a dspy module"):
            j.replay(into=ds.Program())
    ck = IncrementalSerializer(tmp_path / "ck")
    with pytest.raises(ds.DesiruError, match="dspy module"):
        ck.save_checkpoint(copy.copy)


def test_replay_into_a_different_program_names_the_mismatch(tmp_path: Path) -> None:
    with ds.Journal.open(tmp_path / "run.journal") as j:
        j.commit(QA())
        with pytest.raises(ds.UnknownModuleError, match="rewrite"):
            j.replay(into=dspy.ChainOfThought("question -> answer"))
