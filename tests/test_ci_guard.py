"""In CI a skipped PostgreSQL or browser test fails the run (tests/conftest.py): a skip would hide a missing install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


def _run(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_guarded.py").write_text(
        "import pytest\n"
        "def test_needs_postgres(pg_url):\n    pytest.skip('no server')\n"
        "def test_plain():\n    pytest.skip('fine to skip')\n")
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(TESTS)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest",
                           "-o", "addopts=", str(tmp_path / "test_guarded.py")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_a_skipped_real_server_test_fails_in_ci(tmp_path: Path, pg_url: str) -> None:
    out = _run(tmp_path, "true")
    assert out.returncode == 1, out.stdout
    assert "test_needs_postgres was skipped in CI" in out.stdout and "1 failed, 1 skipped" in out.stdout


def test_outside_ci_it_is_a_skip(tmp_path: Path, pg_url: str) -> None:
    out = _run(tmp_path, "")
    assert out.returncode == 0 and "2 skipped" in out.stdout, out.stdout
