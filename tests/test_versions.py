"""Format versions: Version, the version check that comes before everything else, and newer minors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from programs import QA, sample_program

import desiru as ds
from desiru.serialization import CURRENT_VERSION, Serializer, Version, envelope
from desiru.serialization.documents import deserialize_document, load_document
from desiru.serialization.version import NewerFormatWarning

parts = st.integers(min_value=0, max_value=10**6)


# -- Version ----------------------------------------------------------------------------------------
def test_current_version_is_exposed_everywhere() -> None:
    assert CURRENT_VERSION == Version("2.3.0")
    assert Serializer.CURRENT_VERSION is CURRENT_VERSION
    assert str(CURRENT_VERSION) == "2.3.0"
    assert repr(CURRENT_VERSION) == "Version('2.3.0')"


def test_ordering_is_numeric_not_textual() -> None:
    assert Version("1.2.0") < Version("1.10.0")
    assert Version("1.10.0") > Version("1.9.9")
    assert Version("2.0.0") > Version("1.99.99")
    assert Version("1.0.10") > Version("1.0.9")
    assert sorted(Version(v) for v in ["1.10.0", "1.2.0", "0.9.9", "1.2.10"]) == [
        Version("0.9.9"), Version("1.2.0"), Version("1.2.10"), Version("1.10.0")]
    assert Version("1.2.3") <= "1.2.3" and Version("1.2.3") >= "1.2.3"


def test_compatible_with_means_same_major() -> None:
    assert Version("1.2.0").compatible_with(Version("1.9.9"))
    assert Version("2.0.0").compatible_with("2.7.1")
    assert not Version("1.9.9").compatible_with(Version("2.0.0"))
    assert not Version("0.9.0").compatible_with("1.0.0")


def test_equality_and_hash() -> None:
    assert Version("1.2.3") == "1.2.3"
    assert Version("1.2.3") != "1.2.4"
    assert Version("1.2.3") != "not a version"  # no exception: a non-version equals no version
    assert Version("1.2.3") != 123
    assert {Version("1.2.3"): 1}[Version("1.2.3")] == 1
    assert Version(Version("3.4.5")) == Version("3.4.5")
    with pytest.raises(TypeError):
        _ = Version("1.0.0") < 3  # type: ignore[operator]


@pytest.mark.parametrize("bad", ["", "1", "1.2", "1.2.3.4", "v1.2.3", "1.2.x", "01.2.3", "1.-2.3", " 1.2.3",
                                 "1.2.3 ", "1..3", None, 1.2, b"1.2.3"])
def test_bad_versions_raise_a_clear_error(bad: Any) -> None:
    with pytest.raises(ds.DesiruError) as info:
        Version(bad)
    assert "invalid version" in str(info.value) and "MAJOR.MINOR.PATCH" in str(info.value)


def test_parse_accepts_two_part_versions_of_old_files() -> None:
    assert Version.parse("1.0") == Version("1.0.0")
    with pytest.raises(ds.DesiruError):
        Version.parse("1")


@given(a=st.tuples(parts, parts, parts), b=st.tuples(parts, parts, parts))
def test_order_matches_tuple_order(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    va, vb = Version(".".join(map(str, a))), Version(".".join(map(str, b)))
    assert (va < vb) == (a < b) and (va == vb) == (a == b) and (va > vb) == (a > b)
    assert str(va) == ".".join(map(str, a))
    assert va.compatible_with(vb) == (a[0] == b[0])


# -- the version comes first --------------------------------------------------------------------------
def _doc_bytes(fmt: str, version: str, *, body: Any = None, extra: dict[str, Any] | None = None) -> bytes:
    """A document claiming ``version``; ``body`` replaces its state (to prove it is never looked at)."""
    state = sample_program().to_state() if body is None else body
    tree: dict[str, Any] = {"format": "desiru", "format_version": version, "kind": "program",
                            "class": "desiru.Program", **(extra or {})}
    tree["checksum"] = envelope.checksum_of(state) if body is None else "xxh3-128:00"
    tree["state"] = state
    if fmt == "msgpack":
        return msgpack.packb(tree, use_bin_type=True)
    if fmt == "json":
        return json.dumps(tree).encode()
    return yaml.safe_dump(tree, sort_keys=False).encode()


def test_the_version_is_among_the_first_entries_of_every_document(tmp_path: Path) -> None:
    for fmt in ("json", "yaml", "msgpack"):
        data = Serializer().serialize(sample_program(), format=fmt)
        if fmt == "msgpack":
            assert envelope.peek_version(data, "msgpack") == CURRENT_VERSION
            first = list(msgpack.unpackb(data, raw=False))[:2]
        else:
            tree = json.loads(data) if fmt == "json" else yaml.safe_load(data)
            first = list(tree)[:2]
        assert first == ["format", "format_version"]


def test_a_newer_major_msgpack_is_refused_before_its_body_is_decoded() -> None:
    # the body is an ext type this release cannot decode: decoding first would give CorruptDataError
    data = _doc_bytes("msgpack", "3.0.0", body=msgpack.ExtType(7, b"future"))
    with pytest.raises(ds.CorruptDataError):
        from desiru import _engine

        _engine.unpackb(data)
    with pytest.raises(ds.IncompatibleVersionError) as info:
        deserialize_document(data, path="future.msgpack")
    text = str(info.value)
    assert "3.0.0" in text and str(CURRENT_VERSION) in text and "upgrade desiru" in text
    assert info.value.path == "future.msgpack"


@pytest.mark.parametrize("fmt", ["json", "yaml", "msgpack"])
def test_a_newer_major_is_refused_whatever_comes_after_its_version(fmt: str) -> None:
    # a 3.x file may have changed everything after the version, checksums and state shape included
    data = _doc_bytes(fmt, "3.1.0", body={"graph": [1, 2, 3]}, extra={"checksum_algorithm": "blake3"})
    with pytest.raises(ds.IncompatibleVersionError) as info:
        Serializer().deserialize(data)
    assert "3.1.0" in str(info.value) and str(CURRENT_VERSION) in str(info.value)


@pytest.mark.parametrize("fmt", ["json", "yaml", "msgpack"])
@pytest.mark.parametrize("compress", [None, "zstd", "gzip"])
def test_a_newer_major_is_refused_under_compression(tmp_path: Path, fmt: str, compress: str | None) -> None:
    from desiru.serialization import container

    data = container.compress(_doc_bytes(fmt, "9.0.0", body=[]), compress)
    path = tmp_path / "future.doc"
    path.write_bytes(data)
    with pytest.raises(ds.IncompatibleVersionError, match="9.0.0"):
        ds.load(path)


def test_a_version_that_is_not_a_version_is_refused() -> None:
    data = json.dumps({"format": "desiru", "format_version": "two", "kind": "program", "state": {}}).encode()
    with pytest.raises(ds.IncompatibleVersionError, match="'two'"):
        deserialize_document(data)


# -- newer minors: load with a warning, keep what they wrote --------------------------------------------
def _newer_minor_tree(version: str = "2.4.0") -> dict[str, Any]:
    p = QA()
    p.answer.demos = [ds.Example(question="q", context="c", reasoning="r", answer="a")]
    state = p.to_state()
    state["schedule"] = {"every": "1h"}                       # a program field
    state["modules"][1]["adapter"] = {"name": "chat", "v": 3}  # a module field
    tree = {"format": "desiru", "format_version": version, "kind": "program", "class": state["class"],
            "library_version": "9.9.9", "created_at": "2030-01-01T00:00:00.000Z", "python_version": "3.14",
            "provenance": {"host": "ci-7"}, "signing": None}
    tree["checksum"] = envelope.checksum_of(state)
    tree["header_checksum"] = envelope.header_checksum_of(tree)  # every file since 2.1.0 covers its header
    tree["state"] = state
    return tree


@pytest.mark.parametrize("fmt", ["json", "yaml", "msgpack"])
def test_a_newer_minor_loads_with_a_warning_and_keeps_unknown_fields(tmp_path: Path, fmt: str) -> None:
    tree = _newer_minor_tree()
    src = tmp_path / f"newer.{fmt}"
    from desiru.serialization import formats

    src.write_bytes(formats.encode(tree, fmt))
    with pytest.warns(NewerFormatWarning, match="2.4.0") as record:
        p = QA.load(src)
    assert str(CURRENT_VERSION) in str(record[0].message) and str(src) in str(record[0].message)
    assert p.to_state() == tree["state"]
    assert p.answer.demos[0].answer == "a"
    # saved again, in any format: every field this release does not know is written back unchanged
    for out_fmt in ("json", "yaml", "msgpack"):
        out = p.save(tmp_path / f"again.{out_fmt}")
        doc = load_document(out.path)  # our own version now: no warning
        assert doc.version == CURRENT_VERSION
        assert doc.state == tree["state"]
        assert doc.header["provenance"] == {"host": "ci-7"} and doc.header["signing"] is None
        assert doc.header["format_version"] == str(CURRENT_VERSION)
        assert doc.header["library_version"] == ds.__version__


def test_unknown_fields_survive_ds_load_copy_and_nested_programs(tmp_path: Path) -> None:
    tree = _newer_minor_tree("2.4.5")
    outer = {"kind": "program", "class": "desiru.Program", "configuration": {}, "custom_data": None,
             "metadata": {}, "modules": [{"name": "inner", **tree["state"], "future_flag": True}],
             "future_root": [1, 2]}
    tree["state"], tree["class"] = outer, "desiru.Program"
    tree["checksum"] = envelope.checksum_of(outer)
    tree["header_checksum"] = envelope.header_checksum_of(tree)
    src = tmp_path / "nested.json"
    src.write_text(json.dumps(tree))
    with pytest.warns(NewerFormatWarning):
        p = ds.load(src)
    assert p.to_state() == outer
    assert p.copy().to_state() == outer
    assert p.inner.to_state()["future_flag"] is True
    # a change to a known field is kept alongside the unknown ones
    p.inner.answer.parameters["temperature"] = 0.9
    p.save(tmp_path / "again.msgpack")
    again = ds.load(tmp_path / "again.msgpack")
    state = again.to_state()
    assert state["future_root"] == [1, 2]
    assert state["modules"][0]["schedule"] == {"every": "1h"}
    assert state["modules"][0]["modules"][1]["adapter"] == {"name": "chat", "v": 3}
    assert state["modules"][0]["modules"][1]["parameters"]["temperature"] == 0.9
    assert load_document(tmp_path / "again.msgpack").header["provenance"] == {"host": "ci-7"}


def test_a_newer_patch_loads_silently_and_a_newer_minor_checksum_is_still_verified(tmp_path: Path) -> None:
    tree = _newer_minor_tree("2.0.7")
    src = tmp_path / "patch.json"
    src.write_text(json.dumps(tree))
    assert ds.load(src).to_state() == tree["state"]  # filterwarnings=error: any warning would fail here
    tree = _newer_minor_tree("2.5.0")
    tree["state"]["schedule"]["every"] = "2h"  # altered after the checksum was taken
    src.write_text(json.dumps(tree))
    with pytest.warns(NewerFormatWarning), pytest.raises(ds.CorruptDataError, match="checksum"):
        ds.load(src)


def test_programs_built_in_code_have_no_unknown_fields() -> None:
    p = sample_program()
    assert set(p.to_state()) == {"kind", "class", "modules", "configuration", "custom_data", "metadata"}
    for m in p.to_state()["modules"]:
        assert set(m) == {"name", "kind", "class", "signature", "demos", "parameters", "metadata"}
