"""A large plain program file loads module by module from a map (desiru.files.load_streamed):
the same program as the usual path, the same checks in the same order, and no whole-file buffer."""

from __future__ import annotations

from pathlib import Path

import pytest

import desiru as ds
from desiru import files
from desiru.serialization import lazy
from desiru.serialization.documents import load_document
from tests.programs import QA, sample_program


class Other(ds.Program):
    __desiru_name__ = "tests.streamed.Other"


@pytest.fixture
def stream_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "STREAM_BYTES", 0)  # every program file takes the streamed path
    monkeypatch.setattr(files, "HASH_STEP", 4096)  # and is hashed in many steps


def big(n: int = 400) -> ds.Program:
    return ds.Program(**{f"m{i}": ds.Predict("question -> answer", temperature=0.1 * i,
                                             demos=[{"question": f"q{i}-{k}", "answer": "a" * k} for k in range(n)])
                         for i in range(4)}, sub=sample_program())


def test_streamed_load_gives_the_program_the_usual_path_gives(tmp_path: Path, stream_all: None) -> None:
    program = big()
    program.save(tmp_path / "p.msgpack")
    streamed = files.load_streamed(tmp_path / "p.msgpack", ds.Program)
    assert streamed is not None and streamed == program
    assert streamed == files.from_document(ds.Program, load_document(tmp_path / "p.msgpack"))
    assert ds.load(tmp_path / "p.msgpack") == program
    qa = sample_program()
    qa.save(tmp_path / "qa.msgpack")
    loaded = QA.load(tmp_path / "qa.msgpack")
    assert type(loaded) is QA and loaded == qa
    with pytest.raises(ds.UnknownClassError):
        Other.load(tmp_path / "qa.msgpack")  # the class check of the usual path


def test_small_files_and_files_without_a_table_take_the_usual_path(tmp_path: Path) -> None:
    program = big(5)
    program.save(tmp_path / "p.msgpack")
    assert files.load_streamed(tmp_path / "p.msgpack", ds.Program) is None  # below STREAM_BYTES
    program.save(tmp_path / "p.json")
    assert files.load_streamed(tmp_path / "p.json", ds.Program) is None


def test_a_damaged_module_is_named_before_anything_is_built(tmp_path: Path, stream_all: None) -> None:
    path = tmp_path / "p.msgpack"
    big().save(path)
    doc = lazy.open_mapped(path)
    assert doc is not None
    entry = doc.table.entries[2]
    at = doc.state_offset + entry.offset + entry.length // 2
    doc.data.close()
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ds.CorruptDataError, match=f"module '{entry.name}': checksum mismatch") as info:
        ds.load(path)
    assert info.value.path == str(path)


def test_bytes_no_module_checksum_covers_fail_the_whole_checksum(tmp_path: Path, stream_all: None) -> None:
    path = tmp_path / "p.msgpack"
    big().save(path)
    doc = lazy.open_mapped(path)
    assert doc is not None
    at = doc.state_offset + doc.table.entries[0].offset - 1  # the header of the modules array
    doc.data.close()
    data = bytearray(path.read_bytes())
    assert data[at] == 0x95  # five modules
    data[at] = 0x94
    path.write_bytes(bytes(data))
    doc = lazy.open_mapped(path)
    assert doc is not None
    with pytest.raises(ds.CorruptDataError, match="content checksum mismatch"):
        files._check_whole(doc)
    doc.data.close()
    assert files.load_streamed(path, ds.Program) is None  # refused: the usual path then says why
    with pytest.raises(ds.CorruptDataError):
        ds.load(path)
