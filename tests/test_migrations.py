"""The migration registry, event upcasters and ds.migrate (documents and journals)."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from programs import QA, sample_program

import desiru as ds
from desiru.journal import events as journal_events
from desiru.serialization import CURRENT_VERSION, Version, migrations
from desiru.serialization.documents import load_document
from desiru.serialization.migrations import (
    migration_chain,
    register_migration,
    register_upcaster,
    upcast_event,
)

LEGACY_MODULE = {"name": "answer", "class": "Desiru::Modules::Predict", "signature": "question -> answer",
                 "demonstrations": [{"question": "q", "answer": "a"}],
                 "parameters": {"temperature": 0.1, "max_tokens": 32, "instruction_template": None, "custom": {}},
                 "metadata": {}}


def legacy(version: str = "1.0.0", **program: Any) -> dict[str, Any]:
    body = {"class": "Desiru::Program", "modules": [dict(LEGACY_MODULE)], "configuration": {}, "custom_data": None}
    body.update(program)
    return {"version": version, "metadata": {"desiru_version": "0.1.0"}, "program": body,
            "timestamp": "2025-06-20T10:00:00Z"}


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test stay in that test."""
    monkeypatch.setattr(migrations, "_MIGRATIONS", dict(migrations._MIGRATIONS))
    monkeypatch.setattr(migrations, "_UPCASTERS", {k: dict(v) for k, v in migrations._UPCASTERS.items()})


# -- document migrations -------------------------------------------------------------------------------
def test_the_built_in_chain_goes_from_the_ruby_layout_to_ours() -> None:
    tail = [(Version("2.0.0"), Version("2.1.0")), (Version("2.1.0"), Version("2.2.0")),
            (Version("2.2.0"), Version("2.3.0"))]
    assert migration_chain("1.0.0") == [(Version("1.0.0"), Version("1.1.0")), (Version("1.1.0"), Version("2.0.0")),
                                        *tail]
    assert migration_chain("1.1.0") == [(Version("1.1.0"), Version("2.0.0")), *tail]
    assert migration_chain("2.0.0") == tail  # the header under its checksum, the module table, its outlines
    assert migration_chain("2.1.0") == tail[1:]
    assert migration_chain("2.2.0") == tail[2:]
    assert migration_chain(CURRENT_VERSION) == []


def test_the_chain_runs_in_order_and_each_step_sees_the_previous_version(registry: None, tmp_path: Path) -> None:
    seen: list[str] = []

    @register_migration("0.8.0", "0.9.0")
    def a(tree: dict[str, Any]) -> dict[str, Any]:
        seen.append(tree["version"])
        tree["program"]["modules"] = list(tree["program"].pop("steps").values())
        return tree

    @register_migration("0.9.0", "1.0.0")
    def b(tree: dict[str, Any]) -> dict[str, Any]:
        seen.append(tree["version"])
        for m in tree["program"]["modules"]:
            m["demonstrations"] = m.pop("examples")
        return tree

    wrap = legacy("0.8.0")
    module = wrap["program"].pop("modules")[0]
    module["examples"] = module.pop("demonstrations")
    wrap["program"]["steps"] = {"answer": module}
    (tmp_path / "old.json").write_text(json.dumps(wrap))
    p = ds.load(tmp_path / "old.json")
    assert seen == ["0.8.0", "0.9.0"]
    assert p.answer.demos == [ds.Example(question="q", answer="a")]
    assert p.answer.parameters == {"temperature": 0.1, "max_tokens": 32, "streaming_enabled": False}
    assert load_document(tmp_path / "old.json").version == Version("0.8.0")


def test_a_0x_file_is_refused_unless_a_migration_from_it_is_registered(registry: None, tmp_path: Path) -> None:
    (tmp_path / "pre.json").write_text(json.dumps(legacy("0.9.0")))
    with pytest.raises(ds.IncompatibleVersionError) as info:
        ds.load(tmp_path / "pre.json")
    text = str(info.value)
    assert "0.9.0" in text and str(CURRENT_VERSION) in text and "missing step: 0.9.0" in text
    assert info.value.path == os.fspath(tmp_path / "pre.json")
    register_migration("0.9.0", "1.0.0")(lambda tree: tree)
    assert ds.load(tmp_path / "pre.json").answer.demos[0]["answer"] == "a"


