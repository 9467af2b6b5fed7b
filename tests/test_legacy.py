"""The original Ruby design's 1.0.0 layout: every field lands where it belongs in ours."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest

import desiru as ds
from desiru import registry
from desiru.module import REASONING
from desiru.serialization import CURRENT_VERSION, Version, container, formats
from desiru.serialization.documents import deserialize_document, load_document
from desiru.serialization.legacy import normalize_keys, program_checksum


def module(**over: Any) -> dict[str, Any]:
    m = {"name": "answer", "class": "Desiru::Modules::Predict", "signature": "question -> answer",
         "demonstrations": [], "parameters": {"temperature": 0.7, "max_tokens": 100,
                                              "instruction_template": None, "custom": {}},
         "metadata": {}}
    m.update(over)
    return m


def doc(*modules: dict[str, Any], version: str = "1.0.0", checksum: bool = False, **program: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"class": "Desiru::Program", "modules": list(modules) or [module()],
                            "configuration": {}, "custom_data": {}}
    body.update(program)
    meta: dict[str, Any] = {"desiru_version": "0.1.0", "ruby_version": "3.3.0"}
    if checksum:
        meta["checksum"] = program_checksum(body)
    return {"version": version, "metadata": meta, "program": body, "timestamp": "2025-06-20T10:00:00Z"}


def load(tree: dict[str, Any], fmt: str = "json", **kw: Any) -> ds.Program:
    data = msgpack.packb(tree) if fmt == "msgpack" else formats.encode(tree, fmt)
    state = deserialize_document(data, **kw).state
    return ds.Program.from_state(state)


def test_a_ruby_program_becomes_ours() -> None:
    p = load(doc(
        module(name="retrieve", signature="question -> context",
               demonstrations=[{"question": "q1", "context": "c1"}]),
        module(name="answer", **{"class": "Desiru::Modules::ChainOfThought"},
               signature="question, context -> answer",
               demonstrations=[{"question": "q", "context": "c", "answer": "a"}],
               parameters={"temperature": 0.2, "max_tokens": 256, "instruction_template": "Answer briefly.",
                           "custom": {"top_p": 0.5}},
               metadata={"score": 0.9}),
        configuration={"optimizer": "BootstrapFewShot"}, custom_data={"k": [1, 2]},
    ))
    assert type(p) is ds.Program and list(p.modules) == ["retrieve", "answer"]
    assert type(p.retrieve) is ds.Predict and type(p.answer) is ds.ChainOfThought
    assert list(p.answer.signature.inputs) == ["question", "context"]
    assert list(p.answer.signature.outputs) == ["reasoning", "answer"]  # as ds.ChainOfThought builds it
    assert p.answer.signature.outputs["reasoning"] == REASONING
    assert p.answer.signature.instructions == "Answer briefly."
    assert p.retrieve.signature == ds.Signature("question -> context")  # default instructions
    assert p.answer.demos == [ds.Example(question="q", context="c", answer="a")]
    assert p.answer.parameters == {"temperature": 0.2, "max_tokens": 256, "top_p": 0.5, "streaming_enabled": False}
    assert p.answer.metadata == {"score": 0.9}
    assert p.configuration == {"optimizer": "BootstrapFewShot"} and p.custom_data == {"k": [1, 2]}
    assert p.metadata == {}
    # the same program built with the API has the same state
    q = ds.Program()
    q.retrieve = ds.Predict("question -> context", temperature=0.7, max_tokens=100, streaming_enabled=False)
    q.retrieve.demos = [ds.Example(question="q1", context="c1")]
    q.answer = ds.ChainOfThought(ds.Signature("question, context -> answer", "Answer briefly."), temperature=0.2,
                                 max_tokens=256, top_p=0.5, streaming_enabled=False)
    q.answer.demos = [ds.Example(question="q", context="c", answer="a")]
    q.answer.metadata = {"score": 0.9}
    q.configuration, q.custom_data = {"optimizer": "BootstrapFewShot"}, {"k": [1, 2]}
    assert p == q


@pytest.mark.parametrize("fmt", ["json", "yaml", "msgpack"])
@pytest.mark.parametrize("compress", [None, "zstd", "gzip"])
def test_every_format_and_compression_loads(tmp_path: Path, fmt: str, compress: str | None) -> None:
    tree = doc(checksum=True)
    raw = msgpack.packb(tree) if fmt == "msgpack" else formats.encode(tree, fmt)
    path = tmp_path / f"legacy.{fmt}"
    path.write_bytes(container.compress(raw, compress))
    d = load_document(path)
    assert d.version == Version("1.0.0") and d.format == fmt and d.compression == compress
    assert ds.load(path).answer.parameters == {"temperature": 0.7, "max_tokens": 100, "streaming_enabled": False}


def test_the_design_example_step_adds_streaming_enabled_but_keeps_a_value_already_there() -> None:
    p = load(doc(module(name="a"), module(name="b", parameters={"streaming_enabled": True}), version="1.0.0"))
    assert p.a.parameters["streaming_enabled"] is False
    assert p.b.parameters == {"streaming_enabled": True}
    p11 = load(doc(module(parameters={"temperature": 0.1}), version="1.1.0"))  # 1.1.0 skips that step
    assert "streaming_enabled" not in p11.answer.parameters


def test_ruby_yaml_symbol_keys() -> None:
    text = (":version: 1.0.0\n:metadata:\n  :desiru_version: 0.1.0\n:program:\n  :class: Desiru::Program\n"
            "  :modules:\n  - :name: answer\n    :class: Desiru::Modules::Predict\n"
            "    :signature: 'question: string -> answer: string'\n    :demonstrations:\n"
            "    - :question: What is Ruby?\n      :answer: A language.\n    :parameters:\n      :temperature: 0.3\n"
            "      :max_tokens:\n      :instruction_template:\n      :custom: {}\n    :metadata: {}\n"
            "  :configuration: {}\n  :custom_data: {}\n:timestamp: '2025-06-20T10:00:00Z'\n")
    p = ds.Program.from_state(deserialize_document(text.encode()).state)
    assert p.answer.demos == [ds.Example(question="What is Ruby?", answer="A language.")]
    assert p.answer.parameters == {"temperature": 0.3, "streaming_enabled": False}
    assert str(p.answer.signature) == "question -> answer"


def test_normalize_keys_touches_only_ruby_symbol_trees() -> None:
    ours = {"format": "desiru", "state": {":odd": 1}}
    assert normalize_keys(ours) is ours
    assert normalize_keys({":version": "1.0.0", ":program": {":modules": [{":name": "a", "x:y": 1}]}}) == {
        "version": "1.0.0", "program": {"modules": [{"name": "a", "x:y": 1}]}}
    assert normalize_keys([1]) == [1]


def test_two_part_versions_of_old_files() -> None:
    assert load(doc(version="1.0")).answer.parameters["streaming_enabled"] is False


# -- class names ---------------------------------------------------------------------------------------------
def test_short_ruby_names_and_the_registry_aliases() -> None:
    p = load(doc(module(name="a", **{"class": "Desiru::Predict"}),
                 module(name="b", **{"class": "Desiru::ChainOfThought"})))
    assert type(p.a) is ds.Predict and type(p.b) is ds.ChainOfThought
    assert registry.resolve("Desiru::Modules::Predict", base=ds.Module) is ds.Predict


def test_an_unknown_ruby_module_class_names_the_module_and_the_fix() -> None:
    with pytest.raises(ds.UnknownClassError) as info:
        load(doc(module(name="agent", **{"class": "Desiru::Modules::ReAct"})))
    text = str(info.value)
    assert "'agent'" in text and "Desiru::Modules::ReAct" in text and "program.modules[0]" in text
    assert "registry.alias('Desiru::Modules::ReAct'" in text


def test_a_registered_alias_makes_an_unknown_ruby_class_load() -> None:
    class ReActV1(ds.Predict):
        __desiru_name__ = "tests.legacy.ReActV1"

    registry.alias("Desiru::Modules::ReActTest", ReActV1)
    p = load(doc(module(name="agent", **{"class": "Desiru::Modules::ReActTest"})))
    assert type(p.agent) is ReActV1 and p.agent.to_state()["class"] == "tests.legacy.ReActV1"


def test_program_classes_map_through_the_registry(tmp_path: Path) -> None:
    class QaPipeline(ds.Program):
        __desiru_name__ = "tests.legacy.QaPipeline"

    path = tmp_path / "p.json"
    path.write_text(json.dumps(doc(**{"class": "QaPipeline"})))
    with pytest.raises(ds.UnknownClassError, match="QaPipeline"):
        ds.load(path)  # not registered under the Ruby name: ds.load cannot know the class
    assert type(QaPipeline.load(path)) is QaPipeline  # a class given by the caller is enough
    registry.alias("QaPipeline", QaPipeline)
    loaded = ds.load(path)
    assert type(loaded) is QaPipeline and loaded.to_state()["class"] == "tests.legacy.QaPipeline"
    assert type(load(doc(**{"class": None}))) is ds.Program


# -- fields ------------------------------------------------------------------------------------------------------
def test_parameters_custom_merge_and_clash() -> None:
    p = load(doc(module(parameters={"temperature": 0.1, "max_tokens": None, "instruction_template": None,
                                    "custom": {"temperature": 0.9, "beam": 2}})))
    assert p.answer.parameters == {"temperature": 0.1, "custom": {"temperature": 0.9, "beam": 2},
                                   "streaming_enabled": False}
    p = load(doc(module(parameters={"custom": "fast"})))
    assert p.answer.parameters == {"custom": "fast", "streaming_enabled": False}
    p = load(doc(module(parameters=None)))
    assert p.answer.parameters == {"streaming_enabled": False}
    p = load(doc(module(parameters={"instruction_template": ["not", "text"]})))
    assert p.answer.parameters["instruction_template"] == ["not", "text"]


def test_signatures_are_parsed() -> None:
    p = load(doc(module(signature="question: string, context: list[string] -> answer: string, score: float")))
    assert list(p.answer.signature.inputs) == ["question", "context"]
    assert list(p.answer.signature.outputs) == ["answer", "score"]
    p = load(doc(module(signature=ds.Signature("a -> b", "Do it.").to_state())))
    assert p.answer.signature == ds.Signature("a -> b", "Do it.")
    cot = load(doc(module(**{"class": "Desiru::Modules::ChainOfThought"}, signature="q -> reasoning, answer")))
    assert list(cot.answer.signature.outputs) == ["reasoning", "answer"]  # not added twice


@pytest.mark.parametrize("bad,match", [
    ("question answer", "cannot parse signature"),
    ("question -> ", "no output field"),
    (None, "expected a string"),
])
def test_bad_signatures_name_the_module(bad: Any, match: str) -> None:
    with pytest.raises(ds.CorruptDataError, match=match) as info:
        load(doc(module(signature=bad)))
    assert "program.modules[0]" in str(info.value) and "'answer'" in str(info.value)


def test_nested_programs_and_missing_names() -> None:
    inner = {"name": "sub", "class": "Desiru::Program", "modules": [module(name="leaf")], "configuration": {"x": 1}}
    p = load(doc(module(name=None), inner))
    assert list(p.modules) == ["module_0", "sub"]
    assert type(p.sub) is ds.Program and p.sub.configuration == {"x": 1}
    assert p.sub.leaf.parameters["streaming_enabled"] is False
    assert [n for n, _ in p.named_modules()] == ["module_0", "sub.leaf"]


@pytest.mark.parametrize("tree,match", [
    ({"version": "1.0.0", "metadata": {}, "program": None}, "no 'program' section"),
    (doc(modules={"a": 1}), "program.modules must be a list"),
    (doc(module(), module()), "two modules are named 'answer'"),
    (doc(module(demonstrations=[["q", "a"]])), r"demonstrations\[0\] must be a mapping"),
    (doc(module(demonstrations="q -> a")), "demonstrations must be a list"),
    (doc(module(metadata=[1])), "metadata must be a mapping"),
    (doc(module(parameters=[1])), "parameters must be a mapping"),
    (doc(configuration=[1]), "configuration must be a mapping"),
    (doc(module(**{"class": None})), "has no class name"),
    (doc("just a string"), r"program.modules\[0\] must be a mapping"),
])
def test_malformed_legacy_documents_say_where(tree: dict[str, Any], match: str) -> None:
    with pytest.raises(ds.CorruptDataError, match=match):
        load(tree)


def test_a_version_without_a_program_is_no_document() -> None:
    with pytest.raises(ds.FormatError, match="no format_version"):
        load({"version": "1.0.0", "metadata": {}})


# -- checksums and the header ---------------------------------------------------------------------------------
def test_the_legacy_checksum_is_checked() -> None:
    tree = doc(checksum=True)
    assert load(tree).answer.parameters["temperature"] == 0.7
    tree["program"]["modules"][0]["parameters"]["temperature"] = 0.0  # altered after the checksum
    with pytest.raises(ds.CorruptDataError, match="legacy checksum mismatch") as info:
        load(tree)
    assert "verify=False" in str(info.value)
    assert load(tree, verify=False).answer.parameters["temperature"] == 0.0


def test_checksum_forms() -> None:
    tree = doc()
    text = json.dumps(tree["program"], separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    tree["metadata"]["checksum"] = "sha256:" + hashlib.sha256(text.encode()).hexdigest().upper()
    assert load(tree).answer  # key-sorted JSON, with a prefix, in upper case
    tree["metadata"]["checksum"] = "md5:0123"  # a form we cannot recompute: not checked, not fatal
    assert load(tree).answer
    tree = doc(checksum=True, version="1.1.0")
    tree["program"]["configuration"] = {"changed": True}
    with pytest.raises(ds.CorruptDataError, match="legacy checksum mismatch"):
        load(tree)


def test_our_checksum_is_computed_after_migration_and_provenance_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(doc(checksum=True)))
    d = load_document(path)
    assert d.header["checksum"].startswith("xxh3-128:")
    assert d.header["migrated_from"] == {"layout": "desiru-ruby", "format_version": "1.0.0",
                                         "metadata": {"desiru_version": "0.1.0", "ruby_version": "3.3.0"},
                                         "timestamp": "2025-06-20T10:00:00Z"}
    assert d.header["created_at"] == "2025-06-20T10:00:00Z" and d.header["library_version"] == "0.1.0"
    p = ds.load(path)
    r = p.save(tmp_path / "ours.msgpack")
    again = load_document(r.path)
    assert again.version == CURRENT_VERSION and again.header["migrated_from"] == d.header["migrated_from"]
    assert ds.load(r.path) == p
