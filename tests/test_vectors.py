"""Frozen document vectors: every file any release promised to read still loads to its exact state.

Each ``tests/vectors/documents/NAME`` has ``NAME.expected.json`` (written once by
make_document_vectors.py): the state it must load to, or the error it must raise.
A vector that stops loading, or disappears, fails here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import msgpack
import pytest

import desiru as ds
from desiru.journal.events import EVENT_TYPES
from desiru.serialization.documents import load_document
from desiru.serialization.migrations import unknown_header_fields
from desiru.serialization.version import CURRENT_VERSION, NewerFormatWarning

VECTORS = Path(os.environ.get("DESIRU_DOCUMENT_VECTORS", Path(__file__).parent / "vectors" / "documents"))
ALL = sorted(p.name.removesuffix(".expected.json") for p in VECTORS.glob("*.expected.json"))

#: vectors that must exist: removing one is a broken promise, not a cleanup
REQUIRED = {
    "v2_0_0.json", "v2_0_0.yaml", "v2_0_0.msgpack", "v2_0_0.msgpack.zst", "v2_0_0.json.gz",
    "v2_0_0_module.json", "v2_0_0_encrypted_rawkey.bin", "v2_0_0_encrypted_passphrase.json.zst",
    "legacy_1_0_0.json", "legacy_1_0_0.yaml", "legacy_1_0_0.msgpack", "legacy_1_0_0.json.gz",
    "legacy_1_1_0.json", "v2_1_0_unknown_fields.json", "v2_2_0_unknown_fields.json", "v2_3_0_unknown_fields.json",
    "v2_1_0.msgpack", "v2_2_0.msgpack", "v2_2_0.msgpack.zst", "v3_0_0.msgpack", "v3_0_0.json", "v0_9_0.json",
    "v2_3_0.msgpack", "v2_3_0.msgpack.zst", "v2_3_0.msgpack.gz", "v2_3_0_encrypted_rawkey.msgpack",
    "v2_3_0_encrypted_passphrase.msgpack", "v2_4_0_unknown_fields.json",
    "journal_2_0_0.journal", "journal_2_0_0_encrypted.journal",
}


def untag(value: Any) -> Any:
    """Undo the expected-file tagging (bytes and non-finite floats), independently of desiru's codecs."""
    if isinstance(value, dict):
        if value.get("__tagged__") == "bytes":
            return bytes.fromhex(value["hex"])
        if value.get("__tagged__") == "float":
            return float(value["value"])
        return {k: untag(v) for k, v in value.items()}
    if isinstance(value, list):
        return [untag(v) for v in value]
    return value


