"""Documents: save/load in every format and compression, detection, envelope, and every error path."""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import math
import os
import random
from pathlib import Path

import pytest
import yaml
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from programs import QA, Outer, programs, sample_program

import desiru as ds
from desiru.serialization import CURRENT_VERSION, Serializer
from desiru.serialization.documents import load_document
from desiru.serialization.envelope import checksum_of

FORMATS = ["json", "yaml", "msgpack"]
COMPRESSIONS = [None, "zstd", "gzip"]
SUFFIX = {"json": ".json", "yaml": ".yaml", "msgpack": ".msgpack"}


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("compress", COMPRESSIONS)
def test_round_trip_every_format_and_compression(tmp_path: Path, fmt: str, compress: str | None) -> None:
    p = sample_program()
    r = p.save(tmp_path / f"qa{SUFFIX[fmt]}", compress=compress)
    assert r.format == fmt and r.compression == compress and r.encrypted is False
    assert r.path.name == f"qa{SUFFIX[fmt]}" + {None: "", "zstd": ".zst", "gzip": ".gz"}[compress]
    data = r.path.read_bytes()
    assert r.size == len(data) and r.sha256 is None
    assert r.checksum == load_document(r.path).header["checksum"] == checksum_of(p.to_state())
    assert p.save(r.path, compress=compress, sha256=True).sha256 == hashlib.sha256(r.path.read_bytes()).hexdigest()
    assert QA.load(r.path) == p
    loaded = ds.load(r.path)
    assert type(loaded) is QA and loaded == p


@settings(max_examples=25)
@given(program=programs(), fmt=st.sampled_from(FORMATS), compress=st.sampled_from(COMPRESSIONS))
def test_generated_programs_round_trip(program: ds.Program, fmt: str, compress: str | None) -> None:
    s = Serializer()
    data = s.serialize(program, format=fmt, compress=compress)
    back = s.deserialize(data)
    assert back.to_state() == program.to_state()
    assert type(back) is type(program)


def test_nested_unicode_huge_and_edge_values(tmp_path: Path) -> None:
    o = Outer()
    o.first.demos = [
        ds.Example(text="", summary="日本語 🙂 é"),
        ds.Example(text="x" * 1_000_000, summary="big"),
        ds.Example(text="ints", summary=[2**64 - 1, -(2**63), 0], extra=None, flag=True, raw=b"\x00" * 10),
        ds.Example(text="floats", summary=[1.5, -0.0, math.inf, -math.inf, 1e308]),
        ds.Example(text="tags", summary={"$bytes": "not really"}, other={"$float": "nan"}),
    ]
    for fmt in FORMATS:
        r = o.save(tmp_path / f"o{SUFFIX[fmt]}")
        back = ds.load(r.path)
        assert back == o, fmt
        assert back.first.demos[4]["summary"] == {"$bytes": "not really"}


def test_nan_round_trips_as_nan_in_every_format(tmp_path: Path) -> None:
    p = ds.Program(step=ds.Predict("a -> b", temperature=math.nan))
    for fmt in FORMATS:
        back = ds.load(p.save(tmp_path / f"n{SUFFIX[fmt]}").path)
        assert math.isnan(back.step.parameters["temperature"]), fmt


def test_json_is_readable_with_stable_key_order(tmp_path: Path) -> None:
    p = sample_program()
    text = p.save(tmp_path / "qa.json").path.read_text()
    doc = json.loads(text)
    assert list(doc)[:2] == ["format", "format_version"] and list(doc)[-1] == "state"
    assert doc["format_version"] == str(CURRENT_VERSION)
    for key in ("library_version", "created_at", "python_version", "checksum", "class"):
        assert key in doc
    assert doc["class"] == "programs.QA"
    assert '\n  "state": {' in text  # pretty-printed
    assert doc["state"]["custom_data"]["blob"] == {"$bytes": "AAH/"}
    again = tmp_path / "again.json"
    p.save(again)
    strip = lambda d: {k: v for k, v in d.items() if k not in ("created_at", "header_checksum")}  # noqa: E731
    assert strip(json.loads(again.read_text())) == strip(doc)


