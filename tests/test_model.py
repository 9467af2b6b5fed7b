"""The program model: signatures, examples, modules, programs, registry and runtime."""

from __future__ import annotations

import pytest
from programs import QA, Outer, sample_program

import desiru as ds


def test_signature_parses_fields_in_order() -> None:
    sig = ds.Signature("question, context -> answer", instructions="Answer briefly.")
    assert list(sig.inputs) == ["question", "context"]
    assert list(sig.outputs) == ["answer"]
    assert sig.inputs["question"] == ds.Field("question", "", "Question:")
    assert sig.instructions == "Answer briefly."
    assert str(sig) == "question, context -> answer"


def test_signature_accepts_type_annotations_and_rejects_garbage() -> None:
    assert list(ds.Signature("q: str, k: int -> a: str").inputs) == ["q", "k"]
    for bad in ["no arrow", "a -> ", "a -> b -> c", "a b -> c", "x -> x", "a, a -> b"]:
        with pytest.raises(ds.DesiruError):
            ds.Signature(bad)


def test_signature_state_round_trip() -> None:
    sig = ds.Signature("a, b -> c", instructions="Do it.")
    assert ds.Signature.from_state(sig.to_state()) == sig
    assert ds.Signature.from_state("question -> answer") == ds.Signature("question -> answer")


def test_example_is_a_mapping_with_attributes() -> None:
    ex = ds.Example(question="q", answer="a")
    assert ex.question == "q" and ex["answer"] == "a" and dict(ex) == {"question": "q", "answer": "a"}
    assert ex.to_dict() == {"question": "q", "answer": "a"}
    assert ex.with_inputs("question").inputs() == ds.Example(question="q")
    assert ex.with_inputs("question").labels().to_dict() == {"answer": "a"}
    with pytest.raises(AttributeError):
        ex.missing  # noqa: B018
    with pytest.raises(AttributeError):
        ex.question = "changed"  # type: ignore[misc]


def test_predict_parameters_and_chain_of_thought_reasoning() -> None:
    m = ds.Predict("question -> answer", temperature=0.2, max_tokens=256)
    assert m.parameters == {"temperature": 0.2, "max_tokens": 256}
    cot = ds.ChainOfThought(ds.Signature("question -> answer"))
    assert list(cot.signature.outputs) == ["reasoning", "answer"]
    again = ds.Module.from_state(cot.to_state())
    assert type(again) is ds.ChainOfThought and list(again.signature.outputs) == ["reasoning", "answer"]


def test_modules_register_by_assignment_in_order_on_subclasses_and_instances() -> None:
    p = QA()
    assert list(p.modules) == ["retrieve", "answer"]
    plain = ds.Program()
    plain.b = ds.Predict("x -> y")
    plain.a = ds.Predict("x -> z")
    assert list(plain.modules) == ["b", "a"]
    plain.b = "not a module any more"
    assert list(plain.modules) == ["a"]
    del plain.a
    assert plain.modules == {}


def test_nested_programs_have_dotted_names() -> None:
    o = Outer()
    assert [n for n, _ in o.named_modules()] == ["first", "qa.retrieve", "qa.answer"]
    assert o.get_module("qa.answer") is o.qa.answer
    with pytest.raises(ds.UnknownModuleError):
        o.get_module("qa.nope")


def test_state_round_trip_and_equality_by_state() -> None:
    p = sample_program()
    state = p.to_state()
    q = QA.from_state(state)
    assert q == p and q.to_state() == state
    q.answer.demos.append(ds.Example(question="x", answer="y"))
    assert q != p
    generic = ds.Program.from_state(state)
    assert type(generic) is QA


def test_state_is_a_copy() -> None:
    p = sample_program()
    state = p.to_state()
    p.configuration["max_demos"] = 99
    p.answer.parameters["temperature"] = 1.0
    assert state["configuration"]["max_demos"] == 4
    assert state["modules"][1]["parameters"]["temperature"] == 0.2


