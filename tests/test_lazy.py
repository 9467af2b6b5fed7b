"""Lazy open (formats 2.2.0 and 2.3.0): the module table, ds.load(lazy=True), ds.load_module, and damage found
on touch. Compressed and encrypted programs in per-module frames: tests/test_framed.py."""

from __future__ import annotations

import copy
import pickle
import shutil
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from programs import QA, Outer, programs, sample_program

import desiru as ds
from desiru import _engine
from desiru.serialization import table
from desiru.serialization.documents import load_document
from desiru.serialization.envelope import scan_header
from desiru.serialization.version import CURRENT_VERSION

VECTORS = Path(__file__).parent / "vectors" / "documents"


def big_program() -> Outer:
    o = Outer()
    o.first.demos = [ds.Example(text=f"text {i}", summary="s" * i) for i in range(30)]
    o.qa.answer.demos = [ds.Example(question="q", context="c", reasoning="r", answer=str(i)) for i in range(5)]
    o.configuration = {"seed": 3}
    o.custom_data = {"blob": b"\x00\xff"}
    return o


def header_of(path: Path) -> tuple[dict, int]:
    data = path.read_bytes()
    _, offset = scan_header(data)
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data[:offset])
    header = {}
    for _ in range(unpacker.read_map_header()):
        key = unpacker.unpack()
        if key == "state":
            break
        header[key] = unpacker.unpack()
    assert offset is not None
    return header, offset


