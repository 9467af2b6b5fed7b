"""The ``desiru`` command on documents, driven as a user drives it: inspect, convert, diff,
export-module, import-module, keys, error exits and progress display.

Each error exit is checked for one clear line on stderr, no traceback and a non-zero code.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from programs import QA, sample_program
from rich.console import Console

import desiru as ds
from desiru import _engine
from desiru.cli import cli, progress
from desiru.cli.app import EXIT_DIFFERENT, EXIT_ERROR, Env

KEY = "ab" * 32  # 64 hex chars: a raw 256-bit key
COMMANDS = ["inspect", "log", "diff", "replay", "tag", "snapshot", "compact", "verify", "repair", "convert",
            "migrate", "export-module", "import-module", "rekey", "demo", "trials", "lineage", "report"]


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    """Invoke ``desiru ARGS`` in-process (not a terminal, so no progress bars)."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=env, catch_exceptions=False)


def assert_error(result: Result, *needles: str, code: int = EXIT_ERROR) -> str:
    """The command failed with ``code`` and one line on stderr holding every needle."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def qa(tmp_path: Path) -> Path:
    path = tmp_path / "qa.json"
    sample_program().save(path)
    return path


@pytest.fixture
def changed(tmp_path: Path) -> Path:
    """The sample program with one demo dropped, a parameter changed and new metadata, as yaml."""
    p = sample_program()
    p.answer.demos = p.answer.demos[:1]
    p.answer.parameters["temperature"] = 0.7
    p.retrieve.parameters.pop("temperature")
    p.metadata = {"run": "r2"}
    path = tmp_path / "qa2.yaml"
    p.save(path)
    return path


# -- help -----------------------------------------------------------------------------------------
def test_help_lists_every_command() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout, name


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help_with_an_example(name: str) -> None:
    result = run(name, "--help")
    assert result.exit_code == 0, result.stderr
    assert "Example" in result.stdout
    assert f"desiru {name}" in result.stdout.split("Example", 1)[1]


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0 and ds.__version__ in result.stdout


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2 and "No such command" in result.stderr


# -- inspect --------------------------------------------------------------------------------------
def test_inspect_json_reports_layers_and_modules(tmp_path: Path) -> None:
    path = tmp_path / "qa.msgpack"
    saved = sample_program().save(path, compress="zstd", sha256=True)
    result = run("inspect", saved.path, "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["kind"] == "program document"
    assert (info["format"], info["compression"], info["encrypted"]) == ("msgpack", "zstd", False)
    assert info["format_version"] == str(ds.serialization.CURRENT_VERSION)
    assert info["size"] == saved.size and info["sha256"] == saved.sha256 and info["checksum"] == saved.checksum
    assert info["class"] == "programs.QA"
    rows = {m["path"]: m for m in info["modules"]}
    assert rows["retrieve"]["demos"] == 1 and rows["answer"]["demos"] == 2
    assert rows["answer"]["signature"] == "question, context -> reasoning, answer"
    assert rows["answer"]["parameters"] == {"temperature": 0.2, "max_tokens": 256}
    assert info["demos"] == 3 and info["configuration"]["optimizer"] == "BootstrapFewShot"


def test_inspect_table(qa: Path) -> None:
    result = run("inspect", qa)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for needle in ("program document", "json, not compressed, not encrypted", "programs.QA", "verified",
                   "retrieve", "desiru.ChainOfThought", "max_tokens=256", "2 with 3 demos"):
        assert needle in out, needle


def test_inspect_nested_program_paths(tmp_path: Path) -> None:
    from programs import Outer

    path = tmp_path / "outer.yaml"
    Outer().save(path)
    info = json.loads(run("inspect", path, "--json").stdout)
    assert [m["path"] for m in info["modules"]] == ["first", "qa.retrieve", "qa.answer"]


def test_inspect_module_document(qa: Path, tmp_path: Path) -> None:
    out = tmp_path / "answer.json"
    ds.load(qa).export_module("answer", out)
    info = json.loads(run("inspect", out, "--json").stdout)
    assert info["kind"] == "module document"
    assert [(m["path"], m["demos"]) for m in info["modules"]] == [("answer", 2)]


def test_inspect_missing_file(tmp_path: Path) -> None:
    assert_error(run("inspect", tmp_path / "nope.json"), "nope.json", "no such file")


def test_inspect_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.bin"
    path.write_bytes(bytes(range(256)) * 4)
    assert_error(run("inspect", path), "garbage.bin", "cannot tell the format")


def test_inspect_json_that_is_not_desiru(tmp_path: Path) -> None:
    path = tmp_path / "other.json"
    path.write_text('{"hello": "world"}')
    assert_error(run("inspect", path), "not a desiru document")


def test_inspect_truncated_compressed_file(tmp_path: Path) -> None:
    saved = sample_program().save(tmp_path / "qa.msgpack", compress="zstd")
    data = saved.path.read_bytes()
    saved.path.write_bytes(data[: len(data) // 2])
    assert_error(run("inspect", saved.path), "qa.msgpack.zst", "damaged or truncated")


def test_inspect_tampered_content_fails_the_checksum(qa: Path) -> None:
    qa.write_text(qa.read_text().replace("Paris is the capital", "Lyon is the capital"))
    assert_error(run("inspect", qa), "checksum mismatch")


def test_debug_shows_the_exception(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--debug", "inspect", str(tmp_path / "nope.json")])
    assert isinstance(result.exception, ds.DesiruError)


def test_debug_from_the_environment(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["inspect", str(tmp_path / "nope.json")], env={"DESIRU_DEBUG": "1"})
    assert isinstance(result.exception, ds.DesiruError)


# -- keys and encryption --------------------------------------------------------------------------
@pytest.fixture
def secret(tmp_path: Path) -> Path:
    return sample_program().save(tmp_path / "qa.bin", format="msgpack", key=KEY).path


def test_inspect_encrypted_without_key_shows_the_container(secret: Path) -> None:
    result = run("inspect", secret, "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["kind"] == "encrypted document"
    from desiru import crypto

    assert info["key_id"] == crypto.key_id_of(KEY)


def test_inspect_encrypted_with_key_from_env(secret: Path) -> None:
    result = run("inspect", secret, "--json", "--key-env", "QA_KEY", env={"QA_KEY": KEY})
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["encrypted"] is True and info["demos"] == 3


def test_key_from_prompt(secret: Path) -> None:
    result = run("inspect", secret, "--json", "--ask-key", input=KEY + "\n")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["demos"] == 3
    assert KEY not in result.stdout and KEY not in result.stderr  # never echoed


def test_wrong_key(secret: Path) -> None:
    other = "cd" * 32
    result = run("inspect", secret, "--key-env", "QA_KEY", env={"QA_KEY": other})
    assert_error(result, "qa.bin", "key id")
    assert other not in result.stderr


def test_wrong_passphrase(tmp_path: Path) -> None:
    path = sample_program().save(tmp_path / "qa.bin", format="msgpack", key="correct horse battery").path
    assert_error(run("convert", path, tmp_path / "out.json", "--key-env", "K", env={"K": "wrong horse"}),
                 "qa.bin", "passphrase")
    assert not (tmp_path / "out.json").exists()


def test_missing_key_says_how_to_give_one(secret: Path, tmp_path: Path) -> None:
    assert_error(run("convert", secret, tmp_path / "out.json"), "encrypted", "--key-env")


def test_key_env_unset_or_empty(secret: Path) -> None:
    assert_error(run("inspect", secret, "--key-env", "DESIRU_TEST_UNSET_VAR"), "DESIRU_TEST_UNSET_VAR", "not set")
    assert_error(run("inspect", secret, "--key-env", "E", env={"E": ""}), "empty")


def test_key_env_rejects_a_key_as_value(secret: Path) -> None:
    assert_error(run("inspect", secret, "--key-env", f"K={KEY}"), "NAME of an environment variable")


def test_tampered_encrypted_file(secret: Path) -> None:
    data = bytearray(secret.read_bytes())
    data[-5] ^= 0x01
    secret.write_bytes(bytes(data))
    assert_error(run("inspect", secret, "--key-env", "K", env={"K": KEY}), "qa.bin")


# -- convert --------------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "fmt", "compression"), [
    ("out.msgpack.zst", "msgpack", "zstd"),
    ("out.yaml.gz", "yaml", "gzip"),
    ("out.json", "json", None),
    ("out.mpk", "msgpack", None),
])
def test_convert_by_suffix(qa: Path, tmp_path: Path, name: str, fmt: str, compression: str | None) -> None:
    out = tmp_path / name
    result = run("convert", qa, out)
    assert result.exit_code == 0, result.stderr
    assert str(out) in result.stdout
    info = json.loads(run("inspect", out, "--json").stdout)
    assert (info["format"], info["compression"]) == (fmt, compression)
    assert QA.load(out) == sample_program()


def test_convert_options_override_the_suffix(qa: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.bin"
    assert run("convert", qa, out, "--format", "yaml", "--compress", "gzip").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.bin", "qa.json"]  # exactly the name given
    info = json.loads(run("inspect", out, "--json").stdout)
    assert (info["format"], info["compression"]) == ("yaml", "gzip")
    assert run("convert", out, tmp_path / "plain.msgpack", "--compress", "none").exit_code == 0
    info = json.loads(run("inspect", tmp_path / "plain.msgpack", "--json").stdout)
    assert info["compression"] is None
    # an option the name contradicts is refused, and nothing is written
    assert_error(run("convert", out, tmp_path / "plain.msgpack.zst", "--compress", "none"), "contradicts")
    assert not (tmp_path / "plain.msgpack.zst").exists()


def test_convert_keeps_the_content_checksum(qa: Path, tmp_path: Path) -> None:
    before = json.loads(run("inspect", qa, "--json").stdout)["checksum"]
    run("convert", qa, tmp_path / "x.yaml")
    assert json.loads(run("inspect", tmp_path / "x.yaml", "--json").stdout)["checksum"] == before


def test_convert_encrypts_and_decrypts(qa: Path, tmp_path: Path) -> None:
    enc = tmp_path / "qa.msgpack.zst"
    result = run("convert", qa, enc, "--out-key-env", "K", env={"K": KEY})
    assert result.exit_code == 0, result.stderr
    assert enc.read_bytes()[:8] == b"\x89DSRU\r\n\x1a"
    assert QA.load(enc, key=KEY) == sample_program()
    assert run("convert", enc, tmp_path / "back.json", "--key-env", "K", env={"K": KEY}).exit_code == 0
    assert QA.load(tmp_path / "back.json") == sample_program()


def test_convert_encrypt_with_a_prompted_key(qa: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("desiru.cli.keys.interactive", lambda: True)  # a person at a terminal
    out = tmp_path / "qa.bin"
    result = run("convert", qa, out, "--format", "msgpack", "--encrypt", input="pass phrase 1\npass phrase 1\n")
    assert result.exit_code == 0, result.stderr
    assert QA.load(out, key="pass phrase 1") == sample_program()


def test_convert_encrypt_reuses_the_input_key(secret: Path, tmp_path: Path) -> None:
    out = tmp_path / "again.msgpack.gz"
    assert run("convert", secret, out, "--encrypt", "--key-env", "K", env={"K": KEY}).exit_code == 0
    assert QA.load(out, key=KEY) == sample_program()


def test_convert_into_missing_folder(qa: Path, tmp_path: Path) -> None:
    assert_error(run("convert", qa, tmp_path / "no" / "such" / "x.json"), "does not exist")


def test_convert_refuses_a_journal_or_folder_as_output(qa: Path, tmp_path: Path) -> None:
    assert_error(run("convert", qa, tmp_path / "new.journal"), "writes a document")
    folder = CliRunner().invoke(cli, ["convert", str(qa), str(tmp_path)])
    assert folder.exit_code == 2 and "is a directory" in folder.stderr


def test_convert_refuses_a_point_on_a_document(qa: Path, tmp_path: Path) -> None:
    assert_error(run("convert", f"{qa}@tag:best", tmp_path / "x.json"), "is a document, not a journal")


def test_convert_bad_point_syntax(tmp_path: Path) -> None:
    assert_error(run("convert", f"{tmp_path / 'j'}@latest", tmp_path / "x.json"), "@tag:NAME")


def test_convert_quiet_prints_nothing(qa: Path, tmp_path: Path) -> None:
    result = run("--quiet", "convert", qa, tmp_path / "q.msgpack")
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""


# -- diff -----------------------------------------------------------------------------------------
def test_diff_equal_documents_exit_zero(qa: Path, tmp_path: Path) -> None:
    other = sample_program().save(tmp_path / "same.msgpack", compress="gzip").path
    result = run("diff", qa, other)
    assert result.exit_code == 0, result.stderr
    assert "equal" in result.stdout


def test_diff_readable(qa: Path, changed: Path) -> None:
    result = run("diff", qa, changed)
    assert result.exit_code == EXIT_DIFFERENT, result.stderr
    out = result.stdout
    assert f"--- {qa}" in out and f"+++ {changed}" in out
    assert "demo #1" in out and "Colour of sky?" in out  # the removed demo, shown from A
    assert "parameter temperature: 0.2 -> 0.7" in out
    assert "parameter temperature (was 0.0)" in out
    assert 'metadata: run "r1" -> "r2"' in out
    assert "4 changes in 2 modules and the program" in out


def test_diff_json_edits_turn_a_into_b(qa: Path, changed: Path) -> None:
    result = run("diff", qa, changed, "--json")
    assert result.exit_code == EXIT_DIFFERENT
    report = json.loads(result.stdout)
    assert report["equal"] is False
    ops = sorted(e["op"] for e in report["edits"])
    assert ops == ["demo_removed", "metadata_set", "parameter_set", "parameter_unset"]
    a, b = ds.load(qa).to_state(), ds.load(changed).to_state()
    assert _engine.apply_edits(a, report["edits"]) == b


def test_diff_json_equal(qa: Path) -> None:
    result = run("diff", qa, qa, "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"a": str(qa), "b": str(qa), "equal": True, "edits": []}


def test_diff_signature_and_modules(qa: Path, tmp_path: Path) -> None:
    p = sample_program()
    p.answer.signature = p.answer.signature.with_instructions("Answer in one word.")
    del p.retrieve
    p.extra = ds.Predict("text -> label")
    out = tmp_path / "b.json"
    p.save(out)
    result = run("diff", qa, out)
    assert result.exit_code == 1
    assert "instructions" in result.stdout and "Answer in one word." in result.stdout
    assert "- retrieve" in " ".join(result.stdout.split())
    assert "+ extra" in " ".join(result.stdout.split())


def test_diff_module_documents(qa: Path, tmp_path: Path) -> None:
    p = ds.load(qa)
    p.export_module("answer", tmp_path / "a1.json")
    p.answer.demos.append(ds.Example(question="q", answer="a"))
    p.export_module("answer", tmp_path / "a2.msgpack")
    result = run("diff", tmp_path / "a1.json", tmp_path / "a2.msgpack")
    assert result.exit_code == 1
    assert "demo #2" in result.stdout


def test_diff_program_against_module_is_an_error(qa: Path, tmp_path: Path) -> None:
    ds.load(qa).export_module("answer", tmp_path / "a1.json")
    assert_error(run("diff", qa, tmp_path / "a1.json"), "cannot compare a program")


def test_diff_missing_and_garbage(qa: Path, tmp_path: Path) -> None:
    assert_error(run("diff", qa, tmp_path / "missing.json"), "missing.json", "no such file")
    garbage = tmp_path / "g.msgpack"
    garbage.write_bytes(b"\x85\xa1a" + b"\xff" * 20)
    assert_error(run("diff", garbage, qa), "g.msgpack")


# -- export-module / import-module ----------------------------------------------------------------
def test_export_module(qa: Path, tmp_path: Path) -> None:
    out = tmp_path / "answer.msgpack.zst"
    result = run("export-module", qa, "answer", out)
    assert result.exit_code == 0, result.stderr
    module = ds.load(out)
    assert isinstance(module, ds.ChainOfThought)
    assert module == sample_program().answer


def test_export_nested_module(tmp_path: Path) -> None:
    from programs import Outer

    prog = tmp_path / "outer.json"
    p = Outer()
    p.qa.answer.demos = [ds.Example(question="x", answer="y")]
    p.save(prog)
    assert run("export-module", prog, "qa.answer", tmp_path / "a.json").exit_code == 0
    assert ds.load(tmp_path / "a.json") == p.qa.answer
    assert run("export-module", prog, "qa", tmp_path / "qa.yaml").exit_code == 0
    info = json.loads(run("inspect", tmp_path / "qa.yaml", "--json").stdout)
    assert info["kind"] == "program document"


def test_export_unknown_module(qa: Path, tmp_path: Path) -> None:
    assert_error(run("export-module", qa, "nope", tmp_path / "x.json"), "no module 'nope'", "retrieve")


def test_import_module_in_place_keeps_format(tmp_path: Path) -> None:
    prog = sample_program().save(tmp_path / "qa.msgpack", compress="zstd").path
    mod = tmp_path / "m.json"
    holder = ds.Program(critic=ds.Predict("question -> critique", temperature=0.3))
    holder.export_module("critic", mod)
    result = run("import-module", prog, mod)
    assert result.exit_code == 0, result.stderr
    assert "added module critic" in result.stdout
    loaded = QA.load(prog)
    assert list(loaded.modules) == ["retrieve", "answer", "critic"]
    assert loaded.critic.parameters == {"temperature": 0.3}
    info = json.loads(run("inspect", prog, "--json").stdout)
    assert (info["format"], info["compression"]) == ("msgpack", "zstd")


def test_import_module_replaces_in_place_and_renames(qa: Path, tmp_path: Path) -> None:
    mod = tmp_path / "answer.json"
    p = ds.load(qa)
    p.answer.demos = []
    p.export_module("answer", mod)
    out = tmp_path / "new.yaml"
    result = run("import-module", qa, mod, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "replaced module answer" in result.stdout
    loaded = QA.load(out)
    assert list(loaded.modules) == ["retrieve", "answer"] and loaded.answer.demos == []
    assert QA.load(qa) == sample_program()  # -o leaves the input alone
    assert run("import-module", qa, mod, "--name", "second").exit_code == 0
    assert list(QA.load(qa).modules) == ["retrieve", "answer", "second"]


def test_import_module_encrypted_program_stays_encrypted(secret: Path, tmp_path: Path) -> None:
    mod = tmp_path / "m.json"
    ds.Program(extra=ds.Predict("a -> b")).export_module("extra", mod)
    assert run("import-module", secret, mod, "--key-env", "K", env={"K": KEY}).exit_code == 0
    assert "extra" in QA.load(secret, key=KEY).modules


def test_import_module_errors(qa: Path, tmp_path: Path) -> None:
    assert_error(run("import-module", qa, tmp_path / "none.json"), "none.json", "no such file")
    mod = tmp_path / "m.json"
    ds.Program(extra=ds.Predict("a -> b")).export_module("extra", mod)
    assert_error(run("import-module", qa, mod, "--name", "retrieve.inner"), "is a module, not a program")
    assert_error(run("import-module", qa, mod, "--name", "bad-name"), "cannot import under the name")
    assert_error(run("import-module", mod, qa), "holds a module, not a program")
    assert_error(run("import-module", qa, mod, "--format", "yaml"), "need -o OUT")


# -- progress -------------------------------------------------------------------------------------
def test_progress_is_hidden_when_not_a_terminal() -> None:
    env = Env(err=Console(file=io.StringIO(), force_terminal=False))
    with progress.task(env, "working", total=3) as bar:
        bar.advance()
        assert not bar.shown
    assert env.err.file.getvalue() == ""  # type: ignore[attr-defined]


def test_progress_shows_on_a_terminal_unless_quiet() -> None:
    buf = io.StringIO()
    env = Env(err=Console(file=buf, force_terminal=True, width=80))
    with progress.task(env, "working", total=3) as bar:
        for _ in range(3):
            bar.advance()
        assert bar.shown
    assert "working" in buf.getvalue() and "3/3" in buf.getvalue()
    quiet = Env(quiet=True, err=Console(file=io.StringIO(), force_terminal=True))
    with progress.task(quiet, "working", total=3) as bar:
        assert not bar.shown


# -- the real executables -------------------------------------------------------------------------
def _exe_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DESIRU_DEBUG", None)
    return env


def test_console_script_and_python_m(qa: Path, tmp_path: Path) -> None:
    import shutil

    exe = shutil.which("desiru")
    assert exe is not None, "the desiru console script is not installed"
    out = subprocess.run([exe, "inspect", str(qa), "--json"], capture_output=True, text=True, env=_exe_env(),
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["demos"] == 3
    missing = subprocess.run([sys.executable, "-m", "desiru", "inspect", str(tmp_path / "missing.json")],
                             capture_output=True, text=True, env=_exe_env(), timeout=60)
    assert missing.returncode == EXIT_ERROR
    assert missing.stderr.strip().splitlines() == [f"error: {tmp_path / 'missing.json'}: no such file (check the path)"]
    assert missing.stdout == ""


def test_brackets_in_paths_and_values_are_text_not_markup(tmp_path: Path) -> None:
    p = ds.Program(a=ds.Predict("q -> a", stop=["[/]", "[bold]x"]))
    p.configuration = {"tags": ["[red]x"]}
    path = tmp_path / "[odd].json"
    p.save(path)
    result = run("inspect", path)
    assert result.exit_code == 0, result.stderr
    assert "[odd].json" in result.stdout and '"[bold]x"' in result.stdout and "[red]x" in result.stdout
    out = run("convert", path, tmp_path / "[b].yaml")
    assert out.exit_code == 0 and "[b].yaml" in out.stdout


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    journal = tmp_path / "j.journal"
    p = sample_program()
    with ds.Journal.open(journal) as j:
        for i in range(300):
            p.metadata = {"i": i, "pad": "x" * 200}
            j.commit(p)
    script = f"set -o pipefail; {sys.executable} -m desiru log {journal} | head -n 2"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=_exe_env(), timeout=60)
    assert out.returncode == 141, out.stderr
    assert out.stderr == "" and len(out.stdout.splitlines()) == 2


def test_a_prompt_takes_the_bar_off_the_screen() -> None:
    env = Env(err=Console(file=io.StringIO(), force_terminal=True, width=80))
    with progress.task(env, "working") as bar:
        live = bar._progress.live  # type: ignore[union-attr]
        assert live.is_started
        with progress.paused():
            assert not live.is_started
        assert live.is_started
    assert progress._ACTIVE == []


def test_inspect_one_module_in_full(qa: Path) -> None:
    result = run("inspect", qa, "--module", "answer", "--demos", "1")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "desiru.ChainOfThought" in out and "Given the fields" in out  # the full instructions
    assert "Reasoning: Let's think step by step" in out and "temperature=0.2 max_tokens=256" in out
    assert "2, the first 1 below" in out and "2+2?" in out and "Colour of sky?" not in out
    data = json.loads(run("inspect", qa, "-m", "answer", "--json").stdout)
    assert data["module"] == "answer" and data["demos"] == sample_program().answer.to_state()["demos"]
    assert_error(run("inspect", qa, "-m", "nope"), "qa.json", "no module 'nope'", "retrieve")


def test_inspect_module_of_a_module_file(qa: Path, tmp_path: Path) -> None:
    out = tmp_path / "answer.json"
    ds.load(qa).export_module("answer", out)
    assert run("inspect", out, "-m", "answer").exit_code == 0
    assert_error(run("inspect", out, "-m", "retrieve"), "holds 'answer', not 'retrieve'")


def test_diff_when_the_root_class_changes(qa: Path, tmp_path: Path) -> None:
    other = ds.Program(**sample_program().modules)
    other.save(tmp_path / "plain.json")
    result = run("diff", qa, tmp_path / "plain.json")
    assert result.exit_code == 1
    assert "replaced: class programs.QA -> desiru.Program, now 2 modules" in result.stdout
    assert "1 change in the program: 1 program replaced" in result.stdout


# -- a valid checksum over a state the library refuses to build --------------------------------------
def _malformed(qa: Path, tmp_path: Path) -> Path:
    """The sample program with a module's demos set to 5, its checksum recomputed so it still matches."""
    from desiru.serialization.documents import load_document, serialize_document

    state = load_document(qa).state
    state["modules"][0]["demos"] = 5
    data, _, _ = serialize_document(state, kind="program", format="json", compress=None)
    bad = tmp_path / "bad.json"
    bad.write_bytes(data)
    return bad