def test_yaml_is_plain_safe_yaml(tmp_path: Path) -> None:
    text = sample_program().save(tmp_path / "qa.yaml").path.read_text()
    assert "!!python" not in text
    assert yaml.safe_load(text)["state"]["class"] == "programs.QA"


def test_format_option_overrides_suffix_and_unknown_suffix_defaults_to_msgpack(tmp_path: Path) -> None:
    p = sample_program()
    assert p.save(tmp_path / "qa.txt", format="json").format == "json"
    assert p.save(tmp_path / "qa.bin").format == "msgpack"
    assert p.save(tmp_path / "qa.msgpack", compress=True).path.name == "qa.msgpack.zst"
    with pytest.raises(ds.FormatError, match="xml"):
        p.save(tmp_path / "qa.xml", format="xml")
    with pytest.raises(ds.DesiruError, match="compression"):
        p.save(tmp_path / "qa.json", compress="lz4")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("compress", COMPRESSIONS)
def test_detection_from_bytes_alone(tmp_path: Path, fmt: str, compress: str | None) -> None:
    p = sample_program()
    r = p.save(tmp_path / f"qa{SUFFIX[fmt]}", compress=compress)
    renamed = tmp_path / "renamed.data"
    os.rename(r.path, renamed)
    assert ds.load(renamed) == p


def test_compressed_files_are_standard_streams(tmp_path: Path) -> None:
    p = sample_program()
    z = p.save(tmp_path / "qa.json", compress="zstd").path.read_bytes()
    g = p.save(tmp_path / "qa.json", compress="gzip").path.read_bytes()
    assert json.loads(zstandard.ZstdDecompressor().decompress(z))["format"] == "desiru"
    assert json.loads(gzip.decompress(g))["format"] == "desiru"


def test_export_and_import_module(tmp_path: Path) -> None:
    p = sample_program()
    r = p.export_module("answer", tmp_path / "answer.json")
    q = QA()
    mod = q.import_module(r.path, name="reasoning")
    assert q.reasoning is mod and list(q.modules) == ["retrieve", "answer", "reasoning"]
    assert mod == p.answer
    loaded = ds.load(r.path)
    assert isinstance(loaded, ds.ChainOfThought) and loaded == p.answer
    o = Outer()
    o.export_module("qa.answer", tmp_path / "nested.msgpack", compress="gzip")
    q2 = ds.Program()
    q2.import_module(tmp_path / "nested.msgpack.gz")
    assert q2.answer == o.qa.answer
    o.export_module("qa", tmp_path / "sub.yaml")
    q3 = ds.Program()
    assert q3.import_module(tmp_path / "sub.yaml") == o.qa
    with pytest.raises(ds.UnknownModuleError):
        p.export_module("nope", tmp_path / "x.json")
    with pytest.raises(ds.DesiruError, match="not a program"):
        QA.load(r.path)


def test_subclass_load_of_another_class_names_both(tmp_path: Path) -> None:
    class Other(ds.Program):
        pass

    r = sample_program().save(tmp_path / "qa.json")
    with pytest.raises(ds.UnknownClassError) as info:
        Other.load(r.path)
    assert "'programs.QA'" in str(info.value) and "Other" in str(info.value) and "any_class=True" in str(info.value)
    with pytest.raises(ds.UnknownClassError):
        ds.load(r.path, cls=Other)
    other = Other.load(r.path, any_class=True)  # the documented way to put the state into another class
    assert type(other) is Other and list(other.modules) == ["retrieve", "answer"]
    assert type(ds.load(r.path, cls=Other, any_class=True)) is Other


# -- errors -----------------------------------------------------------------------------------------
def _good(tmp_path: Path, fmt: str = "msgpack", compress: str | None = None) -> Path:
    return sample_program().save(tmp_path / f"qa{SUFFIX[fmt]}", compress=compress).path


