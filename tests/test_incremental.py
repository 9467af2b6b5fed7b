"""IncrementalSerializer: numbered, tagged checkpoints over a journal."""

from __future__ import annotations

from pathlib import Path

import pytest
from programs import sample_program

import desiru as ds
from desiru.serialization import IncrementalSerializer


def test_checkpoints_by_version_and_tag(tmp_path: Path) -> None:
    p = sample_program()
    states = []
    with IncrementalSerializer(tmp_path / "runs" / "qa") as ck:
        assert ck.checkpoints() == []
        for epoch in range(4):
            p.answer.parameters["epoch"] = epoch
            c = ck.save_checkpoint(p, tag=f"epoch_{epoch}" if epoch % 2 == 0 else None)
            states.append(p.to_state())
            assert c.version == epoch + 1
        same = ck.save_checkpoint(p)  # nothing changed: still a new checkpoint
        assert same.version == 5
        assert [c.version for c in ck.checkpoints()] == [1, 2, 3, 4, 5]
        assert [c.tag for c in ck.checkpoints()] == ["epoch_0", None, "epoch_2", None, None]
        assert ck.load_checkpoint(version=2).to_state() == states[1]
        assert ck.load_checkpoint(tag="epoch_2").to_state() == states[2]
        assert ck.load_checkpoint() == p
        with pytest.raises(ds.DesiruError, match="no checkpoint"):
            ck.load_checkpoint(version=9)
        with pytest.raises(ds.DesiruError, match="no checkpoint"):
            ck.load_checkpoint(tag="nope")
    # a new serializer on the same base path continues the numbering and reads what was saved
    again = IncrementalSerializer(tmp_path / "runs" / "qa")
    assert type(again.load_checkpoint(version=1)) is type(p)
    assert again.load_checkpoint(version=1).to_state() == states[0]
    p.metadata["later"] = True
    assert again.save_checkpoint(p, tag="late").version == 6
    again.close()
    assert (tmp_path / "runs" / "qa" / "checkpoints.journal").is_dir()


def test_checkpoints_store_only_changes(tmp_path: Path) -> None:
    p = sample_program()
    p.answer.demos = [ds.Example(question=f"q{i}" * 20, answer=f"a{i}" * 20) for i in range(200)]
    with IncrementalSerializer(tmp_path / "ck") as ck:
        ck.save_checkpoint(p)
        size_one = ck.path.stat().st_size + sum(f.stat().st_size for f in ck.path.rglob("*") if f.is_file())
        for i in range(10):
            p.answer.demos[i] = ds.Example(question=f"changed {i}", answer="x")
            ck.save_checkpoint(p)
        size_all = sum(f.stat().st_size for f in ck.path.rglob("*") if f.is_file())
    assert size_all < 1.5 * size_one


def test_load_without_saves(tmp_path: Path) -> None:
    ck = IncrementalSerializer(tmp_path / "empty")
    with pytest.raises(ds.DesiruError, match="no checkpoints"):
        ck.load_checkpoint()
    with pytest.raises(ds.DesiruError):
        ck.save_checkpoint("nope")  # type: ignore[arg-type]
    with pytest.raises(ds.DesiruError, match="not both"):
        ck.load_checkpoint(version=1, tag="x")
