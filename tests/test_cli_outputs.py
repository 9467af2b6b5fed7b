"""Outputs are never replaced by accident nor misnamed: --force to overwrite, a name that contradicts
--compress/--format is refused, and a refused demo says so before it prints anything else."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from programs import sample_program

import desiru as ds
from desiru.cli import cli


def run(*args: object) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def only_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


@pytest.fixture
def qa(tmp_path: Path) -> Path:
    return sample_program().save(tmp_path / "qa.json").path


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "qa.journal"
    with ds.Journal.open(path) as j:
        j.commit(sample_program(), tag="best")
    return path


def test_writing_commands_refuse_to_overwrite_without_force(qa: Path, journal: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    out.write_text("precious")
    commands = [("convert", qa, out), ("replay", journal, "-o", out), ("export-module", qa, "answer", out)]
    for args in commands:
        only_error(run(*args), "the output exists", "--force")
        assert out.read_text() == "precious"
    for args in commands:
        assert run(*args, "--force").exit_code == 0
        assert out.read_text() != "precious"
        out.write_text("precious")


def test_import_module_with_output_refuses_to_overwrite(qa: Path, tmp_path: Path) -> None:
    sample_program().export_module("answer", tmp_path / "answer.json")
    out = tmp_path / "merged.json"
    out.write_text("precious")
    only_error(run("import-module", qa, tmp_path / "answer.json", "--name", "again", "-o", out), "--force")
    assert out.read_text() == "precious"
    assert run("import-module", qa, tmp_path / "answer.json", "--name", "again", "-o", out, "--force").exit_code == 0
    assert "again" in ds.load(out).modules


@pytest.mark.parametrize(("name", "options", "needle"), [
    ("out.msgpack.zst", ["--compress", "gzip"], "zstd-compressed"),
    ("out.json.gz", ["--compress", "zstd"], "gzip-compressed"),
    ("out.msgpack.zst", ["--compress", "none"], "zstd-compressed"),
    ("out.json", ["--compress", "zstd"], "not compressed"),
    ("out.msgpack", ["--format", "json"], "says msgpack"),
])
def test_a_name_that_contradicts_the_options_is_refused(qa: Path, tmp_path: Path, name: str,
                                                         options: list[str], needle: str) -> None:
    only_error(run("convert", qa, tmp_path / name, *options), "contradicts", needle)
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(("name", "options", "layers"), [
    ("out.bin", ["--compress", "gzip"], ("msgpack", "gzip")),
    ("out.json.gz", ["--compress", "gzip"], ("json", "gzip")),
    ("out.yaml", ["--format", "yaml"], ("yaml", None)),
])
def test_options_that_agree_with_the_name(qa: Path, tmp_path: Path, name: str, options: list[str],
                                          layers: tuple[str, str | None]) -> None:
    assert run("convert", qa, tmp_path / name, *options).exit_code == 0
    doc = ds.serialization.documents.load_document(tmp_path / name)
    assert (doc.format, doc.compression) == layers


def test_a_refused_demo_prints_nothing_before_the_error(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    assert run("demo", folder, "--trials", "3", "--dev", "2", "--train", "4").exit_code == 0
    before = sorted(p.name for p in folder.iterdir())
    again = run("demo", folder, "--trials", "3", "--dev", "2", "--train", "4")
    only_error(again, "a demo journal is already here", "--force")
    assert "desiru demo" not in again.stdout and sorted(p.name for p in folder.iterdir()) == before
    assert run("demo", folder, "--trials", "3", "--dev", "2", "--train", "4", "--force").exit_code == 0
