"""The README's Python example runs as written, so it never rots."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_url: str) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README has no python example"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESIRU_PG_URL", pg_url)  # the PostgreSQL example runs on the tests' server
    (tmp_path / "runs").mkdir()
    for code in blocks:
        exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    assert (tmp_path / "qa.msgpack.zst").exists()