def test_missing_empty_and_random_files(tmp_path: Path) -> None:
    with pytest.raises(ds.DesiruError, match="no such file"):
        ds.load(tmp_path / "nope.json")
    with pytest.raises(ds.DesiruError, match="folder"):
        ds.load(tmp_path)
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"")
    with pytest.raises(ds.CorruptDataError, match="empty"):
        ds.load(empty)
    rng = random.Random(7)
    for i in range(30):
        f = tmp_path / f"random{i}"
        f.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        with pytest.raises(ds.DesiruError):
            ds.load(f)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("compress", COMPRESSIONS)
def test_truncated_files_are_clear_errors(tmp_path: Path, fmt: str, compress: str | None) -> None:
    data = _good(tmp_path, fmt, compress).read_bytes()
    cut = tmp_path / "cut"
    cuts = sorted({1, 2, len(data) // 3, len(data) // 2, len(data) - 2, len(data) - 1})
    for n in cuts:
        cut.write_bytes(data[:n])
        try:
            back = ds.load(cut)
        except ds.DesiruError:
            continue
        # only a cut of the trailing newline of a text format leaves the document whole
        assert data[n:].strip() == b"" and back == sample_program(), f"truncation at {n} of {len(data)} loaded"


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_flipped_byte_is_detected_or_harmless(tmp_path: Path, fmt: str) -> None:
    p = ds.Program(step=ds.Predict("q -> a"))
    p.step.demos = [ds.Example(q="question one", a="answer one")]
    data = p.save(tmp_path / f"s{SUFFIX[fmt]}").path.read_bytes()
    bad = tmp_path / "bad"
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x20
        bad.write_bytes(bytes(flipped))
        try:
            back = ds.load(bad)
        except ds.DesiruError:
            continue
        # loading may only succeed when the flip did not change the program (e.g. header text, whitespace)
        assert back == p, f"byte {i} flipped changed the program without an error"


def test_garbage_compressed_frames(tmp_path: Path) -> None:
    f = tmp_path / "garbage.zst"
    f.write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(64))
    with pytest.raises(ds.CorruptDataError, match="zstd"):
        ds.load(f)
    g = tmp_path / "garbage.gz"
    g.write_bytes(b"\x1f\x8b" + os.urandom(64))
    with pytest.raises(ds.CorruptDataError, match="gzip"):
        ds.load(g)
    z = tmp_path / "notdesiru.zst"
    z.write_bytes(zstandard.ZstdCompressor().compress(b'{"hello": "world"}'))
    with pytest.raises(ds.FormatError, match="not a desiru document"):
        ds.load(z)


def test_yaml_python_tags_are_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    f = tmp_path / "evil.yaml"
    f.write_text(
        "format: desiru\nformat_version: 2.0.0\nkind: program\n"
        f"state: !!python/object/apply:os.system ['touch {marker}']\n"
    )
    with pytest.raises(ds.CorruptDataError, match="unsafe yaml"):
        ds.load(f)
    assert not marker.exists()


def test_file_naming_a_dangerous_class_is_refused(tmp_path: Path) -> None:
    p = _good(tmp_path, "json")
    doc = json.loads(p.read_text())
    doc["state"]["class"] = "subprocess.Popen"
    doc["class"] = "subprocess.Popen"
    # rewrite the checksum so the class check itself is what refuses it
    from desiru.serialization.envelope import checksum_of, header_checksum_of
    from desiru.serialization.formats import _untag

    doc["checksum"] = checksum_of(json.loads(json.dumps(doc["state"]), object_hook=_untag))
    doc["header_checksum"] = header_checksum_of(doc)
    p.write_text(json.dumps(doc))
    with pytest.raises(ds.UnknownClassError, match="subprocess.Popen"):
        ds.load(p)


def test_edited_content_fails_the_checksum(tmp_path: Path) -> None:
    p = _good(tmp_path, "json")
    p.write_text(p.read_text().replace("Rayleigh scattering.", "Rayleigh scatterinG."))
    with pytest.raises(ds.CorruptDataError, match="checksum"):
        ds.load(p)


def test_unserializable_value_leaves_old_file_intact(tmp_path: Path) -> None:
    target = tmp_path / "qa.msgpack"
    good = sample_program()
    good.save(target)
    before = target.read_bytes()
    bad = sample_program()
    bad.answer.demos.append(ds.Example(question="when?", answer=datetime.datetime.now()))
    for fmt in FORMATS:
        with pytest.raises(ds.SerializationError, match="datetime"):
            bad.save(target, format=fmt)
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["qa.msgpack"]
    huge = sample_program()
    huge.configuration["n"] = 2**70
    with pytest.raises(ds.SerializationError, match="configuration.n"):
        huge.save(target, format="json")


def test_failed_write_leaves_old_file_and_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "qa.json"
    sample_program().save(target)
    before = target.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    changed = sample_program()
    changed.metadata["x"] = 1
    with pytest.raises(ds.DesiruError, match="previous file is unchanged"):
        changed.save(target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["qa.json"]


def test_save_into_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ds.DesiruError, match="does not exist"):
        sample_program().save(tmp_path / "nope" / "qa.json")


def test_not_a_desiru_document(tmp_path: Path) -> None:
    f = tmp_path / "other.json"
    f.write_text('{"hello": 1}')
    with pytest.raises(ds.FormatError, match="not a desiru document"):
        ds.load(f)
    y = tmp_path / "list.yaml"
    y.write_text("- 1\n- 2\n")
    with pytest.raises(ds.FormatError):
        ds.load(y)
    d = tmp_path / "date.yaml"
    d.write_text("format: desiru\nformat_version: 2.0.0\nkind: program\nstate: {when: 2020-01-01}\n")
    with pytest.raises(ds.CorruptDataError, match="date"):
        ds.load(d)


def test_serializer_bytes_api() -> None:
    p = sample_program()
    s = Serializer()
    assert Serializer.CURRENT_VERSION == CURRENT_VERSION
    for fmt in FORMATS:
        assert s.deserialize(s.serialize(p, format=fmt)) == p
        assert s.deserialize(s.serialize(p, format=fmt), format=fmt) == p
    with pytest.raises(ds.DesiruError):
        s.serialize("not a program")  # type: ignore[arg-type]


# -- hostile structure and names ---------------------------------------------------------------------
def test_deeply_nested_or_aliased_yaml_is_refused_without_crashing(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 30000 + "]" * 30000)
    with pytest.raises(ds.CorruptDataError, match="nested deeper|nesting depth"):
        ds.load(deep)
    laughs = tmp_path / "laughs.yaml"
    lines = ["a0: &a0 [x, x]"] + [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 40)]
    laughs.write_text("\n".join(lines) + "\n")
    with pytest.raises(ds.CorruptDataError, match="alias"):
        ds.load(laughs)


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_a_document_without_its_checksum_is_refused(tmp_path: Path, fmt: str) -> None:
    f = _good(tmp_path, fmt)
    text = f.read_text()
    text = text.replace('"checksum"', '"Checksum"') if fmt == "json" else text.replace("checksum:", "checksum_:")
    f.write_text(text.replace("Rayleigh scattering.", "EVIL"))
    with pytest.raises(ds.CorruptDataError, match="checksum"):  # the header checksum sees the renamed key first
        ds.load(f)


