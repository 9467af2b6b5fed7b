"""A large plain program file is read module by module from a map (desiru.serialization.streamed):
the same state as a whole read, the same checks, progress by bytes, and no whole-file buffer."""

from __future__ import annotations

from pathlib import Path

import pytest

import desiru as ds
from desiru.serialization import documents, lazy, streamed
from tests.programs import QA, sample_program


class Other(ds.Program):
    __desiru_name__ = "tests.streamed.Other"


@pytest.fixture
def stream_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streamed, "STREAM_BYTES", 0)  # every program file takes the streamed path
    monkeypatch.setattr(streamed, "HASH_STEP", 4096)  # and is hashed in many steps


def big(n: int = 400) -> ds.Program:
    return ds.Program(**{f"m{i}": ds.Predict("question -> answer", temperature=0.1 * i,
                                             demos=[{"question": f"q{i}-{k}", "answer": "a" * k} for k in range(n)])
                         for i in range(4)}, sub=sample_program())


def whole(path: Path) -> documents.Document:
    """The document read the usual way (one buffer, one decode)."""
    return documents.deserialize_document(path.read_bytes(), path=str(path))


def test_a_streamed_read_gives_the_document_a_whole_read_gives(tmp_path: Path, stream_all: None) -> None:
    program = big()
    path = program.save(tmp_path / "p.msgpack").path
    seen: list[tuple[int, int]] = []
    doc = streamed.read(path, progress=lambda done, total: seen.append((done, total)))
    assert doc is not None
    usual = whole(path)
    assert (doc.kind, doc.state, doc.version, doc.header, doc.format, doc.compression, doc.encrypted, doc.path) == \
        (usual.kind, usual.state, usual.version, usual.header, "msgpack", None, False, str(path))
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1] > 0 and len(seen) >= 2
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    # every loader goes through it
    assert ds.load(path) == program
    qa = sample_program()
    qa.save(tmp_path / "qa.msgpack")
    loaded = QA.load(tmp_path / "qa.msgpack")
    assert type(loaded) is QA and loaded == qa
    with pytest.raises(ds.UnknownClassError):
        Other.load(tmp_path / "qa.msgpack")  # the class check of the usual path


def test_small_files_and_files_without_a_table_are_read_whole(tmp_path: Path) -> None:
    program = big(5)
    program.save(tmp_path / "p.msgpack")
    assert streamed.read(tmp_path / "p.msgpack") is None  # below STREAM_BYTES
    program.save(tmp_path / "p.json")
    assert streamed.read(tmp_path / "p.json") is None
    seen: list[tuple[int, int]] = []
    documents.load_document(tmp_path / "p.json", progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, seen[0][1]) and seen[-1][0] == seen[-1][1] == (tmp_path / "p.json").stat().st_size


def _flip(path: Path, at: int, value: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[at] = data[at] ^ 0x01 if value is None else value
    path.write_bytes(bytes(data))


def test_a_damaged_module_is_named_as_by_a_whole_read(tmp_path: Path, stream_all: None) -> None:
    path = big().save(tmp_path / "p.msgpack").path
    doc = lazy.open_mapped(path)
    assert doc is not None
    entry = doc.table.entries[2]
    at = doc.state_offset + entry.offset + entry.length // 2
    doc.data.close()
    _flip(path, at)
    assert streamed.read(path) is None  # refused: the whole read says why
    with pytest.raises(ds.CorruptDataError, match=f"module '{entry.name}': checksum mismatch") as info:
        ds.load(path)
    assert info.value.path == str(path)


def test_the_whole_checksum_covers_bytes_outside_the_modules(tmp_path: Path, stream_all: None) -> None:
    path = big().save(tmp_path / "p.msgpack").path
    doc = lazy.open_mapped(path)
    assert doc is not None
    rest_start, _ = doc.table.span
    at = doc.state_offset + rest_start - 1  # the last byte before the "modules" entry: in the rest
    doc.data.close()
    _flip(path, at)
    doc = lazy.open_mapped(path)
    assert doc is not None
    with pytest.raises(ds.CorruptDataError, match="content checksum mismatch"):
        streamed.check_whole(doc)
    doc.data.close()
    assert streamed.read(path) is None
    with pytest.raises(ds.CorruptDataError):
        ds.load(path)


def test_framed_and_older_documents_are_read_whole(tmp_path: Path, stream_all: None) -> None:
    program = big()
    path = program.save(tmp_path / "p.msgpack", compress="zstd").path
    assert streamed.read(path) is None and ds.load(path) == program
