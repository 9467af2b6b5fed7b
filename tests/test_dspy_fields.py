"""Loading into a dspy class: fields by name (never by position), types checked, LM endpoints never lost silently."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import pydantic
import pytest

dspy = pytest.importorskip("dspy")

import desiru as ds  # noqa: E402
from desiru.interop import dspy as dd  # noqa: E402
from desiru.interop.dspy.drift import type_name  # noqa: E402


class Answer(pydantic.BaseModel):
    text: str


def predict(spec: str | type, **prefixes: str) -> dspy.Predict:
    p = dspy.Predict(spec)
    for name, prefix in prefixes.items():
        p.signature = p.signature.with_updated_fields(name, prefix=prefix)
    return p


def prefixes(p: dspy.Predict) -> dict[str, str]:
    return {n: f.json_schema_extra["prefix"] for n, f in p.signature.fields.items()}


def test_a_new_field_is_refused_not_filled_by_position() -> None:
    saved = dd.from_dspy(predict("question -> answer", answer="Short Answer:"))
    with pytest.raises(ds.DesiruError, match=r"fields only in the class \['confidence'\]") as err:
        dd.to_dspy(saved, into=dspy.Predict("question -> confidence, answer"))
    assert "fields='by_name'" in str(err.value.hint)
    # on purpose: matched by name, the new field keeps the class's prefix
    out = dd.to_dspy(saved, into=dspy.Predict("question -> confidence, answer"), fields="by_name")
    assert prefixes(out) == {"question": "Question:", "confidence": "Confidence:", "answer": "Short Answer:"}


def test_fields_are_matched_by_name_whatever_their_order() -> None:
    saved = dd.from_dspy(predict("question, context -> answer", question="Q:", context="C:"))
    out = dd.to_dspy(saved, into=dspy.Predict("context, question -> answer"))
    assert prefixes(out) == {"context": "C:", "question": "Q:", "answer": "Answer:"}
    assert list(out.signature.fields) == ["context", "question", "answer"]


def test_removed_and_swapped_fields_are_listed_for_every_predictor() -> None:
    class Two(dspy.Module):
        def __init__(self, a: str, b: str) -> None:
            super().__init__()
            self.first = dspy.Predict(a)
            self.second = dspy.Predict(b)

    saved = dd.from_dspy(Two("question, context -> answer", "answer -> verdict"))
    with pytest.raises(ds.DesiruError) as err:
        dd.to_dspy(saved, into=Two("question -> answer", "verdict -> answer"))
    text = str(err.value)
    assert "predictor 'first'" in text and "fields only in the saved program ['context']" in text
    assert "predictor 'second'" in text and "input/output swapped ['answer', 'verdict']" in text
    with pytest.raises(ds.DesiruError, match="swapped"):  # by_name ignores missing fields, never a swap
        dd.to_dspy(saved, into=Two("question -> answer", "verdict -> answer"), fields="by_name")


def test_rename_maps_a_field_and_its_demo_values() -> None:
    old = predict("question -> short_answer", short_answer="Short Answer:")
    old.demos = [dspy.Example(question="q", short_answer="a").with_inputs("question")]
    saved = dd.from_dspy(old)
    with pytest.raises(ds.DesiruError, match="short_answer"):
        dd.to_dspy(saved, into=dspy.Predict("question -> answer"))
    out = dd.to_dspy(saved, into=dspy.Predict("question -> answer"), rename={"short_answer": "answer"})
    assert prefixes(out)["answer"] == "Short Answer:"
    assert out.demos[0].toDict() == {"question": "q", "answer": "a"}
    assert set(out.demos[0].inputs().keys()) == {"question"}
    with pytest.raises(ds.DesiruError, match="rename"):
        dd.to_dspy(saved, into=dspy.Predict("question -> answer"), rename={"short_answer": "not a name"})


class Typed(dspy.Signature):
    """Answer."""

    question: str = dspy.InputField()
    tags: list[str] = dspy.OutputField()
    kind: Literal["a", "b"] = dspy.OutputField()
    answer: Answer = dspy.OutputField()


class Retyped(dspy.Signature):
    """Answer."""

    question: str = dspy.InputField()
    tags: str = dspy.OutputField()
    kind: Literal["a", "b", "c"] = dspy.OutputField()
    answer: Answer = dspy.OutputField()


def test_field_types_are_stored_as_strings_and_checked() -> None:
    saved = dd.from_dspy(dspy.Predict(Typed))
    assert saved.get_module("self").metadata["dspy"]["types"] == {
        "question": "str", "tags": "list[str]", "kind": "Literal['a', 'b']", "answer": f"{__name__}.Answer"}
    with pytest.raises(ds.DesiruError, match=r"types differ tags: saved list\[str\], class str, kind: saved") as err:
        dd.to_dspy(saved, into=dspy.Predict(Retyped))
    assert "answer" not in str(err.value).split("types differ", 1)[1]
    out = dd.to_dspy(saved, into=dspy.Predict(Retyped), check_types=False)
    assert out.signature.output_fields["tags"].annotation is str
    assert dd.to_dspy(saved, into=dspy.Predict(Typed)).dump_state() == dspy.Predict(Typed).dump_state()


def test_type_names() -> None:
    assert [type_name(t) for t in (str, int, list[str], dict[str, int], Literal["x"], Answer, int | None)] == [
        "str", "int", "list[str]", "dict[str, int]", "Literal['x']", f"{__name__}.Answer", "int | None"]


def test_a_dspy_file_read_without_template_is_checked_by_field_count(tmp_path: Path) -> None:
    p = predict("question -> answer", answer="Reply:", question="Q:")
    sig = p.signature.with_updated_fields("question", desc="what is asked").with_updated_fields("answer", desc="it")
    p.signature = sig.with_instructions("Custom.")  # nothing in the file names the fields: names are derived
    p.save(str(tmp_path / "p.json"))
    program = dd.read_dspy_save(tmp_path / "p.json")
    assert list(program.get_module("self").signature.fields) != ["question", "answer"]
    assert dd.to_dspy(program, into=dspy.Predict("question -> answer")).dump_state() == p.dump_state()
    # with the class as template the names are the class's: checked by name
    named = dd.read_dspy_save(tmp_path / "p.json", template=dspy.Predict("question -> answer"))
    with pytest.raises(ds.DesiruError, match=r"fields only in the class \['confidence'\]"):
        dd.to_dspy(named, into=dspy.Predict("question -> confidence, answer"))
    with pytest.raises(ds.DesiruError, match="the saved signature has 2 fields, the class 3"):
        dd.to_dspy(program, into=dspy.Predict("question -> confidence, answer"))


def lm_program() -> dspy.ChainOfThought:
    p = dspy.ChainOfThought("question -> answer")
    p.predict.lm = dspy.LM("openai/gpt-4o-mini", api_base="http://localhost:8000/v1", temperature=0.2)
    return p


def test_replay_into_with_allow_unsafe_lm_state_keeps_the_endpoint(tmp_path: Path) -> None:
    with ds.Journal.open(tmp_path / "run.journal") as j:
        j.commit(lm_program(), tag="t")
        kept = j.replay(tag="t", into=dspy.ChainOfThought("question -> answer"), allow_unsafe_lm_state=True)
        assert kept.predict.lm.kwargs["api_base"] == "http://localhost:8000/v1"
        assert kept.dump_state() == lm_program().dump_state()
        with pytest.warns(dd.LMStateWarning, match=r"predictor 'predict'.*\['api_base'\].*allow_unsafe_lm_state"):
            dropped = j.replay(tag="t", into=dspy.ChainOfThought("question -> answer"))
        assert "api_base" not in dropped.predict.lm.kwargs


def test_no_warning_without_endpoints(tmp_path: Path) -> None:
    p = dspy.ChainOfThought("question -> answer")
    p.predict.lm = dspy.LM("openai/gpt-4o-mini", temperature=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dd.to_dspy(dd.from_dspy(p), into=dspy.ChainOfThought("question -> answer")).dump_state() == \
            p.dump_state()