def _with_module_names(tmp_path: Path, names: list[str]) -> Path:
    from desiru.serialization.documents import save_document

    state = sample_program().to_state()
    state["modules"] = [{**state["modules"][0], "name": n} for n in names]
    return save_document(state, tmp_path / "names.json").path


@pytest.mark.parametrize("name", ["save", "modules", "to_state", "_modules", "__class__", "configuration", "1x"])
def test_module_names_that_would_shadow_the_program_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ds.CorruptDataError, match=repr(name).replace("(", r"\(")):
        ds.load(_with_module_names(tmp_path, [name]))
    p = sample_program()
    if name.isidentifier() and not name.startswith("_"):
        with pytest.raises(ds.DesiruError, match="cannot add a module"):
            setattr(p, name, ds.Predict("a -> b"))
    module_file = p.export_module("answer", tmp_path / "m.json").path
    before = p.to_state()
    with pytest.raises(ds.DesiruError):
        p.import_module(module_file, name=name)
    assert p.to_state() == before


def test_duplicate_module_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ds.CorruptDataError, match="two modules are named 'x'"):
        ds.load(_with_module_names(tmp_path, ["x", "x"]))


def test_errors_say_which_file_and_which_module(tmp_path: Path) -> None:
    data = _good(tmp_path, "msgpack").read_bytes()
    cut = tmp_path / "cut.msgpack"
    cut.write_bytes(data[:-5])
    with pytest.raises(ds.CorruptDataError) as info:
        ds.load(cut)
    assert info.value.path == str(cut) and str(cut) in str(info.value) and info.value.offset is not None
    from desiru.serialization.documents import save_document

    state = sample_program().to_state()
    state["modules"][1]["demos"] = "not a list"
    bad = save_document(state, tmp_path / "bad.json").path
    with pytest.raises(ds.CorruptDataError, match="module 'answer': demos must be a list") as info:
        ds.load(bad)
    assert info.value.path == str(bad)


