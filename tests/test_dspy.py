"""The DSPy adapter against the real dspy package: live modules, DSPy's JSON saves, desiru files.

No LM is ever called: dspy builds, dumps and loads state without one.
"""

from __future__ import annotations

import enum
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

dspy = pytest.importorskip("dspy")

import desiru as ds  # noqa: E402
from desiru.interop import dspy as dd  # noqa: E402


class Inner(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cot = dspy.ChainOfThought("question, context -> answer")

    def forward(self, question: str, context: str) -> dspy.Prediction:
        return self.cot(question=question, context=context)


class QA(dspy.Module):
    """Predict, ChainOfThought, a nested module, a list and a dict of predictors."""

    def __init__(self) -> None:
        super().__init__()
        self.retrieve = dspy.Predict("question -> search_query", temperature=0.3)
        self.sub = Inner()
        self.layers = [dspy.Predict("text -> summary"), dspy.ChainOfThought("a -> b")]
        self.heads = {"x": dspy.Predict("q -> r", max_tokens=64)}

    def forward(self, question: str) -> dspy.Prediction:
        return self.sub(question=question, context=self.retrieve(question=question).search_query)


def compiled(step: int = 0) -> QA:
    """A QA as an optimizer would leave it: demos, instructions and an LM set."""
    p = QA()
    p.retrieve.demos = [
        dspy.Example(question=f"q{step}", search_query="s1").with_inputs("question"),
        {"question": "q2", "search_query": "s2"},
        dspy.Example(question="q3", search_query="s3"),
    ]
    p.retrieve.lm = dspy.LM("openai/gpt-4o-mini", temperature=0.7, max_tokens=100 + step)
    cot = p.sub.cot.predict
    cot.signature = cot.signature.with_instructions(f"Answer from the context. Attempt {step}.")
    cot.demos = [dspy.Example(question="Why?", context="c", reasoning="r", answer="a").with_inputs(
        "question", "context")]
    p.layers[1].predict.demos = [{"a": "1", "reasoning": "because", "b": "2"}]
    return p


def test_one_module_per_predictor_named_as_dspy_names_them() -> None:
    p = compiled()
    prog = dd.from_dspy(p)
    names = [n for n, _ in p.named_predictors()]
    assert names == ["retrieve", "sub.cot.predict", "layers[0]", "layers[1].predict", "heads['x']"]
    assert [m.metadata["dspy"]["name"] for _, m in prog.named_modules()] == names
    # identifier names become desiru paths as they are; others are cleaned, exact name kept in metadata
    assert [n for n, _ in prog.named_modules()] == [
        "retrieve", "sub.cot.predict", "layers_0", "layers_1.predict", "heads_x"]
    assert prog.get_module("sub.cot").metadata["dspy"]["class"].endswith("ChainOfThought")
    assert prog.metadata["dspy"]["class"].endswith("QA")
    assert prog.metadata["dspy"]["save_metadata"]["dependency_versions"]["dspy"] == dspy.__version__


def test_signature_demos_and_lm_settings() -> None:
    prog = dd.from_dspy(compiled())
    cot = prog.get_module("sub.cot.predict")
    assert isinstance(cot, ds.Predict)
    assert list(cot.signature.inputs) == ["question", "context"]
    assert list(cot.signature.outputs) == ["reasoning", "answer"]
    assert cot.signature.instructions == "Answer from the context. Attempt 0."
    assert cot.signature.outputs["reasoning"].prefix == "Reasoning:"
    assert cot.signature.inputs["question"].desc == "${question}"
    assert cot.demos[0][dd.INPUT_KEYS] == ["context", "question"]
    retrieve = prog.get_module("retrieve")
    # an Example with inputs, a plain dict, an Example without inputs
    assert [d.get(dd.INPUT_KEYS, "absent") for d in retrieve.demos] == [["question"], "absent", None]
    assert retrieve.parameters["temperature"] == 0.3  # the predictor's own config
    assert retrieve.parameters["lm"]["model"] == "openai/gpt-4o-mini"
    assert retrieve.parameters["lm"]["max_tokens"] == 100
    assert "lm" not in prog.get_module("layers_0").parameters
    assert prog.get_module("heads_x").parameters == {"max_tokens": 64}


def test_to_dspy_restores_the_exact_state() -> None:
    p = compiled()
    fresh = QA()
    back = dd.to_dspy(dd.from_dspy(p), into=fresh)
    assert back is fresh
    assert back.dump_state() == p.dump_state()
    demos = back.retrieve.demos
    assert isinstance(demos[0], dspy.Example) and demos[0]._input_keys == {"question"}
    assert isinstance(demos[1], dict)
    assert isinstance(demos[2], dspy.Example) and demos[2]._input_keys is None
    assert back.sub.cot.predict.demos[0].inputs().toDict() == {"question": "Why?", "context": "c"}
    assert back.retrieve.config == {"temperature": 0.3}
    assert back.retrieve.lm.model == "openai/gpt-4o-mini"
    assert back.sub.cot.predict.signature.instructions == "Answer from the context. Attempt 0."


def test_to_dspy_copy_leaves_the_template_alone() -> None:
    template = QA()
    before = template.dump_state()
    out = dd.to_dspy(dd.from_dspy(compiled(2)), into=template, copy=True)
    assert out is not template and template.dump_state() == before
    assert out.dump_state() == compiled(2).dump_state()


def test_dspy_save_read_write_dspy_load(tmp_path: Path) -> None:
    p = compiled()
    p.save(tmp_path / "qa.json")
    prog = dd.read_dspy_save(tmp_path / "qa.json")
    dd.write_dspy_save(prog, tmp_path / "again.json")
    loaded = QA()
    loaded.load(tmp_path / "again.json")
    assert loaded.dump_state() == p.dump_state()
    # what we write is byte for byte what dspy wrote, from the program or from the live module
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "qa.json").read_bytes()
    dd.write_dspy_save(p, tmp_path / "live.json")
    assert (tmp_path / "live.json").read_bytes() == (tmp_path / "qa.json").read_bytes()


