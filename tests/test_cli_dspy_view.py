"""The CLI on programs converted from dspy: dspy class names, demo tables without adapter bookkeeping."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

dspy = pytest.importorskip("dspy")

import desiru as ds  # noqa: E402
from desiru.cli import cli  # noqa: E402
from desiru.cli.dspy_view import short_class  # noqa: E402
from desiru.interop import dspy as dd  # noqa: E402


class QA(dspy.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rewrite = dspy.Predict("question -> search_query")
        self.answer = dspy.ChainOfThought("question, context -> answer")


def run(*args: object) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    qa = QA()
    qa.answer.predict.demos = [
        dspy.Example(question="q0", context="c0", answer="a0").with_inputs("question", "context"),
        {"question": "q1", "context": "c1", "answer": "a1"},
    ]
    dd.save(qa, tmp_path / "qa.msgpack")
    return tmp_path / "qa.msgpack"


def test_inspect_shows_dspy_class_names(saved: Path) -> None:
    out = run("inspect", saved)
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith(("rewrite", "answer"))}
    assert rows == {"rewrite": "dspy.Predict", "answer.predict": "dspy.ChainOfThought"}
    assert "desiru.Predict" not in out


def test_demo_table_hides_the_input_keys_bookkeeping(saved: Path) -> None:
    out = run("inspect", saved, "--module", "answer.predict")
    assert "answer.predict  dspy.Predict" in out
    header = next(line for line in out.splitlines() if line.startswith("#"))
    assert header.split() == ["#", "question", "context", "answer"] or set(header.split()) == {
        "#", "question", "context", "answer"}
    assert "_dspy_input_keys" not in out
    assert "q0" in out and "a1" in out
    # the data is all there in --json (what a script reads)
    data = json.loads(run("inspect", saved, "--module", "answer.predict", "--json"))
    assert data["demos"][0]["_dspy_input_keys"] == ["context", "question"]


def test_native_programs_keep_desiru_class_names(tmp_path: Path) -> None:
    ds.Program(answer=ds.Predict("question -> answer")).save(tmp_path / "p.msgpack")
    assert "desiru.Predict" in run("inspect", tmp_path / "p.msgpack")
    assert short_class("dspy.predict.chain_of_thought.ChainOfThought") == "dspy.ChainOfThought"
    assert short_class("__main__.QA") == "__main__.QA"
