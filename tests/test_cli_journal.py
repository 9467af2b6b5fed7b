"""The ``desiru`` command on journals: inspect, log, diff of points, replay, tag, snapshot,
compact, verify, repair, migrate and rekey, with their error exits (damaged journal, wrong key,
locked journal, unknown tag)."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from programs import QA, sample_program

import desiru as ds
from desiru.cli import cli
from desiru.cli.app import EXIT_DIFFERENT, EXIT_ERROR

KEY = "ef" * 32


def run(*args: object, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], input=input, env=env, catch_exceptions=False)


def assert_error(result: Result, *needles: str, code: int = EXIT_ERROR) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def versions() -> list[QA]:
    """Four states of the sample program: baseline, +demo, temperature changed, retrieve demos dropped."""
    p = sample_program()
    out = [p.copy()]
    p.answer.demos.append(ds.Example(question="q3", context="c3", reasoning="r3", answer="a3"))
    out.append(p.copy())
    p.answer.parameters["temperature"] = 0.9
    out.append(p.copy())
    p.retrieve.demos = []
    out.append(p.copy())
    return out


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    path = tmp_path / "qa.journal"
    v = versions()
    with ds.Journal.open(path) as j:
        j.commit(v[0], tag="baseline")  # seqs 1 (ProgramCreated), 2 (tag)
        j.commit(v[1])  # 3 DemoAdded
        j.commit(v[2], tag="best")  # 4 ParameterSet, 5 tag
        j.commit(v[3])  # 6 DemoRemoved
    return path


def log_records(*args: object) -> list[dict]:
    result = run("log", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


# -- inspect / log ----------------------------------------------------------------------------------
def test_inspect_journal(journal: Path) -> None:
    result = run("inspect", journal, "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["kind"] == "journal" and info["head"] == 6 and info["events"] == 6
    assert info["tags"] == {"baseline": 2, "best": 5}
    assert info["event_types"]["CheckpointTagged"] == 2
    assert {m["path"]: m["demos"] for m in info["modules"]} == {"retrieve": 0, "answer": 3}
    table = run("inspect", journal).stdout
    assert "baseline@2, best@5" in table and "programs.QA" in table


def test_inspect_a_journal_point_and_a_module_there(journal: Path) -> None:
    info = json.loads(run("inspect", f"{journal}@tag:baseline", "--json").stdout)
    assert info["point"] == f"{journal}@tag:baseline" and info["head"] == 6
    assert {m["path"]: m["demos"] for m in info["modules"]} == {"retrieve": 1, "answer": 2}
    assert "(at tag baseline)" in run("inspect", f"{journal}@tag:baseline").stdout
    detail = json.loads(run("inspect", f"{journal}@seq:4", "-m", "answer", "--json").stdout)
    assert detail["parameters"]["temperature"] == 0.9 and len(detail["demos"]) == 3


def test_log_table(journal: Path) -> None:
    result = run("log", journal)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["seq", "time", "(UTC)"]
    assert len(lines) == 7
    assert "ProgramCreated" in lines[1] and "programs.QA with 2 modules" in lines[1]
    assert "tag baseline" in lines[2]
    assert "DemoAdded" in lines[3] and "answer" in lines[3] and '"q3"' in lines[3]
    assert "parameter temperature = 0.9" in lines[4]


def test_log_filters(journal: Path) -> None:
    assert [r["seq"] for r in log_records(journal, "--module", "answer")] == [3, 4]
    assert [r["seq"] for r in log_records(journal, "--type", "demo_added", "-t", "DemoRemoved")] == [3, 6]
    assert [r["seq"] for r in log_records(journal, "--from", "3", "--to", "5")] == [3, 4, 5]
    assert [r["seq"] for r in log_records(journal, "--from", "tag:baseline", "--to", "best")] == [2, 3, 4, 5]
    assert [r["seq"] for r in log_records(journal, "--tag", "baseline")] == [1, 2]
    assert [r["seq"] for r in log_records(journal, "-n", "2")] == [1, 2]
    rec = log_records(journal, "--type", "ParameterSet")[0]
    assert rec["path"] == "answer" and rec["payload"] == {"key": "temperature", "value": 0.9}


def test_log_follow_prints_new_commits(journal: Path) -> None:
    def writer() -> None:
        time.sleep(0.3)
        p = versions()[3]
        with ds.Journal.open(journal) as j:
            for i in range(3):
                p.metadata = {"step": i}
                j.commit(p)
                time.sleep(0.05)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        result = run("log", journal, "--follow", "--follow-timeout", "1.5", "--json", "--type", "MetadataSet")
    finally:
        thread.join()
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["payload"]["value"] for r in records] == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert [r["seq"] for r in records] == [7, 8, 9]


def test_log_errors(journal: Path, tmp_path: Path) -> None:
    assert_error(run("log", journal, "--follow", "--to", "3"), "cannot stop at --to")
    assert_error(run("log", journal, "--follow-timeout", "3"), "goes with --follow")
    assert_error(run("log", journal, "--type", "DemoExploded"), "unknown event type", "DemoAdded")
    assert_error(run("log", journal, "--to", "tag:nope"), "neither a seq nor a tag", "baseline")
    assert_error(run("log", tmp_path / "missing.journal"), "missing.journal", "no such journal")
    doc = tmp_path / "qa.json"
    sample_program().save(doc)
    assert_error(run("log", doc), "not a desiru journal")
    assert_error(run("log", f"{journal}@tag:best"), "names a point")


# -- diff / replay ----------------------------------------------------------------------------------
def test_diff_two_tags(journal: Path) -> None:
    result = run("diff", f"{journal}@tag:baseline", f"{journal}@tag:best")
    assert result.exit_code == EXIT_DIFFERENT, result.stderr
    assert "demo #2" in result.stdout and "parameter temperature: 0.2 -> 0.9" in result.stdout
    assert "2 changes in 1 module" in result.stdout


def test_diff_seqs_and_head_and_file(journal: Path, tmp_path: Path) -> None:
    assert run("diff", f"{journal}@seq:2", f"{journal}@tag:baseline").exit_code == 0
    v = versions()
    v[3].save(tmp_path / "head.msgpack")
    assert run("diff", journal, tmp_path / "head.msgpack").exit_code == 0
    assert run("diff", f"{journal}@head", tmp_path / "head.msgpack").exit_code == 0
    result = run("diff", f"{journal}@seq:3", tmp_path / "head.msgpack", "--json")
    assert result.exit_code == EXIT_DIFFERENT
    edits = json.loads(result.stdout)["edits"]
    assert sorted(e["op"] for e in edits) == ["demo_removed", "parameter_set"]


def test_diff_unknown_tag_and_seq(journal: Path) -> None:
    assert_error(run("diff", f"{journal}@tag:nope", journal), "no tag 'nope'", "baseline")
    assert_error(run("diff", f"{journal}@seq:99", journal), "seq 99", "out of range")


@pytest.mark.parametrize(("args", "index"), [(["--tag", "best"], 2), (["--seq", "3"], 1), ([], 3)])
def test_replay(journal: Path, tmp_path: Path, args: list[str], index: int) -> None:
    out = tmp_path / "out.json"
    result = run("replay", journal, *args, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert QA.load(out) == versions()[index]


def test_replay_point_syntax_and_options(journal: Path, tmp_path: Path) -> None:
    out = tmp_path / "best.msgpack.zst"
    assert run("replay", f"{journal}@tag:best", "-o", out).exit_code == 0
    assert QA.load(out) == versions()[2]
    enc = tmp_path / "best.bin"
    assert run("replay", journal, "--tag", "best", "-o", enc, "--format", "yaml", "--out-key-env", "K",
               env={"K": KEY}).exit_code == 0
    assert QA.load(enc, key=KEY) == versions()[2]


def test_convert_and_export_take_journal_points(journal: Path, tmp_path: Path) -> None:
    assert run("convert", f"{journal}@seq:3", tmp_path / "s3.yaml.gz").exit_code == 0
    assert QA.load(tmp_path / "s3.yaml.gz") == versions()[1]
    assert run("convert", journal, tmp_path / "head.json").exit_code == 0
    assert QA.load(tmp_path / "head.json") == versions()[3]
    assert run("export-module", f"{journal}@tag:best", "answer", tmp_path / "answer.json").exit_code == 0
    assert ds.load(tmp_path / "answer.json") == versions()[2].answer


def test_replay_errors(journal: Path, tmp_path: Path) -> None:
    assert_error(run("replay", journal, "--tag", "nope", "-o", tmp_path / "x.json"), "no tag 'nope'")
    assert_error(run("replay", journal, "--tag", "best", "--seq", "2", "-o", tmp_path / "x.json"), "one point")
    assert_error(run("replay", tmp_path / "nope.journal", "-o", tmp_path / "x.json"), "no such journal")
    doc = tmp_path / "doc.json"
    sample_program().save(doc)
    assert_error(run("replay", doc, "-o", tmp_path / "x.json"), "not a desiru journal", "convert")
    assert not (tmp_path / "x.json").exists()


# -- tag / snapshot / compact -----------------------------------------------------------------------
def test_tag_moves_and_replays(journal: Path, tmp_path: Path) -> None:
    result = run("tag", journal, "deployed")  # the head: the newest commit (seq 6)
    assert result.exit_code == 0, result.stderr
    assert "tagged deployed at seq 6" in result.stdout
    assert_error(run("tag", journal, "best"), "tag 'best' already points at seq 5", "--move")
    again = run("tag", journal, "best", "--move")
    assert "tagged best at seq 6 (moved from seq 5)" in again.stdout
    with ds.Journal.open(journal, readonly=True) as j:
        assert j.tags() == {"baseline": 2, "best": 6, "deployed": 6}
        assert j.replay(tag="deployed") == versions()[3]


def test_tag_refuses_a_second_writer(journal: Path) -> None:
    with ds.Journal.open(journal):
        assert_error(run("tag", journal, "x"), "qa.journal")


def test_snapshot_and_compact(journal: Path, tmp_path: Path) -> None:
    assert "no snapshot yet" in run("compact", journal).stdout
    result = run("snapshot", journal)
    assert result.exit_code == 0 and "snapshot at seq 6" in result.stdout
    with ds.Journal.open(journal) as j:
        j.commit(sample_program())
    tagged = {}
    with ds.Journal.open(journal, readonly=True) as j:
        tagged = {name: j.replay(tag=name) for name in j.tags()}
    assert set(tagged) == {"baseline", "best"}
    result = run("compact", journal, "--snapshot")  # tagged commits keep a snapshot of their own
    assert result.exit_code == 0, result.stderr
    assert "freed" in result.stdout
    with ds.Journal.open(journal, readonly=True) as j:
        assert j.replay() == sample_program()
        assert {name: j.replay(tag=name) for name in j.tags()} == tagged
    assert run("verify", journal).exit_code == 0
    result = run("compact", journal, "--snapshot", "--force")  # --force lets the tagged commits go
    assert result.exit_code == 0, result.stderr
    with ds.Journal.open(journal, readonly=True) as j:
        assert j.replay() == sample_program()
        assert j.tags() == {}
        assert len(j.trials()) >= 3  # the trials table survives every compaction
    assert run("verify", journal).exit_code == 0
    again = run("compact", journal, "--snapshot")  # nothing left to drop
    assert again.exit_code == 0, again.stderr
    assert "already compacted" in again.stdout and "pass --snapshot" not in again.stdout


def test_compact_keeps_tagged_commits_unless_forced(journal: Path) -> None:
    with ds.Journal.open(journal) as j:
        j.snapshot()
        j.commit(sample_program(), tag="after")
    result = run("compact", journal, "--force")  # the older tags go, "after" stays
    assert result.exit_code == 0, result.stderr
    changed = sample_program()
    changed.answer.parameters["temperature"] = 0.5
    with ds.Journal.open(journal) as j:
        j.commit(changed)
        j.snapshot()
    result = run("compact", journal)  # "after" is before the new snapshot: kept, with its own snapshot
    assert result.exit_code == 0, result.stderr
    with ds.Journal.open(journal, readonly=True) as j:
        assert j.tags() == {"after": j.tags()["after"]}
        assert j.replay(tag="after") == sample_program()


# -- verify / repair ------------------------------------------------------------------------------
def test_verify_sound_journal_and_document(journal: Path, tmp_path: Path) -> None:
    result = run("verify", journal)
    assert result.exit_code == 0, result.stderr
    assert "ok: 6 records" in result.stdout
    report = json.loads(run("verify", journal, "--json").stdout)
    assert report["ok"] is True and report["head"] == 6
    doc = sample_program().save(tmp_path / "qa.msgpack", compress="zstd").path
    result = run("verify", doc)
    assert result.exit_code == 0 and "checksum xxh3-128:" in result.stdout


def _segment(journal: Path) -> Path:
    return sorted((journal / "log").glob("*.log"))[0]


def test_verify_torn_tail_then_repair(journal: Path) -> None:
    seg = _segment(journal)
    data = seg.read_bytes()
    seg.write_bytes(data[:-5])  # a crash in the middle of the last record
    result = run("verify", journal)
    assert result.exit_code == EXIT_DIFFERENT
    assert "fault:" in result.stdout and "seq 6" in result.stdout and "desiru repair" in result.stdout
    repaired = run("repair", journal)
    assert repaired.exit_code == 0, repaired.stderr
    assert "cut" in repaired.stdout and "damaged" in repaired.stdout and "head is now seq 5" in repaired.stdout
    kept = list((journal / "damaged").iterdir())
    assert kept and sum(p.stat().st_size for p in kept) > 0  # the cut bytes are kept, not deleted
    assert run("verify", journal).exit_code == 0
    assert "nothing to repair" in run("repair", journal).stdout
    with ds.Journal.open(journal, readonly=True) as j:
        assert j.replay() == versions()[2]


def test_verify_flipped_byte_names_where(journal: Path) -> None:
    seg = _segment(journal)
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    result = run("verify", journal)
    assert result.exit_code == EXIT_DIFFERENT
    assert "fault:" in result.stdout and "seq" in result.stdout and "offset" in result.stdout
    assert "journal.verify()" not in result.stdout  # hints speak command line, not Python


def test_damaged_journal_readers_warn_and_stop_before_the_damage(journal: Path, tmp_path: Path) -> None:
    seg = _segment(journal)
    data = bytearray(seg.read_bytes())
    data[len(data) - 150] ^= 0xFF  # a record in the middle of the log, before the last one
    seg.write_bytes(bytes(data))
    result = run("log", journal, "--json")
    assert result.exit_code == 0, result.stderr
    seqs = [json.loads(line)["seq"] for line in result.stdout.splitlines()]
    assert seqs == list(range(1, len(seqs) + 1)) and 1 < len(seqs) < 5
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "offset" in warning[0]
    damaged = int(re.search(r"seq (\d+)", warning[0]).group(1))  # type: ignore[union-attr]
    assert damaged > len(seqs)  # readers stop before the commit that holds the damage
    assert "desiru repair" in warning[0] and "journal.verify()" not in warning[0]
    assert run("verify", journal).exit_code == EXIT_DIFFERENT
    assert_error(run("tag", journal, "x"), f"seq {damaged}")  # a writer refuses to append after damage
    # the tag after the damage cannot be kept: repair names it and needs --force
    assert_error(run("repair", journal), "would drop the tag 'best'", "--force")
    repaired = run("repair", journal, "--force")
    assert repaired.exit_code == 0, repaired.stderr
    assert f"head is now seq {len(seqs)}" in repaired.stdout and "kept in" in repaired.stdout
    assert run("verify", journal).exit_code == 0
    assert run("tag", journal, "after-repair").exit_code == 0


def test_damaged_last_record_is_a_tail_readers_skip(journal: Path, tmp_path: Path) -> None:
    seg = _segment(journal)
    data = bytearray(seg.read_bytes())
    data[-20] ^= 0xFF  # inside the last record (seq 6): looks like a commit still being written
    seg.write_bytes(bytes(data))
    assert [r["seq"] for r in log_records(journal)] == [1, 2, 3, 4, 5]
    out = tmp_path / "x.json"
    assert run("replay", journal, "-o", out).exit_code == 0
    assert QA.load(out) == versions()[2]  # the head a reader sees: the last whole commit
    assert run("verify", journal).exit_code == EXIT_DIFFERENT


def test_verify_damaged_document(tmp_path: Path) -> None:
    doc = sample_program().save(tmp_path / "qa.json").path
    doc.write_text(doc.read_text().replace("2+2?", "2+3?"))
    result = run("verify", doc)
    assert result.exit_code == EXIT_DIFFERENT
    assert "checksum mismatch" in result.stdout
    assert_error(run("verify", tmp_path / "missing.json"), "no such file")


def test_repair_errors(tmp_path: Path) -> None:
    assert_error(run("repair", tmp_path / "none.journal"), "no such journal")
    doc = sample_program().save(tmp_path / "qa.json").path
    assert_error(run("repair", doc), "not a desiru journal", "backup")


# -- encrypted journals, rekey, migrate -----------------------------------------------------------------
@pytest.fixture
def secret_journal(tmp_path: Path) -> Path:
    path = tmp_path / "secret.journal"
    v = versions()
    with ds.Journal.open(path, key=KEY) as j:
        j.commit(v[0], tag="baseline")
        j.commit(v[2])
    return path


def test_inspect_encrypted_journal_without_the_key(secret_journal: Path) -> None:
    from desiru import crypto

    info = json.loads(run("inspect", secret_journal, "--json").stdout)
    assert info["encrypted"] is True and info["key_id"] == crypto.key_id_of(KEY) and info["size"] > 0
    full = json.loads(run("inspect", secret_journal, "--json", "--key-env", "K", env={"K": KEY}).stdout)
    assert full["key_id"] == info["key_id"] and full["head"] == 4


def test_encrypted_journal_needs_the_key(secret_journal: Path, tmp_path: Path) -> None:
    assert_error(run("log", secret_journal), "encrypted", "--key-env")
    assert_error(run("log", secret_journal, "--key-env", "K", env={"K": "00" * 32}), "key id")
    result = run("diff", f"{secret_journal}@tag:baseline", secret_journal, "--key-env", "K", env={"K": KEY})
    assert result.exit_code == EXIT_DIFFERENT, result.stderr
    assert run("log", secret_journal, "--ask-key", input=KEY + "\n").exit_code == 0


def test_one_key_serves_a_plain_and_an_encrypted_input(secret_journal: Path, journal: Path) -> None:
    result = run("diff", f"{journal}@tag:best", secret_journal, "--key-env", "K", env={"K": KEY})
    assert result.exit_code == 0, result.stderr  # both hold versions()[2]
    assert run("log", journal, "--key-env", "K", env={"K": KEY}).exit_code == 0


def test_rekey_journal(secret_journal: Path) -> None:
    new = "new pass phrase"
    result = run("rekey", secret_journal, "--key-env", "OLD", "--new-key-env", "NEW", env={"OLD": KEY, "NEW": new})
    assert result.exit_code == 0, result.stderr
    assert "re-encrypted" in result.stdout
    assert_error(run("verify", secret_journal, "--key-env", "K", env={"K": KEY}), "secret.journal")
    with ds.Journal.open(secret_journal, key=new, readonly=True) as j:
        assert j.replay() == versions()[2]


def test_migrate_encrypted_journal(secret_journal: Path) -> None:
    assert_error(run("migrate", secret_journal), "encrypted", "--key-env")
    result = run("migrate", secret_journal, "--key-env", "K", env={"K": KEY})
    assert result.exit_code == 0, result.stderr
    with ds.Journal.open(secret_journal, key=KEY, readonly=True) as j:
        assert j.replay() == versions()[2] and j.tags() == {"baseline": 2}


def test_rekey_wrong_old_key_changes_nothing(secret_journal: Path) -> None:
    before = {p: p.read_bytes() for p in secret_journal.rglob("*") if p.is_file()}
    assert_error(run("rekey", secret_journal, "--key-env", "OLD", "--new-key-env", "NEW",
                     env={"OLD": "11" * 32, "NEW": "22" * 32}), "key id")
    assert {p: p.read_bytes() for p in secret_journal.rglob("*") if p.is_file()} == before


def test_rekey_document_with_prompts(tmp_path: Path) -> None:
    doc = sample_program().save(tmp_path / "qa.msgpack", key=KEY).path
    result = run("rekey", doc, "--ask-key", input=f"{KEY}\nfresh phrase\nfresh phrase\n")
    assert result.exit_code == 0, result.stderr
    assert QA.load(doc, key="fresh phrase") == sample_program()
    assert run("rekey", doc, "--key-env", "K", "--decrypt", env={"K": "fresh phrase"}).exit_code == 0
    assert QA.load(doc) == sample_program()


def test_rekey_without_a_new_key_and_no_input(tmp_path: Path) -> None:
    doc = sample_program().save(tmp_path / "qa.msgpack").path
    result = run("rekey", doc)
    assert result.exit_code == EXIT_ERROR
    assert result.stderr.splitlines()[-1].startswith("error: new key needed, and there is no terminal")
    assert "--new-key-env" in result.stderr
    assert_error(run("rekey", tmp_path / "none.bin", "--decrypt"), "no such file")


def test_migrate_current_file_is_unchanged(journal: Path, tmp_path: Path) -> None:
    doc = sample_program().save(tmp_path / "qa.json").path
    before = doc.read_bytes()
    result = run("migrate", doc)
    assert result.exit_code == 0, result.stderr
    assert "unchanged" in result.stdout and doc.read_bytes() == before
    files = {p: p.read_bytes() for p in journal.rglob("*") if p.is_file()}
    for _ in range(2):  # a journal at the current format: left as it is, and no backup piles up
        result = run("migrate", journal)
        assert result.exit_code == 0, result.stderr
        assert "already at format" in result.stdout and "unchanged" in result.stdout
    assert {p: p.read_bytes() for p in journal.rglob("*") if p.is_file()} == files
    assert not list(tmp_path.glob("*.bak-*"))
    assert_error(run("migrate", tmp_path / "none.json"), "no such file")


def test_migrate_rewrites_a_journal_of_early_writers(tmp_path: Path) -> None:
    """The 2.0.0 vector stores records in the map layout of the first writers: migrate rewrites it once."""
    import shutil

    path = tmp_path / "old.journal"
    shutil.copytree(Path(__file__).parent / "vectors" / "documents" / "journal_2_0_0.journal", path)
    first = run("migrate", path)
    assert first.exit_code == 0, first.stderr
    # a 2.0.0 journal: brought to the current format (2.1.0), records rewritten in today's layout
    assert ("rewrote the journal" in first.stdout or "migrated journal from format 2.0.0" in first.stdout)
    assert len(list(tmp_path.glob("old.journal.bak-*"))) == 1
    again = run("migrate", path)
    assert "unchanged" in again.stdout and len(list(tmp_path.glob("old.journal.bak-*"))) == 1


def test_migrate_legacy_document(tmp_path: Path) -> None:
    legacy = {
        "version": "1.0.0",
        "metadata": {"created_at": "2024-01-01T00:00:00Z"},
        "program": {
            "class": "desiru.Program",
            "modules": [{"name": "answer", "class": "desiru.Predict", "signature": "question -> answer",
                         "demonstrations": [{"question": "q", "answer": "a"}], "parameters": {"temperature": 0.1},
                         "metadata": {}}],
        },
    }
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps(legacy))
    before = run("inspect", path)
    assert "format 1.0.0" in before.stdout and f"desiru migrate {path}" in before.stdout
    result = run("migrate", path)
    assert result.exit_code == 0, result.stderr
    assert "migrated document from format 1.0.0" in result.stdout and ".bak-1.0.0" in result.stdout
    info = json.loads(run("inspect", path, "--json").stdout)
    assert info["format_version"] == str(ds.serialization.CURRENT_VERSION)
    assert info["modules"][0]["demos"] == 1


def test_verify_names_every_fault(tmp_path: Path) -> None:
    path = tmp_path / "long.journal"
    p = sample_program()
    with ds.Journal.open(path) as j:
        for i in range(60):
            p.metadata = {"step": i, "note": "x" * 40}
            j.commit(p)
    seg = _segment(path)
    data = bytearray(seg.read_bytes())
    data[len(data) // 3] ^= 0xFF
    data[2 * len(data) // 3] ^= 0xFF
    seg.write_bytes(bytes(data))
    result = run("verify", path, "--json")
    assert result.exit_code == EXIT_DIFFERENT
    report = json.loads(result.stdout)
    seqs = [int(re.search(r"seq (\d+)", f).group(1)) for f in report["faults"]]  # type: ignore[union-attr]
    assert len(seqs) == 2 and seqs[0] < seqs[1] and all("offset" in f for f in report["faults"])
    assert run("repair", path).exit_code == 0
    with ds.Journal.open(path, readonly=True) as j:
        assert j.head == seqs[0] - 1


@pytest.mark.parametrize("damage", ["flip-version", "flip-magic", "missing"])
def test_a_journal_with_a_bad_header_is_still_a_journal(journal: Path, damage: str) -> None:
    header = journal / "header"
    if damage == "missing":
        header.unlink()
    else:
        data = bytearray(header.read_bytes())
        data[0 if damage == "flip-magic" else 10] ^= 0xFF
        header.write_bytes(bytes(data))
    result = run("verify", journal)
    assert result.exit_code == EXIT_DIFFERENT, (result.stdout, result.stderr)
    assert "fault:" in result.stdout
    assert ("header: missing" if damage == "missing" else "header: damaged") in result.stdout
    assert "restore the journal from a copy" in result.stdout
    assert json.loads(run("verify", journal, "--json").stdout)["ok"] is False
    for command in ("inspect", "log"):
        line = assert_error(run(command, journal), "header:")
        assert "folder, not a file" not in line and "not a desiru journal (" not in line
    assert_error(run("repair", journal), "cannot rebuild a header", "restore the journal from a copy")
    assert (header.exists()) is (damage != "missing")  # repair changed nothing


def test_a_plain_folder_is_not_a_journal(tmp_path: Path) -> None:
    folder = tmp_path / "stuff"
    folder.mkdir()
    assert_error(run("inspect", folder), "folder")
    assert_error(run("log", folder), "not a desiru journal")


def test_log_unknown_module_lists_the_known_ones(journal: Path) -> None:
    line = assert_error(run("log", journal, "--module", "answr"), "no module 'answr' in this journal")
    assert "known modules:" in line and "answer" in line and "retrieve" in line
    assert run("log", journal, "--module", "answer").exit_code == 0


@pytest.mark.parametrize("args", [["inspect", "{p}@tag:x"], ["inspect", "{p}@seq:3", "-m", "answer"],
                                  ["diff", "{p}@tag:x", "{p}@head"], ["convert", "{p}@tag:x", "{out}"],
                                  ["export-module", "{p}@tag:x", "answer", "{out}"]])
def test_a_point_of_a_missing_path_says_no_such_file(tmp_path: Path, args: list[str]) -> None:
    missing, out = tmp_path / "nope.journal", tmp_path / "out.json"
    line = assert_error(run(*(a.format(p=missing, out=out) for a in args)), "nope.journal", "no such file or journal")
    assert "is a document" not in line