def test_a_gap_in_the_chain_names_both_versions_and_the_missing_step(
        registry: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    del migrations._MIGRATIONS[Version("1.1.0")]
    (tmp_path / "old.yaml").write_text(json.dumps(legacy("1.0.0")))
    with pytest.raises(ds.IncompatibleVersionError) as info:
        ds.load(tmp_path / "old.yaml")
    text = str(info.value)
    assert "format 1.0.0" in text and f"reads {CURRENT_VERSION}" in text and "missing step: 1.1.0" in text
    assert "register_migration" in text
    before = (tmp_path / "old.yaml").read_bytes()
    with pytest.raises(ds.IncompatibleVersionError):
        ds.migrate(tmp_path / "old.yaml")
    assert (tmp_path / "old.yaml").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["old.yaml"]  # no backup, no temp file


def test_a_patch_release_of_a_version_migrates_like_it(tmp_path: Path) -> None:
    (tmp_path / "patch.json").write_text(json.dumps(legacy("1.0.3")))
    assert migration_chain("1.0.3")[0] == (Version("1.0.3"), Version("1.1.0"))
    assert ds.load(tmp_path / "patch.json").answer.parameters["streaming_enabled"] is False


def test_registration_is_checked(registry: None) -> None:
    with pytest.raises(ds.DesiruError, match="forward"):
        register_migration("1.1.0", "1.0.0")
    with pytest.raises(ds.DesiruError, match="past the current format"):
        register_migration("2.3.0", "2.4.0")
    with pytest.raises(ds.DesiruError, match="already registered"):
        register_migration("1.0.0", "1.1.0")(lambda tree: tree)
    with pytest.raises(ds.DesiruError, match="invalid version"):
        register_migration("one", "2.0.0")
    fn = migrations._MIGRATIONS[Version("1.0.0")][1]
    assert register_migration("1.0.0", "1.1.0")(fn) is fn  # the same function again is harmless


def test_a_migration_must_return_a_tree(registry: None, tmp_path: Path) -> None:
    register_migration("0.5.0", "1.0.0")(lambda tree: None)
    (tmp_path / "x.json").write_text(json.dumps(legacy("0.5.0")))
    with pytest.raises(ds.DesiruError, match="returned a NoneType"):
        ds.load(tmp_path / "x.json")


def test_errors_raised_inside_a_migration_name_the_file(registry: None, tmp_path: Path) -> None:
    def broken(tree: dict[str, Any]) -> dict[str, Any]:
        raise ds.CorruptDataError("the steps table is damaged")

    register_migration("0.5.0", "1.0.0")(broken)
    (tmp_path / "x.json").write_text(json.dumps(legacy("0.5.0")))
    with pytest.raises(ds.CorruptDataError) as info:
        ds.load(tmp_path / "x.json")
    assert info.value.path == os.fspath(tmp_path / "x.json") and str(tmp_path / "x.json") in str(info.value)


# -- event upcasters -------------------------------------------------------------------------------------
def record(event_type: str = "DemoAdded", schema: int = 1, **payload: Any) -> dict[str, Any]:
    return {"type": event_type, "schema_version": schema, "seq": 12, "timestamp": 1.5, "path": "answer",
            "payload": payload or {"index": 0, "demo": {"question": "q"}}}


def test_current_event_records_pass_through_unchanged() -> None:
    r = record()
    assert migrations.current_schema_version("DemoAdded") == journal_events.DemoAdded.schema_version == 1
    assert upcast_event(r) is r
    assert upcast_event(record("NoSuchEvent", 7)) == record("NoSuchEvent", 7)  # the journal reports unknown types


def test_upcasters_run_in_order_to_the_current_schema(registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_events.DemoAdded, "schema_version", 3)
    calls: list[int] = []

    @register_upcaster("DemoAdded", 1)
    def one_to_two(rec: dict[str, Any]) -> dict[str, Any]:
        calls.append(rec["schema_version"])
        rec["payload"] = {**rec["payload"], "weight": 1.0}
        return rec

    @register_upcaster("DemoAdded", 2)
    def two_to_three(rec: dict[str, Any]) -> dict[str, Any]:
        calls.append(rec["schema_version"])
        rec["payload"] = {**rec["payload"], "source": rec["payload"].get("source", "legacy")}
        return rec

    old = record()
    new = upcast_event(old)
    assert calls == [1, 2]
    assert new["schema_version"] == 3 and new["payload"] == {"index": 0, "demo": {"question": "q"}, "weight": 1.0,
                                                             "source": "legacy"}
    assert old["schema_version"] == 1 and "weight" not in old["payload"]  # the stored record is not changed
    assert upcast_event(record(schema=2))["payload"]["source"] == "legacy"
    assert upcast_event(record(schema=1), target=2)["schema_version"] == 2


def test_a_newer_event_schema_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ds.IncompatibleVersionError) as info:
        upcast_event(record(schema=2))
    assert info.value.seq == 12 and "DemoAdded" in str(info.value) and "schema 2" in str(info.value)
    assert "upgrade desiru" in str(info.value)


