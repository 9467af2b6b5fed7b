"""docs/cli.md runs: every command of its tour is run again, in order, in a fresh folder, and must
exit as the page shows (0 unless an ``echo $?`` line says otherwise), so the tour never rots."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

DOC = Path(__file__).parent.parent / "docs" / "cli.md"


def tour() -> list[tuple[str, int, str]]:
    """(command, documented exit code, documented output) for each ``$ cmd`` of the console blocks."""
    steps: list[tuple[str, int, str]] = []
    for block in re.findall(r"```console\n(.*?)```", DOC.read_text(), flags=re.S):
        current: list[str] | None = None
        for line in block.splitlines():
            if line.startswith("$ echo $?"):
                current = None
                steps[-1] = (steps[-1][0], -1, steps[-1][2])  # the next line holds the code
            elif line.startswith("$ "):
                steps.append((line[2:], 0, ""))
                current = []
            elif steps and steps[-1][1] == -1:
                steps[-1] = (steps[-1][0], int(line), steps[-1][2])
            elif current is not None:
                steps[-1] = (steps[-1][0], steps[-1][1], steps[-1][2] + line + "\n")
    return steps


def test_the_tour_parses() -> None:
    steps = tour()
    commands = [c for c, _, _ in steps]
    assert commands[0] == "desiru --help" and "desiru demo runs" in commands
    assert any(code == 1 for _, code, _ in steps) and any(code == 2 for _, code, _ in steps)


def test_every_tour_command_exits_as_documented(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DESIRU_DEBUG"}
    env["COLUMNS"] = "100"
    for command, code, documented in tour():
        if command.startswith("export "):
            name, _, value = command[len("export "):].partition("=")
            env[name] = subprocess.run(["bash", "-c", f"echo {value}"], capture_output=True, text=True,
                                       env=env).stdout.strip()
            continue
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=120)
        if "| head" not in command:
            assert result.returncode == code, (command, result.returncode, result.stdout, result.stderr)
        if code == 2:
            assert result.stderr.startswith("error:"), (command, result.stderr)
        else:
            assert "error:" not in result.stderr, (command, result.stderr)
        if documented and command.startswith("desiru") and code != 2:
            # the first line of the documented output is the first line of the real one, up to spaces
            # and numbers (times, sizes and the names of kept files vary from run to run)
            def shape(text: str) -> list[str]:
                return re.sub(r"\d+", "#", text.splitlines()[0]).split()

            assert shape(result.stdout) == shape(documented), (command, result.stdout)