def test_verify_faults_a_state_the_library_cannot_build(qa: Path, tmp_path: Path) -> None:
    bad = _malformed(qa, tmp_path)
    result = run("verify", bad)
    assert result.exit_code == EXIT_DIFFERENT, result.stdout
    assert "fault:" in result.stdout and "demos must be a list" in result.stdout
    report = json.loads(run("verify", bad, "--json").stdout)
    assert report["ok"] is False


@pytest.mark.parametrize("args", [["inspect", "{bad}"], ["inspect", "{bad}", "--json"],
                                  ["inspect", "{bad}", "-m", "answer"], ["diff", "{bad}", "{qa}"],
                                  ["convert", "{bad}", "{out}"], ["export-module", "{bad}", "answer", "{out}"]])
def test_malformed_state_is_one_clear_error(qa: Path, tmp_path: Path, args: list[str]) -> None:
    bad = _malformed(qa, tmp_path)
    out = tmp_path / "out.msgpack"
    result = run(*(a.format(bad=bad, qa=qa, out=out) for a in args))
    assert_error(result, "bad.json", "demos must be a list")
    assert not out.exists()


def test_verify_accepts_classes_the_registry_does_not_know(qa: Path, tmp_path: Path) -> None:
    from desiru.serialization.documents import load_document, serialize_document

    state = load_document(qa).state
    state["class"] = "someone.elses.Program"
    state["modules"][0]["class"] = "someone.elses.Step"
    data, _, _ = serialize_document(state, kind="program", format="json", compress=None)
    unknown = tmp_path / "unknown.json"
    unknown.write_bytes(data)
    result = run("verify", unknown)
    assert result.exit_code == 0, result.stdout
    assert "ok:" in result.stdout
    assert run("inspect", unknown).exit_code == 0


