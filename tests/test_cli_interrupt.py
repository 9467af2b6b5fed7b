"""Ctrl-C: exit 130 (128 + SIGINT), one line, no traceback, and no half-written output file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from programs import sample_program

import desiru as ds
from desiru.cli import cli
from desiru.cli.app import EXIT_INTERRUPTED


def test_sigint_exits_130_without_a_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(ds.__file__).parent.parent)}
    env.pop("DESIRU_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "desiru", "demo", str(tmp_path / "run"), "--trials", "1000000"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "qa.journal").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the optimization loop
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_INTERRUPTED == 130, (out, err)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "Aborted" not in err
    assert err.strip().splitlines()[-1] == "interrupted"
    assert not (tmp_path / "run" / "best.json").exists()


def test_interrupt_while_writing_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = sample_program().save(tmp_path / "qa.json").path
    out = tmp_path / "out.msgpack.zst"

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)  # Ctrl-C arrives after the bytes are written, before rename
    result = CliRunner().invoke(cli, ["convert", str(src), str(out)], catch_exceptions=False)
    assert result.exit_code == 130 and result.stderr.strip() == "interrupted", result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qa.json"]  # no output, no temporary file


def test_ctrl_c_at_a_key_prompt_exits_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import click

    def prompt(*args: object, **kwargs: object) -> str:
        raise click.exceptions.Abort  # what click.prompt raises on Ctrl-C

    monkeypatch.setattr("desiru.cli.keys.interactive", lambda: True)
    monkeypatch.setattr("desiru.cli.keys.click.prompt", prompt)
    src = sample_program().save(tmp_path / "enc.bin", key="ab" * 32).path
    result = CliRunner().invoke(cli, ["convert", str(src), str(tmp_path / "out.json")], catch_exceptions=False)
    assert result.exit_code == 130 and "Aborted" not in result.output + result.stderr
    assert not (tmp_path / "out.json").exists()