def test_copy_is_independent_and_shares_only_immutable_demos() -> None:
    """copy() is deep where it matters: a change to the copy never reaches the original (and back);
    demos holding only immutable values share their field dicts (an Example has no setters)."""
    p = sample_program()
    p.answer.demos.append(ds.Example(question="with a list", tags=["a"]))
    for original in (p, p.answer):
        copied = original.copy()
        assert type(copied) is type(original) and copied.to_state() == original.to_state()
    c = p.copy()
    c.configuration["max_demos"] = 99
    c.answer.parameters["temperature"] = 1.0
    c.answer.demos[-1].tags.append("copy only")
    c.answer.demos[0] = c.answer.demos[0].copy(answer="changed")
    assert p.configuration["max_demos"] == 4 and p.answer.parameters["temperature"] == 0.2
    assert p.answer.demos[-1].tags == ["a"] and p.answer.demos[0]["answer"] != "changed"
    assert c.answer.demos[1]._data is p.answer.demos[1]._data  # immutable values: shared, not copied
    assert c.answer.demos[-1]._data is not p.answer.demos[-1]._data


def test_custom_data_hooks() -> None:
    class WithCounter(ds.Program):
        def __init__(self) -> None:
            super().__init__()
            self.step = ds.Predict("a -> b")
            self.counter = 0

        def custom_serialization(self) -> dict[str, int]:
            return {"counter": self.counter}

        def custom_deserialization(self, data: dict[str, int]) -> None:
            self.counter = data["counter"]

    p = WithCounter()
    p.counter = 7
    assert p.to_state()["custom_data"] == {"counter": 7}
    assert WithCounter.from_state(p.to_state()).counter == 7


def test_unknown_class_is_refused_never_imported() -> None:
    state = sample_program().to_state()
    state["class"] = "subprocess.Popen"
    with pytest.raises(ds.UnknownClassError, match="subprocess.Popen"):
        ds.Program.from_state(state)
    state = sample_program().to_state()
    state["modules"][0]["class"] = "os.system"
    with pytest.raises(ds.UnknownClassError):
        ds.Program.from_state(state)


def test_program_class_requiring_arguments_still_loads() -> None:
    class NeedsArgs(ds.Program):
        def __init__(self, size: int) -> None:
            super().__init__()
            self.step = ds.Predict("a -> b", size=size)

    p = NeedsArgs(3)
    q = ds.Program.from_state(p.to_state())
    assert type(q) is NeedsArgs and q == p


def test_forward_runs_with_the_configured_lm() -> None:
    p = sample_program()
    lm = ds.ScriptedLM(["Context: Paris is in France.", "Reasoning: It is Paris.\nAnswer: Paris"])
    ds.configure(lm=lm)
    try:
        out = p(question="Capital of France?")
    finally:
        ds.configure(lm=None)
    assert out.answer == "Paris" and out.reasoning == "It is Paris."
    prompt, params = lm.calls[1]
    assert "Rayleigh scattering." in prompt  # demos are in the prompt
    assert params == {"temperature": 0.2, "max_tokens": 256}
    assert prompt.rstrip().endswith("Reasoning: Let's think step by step in order to")


def test_forward_without_lm_or_with_bad_reply_is_a_clear_error() -> None:
    m = ds.Predict("question -> answer")
    ds.configure(lm=None)
    with pytest.raises(ds.DesiruError, match="configure"):
        m(question="q")
    ds.configure(lm=ds.ScriptedLM(["Something: else\nOther: x"]))
    try:
        with pytest.raises(ds.DesiruError, match="no value for"):
            ds.ChainOfThought("question -> answer")(question="q")
        with pytest.raises(ds.DesiruError, match="needs inputs"):
            m(other="q")
    finally:
        ds.configure(lm=None)


def test_reply_without_leading_prefix_goes_to_first_field() -> None:
    ds.configure(lm=ds.ScriptedLM({"Paris": "Paris"}))
    try:
        assert ds.Predict("question -> answer")(question="Paris?").answer == "Paris"
    finally:
        ds.configure(lm=None)
