"""docs/dspy.md runs: its python blocks execute in order, in one namespace, in a temp folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import desiru as ds

dspy = pytest.importorskip("dspy")

DOC = Path(__file__).resolve().parent.parent / "docs" / "dspy.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_dspy_doc_has_examples() -> None:
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    assert any("journal.commit(candidate" in b for b in blocks)
    assert any("into=QA()" in b for b in blocks)


def test_dspy_doc_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "dspy_doc"}
    try:
        for i, block in enumerate(python_blocks(DOC.read_text(encoding="utf-8"))):
            exec(compile(block, f"{DOC.name}[block {i}]", "exec"), namespace)
    finally:
        dspy.configure(lm=None, callbacks=[])  # the tracked-run example configures an LM
    # what the example left behind: a journal with every candidate, a deployable file, DSPy files
    assert namespace["best_tag"] == "k8"
    assert (tmp_path / "runs" / "qa.journal").exists()
    assert (tmp_path / "qa.msgpack.zst").exists()
    assert (tmp_path / "qa_again.json").read_bytes() == (tmp_path / "qa_dspy.json").read_bytes()
    # the tracked run: crashed, resumed with fewer metric calls, best replayed and served
    with ds.Journal.open(tmp_path / "runs" / "arith.journal") as j:
        trials = [t for t in j.trials() if t.params.get("run") == "search-1"]
        assert [t.params.get("role") for t in trials].count("student") == 1  # the rerun reused the root
        assert sum(t.score is not None for t in trials) == 7  # each candidate scored once, across both runs
    # an uninterrupted run calls the metric 77 times: 7 candidates x 10 examples, and 7 while bootstrapping
    assert namespace["metric_calls"] == 77 - 40
    assert (tmp_path / "arith.msgpack").exists()
