"""Keys on the command line, as issue 15 met them: one --key-env for a mix of plain and encrypted
inputs, no prompt where a summary does, the current key asked and checked first, no prompt
without a terminal."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from programs import QA, sample_program

import desiru as ds
from desiru.cli import cli

KEY = "cd" * 32
OTHER = "ef" * 32


def run(*args: object, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=env, catch_exceptions=False)


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Pretend a person sits at a terminal; the prompts asked are recorded (and answered by input=)."""
    import click

    asked: list[str] = []
    real = click.prompt

    def prompt(text: str, *args: object, **kwargs: object) -> object:
        asked.append(text)
        return real(text, *args, **kwargs)

    monkeypatch.setattr("desiru.cli.keys.interactive", lambda: True)
    monkeypatch.setattr("desiru.cli.keys.click.prompt", prompt)
    return asked


def test_diff_plain_first_then_encrypted_uses_the_key(tmp_path: Path, terminal: list[str]) -> None:
    plain = sample_program().save(tmp_path / "plain.json").path
    changed = sample_program()
    changed.answer.parameters["temperature"] = 0.9
    enc = changed.save(tmp_path / "enc.msgpack", key=KEY).path
    result = run("diff", plain, enc, "--key-env", "K", env={"K": KEY})
    assert result.exit_code == 1, result.stderr  # different, and no prompt was needed
    assert "temperature" in result.stdout and terminal == []


def test_import_module_plain_program_encrypted_module(tmp_path: Path, terminal: list[str]) -> None:
    program = sample_program().save(tmp_path / "qa.json").path
    sample_program().export_module("answer", tmp_path / "answer.bin", key=KEY)
    result = run("import-module", program, tmp_path / "answer.bin", "--name", "again", "--key-env", "K",
                 env={"K": KEY})
    assert result.exit_code == 0, result.stderr
    assert terminal == [] and "again" in QA.load(program).modules


def test_inspect_encrypted_on_a_terminal_shows_the_key_id(tmp_path: Path, terminal: list[str]) -> None:
    doc = sample_program().save(tmp_path / "enc.bin", key=KEY).path
    result = run("inspect", doc)
    assert result.exit_code == 0, result.stderr
    assert terminal == [] and ds.crypto.key_id_of(KEY) in result.stdout and "--key-env" in result.stdout
    with ds.Journal.open(tmp_path / "secret.journal", key=KEY) as j:
        j.commit(sample_program())
    result = run("inspect", tmp_path / "secret.journal")
    assert result.exit_code == 0 and terminal == [] and ds.crypto.key_id_of(KEY) in result.stdout


@pytest.mark.parametrize("what", ["document", "journal"])
def test_rekey_asks_and_checks_the_current_key_first(tmp_path: Path, terminal: list[str], what: str) -> None:
    if what == "document":
        path = sample_program().save(tmp_path / "enc.bin", key=KEY).path
    else:
        path = tmp_path / "enc.journal"
        with ds.Journal.open(path, key=KEY) as j:
            j.commit(sample_program())
    before = {p: p.read_bytes() for p in ([path] if path.is_file() else path.rglob("*")) if p.is_file()}
    result = run("rekey", path, input=f"{OTHER}\n")  # a wrong current key: refused before the new one is asked
    assert result.exit_code == 2 and "key id" in result.stderr, result.stderr
    assert terminal == ["Current key"]
    assert {p: p.read_bytes() for p in before} == before
    terminal.clear()
    result = run("rekey", path, input=f"{KEY}\nnew phrase\nnew phrase\n")
    assert result.exit_code == 0, result.stderr
    assert terminal == ["Current key", "New key"]  # current first, then the new one (confirmed)


def test_convert_encrypt_without_a_terminal_fails_naming_the_options(tmp_path: Path) -> None:
    plain = sample_program().save(tmp_path / "plain.json").path
    out = tmp_path / "out.bin"
    result = run("convert", plain, out, "--encrypt", input="typed into a pipe\ntyped into a pipe\n")
    assert result.exit_code == 2
    assert "no terminal" in result.stderr and "--out-key-env" in result.stderr and "--key-env" in result.stderr
    assert "echo" not in result.stderr.lower() and not out.exists()
