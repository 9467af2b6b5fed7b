"""Thirty DSPy saves committed to public repositories (../shared/dspy_wild/, see its SOURCES.md).

One test per file: desiru reads it into modules that show the file's instructions,
prefixes, descriptions and demos (field names and the split as expected below),
writes it back as the same JSON, and converts it so that the installed dspy's own
loader reads it. The folder sits beside the checkout (CI has ../shared); a missing
folder fails the suite rather than skipping it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

import desiru as ds
from desiru.interop import dspy as dd
from desiru.interop.dspy import layouts

WILD = Path(__file__).resolve().parents[2] / "shared" / "dspy_wild"
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "dspy_wild_load.py"

#: file -> {dspy predictor name: "inputs -> outputs" as desiru reads it, or the raw state of a retriever}
EXPECTED: dict[str, dict[str, Any]] = {
    "BenMcH__DSPy-Experiments__miprov2.json": {"self": "text -> classification"},
    "BhanuHarshaY__dspy_cn__optimized_program.json": {"generate": "hate_speech -> output"},
    "Esai-Keshav__dspy-poc__support_qa_1.json": {"self": "context, question -> answer"},
    "HoneyOak__Optimising-LLMs__optimized_program.json": {
        "respond.predict": "context, question -> reasoning, response"},
    "Khushiyant__khushiyant-llm-judge-interview__compiled_cot.json": {
        "generate_choices": "reference_answer, answer, judgement, initial_prompt -> rationale, better_prompt"},
    "Plexlogic__dspy-intro__optimized_program.json": {
        "predictor": "contract, negotiation_playbook -> rationale, recommendations"},
    "Shivermist__integrity__optimized_cot.json": {"generate_answer": "project_1, project_2 -> rationale, answer"},
    "SohamChhajed__SimpleRagApp__optimized_rag.json": {"generate.predict": "context, question -> reasoning, answer"},
    "aidando73__hello-dspy__optimized_react.json": {
        "react": "claim, trajectory -> next_thought, next_tool_name, next_tool_args",
        "extract.predict": "claim, trajectory -> reasoning, titles"},
    "aijnek__dspy_multimodal__optimized.json": {"predict": "image -> reasoning, number_of_people"},
    "amanshresthaa__Thematic-AnalysisG__optimized_program.json": {"predictor": "input -> reasoning, answer"},
    "amelial9__DSPy__gao_clone.json": {"retrieve": {"k": 3},
                                       "generate_answer": "context, question -> rationale, answer"},
    "bigcoke1__scrape-gemini__compiled_rag_random.json": {
        "retrieve": {"k": 5},
        "generate_answer": "context, question -> rationale, textual_response, data_response, format",
        "custom_rm": {}},
    "can-gurkan__LEAR__optimized_program.json": {"self": "pseudocode -> reasoning, netlogo_code"},
    "currybab__dspy-study__optimized_gpt4o.json": {
        "react.predict": "question, trajectory, functions -> reasoning, next_selected_fn, args"},
    "eformat__dspy-tool-use__optimized_react.json": {
        "react": "question, trajectory -> next_thought, next_tool_name, next_tool_args",
        "extract.predict": "question, trajectory -> reasoning, answer"},
    # three predictors with custom instructions and several outputs: the split is a marked guess
    "ethan-wickstrom__robofactor__optimized.json": {
        "module.analyzer": "code_snippet, analysis -> refactoring_opportunities",
        "module.planner": "code_snippet, analysis, refactoring_summary -> plan_steps",
        "module.implementer":
            "original_code, refactoring_summary, plan_steps, refactored_code -> implementation_explanation"},
    "flsteven87__prompt_engineering__compiled_program.json": {"classifier": "question -> answer"},
    "hmoazam__databricks-dspy-cookbook__optimized_rag.json": {"retriever": {"k": 5},
                                                              "response_generator": "context, question -> response"},
    "knutole__dspy-demo__optimized_program.json": {"chain.predict": "text -> reasoning, clean_text"},
    "noelo__dspy-experiments__mipro-prompt.json": {"self": "input_text -> result"},
    "petrovs12__ML-notebooks__mipro_optimized.json": {"prog": "question -> reasoning, answer"},
    "riccardo-alle__dspy-demo__compiled_rag.json": {"retrieve": {"k": 3},
                                                    "generate_answer": "context, question -> rationale, answer"},
    # no demos and custom instructions: the inputs are not recorded anywhere
    "robjsliwa__adventures_in_dspy__compiled_program.json": {"predictor": " -> rationale, updated_game_state"},
    "shntnu__cellprofiler-dspy-review__compiled.json": {"self": "file_path, diff -> issues"},
    "suryaEdify__dspy-testing__optimized_agent.json": {
        "react.react": "question, context, history, trajectory -> next_thought, next_tool_name, next_tool_args",
        "react.extract.predict": "question, context, history, trajectory -> reasoning, sql_query, answer"},
    "tomkaith13__Article_Classifier__optimized_classifier.json": {
        "classify.module.predict": "news_article, person_of_interest -> reasoning, sentiment, confidence"},
    "vishaljoshi24__Dungeons-and-Dragons-Turn-Classification__optimized_classifier.json": {
        "classifier.predict": "context, question -> reasoning, response"},
    "wesen__dspy-grug__optimized_cot.json": {"prog": "plain_english -> rationale, grug_text"},
    "yzjing__dspy_demo__optimized_pipeline.json": {"rag.predict": "context, question -> reasoning, response"},
}
#: the files the installed dspy (3.4.1 when this was written) loads as committed; after convert it loads all
LOADS_AS_COMMITTED = {
    "BenMcH__DSPy-Experiments__miprov2.json", "BhanuHarshaY__dspy_cn__optimized_program.json",
    "Esai-Keshav__dspy-poc__support_qa_1.json", "HoneyOak__Optimising-LLMs__optimized_program.json",
    "SohamChhajed__SimpleRagApp__optimized_rag.json", "aidando73__hello-dspy__optimized_react.json",
    "aijnek__dspy_multimodal__optimized.json", "currybab__dspy-study__optimized_gpt4o.json",
    "eformat__dspy-tool-use__optimized_react.json", "ethan-wickstrom__robofactor__optimized.json",
    "hmoazam__databricks-dspy-cookbook__optimized_rag.json", "knutole__dspy-demo__optimized_program.json",
    "noelo__dspy-experiments__mipro-prompt.json", "shntnu__cellprofiler-dspy-review__compiled.json",
    "suryaEdify__dspy-testing__optimized_agent.json", "tomkaith13__Article_Classifier__optimized_classifier.json",
    "vishaljoshi24__Dungeons-and-Dragons-Turn-Classification__optimized_classifier.json",
    "yzjing__dspy_demo__optimized_pipeline.json",
}
#: predictors whose save records nothing that splits inputs from outputs: the split is a marked guess
GUESSED_SPLIT = {("ethan-wickstrom__robofactor__optimized.json", n)
                 for n in ("module.analyzer", "module.planner", "module.implementer")} | {
    ("Esai-Keshav__dspy-poc__support_qa_1.json", "self"),  # instructions "{proposed_instruction}"
    ("shntnu__cellprofiler-dspy-review__compiled.json", "self"),
    ("robjsliwa__adventures_in_dspy__compiled_program.json", "predictor"),  # no demos: inputs unknown
}


def test_the_folder_is_there_and_complete() -> None:
    assert WILD.is_dir(), f"{WILD} is missing: the DSPy saves live in ../shared/dspy_wild beside the checkout"
    assert sorted(p.name for p in WILD.glob("*.json")) == sorted(EXPECTED)


def _states(doc: dict[str, Any]) -> dict[str, Any]:
    """dspy name -> saved state, as dspy's loader sees the file."""
    if "demos" in doc:
        return {"self": {k: v for k, v in doc.items() if k != "metadata"}}
    return {k: v for k, v in doc.items() if k != "metadata"}


