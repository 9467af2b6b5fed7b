"""The fast paths of the dspy adapter give exactly what the plain ones give.

A journal converts only the demos that changed since its last commit of a dspy module
(``dspy.cache``); a load builds dspy Examples without dspy's copies (``dspy.examples``).
Each step of a random sequence of edits is checked against the conversion from scratch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

dspy = pytest.importorskip("dspy")

import desiru as ds  # noqa: E402
from desiru.interop import dspy as dd  # noqa: E402
from desiru.interop.dspy.cache import DspyStateCache  # noqa: E402
from desiru.interop.dspy.examples import ExampleFactory  # noqa: E402


class QA(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rewrite = dspy.Predict("question -> search_query")
        self.answer = dspy.ChainOfThought("question, context -> answer")


def ex(i: int) -> dspy.Example:
    return dspy.Example(question=f"q{i}", context="c", answer=f"a{i}").with_inputs("question", "context")


VALUES = st.one_of(st.text(max_size=5), st.none(), st.integers(-2, 2), st.booleans(), st.floats(0, 1),
                   st.lists(st.text(max_size=3), max_size=2), st.just(1), st.just(1.0), st.just(True))
EDITS = st.lists(st.tuples(
    st.sampled_from(["replace", "set_field", "input_keys", "insert", "delete", "reverse", "dict_demo",
                     "instructions", "same_again", "mutate_list"]),
    st.integers(0, 1000), VALUES), min_size=1, max_size=25)


def apply(p: QA, edit: tuple[str, int, Any]) -> None:
    op, k, value = edit
    demos = p.answer.predict.demos
    i = k % len(demos) if demos else 0
    if op == "replace" and demos:
        demos[i] = ex(k)
    elif op == "set_field" and demos:
        demos[i]["answer"] = value  # in place: the same Example object, another value
    elif op == "input_keys" and demos and hasattr(demos[i], "_input_keys"):
        demos[i]._input_keys = {"question"} if k % 2 else None  # in place, as with_inputs sets it
    elif op == "insert":
        demos.insert(i, ex(k))
    elif op == "delete" and demos:
        del demos[i]
    elif op == "reverse":
        demos.reverse()
    elif op == "dict_demo":
        demos.insert(i, {"question": f"d{k}", "context": "c", "answer": value})
    elif op == "instructions":
        sig = p.answer.predict.signature
        p.answer.predict.signature = sig.with_instructions(f"Answer {k}.")
    elif op == "mutate_list" and demos:
        if not isinstance(demos[i].get("answer") if isinstance(demos[i], dict) else demos[i]._store.get("answer"),
                          list):
            demos[i]["answer"] = ["x"]
        else:
            demos[i]["answer"].append(str(k))  # a list value changed in place


@settings(max_examples=60, deadline=None)
@given(EDITS)
def test_cached_state_equals_the_conversion_from_scratch(edits: list[tuple[str, int, Any]]) -> None:
    p = QA()
    p.answer.predict.demos = [ex(i) for i in range(6)]
    cache = DspyStateCache()
    assert cache.state(p) == dd.from_dspy(p).to_state()
    for edit in edits:
        apply(p, edit)
        assert cache.state(p) == dd.from_dspy(p).to_state(), edit


def test_journal_commits_of_a_changing_module_replay_exactly(tmp_path: Path) -> None:
    p = QA()
    p.answer.predict.demos = [ex(i) for i in range(200)]
    states = []
    with ds.Journal.open(tmp_path / "run.journal") as j:
        for k, edit in enumerate([("replace", 7, None), ("set_field", 3, "new"), ("input_keys", 1, None),
                                  ("insert", 5, None), ("delete", 9, None), ("reverse", 0, None),
                                  ("dict_demo", 2, "v"), ("mutate_list", 4, None), ("mutate_list", 4, None)]):
            apply(p, edit)
            seq = j.commit(p, params={"step": k}).seq  # a run's commit: it records its state's hash
            states.append((seq, p.dump_state(), dd.from_dspy(p)))
            assert j.find(p)[-1].seq == seq  # the cached state hashes as the program's
        for seq, dumped, program in states:
            assert j.replay(seq=seq) == program
            assert j.replay(seq=seq, into=QA()).dump_state() == dumped


def test_one_changed_demo_converts_one_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    from desiru.interop.dspy import cache as dspy_cache

    p = QA()
    p.answer.predict.demos = [ex(i) for i in range(500)]
    cache = DspyStateCache()
    cache.state(p)
    calls: list[int] = []
    real = dspy_cache._demo_state
    monkeypatch.setattr(dspy_cache, "_demo_state", lambda *a: calls.append(a[1]) or real(*a))
    p.answer.predict.demos[42] = ex(4242)
    cache.state(p)
    assert calls == [42]
    calls.clear()
    assert cache.state(p) is not None and calls == []


@given(st.dictionaries(st.text(min_size=1, max_size=4), VALUES, max_size=4),
       st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=3), max_size=3)))
def test_example_factory_builds_what_dspy_builds(fields: dict[str, Any], keys: list[str] | None) -> None:
    made = ExampleFactory(dspy.Example).make(fields, keys)
    (batch,) = ExampleFactory(dspy.Example).make_all([dict(fields)], [keys])
    want = dspy.Example(fields)
    want = want.with_inputs(*keys) if keys is not None else want
    assert type(made) is type(want) and vars(made) == vars(want)
    assert type(batch) is type(want) and vars(batch) == vars(want)
    assert made == want and made.toDict() == want.toDict()
    if keys is not None:
        assert made.inputs().toDict() == want.inputs().toDict()
    made["extra"] = 1  # its own fields and lists, shared with nothing
    assert "extra" not in fields and made._demos is not ExampleFactory(dspy.Example).make({}, None)._demos


@given(st.dictionaries(st.text(min_size=1, max_size=4).filter(lambda k: k != dd.INPUT_KEYS), VALUES, max_size=4),
       st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=3), max_size=3)))
def test_adopt_marked_builds_what_dspy_builds(fields: dict[str, Any], keys: list[str] | None) -> None:
    marked, plain = {**fields, dd.INPUT_KEYS: keys}, dict(fields)
    demos = [marked, plain]
    ExampleFactory(dspy.Example).adopt_marked(demos, dd.INPUT_KEYS)
    want = dspy.Example(fields)
    want = want.with_inputs(*keys) if keys is not None else want
    assert type(demos[0]) is type(want) and vars(demos[0]) == vars(want)
    assert demos[0]._store is marked and dd.INPUT_KEYS not in marked  # the dict is taken, not copied
    assert demos[1] is plain and plain == fields  # a dict without input keys stays a dict


def mixed_program() -> QA:
    """Demos of every kind: Examples with and without input keys, plain dicts, list values."""
    qa = QA()
    qa.answer.predict.demos = [ex(0), dspy.Example(question="q", context="c", answer="a"),
                               {"question": "q2", "context": "c2", "answer": "a2"},
                               dspy.Example(question="q3", context=["x", "y"], answer="a3").with_inputs("question")]
    qa.rewrite.demos = [dspy.Example(question="q", search_query="s").with_inputs("question")]
    return qa


def test_load_from_a_file_gives_what_to_dspy_gives(tmp_path: Path) -> None:
    qa = mixed_program()
    path = dd.save(qa, tmp_path / "qa.msgpack").path
    loaded = dd.load(path, into=QA())  # owns the program it reads: takes its dicts
    program = ds.load(path)
    converted = dd.to_dspy(program, into=QA())  # the caller keeps its program: copies
    assert loaded.dump_state() == converted.dump_state() == qa.dump_state()
    demos = zip(loaded.answer.predict.demos + loaded.rewrite.demos, qa.answer.predict.demos + qa.rewrite.demos)
    for got, want in demos:
        assert type(got) is type(want)
        assert (vars(got) if isinstance(got, dspy.Example) else got) == \
            (vars(want) if isinstance(want, dspy.Example) else want)
    converted.answer.predict.demos[3]["context"].append("z")  # shares nothing with the caller's program
    converted.answer.predict.demos[2]["answer"] = "changed"
    assert program == ds.load(path)


def test_load_takes_out_only_demos_the_state_needs_nothing_else_of(tmp_path: Path) -> None:
    from desiru.interop.dspy.live import _detach_demos
    from desiru.serialization.documents import load_document

    path = dd.save(mixed_program(), tmp_path / "qa.msgpack").path
    detached = _detach_demos(load_document(path).state)
    assert sorted(detached) == ["answer.predict", "rewrite"] and len(detached["answer.predict"]) == 4
    # a ChainOfThought read from a dspy 2.4 save: its demos are brought forward with it ('rationale' ->
    # 'reasoning'), so they stay in the program; the load gives what to_dspy gives all the same
    old = dd.read_dspy_save(Path(__file__).resolve().parent / "vectors" / "dspy" / "flat_2_4_cot.json")
    old_path = old.save(tmp_path / "old.msgpack").path
    assert _detach_demos(load_document(old_path).state) == {}
    loaded = dd.load(old_path, into=Today())
    converted = dd.to_dspy(ds.load(old_path), into=Today())
    assert loaded.generate_answer.predict.dump_state() == converted.generate_answer.predict.dump_state()
    assert loaded.generate_answer.predict.demos[0]["reasoning"] == \
        old.get_module("generate_answer").demos[0]["rationale"]


class Today(dspy.Module):
    """The program of tests/vectors/dspy/flat_2_4_cot.json as today's dspy writes it."""

    def __init__(self) -> None:
        super().__init__()
        self.retrieve = dspy.Retrieve(k=3)
        self.generate_answer = dspy.ChainOfThought("context, question -> answer")


def test_load_refuses_a_module_file(tmp_path: Path) -> None:
    dd.from_dspy(mixed_program()).export_module("rewrite", tmp_path / "rewrite.json")
    with pytest.raises(ds.DesiruError, match="single module, not a program"):
        dd.load(tmp_path / "rewrite.json", into=QA())
