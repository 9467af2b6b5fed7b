"""Every Python block of README.md and docs/*.md runs as written, in an empty folder, so none rots.

A block runs on its own (a new user copies one block into a fresh directory), except a block whose
first line says ``# continued``: it is a later step of a tutorial and runs after all the page's
blocks above it. The quick benchmark runs must leave docs/benchmarks.md alone.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import desiru as ds

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks() -> list[tuple[str, int, str]]:
    """(page, line, code to run) for every python block, continued blocks with their predecessors."""
    out = []
    for page in PAGES:
        text = page.read_text()
        before: list[str] = []
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            code = match.group(1)
            line = text[: match.start()].count("\n") + 2
            if code.startswith("# continued"):  # a later step of the page: after every block above it
                assert before, f"{page.name}:{line} continues nothing"
                run = "\n".join([*before, code])
            else:
                run = code
            before.append(code)
            out.append((page.relative_to(ROOT).as_posix(), line, run))
    return out


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(Path(ds.__file__).resolve().parent.parent)}
    env.pop("DESIRU_DEBUG", None)
    return env


def test_there_are_blocks_to_run() -> None:
    pages = {page for page, _, _ in blocks()}
    assert {"README.md", "docs/VERSIONING.md", "docs/journal.md", "docs/encryption.md", "docs/dspy.md"} <= pages


@pytest.mark.parametrize(("page", "line", "code"), blocks(), ids=[f"{p}:{n}" for p, n, _ in blocks()])
def test_python_block_runs_in_an_empty_folder(tmp_path: Path, page: str, line: int, code: str,
                                             request: pytest.FixtureRequest) -> None:
    if "import dspy" in code:
        pytest.importorskip("dspy")
    env = _env()
    if '"pg:' in code or "postgresql://" in code:  # a PostgreSQL example runs on the tests' own server,
        env["DESIRU_PG_URL"] = request.getfixturevalue("pg_url")  # in a journal of its own
        code = code.replace("qa-run", f"qa-run-{page.replace('/', '-')}-{line}")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, f"{page}:{line}\n{result.stderr}"


def test_the_readme_example_writes_what_it_says(tmp_path: Path) -> None:
    code = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[0]
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), check=True, timeout=300)
    assert (tmp_path / "qa.msgpack.zst").exists() and (tmp_path / "runs" / "qa.journal").is_dir()


@pytest.mark.skipif(os.environ.get("DESIRU_PURE_PYTHON") == "1", reason="the scripts, not the engine: run once")
@pytest.mark.parametrize("bench", ["bench_codec.py", "bench_crypto.py", "bench_diff.py", "bench_documents.py"])
def test_quick_benchmark_runs_leave_the_benchmark_page_alone(bench: str) -> None:
    page = ROOT / "docs" / "benchmarks.md"
    before = page.read_bytes()
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / bench), "--quick"], cwd=ROOT, env=_env(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert page.read_bytes() == before, f"{bench} --quick rewrote docs/benchmarks.md"


def test_make_demo_reruns_into_an_ignored_folder(tmp_path: Path) -> None:
    recipe = re.search(r"^demo:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no demo target"
    command = recipe.group(1).strip()
    folder = command.split()[2]
    for _ in range(2):  # `make demo` twice: the second run starts over instead of failing
        result = subprocess.run(["bash", "-c", f"{command} --trials 3 --dev 2 --train 4"], cwd=tmp_path, env=_env(),
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / folder / "best.json").exists()
    ignored = (ROOT / ".gitignore").read_text().split()
    assert f"/{folder}/" in ignored and "/desiru-demo/" in ignored  # make demo's folder, and desiru demo's default
