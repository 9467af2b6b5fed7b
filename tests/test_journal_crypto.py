"""Encrypted journals, rekeying and migration: nothing plaintext on disk, keys checked up front."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from programs import sample_program

import desiru as ds
from desiru.journal import Journal, JournalWarning, migrate_journal, rekey_journal, repair
from desiru.journal.file_store import LOG_DIR

KEY = bytes(range(32))
OTHER = os.urandom(32)
SECRET = "a very secret demo answer"


def _secret_program() -> ds.Program:
    p = sample_program()
    p.answer.demos.append(ds.Example(question="What is hidden?", answer=SECRET))
    return p


def _all_bytes(path: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file())


def test_encrypted_journal_round_trip_and_nothing_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "enc.journal"
    p = _secret_program()
    with Journal.open(path, key=KEY) as j:
        j.commit(p, tag="v1")
        p.answer.demos.append(ds.Example(question="second", answer=SECRET + " 2"))
        j.commit(p, tag="v2")
        j.snapshot()
        p.metadata["x"] = SECRET
        j.commit(p)
    # a torn tail is cut into a side file: that too must hold no plaintext
    seg = sorted((path / LOG_DIR).iterdir())[-1]
    data = seg.read_bytes()
    seg.write_bytes(data[:-7])
    with pytest.warns(JournalWarning):
        Journal.open(path, key=KEY).close()
    blob = _all_bytes(path)
    for needle in (SECRET.encode(), b"What is hidden", b"answer", b"BootstrapFewShot"):
        assert needle not in blob
    with Journal.open(path, key=KEY.hex()) as j:  # the same key in another spelling
        assert j.replay(tag="v2") == j.replay()
        assert SECRET + " 2" in [d.answer for d in j.replay().answer.demos]
        assert j.verify().ok


def test_keys_are_checked_when_opening(tmp_path: Path) -> None:
    path = tmp_path / "enc.journal"
    with Journal.open(path, key=KEY) as j:
        j.commit(sample_program())
    with pytest.raises(ds.MissingKeyError):
        Journal.open(path)
    with pytest.raises(ds.DecryptionError, match="key id"):
        Journal.open(path, key=OTHER)
    with pytest.raises(ds.MissingKeyError):
        Journal.open(path, readonly=True)
    plain = tmp_path / "plain.journal"
    Journal.open(plain).close()
    with pytest.raises(ds.DesiruError, match="not encrypted"):
        Journal.open(plain, key=KEY)


def test_passphrase_journal(tmp_path: Path) -> None:
    path = tmp_path / "pass.journal"
    with Journal.open(path, key="correct horse battery staple") as j:
        j.commit(_secret_program())
    with Journal.open(path, key="correct horse battery staple", readonly=True) as r:
        assert r.replay() == _secret_program()
    with pytest.raises(ds.DecryptionError):
        Journal.open(path, key="wrong horse")


def test_records_cannot_be_swapped(tmp_path: Path) -> None:
    from desiru.journal.file_store import FileStore

    path = tmp_path / "enc.journal"
    p = sample_program()
    with Journal.open(path, key=KEY) as j:
        j.commit(p)
        for i in range(4):
            p.answer.parameters["i"] = i
            j.commit(p)
    store = FileStore(path)
    store.open()
    store.lock()
    records = list(store.read())
    store.cut_after(1, "test")
    # the sealed payloads of seq 2 and 3 re-framed in swapped places: the framing holds, the AEAD does not
    store.append([(2, records[2][1]), (3, records[1][1]), *records[3:]])
    store.close()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", JournalWarning)
        j = Journal.open(path, key=KEY)
    with j:
        assert j.replay_state(seq=1) == sample_program().to_state()
        with pytest.raises(ds.DecryptionError) as info:
            j.replay_state()
        assert info.value.seq == 2
        assert {f.seq for f in j.verify().faults} == {2, 3}
    # a tampered head record refuses a writer up front
    store = FileStore(path)
    store.open()
    store.lock()
    store.cut_after(3, "test")
    store.append([(4, records[4][1])])
    store.close()
    with pytest.raises(ds.DecryptionError) as info:
        Journal.open(path, key=KEY)
    assert info.value.seq == 4
    result = repair(path, key=KEY)
    assert result.head == 1 and result.changed
    with Journal.open(path, key=KEY) as j:
        assert j.verify().ok and j.head == 1


def test_rekey_and_decrypt(tmp_path: Path) -> None:
    path = tmp_path / "enc.journal"
    p = _secret_program()
    with Journal.open(path, key=KEY, snapshot_every=3) as j:
        for i in range(8):
            p.answer.parameters["i"] = i
            j.commit(p, tag=f"t{i}")
        j.compact()
        p.metadata["after compaction"] = SECRET
        j.commit(p, tag="last")
        tags = j.tags()
        states = {t: j.replay_state(tag=t) for t in tags}
        head = j.head
    assert rekey_journal(path, KEY, OTHER) == head - j.store.first_seq() + 1 > 0
    with pytest.raises(ds.DecryptionError):
        Journal.open(path, key=KEY)
    with Journal.open(path, key=OTHER) as j:
        assert j.head == head and j.tags() == tags
        assert {t: j.replay_state(tag=t) for t in tags} == states
        assert j.verify().ok
    assert SECRET.encode() not in _all_bytes(path)
    rekey_journal(path, OTHER, None)  # decrypt
    with Journal.open(path) as j:
        assert j.replay_state() == states[max(tags, key=tags.get)]
        p.metadata["more"] = 1
        j.commit(p)
    rekey_journal(path, None, "a passphrase")
    with Journal.open(path, key="a passphrase") as j:
        assert j.replay() == p
    assert not [f for f in tmp_path.iterdir() if f.name != "enc.journal"]  # no leftovers beside it


def test_migrate_rewrites_at_the_current_version_and_upcasts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    from desiru.journal import events
    from desiru.journal.file_store import decode_header
    from desiru.serialization import migrations
    from desiru.serialization.version import CURRENT_VERSION

    path = tmp_path / "old.journal"
    p = sample_program()
    with Journal.open(path) as j:
        j.commit(p)
        p.answer.parameters["temperature"] = 0.5
        j.commit(p)
    # pretend this release reads ParameterSet at schema 2, where the key is renamed "name"
    monkeypatch.setattr(events.ParameterSet, "schema_version", 2)
    monkeypatch.setattr(events.ParameterSet, "fields", ("name", "value"))
    monkeypatch.setattr(events.ParameterSet, "to_edit", lambda self: {
        "op": "parameter_set", "path": self.path, "key": self.payload["name"], "value": self.payload["value"]})
    monkeypatch.setitem(migrations._UPCASTERS, "ParameterSet", {})

    @migrations.register_upcaster("ParameterSet", 1)
    def rename(record: dict) -> dict:
        payload = dict(record["payload"])
        payload["name"] = payload.pop("key")
        return {**record, "payload": payload}

    from desiru.journal import codec
    monkeypatch.setitem(codec.CURRENT_SCHEMA, "ParameterSet", 2)
    with Journal.open(path, readonly=True) as r:
        ev = list(r.events())[-1]
        assert ev.schema_version == 2 and ev.payload == {"name": "temperature", "value": 0.5}
    assert migrate_journal(path) == 2
    version, _ = decode_header((path / "header").read_bytes())
    assert version == CURRENT_VERSION
    with Journal.open(path, readonly=True) as r:
        raw = [r._codec.decode(s, b) for s, b in r.store.read()]
        assert raw[-1]["schema_version"] == 2 and raw[-1]["payload"]["name"] == "temperature"