def test_a_gap_in_the_upcaster_chain_names_the_missing_step(registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_events.ParameterSet, "schema_version", 3)
    register_upcaster("ParameterSet", 1)(lambda rec: rec)
    with pytest.raises(ds.IncompatibleVersionError) as info:
        upcast_event(record("ParameterSet", 1, key="k", value=1))
    assert "missing step: 2 -> 3" in str(info.value) and info.value.seq == 12


@pytest.mark.parametrize("bad", [-1, "1", None, True, 1.0])
def test_invalid_schema_versions(bad: Any) -> None:
    rec = record()
    rec["schema_version"] = bad
    with pytest.raises(ds.IncompatibleVersionError, match="invalid schema_version"):
        upcast_event(rec)
    with pytest.raises(ds.DesiruError):
        register_upcaster("DemoAdded", bad)


def test_upcaster_registration_is_checked(registry: None) -> None:
    fn = register_upcaster("DemoAdded", 5)(lambda rec: rec)
    assert register_upcaster("DemoAdded", 5)(fn) is fn
    with pytest.raises(ds.DesiruError, match="already registered"):
        register_upcaster("DemoAdded", 5)(lambda rec: rec)
    with pytest.raises(ds.DesiruError, match="non-empty"):
        register_upcaster("", 1)


def test_the_journal_reads_old_events_through_the_upcasters(
        registry: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    p = QA()
    with ds.Journal.open(tmp_path / "run.journal") as j:
        j.commit(p)
        p.answer.demos.append(ds.Example(question="q", answer="a"))
        j.commit(p)
    # a later release gives DemoAdded a schema 2 with a 'weight' in its payload
    monkeypatch.setattr(journal_events.DemoAdded, "schema_version", 2)
    from desiru.journal import codec

    monkeypatch.setitem(codec._CURRENT_SCHEMA, "DemoAdded", 2)

    @register_upcaster("DemoAdded", 1)
    def add_weight(rec: dict[str, Any]) -> dict[str, Any]:
        rec["payload"] = {**rec["payload"], "weight": 1.0}
        return rec

    with ds.Journal.open(tmp_path / "run.journal", readonly=True) as j:
        demo_events = [e for e in j.events() if e.type == "DemoAdded"]
    assert len(demo_events) == 1
    assert demo_events[0].schema_version == 2 and demo_events[0].payload["weight"] == 1.0
    # and ds.migrate rewrites the journal with the upcast records, keeping the original aside
    r = ds.migrate(tmp_path / "run.journal")
    assert r.kind == "journal" and r.backup == tmp_path / f"run.journal.bak-{CURRENT_VERSION}"
    migrations._UPCASTERS["DemoAdded"].clear()  # the rewritten journal no longer needs them
    with ds.Journal.open(tmp_path / "run.journal", readonly=True) as j:
        assert [e.payload.get("weight") for e in j.events() if e.type == "DemoAdded"] == [1.0]
        assert j.replay().to_state() == p.to_state()


# -- ds.migrate on documents ---------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix,fmt", [("json", "json"), ("yaml", "yaml"), ("msgpack", "msgpack")])
def test_migrate_upgrades_a_legacy_document_in_place_and_keeps_the_original(
        tmp_path: Path, suffix: str, fmt: str) -> None:
    from desiru.serialization import formats

    path = tmp_path / f"prog.{suffix}"
    original = formats.encode(legacy("1.0.0"), fmt) if fmt != "msgpack" else __import__("msgpack").packb(legacy())
    path.write_bytes(original)
    os.chmod(path, 0o640)
    before = ds.load(path).to_state()
    r = ds.migrate(path)
    assert (r.kind, r.from_version, r.to_version, r.changed) == ("document", Version("1.0.0"), CURRENT_VERSION, True)
    assert r.backup == tmp_path / f"prog.{suffix}.bak-1.0.0" and r.backup.read_bytes() == original
    doc = load_document(path)
    assert doc.version == CURRENT_VERSION and doc.format == fmt and doc.compression is None
    assert doc.state == before
    assert doc.header["migrated_from"]["format_version"] == "1.0.0"
    assert (path.stat().st_mode & 0o777) == 0o640
    # a second run has nothing to do
    again = ds.migrate(path)
    assert again.changed is False and again.backup is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, r.backup.name])


