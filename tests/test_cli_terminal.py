"""Terminal output: log and diff rows fit the terminal (--full shows whole values), inspect lists
a journal's many tags as a count and the newest few (--all: every one), and shell completion
offers event types, tag names and journal points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from programs import sample_program

import desiru as ds
from desiru.cli import cli

LONG = "a long instruction that goes on " * 8


def run(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "qa.journal"
    p = sample_program()
    with ds.Journal.open(path) as j:
        j.commit(p, tag="baseline")
        for i in range(12):
            p.answer.demos.append(ds.Example(question=f"{LONG} {i}?", context="c", reasoning="r", answer=str(i)))
            j.commit(p, tag=f"trial-{i:02d}")
    return path


def lines(result: Result) -> list[str]:
    assert result.exit_code in (0, 1), result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("columns", [80, 120])
def test_log_and_diff_rows_fit_the_terminal(journal: Path, columns: int) -> None:
    env = {"COLUMNS": str(columns)}
    for args in (("log", journal), ("diff", f"{journal}@tag:baseline", journal)):
        out = [line for line in lines(run(*args, env=env)) if not line.startswith(("---", "+++"))]  # paths stay whole
        assert max(len(line) for line in out) <= columns, [line for line in out if len(line) > columns]
        assert any(line.endswith("…") for line in out)
        whole = lines(run(*args, "--full", env=env))
        assert any(LONG.strip() in line for line in whole)  # the whole value, on one line
        assert max(len(line) for line in whole) > columns


def test_piped_rows_stay_whole_for_grep(journal: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run([sys.executable, "-m", "desiru", "log", str(journal), "--type", "DemoAdded"],
                            env={**env, "PYTHONPATH": str(Path(ds.__file__).parent.parent)},
                            capture_output=True, text=True, timeout=60)
    rows = result.stdout.splitlines()[1:]
    assert result.returncode == 0 and len(rows) == 12 and all("{question:" in row for row in rows)
    assert min(len(row) for row in rows) > 160  # not cut to any width: each row is one whole line


def test_inspect_shows_a_tag_count_and_the_newest(journal: Path) -> None:
    out = run("inspect", journal).stdout
    row = next(line for line in out.splitlines() if line.startswith("tags"))
    assert "13 tags; the newest 5:" in row and "trial-11@" in row and "trial-07@" in row
    assert "trial-06@" not in row and "baseline@" not in row and "--all" in row
    every = run("inspect", journal, "--all").stdout
    assert "tags; the newest" not in every
    assert all(f"{name}@" in every for name in ["baseline", *(f"trial-{i:02d}" for i in range(12))])
    assert len(ds.Journal.open(journal, readonly=True).tags()) == 13


def complete(words: str, env_extra: dict[str, str] | None = None) -> list[str]:
    parts = words.split(" ")
    env = {**os.environ, "PYTHONPATH": str(Path(ds.__file__).parent.parent), "_DESIRU_COMPLETE": "bash_complete",
           "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1), **(env_extra or {})}
    result = subprocess.run([sys.executable, "-m", "desiru"], env=env, capture_output=True, text=True, timeout=60)
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if "," in line]


def test_shell_completion_of_types_tags_and_points(journal: Path) -> None:
    assert complete(f"desiru log {journal} --type DemoR") == ["DemoRemoved"]
    assert set(complete(f"desiru log {journal} --type Dem")) >= {"DemoAdded", "DemoRemoved", "DemosReordered"}
    assert complete(f"desiru log {journal} --tag trial-1") == ["trial-10", "trial-11"]
    assert complete(f"desiru replay {journal} --tag base") == ["baseline"]
    assert complete(f"desiru log {journal} --from tag:base") == ["tag:baseline"]
    assert complete(f"desiru diff {journal}@tag:trial-0") == [f"{journal}@tag:trial-{i:02d}" for i in range(10)]
    assert complete(f"desiru inspect {journal}@h") == [f"{journal}@head"]
    assert complete("desiru ver") == ["verify"]
    assert complete(f"desiru log {journal} --tag x", {"PATH": os.environ.get("PATH", "")}) == []