def test_dspy_files_convert_without_dspy_installed(tmp_path: Path) -> None:
    compiled().save(tmp_path / "qa.json")
    script = f"""
import sys
sys.modules["dspy"] = None  # as if DSPy were not installed
import desiru as ds
from desiru.interop import dspy as dd
prog = dd.read_dspy_save({str(tmp_path / "qa.json")!r})
dd.write_dspy_save(prog, {str(tmp_path / "out.json")!r})
with ds.Journal.open({str(tmp_path / "run.journal")!r}) as j:
    j.commit(prog)
try:
    dd.to_dspy(prog, into=object())
except ds.DesiruError as exc:
    assert "pip install" in str(exc), exc
else:
    raise AssertionError("to_dspy worked without dspy")
assert "dspy" not in [m.split(".")[0] for m in sys.modules if sys.modules[m] is not None]
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out.json").read_bytes() == (tmp_path / "qa.json").read_bytes()


def test_save_metadata_is_kept(tmp_path: Path) -> None:
    p = compiled()
    p.save(tmp_path / "qa.json")
    doc = json.loads((tmp_path / "qa.json").read_text())
    doc["metadata"]["dependency_versions"]["dspy"] = "3.0.0"
    doc["metadata"]["note"] = "kept too"
    (tmp_path / "old.json").write_text(json.dumps(doc))
    prog = dd.read_dspy_save(tmp_path / "old.json")
    assert prog.metadata["dspy"]["save_metadata"]["dependency_versions"]["dspy"] == "3.0.0"
    prog.save(tmp_path / "old.desiru.yaml")
    dd.write_dspy_save(ds.load(tmp_path / "old.desiru.yaml"), tmp_path / "out.json")
    assert json.loads((tmp_path / "out.json").read_text())["metadata"] == doc["metadata"]


def test_read_with_template_equals_from_dspy_of_the_loaded_module(tmp_path: Path) -> None:
    compiled().save(tmp_path / "qa.json")
    loaded = QA()
    loaded.load(tmp_path / "qa.json")
    assert dd.read_dspy_save(tmp_path / "qa.json", template=QA()) == dd.from_dspy(loaded)


def test_read_without_template_names_fields(tmp_path: Path) -> None:
    compiled().save(tmp_path / "qa.json")
    prog = dd.read_dspy_save(tmp_path / "qa.json")
    retrieve = prog.get_module("retrieve")  # default instructions name the fields exactly
    assert str(retrieve.signature) == "question -> search_query"
    assert "field_split" not in retrieve.metadata["dspy"]
    cot = prog.get_module("sub.cot.predict")  # custom instructions: names from the ${name} descriptions,
    assert str(cot.signature) == "question, context -> reasoning, answer"  # split at the reasoning
    assert "field_split" not in cot.metadata["dspy"]


def test_custom_and_empty_prefixes_round_trip(tmp_path: Path) -> None:
    # dspy 3.4 deprecates setting prefixes in code, but files (and older dspy) still carry them
    p = dspy.Predict("text -> label")
    p.save(tmp_path / "p.json")
    doc = json.loads((tmp_path / "p.json").read_text())
    doc["signature"]["fields"][0]["prefix"] = ""
    doc["signature"]["fields"][1]["prefix"] = "The Label ->"
    (tmp_path / "p.json").write_text(json.dumps(doc, indent=2) + "\n")
    prog = dd.read_dspy_save(tmp_path / "p.json")
    assert [n for n, _ in prog.named_modules()] == ["self"]  # a bare predictor is dspy's "self"
    module = prog.get_module("self")
    assert module.metadata["dspy"]["empty_prefix"] == ["text"]
    assert module.signature.outputs["label"].prefix == "The Label ->"
    dd.write_dspy_save(prog, tmp_path / "q.json")
    assert (tmp_path / "q.json").read_bytes() == (tmp_path / "p.json").read_bytes()
    loaded = dspy.Predict("text -> label")
    loaded.load(tmp_path / "q.json")
    assert [f["prefix"] for f in loaded.dump_state()["signature"]["fields"]] == ["", "The Label ->"]
    other = dspy.Predict("text -> label")
    dd.to_dspy(dd.from_dspy(loaded), into=other)
    assert other.dump_state() == loaded.dump_state()
    assert dd.read_dspy_save(tmp_path / "q.json", template=dspy.Predict("text -> label")) == dd.from_dspy(loaded)


@pytest.mark.parametrize(("name", "options"), [
    ("qa.json", {}),
    ("qa.yaml", {}),
    ("qa.msgpack", {"compress": "zstd"}),
    ("qa.bin", {"key": "correct horse battery staple"}),
])
def test_desiru_file_of_a_dspy_program_round_trips(tmp_path: Path, name: str, options: dict) -> None:
    p = compiled(1)
    result = dd.save(p, tmp_path / name, **options)
    back = dd.load(result.path, into=QA(), key=options.get("key"))
    assert back.dump_state() == p.dump_state()
    assert back.retrieve.demos[0]._input_keys == {"question"}
    # and ds.load gives the plain desiru program, readable without dspy
    assert ds.load(result.path, key=options.get("key")) == dd.from_dspy(p)


def test_program_save_of_converted_module(tmp_path: Path) -> None:
    p = compiled()
    dd.as_program(p).save(tmp_path / "qa.json")
    assert dd.to_dspy(ds.Program.load(tmp_path / "qa.json"), into=QA()).dump_state() == p.dump_state()


def test_non_predict_parameters_are_kept_whole() -> None:
    class WithRetrieve(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.search = dspy.Retrieve(k=3)
            self.answer = dspy.Predict("question -> answer")

    p = WithRetrieve()
    p.search.k = 7
    prog = dd.from_dspy(p)
    assert prog.get_module("search").metadata["dspy"]["raw"] == {"k": 7}
    back = dd.to_dspy(prog, into=WithRetrieve())
    assert back.search.k == 7


def test_bare_flex_round_trips(tmp_path: Path) -> None:
    flex = dspy.Flex("question -> answer")  # a parameter that is not a predictor: state kept whole
    prog = dd.from_dspy(flex)
    assert prog.get_module("self").metadata["dspy"]["raw"] == flex.dump_state()
    dd.write_dspy_save(prog, tmp_path / "flex.json")
    loaded = dspy.Flex("question -> answer")
    loaded.load(tmp_path / "flex.json")
    assert loaded.dump_state() == flex.dump_state()
    assert dd.read_dspy_save(tmp_path / "flex.json", template=dspy.Flex("question -> answer")) == prog


def test_as_program() -> None:
    prog = ds.Program(answer=ds.Predict("question -> answer"))
    assert dd.as_program(prog) is prog
    assert isinstance(dd.as_program(compiled()), ds.Program)
    assert dd.is_dspy_module(compiled()) and not dd.is_dspy_module(prog)
    with pytest.raises(ds.SerializationError, match="dspy module"):
        dd.as_program({"not": "a program"})


def test_desiru_native_program_into_dspy() -> None:
    prog = ds.Program(answer=ds.Predict("question -> answer", temperature=0.1,
                                        demos=[{"question": "q", "answer": "a"}]))
    prog.get_module("answer").signature = prog.get_module("answer").signature.with_instructions("Be brief.")

    class One(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.answer = dspy.Predict("question -> answer", n=2)

    out = dd.to_dspy(prog, into=One())
    assert out.answer.signature.instructions == "Be brief."
    assert out.answer.demos == [{"question": "q", "answer": "a"}]
    assert out.answer.config == {"n": 2, "temperature": 0.1}  # merged: the desiru program never saw config


# -- errors ----------------------------------------------------------------------------------
def test_structure_mismatch_names_both_sides() -> None:
    other = dspy.ChainOfThought("question -> answer")
    with pytest.raises(ds.UnknownModuleError, match="retrieve") as err:
        dd.to_dspy(dd.from_dspy(compiled()), into=other)
    assert "predict" in str(err.value)


def test_pickle_and_folders_are_refused(tmp_path: Path) -> None:
    (tmp_path / "p.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(ds.FormatError, match="pickle"):
        dd.read_dspy_save(tmp_path / "p.pkl")
    with pytest.raises(ds.FormatError, match="folder"):
        dd.read_dspy_save(tmp_path)


@pytest.mark.parametrize(("text", "error", "match"), [
    (b'{"a": {', ds.CorruptDataError, "not valid JSON"),
    (b"[1, 2]", ds.CorruptDataError, "JSON object"),
    (b'{"a": 3}', ds.CorruptDataError, "must be an object"),
    (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", ds.CorruptDataError, "nested too deeply"),
    (b'{"a": {}, "metadata": 3}', ds.CorruptDataError, "'metadata'"),
    (b'{"a": {"demos": [1], "signature": {"instructions": "", "fields": []}, "lm": null}}',
     ds.CorruptDataError, "demo 0"),
    (b'{"a": {"demos": [], "signature": {"instructions": "", "fields": [{"prefix": 1}]}, "lm": null}}',
     ds.CorruptDataError, "prefix"),
    (b'{"a": {"demos": [], "signature": {"instructions": "", "fields": []}, "lm": 5}}',
     ds.CorruptDataError, "'lm'"),
])
def test_malformed_saves(tmp_path: Path, text: bytes, error: type, match: str) -> None:
    (tmp_path / "bad.json").write_bytes(text)
    with pytest.raises(error, match=match) as err:
        dd.read_dspy_save(tmp_path / "bad.json")
    assert err.value.path == str(tmp_path / "bad.json")


def test_values_json_cannot_hold_are_refused(tmp_path: Path) -> None:
    p = dspy.Predict("question -> answer")
    p.demos = [{"question": object(), "answer": "a"}]
    with pytest.raises(ds.SerializationError, match="demos"):
        dd.from_dspy(p)
    p.demos = [{"question": float("nan"), "answer": "a"}]
    prog = dd.from_dspy(p)
    with pytest.raises(ds.SerializationError, match="NaN"):
        dd.write_dspy_save(prog, tmp_path / "nan.json")
    assert not (tmp_path / "nan.json").exists()
    with pytest.raises(ds.FormatError, match=".json"):
        dd.write_dspy_save(dd.from_dspy(compiled()), tmp_path / "qa.yaml")


def test_demo_values_become_json_values() -> None:
    class Color(str, enum.Enum):
        RED = "red"

    class Level(enum.IntEnum):
        HIGH = 3

    p = dspy.Predict("question -> answer")
    p.demos = [{"question": ("a", "b"), "answer": {"color": Color.RED, "level": Level.HIGH}}]
    demo = dd.from_dspy(p).get_module("self").demos[0]
    assert demo == {"question": ["a", "b"], "answer": {"color": "red", "level": 3}}
    assert type(demo["answer"]["color"]) is str and type(demo["answer"]["level"]) is int


def test_reserved_demo_key_collision() -> None:
    p = dspy.Predict("question -> answer")
    p.demos = [{"question": "q", dd.INPUT_KEYS: ["x"]}]
    with pytest.raises(ds.SerializationError, match="reserved"):
        dd.from_dspy(p)


# -- property: any texts survive dspy -> desiru -> dspy file -> dspy --------------------------
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(instructions=_text, demos=st.lists(st.tuples(_text, _text, st.booleans()), max_size=4),
       temperature=st.floats(0, 2))
def test_round_trip_any_text(tmp_path_factory: pytest.TempPathFactory, instructions: str,
                             demos: list[tuple[str, str, bool]], temperature: float) -> None:
    p = dspy.ChainOfThought("question -> answer", temperature=temperature)
    p.predict.signature = p.predict.signature.with_instructions(instructions)
    p.predict.demos = [dspy.Example(question=q, answer=a).with_inputs("question") if ex
                       else {"question": q, "answer": a} for q, a, ex in demos]
    folder = tmp_path_factory.mktemp("rt")
    dd.write_dspy_save(dd.from_dspy(p), folder / "p.json")
    p.save(folder / "dspy.json")
    assert (folder / "p.json").read_bytes() == (folder / "dspy.json").read_bytes()
    loaded = dspy.ChainOfThought("question -> answer")
    loaded.load(folder / "p.json")
    assert loaded.dump_state() == p.dump_state()
    back = dd.to_dspy(dd.from_dspy(p), into=dspy.ChainOfThought("question -> answer"))
    assert back.dump_state() == p.dump_state() and back.predict.config == {"temperature": temperature}
    assert [type(d) for d in back.predict.demos] == [type(d) for d in p.predict.demos]