def test_the_table_names_each_top_level_module_and_its_exact_bytes(tmp_path: Path) -> None:
    o = big_program()
    path = o.save(tmp_path / "p.msgpack").path
    header, offset = header_of(path)
    assert header["format_version"] == str(CURRENT_VERSION)
    t = header["module_table"]
    assert t["outlines"] == [table.outline_of(m) for m in o.to_state()["modules"]]
    assert t["outlines"][0]["demos"] == 30 and t["outlines"][1]["modules"][1]["demos"] == 5  # nested: outlined too
    data = path.read_bytes()
    state = o.to_state()
    assert [row[0] for row in t["modules"]] == ["first", "qa"]
    for row, entry in zip(t["modules"], state["modules"]):
        _, start, length, checksum = row
        raw = data[offset + start:offset + start + length]
        assert raw == _engine.packb(entry, canonical=True)  # an independent check: the canonical bytes
        assert checksum == "xxh3-128:" + _engine.xxh3_128(raw).hex()
    a, b = t["span"]
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(data[offset:offset + a] + data[offset + b:])
    n = unpacker.read_map_header()
    rest = {unpacker.unpack(): unpacker.unpack() for _ in range(n - 1)}  # the span holds the "modules" entry
    assert rest == {k: v for k, v in state.items() if k != "modules"}
    span = msgpack.Unpacker(raw=False)
    span.feed(data[offset + a:offset + b])
    assert list(span) == ["modules", state["modules"]]  # the span is the "modules" entry, key and value
    assert "xxh3-128:" + _engine.xxh3_128(data[offset:offset + a] + data[offset + b:]).hex() == t["rest"]


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(program=programs())
def test_state_chunks_are_the_canonical_encoding(program: ds.Program) -> None:
    state = program.to_state()
    chunks, t = table.state_chunks(state, "program")
    assert b"".join(chunks) == _engine.packb(state, canonical=True)
    assert t is not None and [r[0] for r in t["modules"]] == [m["name"] for m in state["modules"]]


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(program=programs(), touch=st.integers(0, 3))
def test_lazy_and_eager_loads_are_equal(program: ds.Program, touch: int,
                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    path = program.save(tmp_path_factory.mktemp("lazy") / "p.msgpack").path
    eager = ds.load(path)
    lazy = ds.load(path, lazy=True)
    names = list(eager.modules)
    if names:  # touch one module first: the others stay pending and must still compare equal
        getattr(lazy, names[touch % len(names)])
    assert lazy == eager and lazy.to_state() == program.to_state()
    assert [n for n, _ in lazy.named_modules()] == [n for n, _ in eager.named_modules()]
    for name in names:
        assert ds.load_module(path, name).to_state() == eager.get_module(name).to_state()


def test_a_lazy_program_decodes_a_module_on_first_touch_only(tmp_path: Path) -> None:
    o = big_program()
    path = o.save(tmp_path / "p.msgpack").path
    p = ds.load(path, lazy=True)
    assert type(p) is Outer and repr(p) == "Outer(modules=['first', 'qa'])"
    assert "first" not in vars(p) and "qa" not in vars(p)  # pending, nothing decoded
    assert p.configuration == {"seed": 3} and p.custom_data == {"blob": b"\x00\xff"}
    assert p.first.demos[29]["summary"] == "s" * 29
    assert "first" in vars(p) and "qa" not in vars(p)
    assert p.get_module("qa.answer").demos[4]["answer"] == "4"
    assert "qa" in vars(p)
    assert p == o


def test_a_lazy_program_saves_copies_and_changes_like_an_eager_one(tmp_path: Path) -> None:
    o = big_program()
    path = o.save(tmp_path / "p.msgpack").path
    p = ds.load(path, lazy=True)
    assert copy.deepcopy(p) == o and pickle.loads(pickle.dumps(ds.load(path, lazy=True))) == o
    assert p.copy() == o
    p2 = ds.load(path, lazy=True)
    del p2.qa  # never built: removed all the same
    assert list(p2.modules) == ["first"]
    p3 = ds.load(path, lazy=True)
    p3.first = ds.Predict("a -> b")  # replaced before it was ever decoded
    assert p3.first.signature == ds.Predict("a -> b").signature
    again = p3.save(tmp_path / "again.msgpack").path  # saving forces the rest
    back = ds.load(again)
    assert back.qa == o.qa and back.first.to_state() == ds.Predict("a -> b").to_state()
    assert Outer.load(path, lazy=True) == o and ds.Program.load(path, lazy=True) == o


def test_load_module_reads_one_module_or_a_nested_one(tmp_path: Path) -> None:
    o = big_program()
    path = o.save(tmp_path / "p.msgpack").path
    assert ds.load_module(path, "qa.answer").to_state() == o.qa.answer.to_state()
    assert ds.Program.load_module(path, "first").to_state() == o.first.to_state()
    nested = ds.load_module(path, "qa")
    assert isinstance(nested, QA) and nested == o.qa
    with pytest.raises(ds.UnknownModuleError, match="no module 'missing'"):
        ds.load_module(path, "missing")
    with pytest.raises(ds.UnknownModuleError):
        ds.load_module(path, "first.deeper")


@pytest.mark.parametrize("save", [dict(format="json"), dict(format="yaml")])
def test_files_without_a_table_load_eagerly_with_lazy_true(save: dict, tmp_path: Path) -> None:
    o = sample_program()
    key = save.get("key")
    path = o.save(tmp_path / "p", **save).path
    p = ds.load(path, key=key, lazy=True)
    assert "answer" in vars(p) and p == o  # built at once
    assert ds.load_module(path, "answer", key=key).to_state() == o.answer.to_state()


@pytest.mark.parametrize("name", ["v2_0_0.msgpack", "v2_1_0.msgpack", "v2_1_0.msgpack.zst", "v2_2_0.msgpack.zst"])
def test_older_and_compressed_vectors_load_eagerly_with_lazy_true(name: str) -> None:
    eager = ds.load(VECTORS / name)
    lazy = ds.load(VECTORS / name, lazy=True)
    assert lazy == eager and all(n in vars(lazy) for n in lazy.modules)
    first = next(iter(eager.modules))
    assert ds.load_module(VECTORS / name, first).to_state() == eager.get_module(first).to_state()


def test_the_2_2_0_vector_opens_lazily() -> None:
    p = ds.load(VECTORS / "v2_2_0.msgpack", lazy=True)
    assert not any(n in vars(p) for n in p._modules)
    assert p == ds.load(VECTORS / "v2_2_0.msgpack")


def test_migrate_and_convert_add_the_table(tmp_path: Path) -> None:
    path = tmp_path / "old.msgpack"
    shutil.copy(VECTORS / "v2_1_0.msgpack", path)
    res = ds.migrate(path)
    assert (str(res.from_version), str(res.to_version), res.changed) == ("2.1.0", str(CURRENT_VERSION), True)
    assert "module_table" in header_of(path)[0]
    p = ds.load(path, lazy=True)
    assert not any(n in vars(p) for n in p._modules) and p == ds.load(res.backup)
    from click.testing import CliRunner

    from desiru.cli.app import cli

    out = tmp_path / "converted.msgpack"
    r = CliRunner().invoke(cli, ["convert", str(VECTORS / "v2_0_0.msgpack"), str(out)])
    assert r.exit_code == 0, r.output
    assert "module_table" in header_of(out)[0]


def flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_damaged_module_is_found_on_first_touch_and_by_verify(tmp_path: Path) -> None:
    o = big_program()
    path = o.save(tmp_path / "p.msgpack").path
    header, offset = header_of(path)
    _, start, length, _ = header["module_table"]["modules"][0]  # "first"
    flip(path, offset + start + length // 2)  # inside a demo's text
    p = ds.load(path, lazy=True)  # the header, table and the program's own fields are intact
    assert p.qa == o.qa  # another module still loads
    with pytest.raises(ds.CorruptDataError, match="module 'first': checksum mismatch") as info:
        p.first  # noqa: B018
    assert info.value.path == str(path) and info.value.offset == offset + start
    with pytest.raises(ds.CorruptDataError, match="module 'first'"):
        ds.load_module(path, "first")
    with pytest.raises(ds.CorruptDataError, match="module 'first'"):
        load_document(path)  # an eager, verifying load (what `desiru verify` runs)
    from click.testing import CliRunner

    from desiru.cli.app import cli

    r = CliRunner().invoke(cli, ["verify", str(path)])
    assert r.exit_code == 1 and "module 'first'" in r.output


def test_damage_to_the_program_fields_or_the_header_is_found_on_open(tmp_path: Path) -> None:
    o = big_program()
    path = o.save(tmp_path / "p.msgpack").path
    header, offset = header_of(path)
    a = header["module_table"]["span"][0]
    data = path.read_bytes()
    at = data.index(b"seed", offset, offset + a)  # the program's configuration
    flip(path, at)
    with pytest.raises(ds.CorruptDataError, match="own fields"):
        ds.load(path, lazy=True)
    path.write_bytes(data)
    at = data.index(b"first")  # the first module's name in the table: under header_checksum
    flip(path, at)
    with pytest.raises(ds.CorruptDataError, match="header checksum"):
        ds.load(path, lazy=True)


def test_a_table_that_does_not_chain_its_modules_is_refused() -> None:
    good = {"span": [10, 30], "rest": "xxh3-128:00", "modules": [["a", 10 + 8 + 1, 11, "xxh3-128:00"]]}
    assert table.parse(good, 40, None).entries[0].name == "a"
    for bad in ({**good, "span": [10, 50]},
                {**good, "modules": [["a", 5, 11, "xxh3-128:00"]]},
                {**good, "modules": [["a", 19, 5, "xxh3-128:00"], ["a", 24, 6, "xxh3-128:00"]]},
                {**good, "modules": [["a", 19, 11, "sha256:00"]]},
                {**good, "extra": 1}, [1, 2]):
        with pytest.raises(ds.CorruptDataError, match="module table"):
            table.parse(bad, 40, "f.msgpack")


def test_inspect_lists_from_the_table_and_says_what_it_did_not_check(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from desiru.cli.app import cli

    o = big_program()
    mapped = o.save(tmp_path / "p.msgpack").path
    full = o.save(tmp_path / "p.json").path  # no table: a full, verifying read
    framed = o.save(tmp_path / "p.msgpack", compress="zstd").path
    runner = CliRunner()
    a = json.loads(runner.invoke(cli, ["inspect", str(mapped), "--json"]).output)
    b = json.loads(runner.invoke(cli, ["inspect", str(full), "--json"]).output)
    c = json.loads(runner.invoke(cli, ["inspect", str(framed), "--json"]).output)
    assert a["modules"] == b["modules"] == c["modules"] and a["demos"] == b["demos"] == c["demos"] == 35
    assert a["checksum"] == b["checksum"] == c["checksum"]
    for shown, path in ((a, mapped), (c, framed)):
        assert shown["checksum_ok"] is None and shown["sha256"] == _engine.sha256(path.read_bytes()).hex()  # small
        assert shown["checked"] == ["header checksum", "module table", "the program's own fields"]
        assert "desiru verify" in shown["not_checked"]
    assert b["checksum_ok"] is True and b["sha256"] == _engine.sha256(full.read_bytes()).hex()
    assert (a["size"], c["size"], c["compression"]) == (mapped.stat().st_size, framed.stat().st_size, "zstd")
    assert (a["configuration"], a["metadata"], a["class"]) == (b["configuration"], b["metadata"], b["class"])
    header, offset = header_of(mapped)
    _, start, length, _ = header["module_table"]["modules"][1]  # "qa"
    flip(mapped, offset + start + length - 3)
    r = runner.invoke(cli, ["inspect", str(mapped)])  # the modules are not read: it lists them, says so
    assert r.exit_code == 0 and "not checked here" in r.output and "desiru verify" in r.output
    r = runner.invoke(cli, ["verify", str(mapped)])
    assert r.exit_code == 1 and "module 'qa'" in r.output


def test_inspect_hashes_no_large_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    from desiru.cli import inspect
    from desiru.cli.app import cli

    path = big_program().save(tmp_path / "p.msgpack").path
    monkeypatch.setattr(inspect, "SHA256_LIMIT", path.stat().st_size - 1)  # as if the file were large
    shown = json.loads(CliRunner().invoke(cli, ["inspect", str(path), "--json"]).output)
    assert shown["sha256"] is None and shown["demos"] == 35
    r = CliRunner().invoke(cli, ["inspect", str(path)])
    assert "not computed" in r.output and "sha256sum" in r.output


def test_inspect_of_a_2_2_0_table_reads_and_checks_each_module() -> None:
    import json

    from click.testing import CliRunner

    from desiru.cli.app import cli

    r = CliRunner().invoke(cli, ["inspect", str(VECTORS / "v2_2_0.msgpack"), "--json"])
    shown = json.loads(r.output)
    assert shown["checked"][-1] == "every module's checksum" and shown["format_version"] == "2.2.0"
    eager = ds.load(VECTORS / "v2_2_0.msgpack")
    assert [m["path"] for m in shown["modules"]] == [n for n, _ in eager.named_modules()]


def test_a_forged_outline_is_refused_by_a_verifying_load(tmp_path: Path) -> None:
    from desiru.serialization import envelope
    from desiru.serialization.documents import msgpack_parts

    state = big_program().to_state()
    chunks, start, t, _ = msgpack_parts(state, "program", None)
    t["outlines"][0]["demos"] = 3  # what a listing would show; the header checksum is computed over it
    tree = envelope.build(state, "program", module_table=t)
    del tree["state"]
    head = msgpack.packb(tree, use_bin_type=True)[len(table.map_header(len(tree))):]
    path = tmp_path / "forged.msgpack"
    path.write_bytes(b"".join([table.map_header(len(tree) + 1), head, _engine.packb("state"), *chunks[start:]]))
    assert ds.load(path, lazy=True).first.demos[29]["summary"] == "s" * 29  # the modules themselves are intact
    with pytest.raises(ds.CorruptDataError, match="module 'first': the module table's outline differs"):
        load_document(path)


def test_a_lazy_program_commits_to_a_journal_like_an_eager_one(tmp_path: Path) -> None:
    o = big_program()
    path = o.save(tmp_path / "p.msgpack").path
    p = ds.load(path, lazy=True)
    with ds.Journal.open(tmp_path / "j.journal") as j:
        j.commit(p)  # "first" and "qa" still pending
        p.first.demos.append(ds.Example(text="new", summary="n"))
        j.commit(p, tag="after")
        assert j.replay(tag="after") == p
    o.first.demos.append(ds.Example(text="new", summary="n"))
    assert p == o