def expected(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.expected.json").read_text(encoding="utf-8"))


CASES = [n for n in ALL if expected(n).get("kind") != "journal"]
JOURNALS = [n for n in ALL if expected(n).get("kind") == "journal"]


def same(a: Any, b: Any) -> bool:
    """Equality that also tells -0.0 from 0.0 and ints from floats: the bytes promised exact values."""
    if isinstance(a, float) or isinstance(b, float):
        return type(a) is type(b) and (a == b or (math.isnan(a) and math.isnan(b))) and \
            math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def test_every_required_vector_is_there_with_its_expectation() -> None:
    files = {p.name for p in VECTORS.iterdir() if not p.name.endswith(".expected.json")}
    assert REQUIRED <= set(ALL), sorted(REQUIRED - set(ALL))
    assert set(ALL) <= files, sorted(set(ALL) - files)
    assert files <= set(ALL), f"vectors without an expected file: {sorted(files - set(ALL))}"


@pytest.mark.parametrize("name", CASES)
def test_vector_loads_to_its_exact_state(name: str) -> None:
    exp = expected(name)
    path = VECTORS / name
    if exp["error"] is not None:
        with pytest.raises(getattr(ds, exp["error"])) as info:
            load_document(path, key=exp["key"])
        # the message names the file's version and ours
        assert exp["version"] in str(info.value) and str(CURRENT_VERSION) in str(info.value)
        assert info.value.path == os.fspath(path)
        return
    warns = pytest.warns(NewerFormatWarning) if exp["warning"] else contextlib.nullcontext()
    with warns:
        doc = load_document(path, key=exp["key"])
    state = untag(exp["state"])
    assert str(doc.version) == exp["version"]
    assert (doc.kind, doc.format, doc.compression, doc.encrypted) == (
        exp["kind"], exp["format"], exp["compression"], exp["encrypted"])
    assert same(doc.state, state)
    assert unknown_header_fields(doc.header) == exp["header_extra"]


@pytest.mark.parametrize("name", [n for n in CASES if expected(n)["error"] is None])
def test_vector_loads_through_the_public_api(name: str) -> None:
    exp = expected(name)
    state = untag(exp["state"])
    warns = pytest.warns(NewerFormatWarning) if exp["warning"] else contextlib.nullcontext()
    with warns:
        obj = ds.load(VECTORS / name, key=exp["key"])
    if exp["kind"] == "module":
        assert isinstance(obj, ds.Module)
        assert same({"name": state["name"], **obj.to_state()}, state)
    else:
        assert isinstance(obj, ds.Program)
        assert same(obj.to_state(), state)


PROGRAMS = [n for n in CASES if expected(n)["error"] is None and expected(n)["kind"] == "program"]


@pytest.mark.parametrize("name", PROGRAMS)
def test_vector_saved_again_loads_to_the_same_state_and_header(name: str, tmp_path: Path) -> None:
    exp = expected(name)
    warns = pytest.warns(NewerFormatWarning) if exp["warning"] else contextlib.nullcontext()
    with warns:
        program = ds.load(VECTORS / name, key=exp["key"])
    for fmt in ("json", "yaml", "msgpack"):
        r = program.save(tmp_path / f"again.{fmt}")
        doc = load_document(r.path)  # written at the current version: no warning, no migration
        assert doc.version == CURRENT_VERSION
        assert same(doc.state, untag(exp["state"]))
        assert unknown_header_fields(doc.header) == exp["header_extra"]


def test_msgpack_vectors_decode_with_the_reference_msgpack_package() -> None:
    """Our msgpack bytes are plain msgpack: the independent implementation reads them the same."""
    from desiru import _engine

    for name in ("v2_0_0.msgpack", "legacy_1_0_0.msgpack"):
        data = (VECTORS / name).read_bytes()
        assert msgpack.unpackb(data, raw=False, strict_map_key=False) == _engine.unpackb(data)


@pytest.mark.parametrize("name", JOURNALS)
@pytest.mark.parametrize("migrated", [False, True], ids=["as-is", "after-ds.migrate"])
def test_journal_vector_replays_every_commit(name: str, migrated: bool, tmp_path: Path) -> None:
    exp = expected(name)
    path = tmp_path / name
    shutil.copytree(VECTORS / name, path)  # opening may cut a torn tail or take the lock: never on the vector
    if migrated:
        r = ds.migrate(path, key=exp["key"])
        assert (r.kind, str(r.from_version), r.to_version) == ("journal", exp["version"], CURRENT_VERSION)
        assert r.backup is not None and r.backup.is_dir()
    with ds.Journal.open(path, key=exp["key"], create=False) as j:
        assert j.head == exp["head"]
        assert j.tags() == exp["tags"]
        # events come back upcast: the schema the vector stored, brought to this release's
        assert [{"seq": e.seq, "type": e.type, "path": e.path, "schema_version": e.schema_version}
                for e in j.events()] == [{**e, "schema_version": EVENT_TYPES[e["type"]].schema_version}
                                         for e in exp["events"]]
        assert all(e["schema_version"] == 1 for e in exp["events"])
        for commit in exp["commits"]:
            assert same(j.replay_state(seq=commit["seq"]), untag(commit["state"]))
        for tag_name, seq in exp["tags"].items():
            want = next(c for c in exp["commits"] if c["seq"] == seq)
            assert same(j.replay(tag=tag_name).to_state(), untag(want["state"]))


def test_an_encrypted_journal_vector_needs_its_key(tmp_path: Path) -> None:
    name = "journal_2_0_0_encrypted.journal"
    shutil.copytree(VECTORS / name, tmp_path / name)
    with pytest.raises(ds.MissingKeyError):
        ds.Journal.open(tmp_path / name, create=False)
