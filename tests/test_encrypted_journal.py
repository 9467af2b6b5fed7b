"""Encrypted journals: keys, record binding (swapped, reordered, dropped, foreign records),
no plaintext in any file of the journal directory, and ds.rekey on journals.

Tampering is done the way an attacker with write access would: the records are re-framed
with the journal's own salt (read from its header), so the framing checksums hold and only
the encryption's associated data (journal id + seq) can catch the change.
"""

from __future__ import annotations

import base64
import os
import warnings
from pathlib import Path

import pytest
from programs import QA, sample_program

import desiru as ds
from desiru import _engine, crypto
from desiru.journal import JournalWarning
from desiru.journal.file_store import HEADER_FILE, LOG_DIR, decode_header

RAW = bytes(range(7, 39))
PASSPHRASE = "journal passphrase 42"
MARKER = "MARKER-j3Wq-confidential-demo"


def versions(n: int, *, marked_events: bool = False) -> list[QA]:
    """n programs, each one parameter change after the last (one small event per commit).

    The marker always sits in a demo; with ``marked_events`` every commit also sets a parameter
    holding it, so small (uncompressed) records carry it too.
    """
    p = sample_program()
    p.answer.demos.append(ds.Example(question=f"secret {MARKER}", answer=MARKER))
    out = []
    for i in range(n):
        p.retrieve.parameters["step"] = i
        if marked_events:
            p.answer.parameters["note"] = f"{MARKER}-{i}"
        out.append(p.copy())
    return out


def build(path: Path, key: object, n: int = 6, tag: str | None = None, *, marked_events: bool = False) -> list[QA]:
    """A journal of ``n`` commits; returns the programs committed."""
    progs = versions(n, marked_events=marked_events)
    with ds.Journal.open(path, key=key) as j:
        for i, p in enumerate(progs):
            j.commit(p, tag=tag if i == n - 1 else None)
    return progs


def salt_of(path: Path) -> int:
    return decode_header((path / HEADER_FILE).read_bytes())[1]["salt"]


def segments(path: Path) -> list[Path]:
    return sorted((path / LOG_DIR).iterdir())


def read_log(seg: Path, salt: int) -> list[tuple[int, bytes]]:
    records, good_end, fault = _engine.frame_scan(seg.read_bytes(), salt)
    assert fault is None and good_end == seg.stat().st_size
    return [(seq, bytes(payload)) for seq, _, payload in records]


def write_log(seg: Path, records: list[tuple[int, bytes]], salt: int) -> None:
    seg.write_bytes(b"".join(_engine.frame_encode(payload, seq, salt) for seq, payload in records))


def all_bytes(path: Path) -> list[tuple[Path, bytes]]:
    return [(f, f.read_bytes()) for f in sorted(path.rglob("*")) if f.is_file()]