def test_compression_from_suffix_and_no_suffix_on_encrypted_files(tmp_path: Path) -> None:
    p = sample_program()
    r = p.save(tmp_path / "qa.json.gz")
    assert r.compression == "gzip" and r.path.name == "qa.json.gz"
    assert gzip.decompress(r.path.read_bytes()).startswith(b"{")
    assert p.save(tmp_path / "qa.msgpack.zst").compression == "zstd"
    enc = p.save(tmp_path / "qa.bin", compress=True, key=b"k" * 32)
    assert enc.path.name == "qa.bin" and enc.compression == "zstd" and enc.encrypted
    assert ds.load(enc.path, key=b"k" * 32) == p


def test_version_hashes_like_its_string() -> None:
    from desiru.serialization import Version

    assert Version("1.2.0") == "1.2.0" and {Version("1.2.0"): 1}["1.2.0"] == 1
    assert Version("1.2.0") < Version("1.10.0") and Version("1.2.0").compatible_with("1.9.9")


def test_program_save_accepts_a_live_dspy_module(tmp_path: Path) -> None:
    dspy = pytest.importorskip("dspy")
    module = dspy.ChainOfThought("question -> answer")
    r = ds.Program.save(module, tmp_path / "dspy.json")
    loaded = ds.load(r.path)
    assert [n for n, _ in loaded.named_modules()]


def test_damaged_yaml_text_is_corrupt_data_with_where(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_bytes(b"format: desiru\nformat_version: 2.0.0\nkind: program\nx: \xff\xfe\n")
    with pytest.raises(ds.CorruptDataError, match="UTF-8") as info:
        ds.load(f)
    assert info.value.offset == 54


def test_malformed_envelopes_say_what_is_wrong(tmp_path: Path) -> None:
    f = _good(tmp_path, "json")
    doc = json.loads(f.read_text())
    for change, message in (({"kind": "pipeline"}, "unknown document kind"), ({"state": [1]}, "has no state")):
        from desiru.serialization.envelope import header_checksum_of

        changed = {**doc, **change}
        changed["header_checksum"] = header_checksum_of(changed)  # only the envelope check may refuse it
        f.write_text(json.dumps(changed))
        with pytest.raises(ds.CorruptDataError, match=message) as info:
            ds.load(f)
        assert info.value.hint and info.value.path == str(f)
    p = ds.Program()
    with pytest.raises(ds.DesiruError, match="cannot contain itself"):
        p.me = p


def test_serializer_refuses_a_module_document() -> None:
    from desiru.serialization.documents import serialize_document

    data, _, _ = serialize_document({"name": "m", **ds.Predict("a -> b").to_state()}, kind="module", format="json")
    with pytest.raises(ds.DesiruError, match="holds a module, not a program"):
        Serializer().deserialize(data)