def test_migrate_keeps_compression_and_encryption(tmp_path: Path) -> None:
    from desiru.serialization import container, formats

    key = "ab" * 32
    legacy_json = formats.encode(legacy(), "json")
    zst = tmp_path / "prog.json.zst"
    zst.write_bytes(container.compress(legacy_json, "zstd"))
    enc = tmp_path / "prog.bin"
    enc.write_bytes(container.seal(legacy_json, fmt="json", compression="gzip", key=key))
    assert ds.migrate(zst).changed
    doc = load_document(zst)
    assert (doc.version, doc.format, doc.compression) == (CURRENT_VERSION, "json", "zstd")
    with pytest.raises(ds.MissingKeyError):
        ds.migrate(enc)
    r = ds.migrate(enc, key=key)
    assert r.changed and r.backup is not None
    with pytest.raises(ds.MissingKeyError):
        load_document(enc)
    doc = load_document(enc, key=key)
    assert (doc.version, doc.format, doc.compression, doc.encrypted) == (CURRENT_VERSION, "json", "gzip", True)


def test_migrate_leaves_current_and_newer_minor_documents_alone(tmp_path: Path) -> None:
    r = sample_program().save(tmp_path / "cur.msgpack")
    before = r.path.read_bytes()
    res = ds.migrate(r.path)
    assert (res.changed, res.from_version, res.backup) == (False, CURRENT_VERSION, None)
    assert r.path.read_bytes() == before
    from desiru.serialization import envelope

    state = QA().to_state()
    tree = {"format": "desiru", "format_version": "2.5.0", "kind": "program", "class": state["class"],
            "checksum": envelope.checksum_of(state)}
    tree["header_checksum"] = envelope.header_checksum_of(tree)
    tree["state"] = state
    (tmp_path / "newer.json").write_text(json.dumps(tree))
    res = ds.migrate(tmp_path / "newer.json")  # no warning escapes: filterwarnings=error would fail
    assert (res.changed, res.from_version, res.to_version) == (False, Version("2.5.0"), Version("2.5.0"))


def test_backups_never_overwrite_each_other(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    for n in range(3):
        path.write_text(json.dumps(legacy("1.1.0", configuration={"round": n})))
        r = ds.migrate(path)
        assert json.loads(r.backup.read_text())["program"]["configuration"] == {"round": n}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "p.json", "p.json.bak-1.1.0", "p.json.bak-1.1.0.1", "p.json.bak-1.1.0.2"]


def test_a_failed_write_leaves_the_original_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mig = sys.modules["desiru.migrate"]  # the module: ds.migrate is the function of the same name
    path = tmp_path / "p.json"
    original = json.dumps(legacy()).encode()
    path.write_bytes(original)
    real = mig.atomic_write

    def failing(target: Any, data: Any, **kw: Any) -> int:
        if Path(target) == path:
            raise ds.DesiruError("disk full", path=target)
        return real(target, data, **kw)

    monkeypatch.setattr(mig, "atomic_write", failing)
    with pytest.raises(ds.DesiruError, match="disk full"):
        ds.migrate(path)
    assert path.read_bytes() == original
    assert load_document(path).version == Version("1.0.0")


def test_migrate_reports_missing_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ds.DesiruError, match="no such file"):
        ds.migrate(tmp_path / "nope.json")
    (tmp_path / "other.json").write_text('{"hello": "world"}')
    with pytest.raises(ds.FormatError):
        ds.migrate(tmp_path / "other.json")


# -- docs/VERSIONING.md runs --------------------------------------------------------------------------------
DOC = Path(__file__).resolve().parent.parent / "docs" / "VERSIONING.md"


def test_versioning_doc_examples_run(registry: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), flags=re.S | re.M)
    assert len(blocks) == 2 and "register_migration" in blocks[0] and "register_upcaster" in blocks[1]
    monkeypatch.chdir(tmp_path)
    # the upcaster example bumps DemoAdded's schema as a release would: undone after the test
    monkeypatch.setattr(journal_events.DemoAdded, "schema_version", journal_events.DemoAdded.schema_version)
    namespace: dict[str, Any] = {"__name__": "versioning_doc"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name}[block {i}]", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "missing step: 0.9.0" in printed and "schema 3, newer than this release reads (2)" in printed
    assert (tmp_path / "prerelease.json.bak-0.9.0").exists()
