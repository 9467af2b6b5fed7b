"""Classes a script defines: saved from ``__main__``, loaded elsewhere with ``cls=``, and checked.

The scripts run as real processes, as a user runs ``python optimize.py`` then ``python serve.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import desiru as ds

OPTIMIZE = '''
import desiru as ds

class Triage(ds.Program):
    def __init__(self):
        super().__init__()
        self.classify = ds.Predict("ticket -> label")

if __name__ == "__main__":
    p = Triage()
    p.classify.demos.append(ds.Example(ticket="printer on fire", label="urgent"))
    p.save("best.json")
    with ds.Journal.open("runs/triage.journal") as j:
        j.commit(p, tag="best")
'''

SERVE = '''
import sys
import desiru as ds
from optimize import Triage

try:
    ds.load("best.json")
except ds.UnknownClassError as exc:
    print("by name:", exc)
p = ds.load("best.json", cls=Triage)
q = Triage.load("best.json")
with ds.Journal.open("runs/triage.journal", readonly=True) as j:
    r = j.replay(tag="best", cls=Triage)
assert type(p) is Triage and type(q) is Triage and type(r) is Triage
assert p == q == r and p.classify.demos[0]["label"] == "urgent"
print("served", type(p).__module__, type(p).__name__)
'''


def _run(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(ds.__file__).parent.parent), str(tmp_path)])}
    return subprocess.run([sys.executable, script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_a_class_from_a_script_loads_in_another_script(tmp_path: Path) -> None:
    (tmp_path / "optimize.py").write_text(textwrap.dedent(OPTIMIZE))
    (tmp_path / "serve.py").write_text(textwrap.dedent(SERVE))
    opt = _run(tmp_path, "optimize.py")
    assert opt.returncode == 0, opt.stderr
    # saving and committing a __main__ class warns once, saying how to give it a stable name
    assert opt.stderr.count("ScriptClassWarning") == 1, opt.stderr
    assert "__desiru_name__" in opt.stderr and "cls=Triage" in opt.stderr
    assert '"__main__.Triage"' in (tmp_path / "best.json").read_text()
    served = _run(tmp_path, "serve.py")
    assert served.returncode == 0, served.stderr
    assert "by name:" in served.stdout and "cls=" in served.stdout  # the by-name failure says what to do
    assert "served optimize Triage" in served.stdout


def test_a_stable_name_needs_no_class_and_no_warning(tmp_path: Path) -> None:
    script = OPTIMIZE.replace("class Triage(ds.Program):\n",
                              "class Triage(ds.Program):\n    __desiru_name__ = 'helpdesk.Triage'\n")
    (tmp_path / "optimize.py").write_text(textwrap.dedent(script))
    opt = _run(tmp_path, "optimize.py")
    assert opt.returncode == 0 and "Warning" not in opt.stderr, opt.stderr
    check = ("import desiru as ds\nfrom optimize import Triage\n"
             "assert type(ds.load('best.json')) is Triage\nprint('ok')\n")
    (tmp_path / "check.py").write_text(check)
    assert _run(tmp_path, "check.py").stdout.strip() == "ok"


class ResearchQA(ds.Program):
    def __init__(self) -> None:
        super().__init__()
        self.answer = ds.ChainOfThought("question -> answer")


class Triage(ds.Program):
    def __init__(self) -> None:
        super().__init__()
        self.classify = ds.Predict("ticket -> label")


def test_an_explicit_class_must_match_the_file(tmp_path: Path) -> None:
    path = ResearchQA().save(tmp_path / "best.json").path
    for load in (lambda: Triage.load(path), lambda: ds.load(path, cls=Triage)):
        with pytest.raises(ds.UnknownClassError) as info:
            load()
        text = str(info.value)
        assert "test_class_names.ResearchQA" in text and "test_class_names.Triage" in text
        assert "any_class=True" in text and str(path) in text
    forced = Triage.load(path, any_class=True)
    assert type(forced) is Triage and list(forced.modules) == ["answer"]
    assert type(ResearchQA.load(path)) is ResearchQA


def test_replay_with_a_class(tmp_path: Path) -> None:
    with ds.Journal.open(tmp_path / "r.journal") as j:
        j.commit(ResearchQA())
        assert type(j.replay(cls=ResearchQA)) is ResearchQA
        with pytest.raises(ds.UnknownClassError, match="ResearchQA"):
            j.replay(cls=Triage)
        assert type(j.replay(cls=Triage, any_class=True)) is Triage


def test_a_plain_program_file_loads_into_any_class(tmp_path: Path) -> None:
    plain = ds.Program(classify=ds.Predict("ticket -> label"))
    path = plain.save(tmp_path / "plain.msgpack").path
    assert type(Triage.load(path)) is Triage