def outcome(path: Path, key: object, expected: QA) -> str | None:
    """How the journal at ``path`` reports damage: a description, or None when all looks well."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", JournalWarning)
            j = ds.Journal.open(path, key=key)
    except (ds.DesiruError, JournalWarning) as exc:
        return f"open: {type(exc).__name__}: {exc}"
    with j:
        report = j.verify()
        if report.faults:
            return f"verify: {report.faults[0]}"
        try:
            replayed = j.replay()
        except ds.DesiruError as exc:
            return f"replay: {type(exc).__name__}: {exc}"
        if replayed != expected:
            return "replay: a different program"  # wrong, but at least not the expected head
    return None


# -- keys ---------------------------------------------------------------------------------------
def test_round_trip_with_every_key_form(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    progs = build(path, RAW, tag="final")
    forms = [RAW, RAW.hex(), base64.b64encode(RAW).decode(), crypto.Key.from_user(RAW)]
    for form in forms:
        with ds.Journal.open(path, key=form) as j:
            assert j.replay() == progs[-1]
            assert j.replay(tag="final") == progs[-1]
            assert j.replay(seq=1) == progs[0]
            assert [e.seq for e in j.events()] == list(range(1, j.head + 1))


def test_missing_wrong_and_unneeded_keys(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    build(path, RAW, n=2)
    with pytest.raises(ds.MissingKeyError):
        ds.Journal.open(path)
    other = os.urandom(32)
    with pytest.raises(ds.DecryptionError) as err:
        ds.Journal.open(path, key=other)
    assert f"encrypted with key id {crypto.key_id_of(RAW)}; the key given has id {crypto.key_id_of(other)}" in str(
        err.value
    )
    plain = tmp_path / "plain.journal"
    build(plain, None, n=2)
    with pytest.raises(ds.DesiruError, match="not encrypted"):
        ds.Journal.open(plain, key=RAW)


def test_passphrase_journal(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    progs = build(path, PASSPHRASE, n=3)
    with ds.Journal.open(path, key=PASSPHRASE) as j:
        assert j.replay() == progs[-1]
        j.commit(versions(4)[-1])
    with pytest.raises(ds.DecryptionError, match="wrong passphrase"):
        ds.Journal.open(path, key=PASSPHRASE.upper())
    enc = decode_header((path / HEADER_FILE).read_bytes())[1]["meta"]["encryption"]
    assert enc["kdf"]["n"] == crypto.SCRYPT_N and len(enc["kdf"]["salt"]) == crypto.SALT_SIZE


# -- records bound to their journal and seq ---------------------------------------------------------
def test_records_are_encrypted_with_the_spec_layout(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    build(path, RAW, n=3)
    journal_id = decode_header((path / HEADER_FILE).read_bytes())[1]["meta"]["journal_id"]
    (seg,) = segments(path)
    key = crypto.Key.from_user(RAW)
    for seq, payload in read_log(seg, salt_of(path)):
        assert payload[0] == crypto.RECORD_VERSION
        assert crypto.open_record(key, journal_id, seq, payload)  # the journal's own layout is inside
        with pytest.raises(ds.DecryptionError):
            crypto.open_record(key, journal_id, seq + 1, payload)
        with pytest.raises(ds.DecryptionError):
            crypto.open_record(key, journal_id + b"x", seq, payload)


def _tampered(tmp_path: Path, change: str) -> tuple[Path, QA]:
    path = tmp_path / f"{change}.journal"
    progs = build(path, RAW, n=8)
    (seg,) = segments(path)
    salt = salt_of(path)
    recs = read_log(seg, salt)
    seqs = [s for s, _ in recs]
    pays = [p for _, p in recs]
    assert seqs == list(range(1, len(recs) + 1)) and len(recs) == 8
    if change == "swapped":  # two payloads exchange places, the framing seqs stay in order
        pays[3], pays[4] = pays[4], pays[3]
        new = list(zip(seqs, pays))
    elif change == "reordered":  # a run of three rotated
        pays[2:5] = [pays[3], pays[4], pays[2]]
        new = list(zip(seqs, pays))
    elif change == "dropped-renumbered":  # one record cut out, the later ones renumbered to close the gap
        del pays[3]
        new = list(zip(seqs[:-1], pays))
    elif change == "dropped-gap":  # one record cut out, the gap left in the seqs
        new = [r for r in recs if r[0] != 4]
    elif change == "foreign":  # a record of another journal under the same key, at the same seq
        other = tmp_path / "other.journal"
        build(other, RAW, n=8)
        foreign = dict(read_log(segments(other)[0], salt_of(other)))
        new = [(s, foreign[s] if s == 4 else p) for s, p in recs]
        assert foreign[4] != pays[3]
    elif change == "replaced-head":  # the last record replaced by an earlier one
        new = [*recs[:-1], (seqs[-1], pays[2])]
    else:
        raise AssertionError(change)
    write_log(seg, new, salt)
    return path, progs[-1]


@pytest.mark.parametrize(
    "change", ["swapped", "reordered", "dropped-renumbered", "dropped-gap", "foreign", "replaced-head"]
)
def test_tampered_records_are_detected(tmp_path: Path, change: str) -> None:
    path, expected = _tampered(tmp_path, change)
    found = outcome(path, RAW, expected)
    assert found is not None, f"{change} went undetected"


@pytest.mark.parametrize(
    ("change", "seqs"),
    # open reads the head record first, so a renumbered tail fails there (seq 7) before replay reaches seq 4
    [("swapped", {4}), ("reordered", {3}), ("dropped-renumbered", {4, 7}), ("foreign", {4})],
)
def test_tampered_records_fail_decryption_naming_the_seq(tmp_path: Path, change: str, seqs: set[int]) -> None:
    path, _ = _tampered(tmp_path, change)
    with pytest.raises(ds.DecryptionError) as err:
        with ds.Journal.open(path, key=RAW) as j:
            j.replay()
    assert err.value.seq in seqs and str(path) in str(err.value)
    assert not isinstance(err.value, ds.MissingKeyError)


def test_every_flipped_byte_of_a_record_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    expected = build(path, RAW, n=3)[-1]
    (seg,) = segments(path)
    salt = salt_of(path)
    recs = read_log(seg, salt)
    seq, payload = recs[1]
    for i in range(len(payload)):
        bad = bytearray(payload)
        bad[i] ^= 0x01
        write_log(seg, [recs[0], (seq, bytes(bad)), *recs[2:]], salt)
        assert outcome(path, RAW, expected) is not None, i


# -- no plaintext anywhere ------------------------------------------------------------------------
def _exercise(path: Path, key: object) -> None:
    """Commits, tags, a snapshot, compaction, more commits, then a torn tail that open cuts aside."""
    progs = versions(12, marked_events=True)
    with ds.Journal.open(path, key=key, snapshot_every=5) as j:
        for i, p in enumerate(progs[:8]):
            j.commit(p, tag=f"tag-{MARKER}-{i}" if i % 3 == 0 else None)
        j.snapshot()
        j.compact(keep_tags=False)
        for i, p in enumerate(progs[8:], start=8):
            j.commit(p, tag=f"late-{MARKER}" if i == 9 else None)
        j.snapshot()
    seg = segments(path)[-1]
    with open(seg, "ab") as f:  # half a record: a crash in the middle of an append
        f.write(_engine.frame_encode(os.urandom(200), 10_000, salt_of(path))[:100])
    with pytest.warns(JournalWarning):
        with ds.Journal.open(path, key=key) as j:
            assert j.replay() == progs[-1]
            assert j.replay(tag=f"late-{MARKER}") == progs[9]
            with pytest.raises(ds.DesiruError, match="compacted away"):  # its name is still known, encrypted
                j.replay(tag=f"tag-{MARKER}-6")


@pytest.mark.parametrize("key", [RAW, PASSPHRASE], ids=["raw", "passphrase"])
def test_no_plaintext_in_any_file(tmp_path: Path, key: object) -> None:
    path = tmp_path / "qa.journal"
    _exercise(path, key)
    files = all_bytes(path)
    names = {f.relative_to(path).parts[0] for f, _ in files}
    assert {"header", "log", "snapshots", "damaged"} <= names  # snapshots and the cut-off tail are scanned too
    assert any(f.suffix == ".snap" for f, _ in files)
    needles = [MARKER.encode(), MARKER.encode("utf-16-le"), MARKER[:14].encode(), b"Capital of France"]
    for f, data in files:
        for needle in needles:
            assert needle not in data, f"{needle!r} in {f}"
        assert RAW not in data and RAW.hex().encode() not in data and PASSPHRASE.encode() not in data


def test_the_plaintext_check_can_fail(tmp_path: Path) -> None:
    path = tmp_path / "plain.journal"
    _exercise(path, None)
    assert any(MARKER.encode() in data for _, data in all_bytes(path))


# -- rekey ----------------------------------------------------------------------------------------
def test_rekey_journal_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    progs = build(path, RAW, n=5, tag="v1", marked_events=True)
    new = os.urandom(32)
    r = ds.rekey(path, RAW.hex(), new)
    assert (r.kind, r.old_key_id, r.new_key_id) == ("journal", crypto.key_id_of(RAW), crypto.key_id_of(new))
    with ds.Journal.open(path, key=new) as j:
        assert j.replay(tag="v1") == progs[-1]
        assert j.replay(seq=1) == progs[0]  # ProgramCreated alone
    with pytest.raises(ds.DecryptionError, match="key id"):
        ds.Journal.open(path, key=RAW)
    r = ds.rekey(path, new, PASSPHRASE)
    assert r.new_key_id is not None and r.new_key_id != r.old_key_id
    with ds.Journal.open(path, key=PASSPHRASE) as j:
        assert j.replay() == progs[-1]
    r = ds.rekey(path, PASSPHRASE, None)
    assert r.new_key_id is None
    with ds.Journal.open(path) as j:
        assert j.replay() == progs[-1]
    assert any(MARKER.encode() in data for _, data in all_bytes(path))
    ds.rekey(path, None, RAW)
    assert not any(MARKER.encode() in data for _, data in all_bytes(path))
    with ds.Journal.open(path, key=RAW) as j:
        assert j.replay() == progs[-1]


def test_rekey_journal_with_a_wrong_key_leaves_it_intact(tmp_path: Path) -> None:
    path = tmp_path / "qa.journal"
    build(path, RAW, n=4)
    before = all_bytes(path)
    with pytest.raises(ds.DecryptionError):
        ds.rekey(path, os.urandom(32), PASSPHRASE)
    with pytest.raises(ds.MissingKeyError):
        ds.rekey(path, None, PASSPHRASE)
    assert all_bytes(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qa.journal"]