def _recorded(state: dict[str, Any]) -> tuple[str | None, list[dict[str, str]] | None, str | None]:
    """(instructions, fields, last prefix) the file records for the signature the LM sees."""
    if "extended_signature" in state:
        sig = state["extended_signature"]
        return sig["instructions"], sig["fields"], sig["fields"][-1]["prefix"]
    if "signature" in state:
        sig = state["signature"]
        return sig["instructions"], sig["fields"], sig["fields"][-1]["prefix"]
    if "signature_instructions" in state:
        cot = "extended_signature_instructions" in state
        return (state["extended_signature_instructions" if cot else "signature_instructions"], None,
                state["extended_signature_prefix" if cot else "signature_prefix"])
    return None, None, None


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_read_understood_written_back(name: str, tmp_path: Path) -> None:
    path = WILD / name
    assert path.is_file(), f"{path} is missing"
    doc = json.loads(path.read_text(encoding="utf-8"))
    prog = dd.read_dspy_save(path)
    modules = {m.metadata["dspy"]["name"]: m for _, m in prog.named_modules()}
    assert list(modules) == list(EXPECTED[name])
    states = _states(doc)
    for dspy_name, expected in EXPECTED[name].items():
        module = modules[dspy_name]
        meta = module.metadata["dspy"]
        if isinstance(expected, dict):  # a retriever: its state kept whole
            assert meta["raw"] == expected == states[dspy_name]
            continue
        assert str(module.signature) == expected
        assert (meta.get("field_split") == "guessed") == ((name, dspy_name) in GUESSED_SPLIT)
        state = states[dspy_name]
        instructions, fields, last_prefix = _recorded(state)
        sig = module.signature
        if instructions is None:  # the early layout records none: DSPy's default ones, marked
            assert meta["unrecorded"][0] == "instructions"
            assert sig.instructions == "Given the fields `context`, `question`, produce the fields `answer`."
        else:
            assert sig.instructions == instructions
        if fields is not None:
            assert [(f.prefix, f.desc) for f in sig.fields.values()] == [
                (f["prefix"] or ds.Field(n).prefix or f["prefix"], f["description"])
                for n, f in zip(sig.fields, fields)]
        if last_prefix is not None:
            assert list(sig.fields.values())[-1].prefix == last_prefix
        # every demo, values and types as the file has them (lists, dicts, floats, non-ASCII text)
        assert [dict(d) for d in module.demos] == state["demos"]
        assert json.dumps([dict(d) for d in module.demos]) == json.dumps(state["demos"])
        assert all(n.isidentifier() and not n.startswith("field_") for n in sig.fields), list(sig.fields)
    # written back: the same JSON, key order included, no metadata invented, no "self" moved
    dd.write_dspy_save(prog, tmp_path / "again.json")
    again = json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))
    assert again == doc
    assert json.dumps(again) == json.dumps(doc)
    # and through a desiru document (which keeps a dict's keys sorted: the same JSON values, and the
    # order of what dspy reads in order, the predictors)
    prog.save(tmp_path / "prog.msgpack")
    dd.write_dspy_save(ds.load(tmp_path / "prog.msgpack"), tmp_path / "via_desiru.json")
    via = json.loads((tmp_path / "via_desiru.json").read_text(encoding="utf-8"))
    assert via == doc and list(via) == list(doc)


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location("dspy_wild_load", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_converted_file_loads_in_the_installed_dspy(name: str, tmp_path: Path) -> None:
    pytest.importorskip("dspy")
    bench = _bench()
    path = WILD / name
    before = bench.dspy_reads(path)
    assert before[0] == (name in LOADS_AS_COMMITTED), before
    prog = dd.read_dspy_save(path)
    import dspy

    doc, changes = dd.dspy_document(prog, dspy.__version__)
    dd.write_dspy_save(prog, tmp_path / name, dspy_version=dspy.__version__)
    assert bench.dspy_reads(tmp_path / name) == (True, "ok")
    assert bool(changes) == (name not in LOADS_AS_COMMITTED)  # a file dspy already reads is left as it was
    if name in LOADS_AS_COMMITTED:
        assert json.loads((tmp_path / name).read_text(encoding="utf-8")) == json.loads(path.read_text("utf-8"))
    else:
        assert "metadata" in doc and doc["metadata"]["dependency_versions"]["dspy"] == dspy.__version__
        assert all(layouts.classify(s) == layouts.SIGNATURE for s in _states(doc).values()
                   if isinstance(s, dict) and "demos" in s)


def test_old_chain_of_thought_comes_forward_as_dspy_2_6_keeps_it(tmp_path: Path) -> None:
    prog = dd.read_dspy_save(WILD / "amelial9__DSPy__gao_clone.json")
    doc, changes = dd.dspy_document(prog, "2.6.27")
    assert list(doc) == ["retrieve", "generate_answer.predict", "metadata"]
    state = doc["generate_answer.predict"]
    assert list(state) == ["traces", "train", "demos", "signature", "lm"]
    assert [f["prefix"] for f in state["signature"]["fields"]] == [
        "Context:", "Question:", "Reasoning: Let's think step by step in order to", "Answer:"]
    assert state["signature"]["fields"][2]["description"] == "${reasoning}"
    augmented = [d for d in state["demos"] if d.get("augmented")]
    assert augmented and all("reasoning" in d and "rationale" not in d for d in augmented)
    assert any("rationale' -> 'reasoning'" in c for c in changes)
    assert doc["metadata"]["dependency_versions"]["dspy"] == "2.6.27"
    # a ChainOfThought saved by dspy 2.5 as "self" becomes the .predict of a ChainOfThought
    doc, _ = dd.dspy_document(dd.read_dspy_save(WILD / "can-gurkan__LEAR__optimized_program.json"), "2.6")
    assert list(doc) == ["predict", "metadata"] and "extended_signature" not in doc["predict"]


# -- the same layouts as small hand-made vectors (tests/vectors/dspy/, see its README) -------------
VECTORS = Path(__file__).resolve().parent / "vectors" / "dspy"
#: vector -> ({dspy name: signature or raw state}, {names whose split is a marked guess}, loads as written)
VECTOR_EXPECTED: dict[str, tuple[dict[str, Any], set[str], bool]] = {
    "flat_2_4_cot.json": ({"retrieve": {"k": 3}, "generate_answer": "context, question -> rationale, answer"},
                          set(), False),
    "flat_2_5_0_predict.json": ({"classify": "message -> label"}, set(), False),
    "flat_2_4_cot_base_differs.json": ({"narrator": " -> rationale, scene"}, {"narrator"}, False),
    "early_2_x.json": ({"retrieve": {"k": 2}, "generate_answer": "context, question -> rationale, answer"},
                       set(), False),
    "signature_2_5_self.json": ({"self": "pseudocode -> reasoning, code"}, set(), False),
    "signature_2_5_no_metadata.json": ({"predictor": "input -> reasoning, answer"}, set(), False),
    "react_2_6.json": ({"agent.react": "question, trajectory -> next_thought, next_tool_name, next_tool_args",
                        "agent.extract.predict": "question, trajectory -> reasoning, answer"}, set(), True),
    "bare_3_x.json": ({"self": "source, code -> confidence"}, {"self"}, True),
}


def test_every_vector_is_listed() -> None:
    assert sorted(p.name for p in VECTORS.glob("*.json")) == sorted(VECTOR_EXPECTED)


@pytest.mark.parametrize("name", sorted(VECTOR_EXPECTED))
def test_layout_vectors(name: str, tmp_path: Path) -> None:
    path = VECTORS / name
    expected, guessed, loads = VECTOR_EXPECTED[name]
    doc = json.loads(path.read_text(encoding="utf-8"))
    prog = dd.read_dspy_save(path)
    modules = {m.metadata["dspy"]["name"]: m for _, m in prog.named_modules()}
    assert list(modules) == list(expected)
    for dspy_name, want in expected.items():
        meta = modules[dspy_name].metadata["dspy"]
        if isinstance(want, dict):
            assert meta["raw"] == want
            continue
        assert str(modules[dspy_name].signature) == want
        assert (meta.get("field_split") == "guessed") == (dspy_name in guessed)
        assert [dict(d) for d in modules[dspy_name].demos] == _states(doc)[dspy_name]["demos"]
    dd.write_dspy_save(prog, tmp_path / name)
    assert json.dumps(json.loads((tmp_path / name).read_text(encoding="utf-8"))) == json.dumps(doc)
    pytest.importorskip("dspy")
    bench = _bench()
    assert bench.dspy_reads(path)[0] == loads
    dd.write_dspy_save(prog, tmp_path / "converted.json", dspy_version="2.6.27")
    assert bench.dspy_reads(tmp_path / "converted.json") == (True, "ok")


def test_flat_vector_details() -> None:
    prog = dd.read_dspy_save(VECTORS / "flat_2_4_cot.json")
    module = prog.get_module("generate_answer")
    meta = module.metadata["dspy"]
    assert meta["layout"] == "flat" and meta["cot"] is True
    assert meta["unrecorded"] == ["descriptions", "prefixes except the last"]
    assert module.signature.outputs["answer"].prefix == "Answer:"
    assert module.signature.outputs["rationale"].prefix == "Reasoning: Let's think step by step in order to"
    assert module.demos[0]["context"] == ["Zürich is in Switzerland.", "Bern is its capital."]
    assert module.demos[1]["answer"] == 0.75 and type(module.demos[1]["answer"]) is float
    # the base signature that differs from the extended one is kept, and comes back
    narrator = dd.read_dspy_save(VECTORS / "flat_2_4_cot_base_differs.json").get_module("narrator")
    assert narrator.signature.instructions == "Proposed Instruction: narrate the next scene vividly."
    assert narrator.signature.outputs["scene"].prefix == "As the fog lifts over the valley, you see..."
    assert narrator.metadata["dspy"]["base_signature"] == {"signature_instructions": "Describe the next scene.",
                                                           "signature_prefix": "Scene:"}


def test_bare_vector_prefixes() -> None:
    module = dd.read_dspy_save(VECTORS / "bare_3_x.json").get_module("self")
    assert list(module.signature.fields) == ["source", "code", "confidence"]  # from the bootstrapped demo
    assert module.signature.inputs["source"].prefix == "Source:"  # empty in the file: desiru's default shown,
    assert module.metadata["dspy"]["empty_prefix"] == ["source"]  # and the empty one written back
    assert module.signature.fields["code"].prefix == "```python\n"  # named from the demo, not the fence


def test_programs_not_from_a_file_are_written_for_the_named_release() -> None:
    dspy = pytest.importorskip("dspy")
    cot = dspy.ChainOfThought("question -> answer")
    cot.predict.demos = [{"question": "q", "reasoning": "r", "answer": "a"}]
    prog = dd.from_dspy(cot)
    doc, changes = dd.dspy_document(prog)  # the installed release: as dspy itself saves it
    assert doc == {"predict": cot.predict.dump_state(), "metadata": {"dependency_versions": dd.dependency_versions()}}
    assert changes == []
    old, changes = dd.dspy_document(prog, "2.4.9")  # then a ChainOfThought was itself the Predict
    assert list(old) == list(layouts.ORDER[layouts.FLAT])
    assert old["signature_prefix"] == old["extended_signature_prefix"] == "Answer:"
    assert old["demos"] == [{"question": "q", "rationale": "r", "answer": "a"}]
    assert any("renamed to 'self'" in c for c in changes) and any("metadata block" in c for c in changes)
    mid, _ = dd.dspy_document(prog, "2.5.43")
    assert list(mid) == [*layouts.ORDER[layouts.SIGNATURE_25], "metadata"]
    assert mid["extended_signature"] == mid["signature"] == cot.predict.dump_state()["signature"]
    assert mid["metadata"]["dependency_versions"]["dspy"] == "2.5.43"
    # a desiru program: the installed layout, metadata as dspy writes it
    native = ds.Program(answer=ds.Predict("question -> answer"))
    doc, _ = dd.dspy_document(native)
    assert list(doc) == ["answer", "metadata"]
    assert list(doc["answer"]) == ["traces", "train", "demos", "signature", "lm"]
    assert doc["metadata"] == {"dependency_versions": dd.dependency_versions()}
    with pytest.raises(ds.DesiruError, match="dspy version"):
        dd.dspy_document(native, "latest")


def test_convert_cli_to_dspy(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from desiru.cli import cli

    src = WILD / "wesen__dspy-grug__optimized_cot.json"
    out = tmp_path / "grug.json"
    run = CliRunner().invoke(cli, ["convert", str(src), str(out), "--to", "dspy", "--dspy-version", "2.6"])
    assert run.exit_code == 0, run.output
    assert "renamed to 'prog.predict'" in run.output and "metadata: no metadata block" in run.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert list(doc) == ["prog.predict", "metadata"]
    assert doc["prog.predict"]["signature"]["instructions"] == "Translate plain english to grug text"
    # a file already in the layout asked for: nothing changes
    same = tmp_path / "same.json"
    src = WILD / "knutole__dspy-demo__optimized_program.json"
    run = CliRunner().invoke(cli, ["convert", str(src), str(same), "--to", "dspy", "--dspy-version", "2.6.25"])
    assert run.exit_code == 0 and "changed: nothing" in run.output
    assert json.loads(same.read_text("utf-8")) == json.loads(src.read_text("utf-8"))
    # a desiru document goes out as a DSPy save too
    dd.read_dspy_save(src).save(tmp_path / "prog.yaml")
    run = CliRunner().invoke(cli, ["convert", str(tmp_path / "prog.yaml"), str(tmp_path / "back.json"), "--to", "dspy"])
    assert run.exit_code == 0, run.output
    assert json.loads((tmp_path / "back.json").read_text("utf-8")) == json.loads(src.read_text("utf-8"))
    run = CliRunner().invoke(cli, ["convert", str(src), str(tmp_path / "x.msgpack"), "--dspy-version", "2.6"])
    assert run.exit_code != 0 and "--to dspy" in run.output


def test_old_save_into_todays_program() -> None:
    """to_dspy (and journal.replay(into=)) brings an old save forward into a program of today's dspy."""
    dspy = pytest.importorskip("dspy")

    class RAG(dspy.Module):
        def __init__(self) -> None:
            super().__init__()
            self.retrieve = dspy.Retrieve(k=1)
            self.generate_answer = dspy.ChainOfThought("context, question -> answer")

    prog = dd.read_dspy_save(WILD / "amelial9__DSPy__gao_clone.json")
    doc = json.loads((WILD / "amelial9__DSPy__gao_clone.json").read_text("utf-8"))
    rag = dd.to_dspy(prog, into=RAG())
    assert rag.retrieve.k == 3
    predict = rag.generate_answer.predict
    assert predict.signature.instructions == doc["generate_answer"]["extended_signature_instructions"]
    assert len(predict.demos) == len(doc["generate_answer"]["demos"]) == 16
    first = doc["generate_answer"]["demos"][0]
    assert predict.demos[0]["reasoning"] == first["rationale"] and predict.demos[0]["context"] == first["context"]