@pytest.mark.parametrize("name", COMMANDS)
def test_no_help_or_hint_shows_a_key_typed_on_the_command_line(name: str) -> None:
    text = run(name, "--help").stdout
    assert "=..." not in text and "=<key>" not in text, text


def test_key_env_hints_show_a_silent_read(secret: Path) -> None:
    unset = assert_error(run("inspect", secret, "--key-env", "DESIRU_TEST_UNSET_VAR"), "not set")
    assert "read -rs DESIRU_TEST_UNSET_VAR && export DESIRU_TEST_UNSET_VAR" in unset and "=<key>" not in unset
    bad = assert_error(run("inspect", secret, "--key-env", "K=v"), "NAME of an environment variable")
    assert "read -rs" in bad and "=..." not in bad


# -- smaller wording fixes -----------------------------------------------------------------------------
def test_rekey_decrypt_of_a_plain_file(qa: Path) -> None:
    before = qa.read_bytes()
    assert_error(run("rekey", qa, "--decrypt"), "not encrypted; nothing to decrypt")
    assert qa.read_bytes() == before


def test_rekey_decrypt_without_a_key_says_how_to_give_it(secret: Path) -> None:
    assert_error(run("rekey", secret, "--decrypt"), "current key needed", "--key-env")


def test_import_module_of_a_program_file(qa: Path) -> None:
    before = qa.read_bytes()
    assert_error(run("import-module", qa, qa), "holds a program, not a module", "export-module")
    assert qa.read_bytes() == before


def test_plural_wording() -> None:
    from desiru.cli.render import plural

    assert [plural(n, "trial") for n in (0, 1, 2, 1200)] == ["0 trials", "1 trial", "2 trials", "1,200 trials"]


def test_one_demo_is_singular(tmp_path: Path) -> None:
    p = sample_program()
    p.answer.demos = [ds.Example(question="q", context="c", reasoning="r", answer="a")]
    p.retrieve.demos = []
    path = p.save(tmp_path / "one.json").path
    text = run("inspect", path).stdout
    assert "with 1 demo in all" in text, text


def test_quiet_after_the_command(qa: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.msgpack"
    result = run("convert", qa, out, "-q")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "" and out.exists()
    assert run("inspect", qa, "--quiet").exit_code == 0


def test_lock_hint_speaks_command_line(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    with ds.Journal.open(path) as j:
        j.commit(sample_program())
        line = assert_error(run("tag", path, "x"), "another writer holds this journal")
    assert "readonly=True" not in line and "reading commands" in line
