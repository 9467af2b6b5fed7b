"""What a user is told about files that are not desiru's, hand-edited documents and journal points
(issue 15, item 5), from the CLI and from ds.load."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from programs import sample_program

import desiru as ds
from desiru.cli import cli

#: what dspy's module.save("x.json") writes, as in real save files (a predictor state keyed by name)
DSPY_SAVE = {
    "generate.predict": {
        "traces": [], "train": [],
        "demos": [{"augmented": True, "question": "What is 2 + 2?", "reasoning": "add", "answer": "4"},
                  {"question": "Capital of France?", "answer": "Paris"}],
        "signature": {"instructions": "Given the fields `question`, produce the fields `answer`.",
                      "fields": [{"prefix": "Question:", "description": "${question}"},
                                 {"prefix": "Reasoning:", "description": "${reasoning}"},
                                 {"prefix": "Answer:", "description": "${answer}"}]},
        "lm": None,
    },
    "metadata": {"dependency_versions": {"python": "3.11", "dspy": "2.6.27", "cloudpickle": "3.1"}},
}
KEY = "12" * 32


def run(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def error_line(result: Result) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    return lines[0]


FOREIGN = {
    "image.png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40), "a PNG image"),
    "photo.jpg": (b"\xff\xd8\xff\xe0" + bytes(40), "a JPEG image"),
    "model.pkl": (pickle.dumps({"weights": [1, 2, 3]}, protocol=4), "pickle"),
    "paper.pdf": (b"%PDF-1.7\n" + bytes(40), "a PDF"),
    "random.bin": (bytes([0x85, 0x01, 0x02, 0x03, 0x04, 0x05]), "neither json, yaml, msgpack"),
}


@pytest.mark.parametrize("name", sorted(FOREIGN))
def test_a_file_that_is_not_desiru_s_is_named_not_damaged(tmp_path: Path, name: str) -> None:
    data, what = FOREIGN[name]
    path = tmp_path / name
    path.write_bytes(data)
    for command in ("inspect", "convert"):
        args = [command, path] + ([tmp_path / "out.json"] if command == "convert" else [])
        line = error_line(run(*args))
        assert "not a desiru file" in line and what in line, line
        assert "damaged" not in line and "good copy" not in line and "backup" not in line
        assert "desiru inspect" not in line  # never sends the user to the command that just failed
    with pytest.raises(ds.FormatError, match="not a desiru file"):
        ds.load(path)


def test_a_dspy_save_is_named_and_convert_reads_it(tmp_path: Path) -> None:
    src = tmp_path / "optimized_rag.json"
    src.write_text(json.dumps(DSPY_SAVE))
    line = error_line(run("inspect", src))
    assert "DSPy save file" in line and "desiru convert" in line
    with pytest.raises(ds.FormatError, match="read_dspy_save"):
        ds.load(src)
    out = tmp_path / "program.json"
    result = run("convert", src, out)
    assert result.exit_code == 0, result.stderr
    program = ds.load(out)
    assert [len(m.demos) for _, m in program.named_modules()] == [2]


def _hand_edited(tmp_path: Path) -> Path:
    path = sample_program().save(tmp_path / "qa.json").path
    doc = json.loads(path.read_text())
    doc["state"]["modules"][1]["parameters"]["temperature"] = 0.55  # a person's edit
    path.write_text(json.dumps(doc, indent=1))
    return path


def test_a_hand_edited_document_and_no_verify(tmp_path: Path) -> None:
    path = _hand_edited(tmp_path)
    with pytest.raises(ds.CorruptDataError, match="checksum mismatch") as info:
        ds.load(path)
    assert "verify=False" in str(info.value)
    assert ds.load(path, verify=False).answer.parameters["temperature"] == 0.55
    line = error_line(run("inspect", path))
    assert "checksum mismatch" in line and "--no-verify" in line and "verify=False" not in line
    shown = run("inspect", path, "--no-verify")
    assert shown.exit_code == 0 and "NOT verified" in shown.stdout
    fixed = tmp_path / "fixed.json"
    assert run("convert", path, fixed, "--no-verify").exit_code == 0
    assert run("verify", fixed).exit_code == 0  # written with a fresh checksum
    assert ds.load(fixed).answer.parameters["temperature"] == 0.55
    assert run("diff", path, fixed, "--no-verify").exit_code == 0


def test_wrong_key_on_inspect_does_not_send_back_to_inspect(tmp_path: Path) -> None:
    path = sample_program().save(tmp_path / "enc.bin", key=KEY).path
    line = error_line(run("inspect", path, "--key-env", "K", env={"K": "34" * 32}))
    assert "key id" in line and "without --key-env" in line


def test_seq_zero_and_a_seq_past_the_head_say_the_same_thing(tmp_path: Path) -> None:
    journal = tmp_path / "qa.journal"
    with ds.Journal.open(journal) as j:
        head = j.commit(sample_program()).seq
    for seq in (0, head + 5):
        for args in (("inspect", f"{journal}@seq:{seq}"), ("diff", f"{journal}@seq:{seq}", journal)):
            line = error_line(run(*args))
            assert f"seq {seq} is out of range: this journal holds seqs 1..{head}" in line, line
        with ds.Journal.open(journal, readonly=True) as j, pytest.raises(ds.DesiruError, match="out of range"):
            j.replay(seq=seq)
