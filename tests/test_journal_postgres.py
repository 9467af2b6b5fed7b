"""The journal on PostgreSQL: the store contract, schema, errors, encryption at rest, copying.

Every test runs against the session's own server (conftest.pg_server); each one uses
a journal name of its own, so the journals also show that two in one database are
independent.
"""

from __future__ import annotations

import itertools
from typing import Any

import psycopg
import pytest
from journal_contract import StoreContract, _program

import desiru as ds
from desiru.journal import Journal, JournalStore
from desiru.journal.postgres_store import PostgresStore

_names = itertools.count()


def fresh_name(prefix: str = "t") -> str:
    return f"{prefix}-{next(_names)}-{id(_names)}"


class TestPostgresStoreContract(StoreContract):
    @pytest.fixture
    def location(self, pg_url: str) -> tuple[str, str]:
        return pg_url, fresh_name("contract")

    def connect(self, location: Any, readonly: bool = False) -> JournalStore:
        url, name = location
        return PostgresStore(url, name, readonly=readonly)


@pytest.fixture
def fresh_db(pg_url: str) -> str:
    """The URL of a new, empty database on the session's server (for tests that break tables)."""
    db = fresh_name("db").replace("-", "_")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')  # a test-made identifier, not user data
    return pg_url.replace("@/postgres?", f"@/{db}?")


def one_line_error(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and text
    return text


# -- opening and the schema ---------------------------------------------------------------------------
def test_journal_open_url_with_name_and_fragment(pg_url: str) -> None:
    name = fresh_name("open")
    p = _program()
    with Journal.open(pg_url, name=name) as j:
        j.commit(p, tag="v1")
        assert j.path.endswith(f"#{name}") and "password" not in j.path
    with Journal.open(f"{pg_url}#{name}", readonly=True) as r:
        assert r.replay(tag="v1") == p and r.verify().ok


def test_two_journals_in_one_database_are_independent(pg_url: str) -> None:
    a, b = fresh_name("a"), fresh_name("b")
    pa, pb = _program(2), _program(4)
    with Journal.open(pg_url, name=a) as ja, Journal.open(pg_url, name=b) as jb:  # two exclusive writers
        ja.commit(pa, tag="x")
        jb.commit(pb, tag="y")
        jb.commit(pb, tag="z")
    with Journal.open(pg_url, name=a, readonly=True) as ra, Journal.open(pg_url, name=b, readonly=True) as rb:
        assert ra.tags() == {"x": ra.head} and set(rb.tags()) == {"y", "z"}
        assert ra.replay() == pa and rb.replay() == pb


def test_no_name_and_unknown_name_are_one_line_errors(pg_url: str) -> None:
    with pytest.raises(ds.DesiruError, match="needs a journal name") as e:
        Journal.open(pg_url)
    one_line_error(e.value)
    with pytest.raises(ds.DesiruError, match="no journal here") as e:
        Journal.open(pg_url, name=fresh_name("absent"), create=False)
    one_line_error(e.value)


def test_refused_connection_and_bad_url_are_one_line_errors() -> None:
    from pg_server import free_port

    port = free_port()
    with pytest.raises(ds.DesiruError, match="cannot connect to PostgreSQL") as e:
        Journal.open(f"postgresql://nobody@127.0.0.1:{port}/db", name="x")
    assert "server is running" in one_line_error(e.value)
    with pytest.raises(ds.DesiruError, match="not a valid PostgreSQL connection string") as e:
        Journal.open("postgresql://u@h/db?nosuchoption=1", name="x")
    one_line_error(e.value)


def test_missing_database_says_createdb(pg_url: str) -> None:
    with pytest.raises(ds.DesiruError, match="createdb") as e:
        Journal.open(pg_url.replace("@/postgres?", "@/no_such_db?"), name="x")
    one_line_error(e.value)


def test_schema_is_versioned_and_a_newer_one_is_refused(fresh_db: str) -> None:
    with Journal.open(fresh_db, name="j") as j:
        j.commit(_program())
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM desiru_schema").fetchone() == (1,)
        conn.execute("UPDATE desiru_schema SET version = 99")
    with pytest.raises(ds.IncompatibleVersionError, match="schema 99") as e:
        Journal.open(fresh_db, name="j", readonly=True)
    assert "upgrade desiru" in one_line_error(e.value)


def test_a_missing_table_says_what_to_do(fresh_db: str) -> None:
    with Journal.open(fresh_db, name="j") as j:
        j.commit(_program())
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        conn.execute("DROP TABLE desiru_snapshots")
    with pytest.raises(ds.DesiruError, match="desiru_snapshots") as e:
        Journal.open(fresh_db, name="j", readonly=True)
    assert "restore" in one_line_error(e.value)


def test_schema_migrations_run_in_order_from_a_registry(fresh_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from desiru.journal import postgres_store as pgs

    with Journal.open(fresh_db, name="j") as j:
        j.commit(_program(), tag="before")
    monkeypatch.setitem(pgs._MIGRATIONS, 1, (2, ("ALTER TABLE desiru_journals ADD COLUMN note text",)))
    monkeypatch.setattr(pgs, "SCHEMA_VERSION", 2)
    with pytest.raises(ds.DesiruError, match="older than 2"):
        Journal.open(fresh_db, name="j", readonly=True)  # a reader never changes the tables
    with Journal.open(fresh_db, name="j") as j:  # a writer migrates them
        assert j.tags() == {"before": j.head}
    with psycopg.connect(fresh_db, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM desiru_schema").fetchone() == (2,)
        conn.execute("SELECT note FROM desiru_journals")


def test_names_are_data_never_sql(pg_url: str) -> None:
    name = "x'); DROP TABLE desiru_records; --\"#"
    store = PostgresStore(pg_url, name)
    store.create({"journal_id": b"q" * 16, "encryption": None})
    store.open()
    store.lock()
    store.append([(1, b"one")])
    reader = PostgresStore(pg_url, name, readonly=True)
    reader.open()
    assert list(reader.read()) == [(1, b"one")]
    reader.close()
    store.close()


# -- encryption at rest ---------------------------------------------------------------------------------
def _commit_secret(j: Journal, text: str, module: str) -> ds.Program:
    """Two commits: the program, then one small demo (a record small enough to stay uncompressed)."""
    p = ds.Program()
    setattr(p, module, ds.ChainOfThought("question -> answer"))
    j.commit(p)
    getattr(p, module).demos = [ds.Example(question=text, answer="a")]
    j.commit(p, tag="t")
    return p


def _raw_bytes(url: str, name: str) -> bytes:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT r.payload FROM desiru_records r JOIN desiru_journals j ON j.id = r.journal WHERE j.name = %s "
            "UNION ALL SELECT s.blob FROM desiru_snapshots s JOIN desiru_journals j ON j.id = s.journal "
            "WHERE j.name = %s UNION ALL SELECT meta FROM desiru_journals WHERE name = %s",
            (name, name, name)).fetchall()
    return b"".join(bytes(r[0]) for r in rows)


def test_the_server_never_sees_plaintext_of_an_encrypted_journal(pg_server: Any) -> None:
    secret, module = "zq-Atlantis-capital-7731", "zebra_module_4411"
    # the control journal holds other text of the same shape, unencrypted: it shows the scan below would
    # find plaintext. It shares no part with the secret: WAL pages put a header wherever a page ends, so
    # a text that contained the secret could be cut on disk into the secret alone (a false alarm)
    control, control_module = "qk-Lemuria-harbour-5190", "yak_module_8832"
    key = bytes(range(32))
    enc, plain = fresh_name("enc"), fresh_name("plain")
    with Journal.open(pg_server.url, name=enc, key=key) as j:
        program = _commit_secret(j, secret, module)
        j.snapshot()
    with Journal.open(pg_server.url, name=plain) as j:
        _commit_secret(j, control, control_module)
    raw = _raw_bytes(pg_server.url, enc)
    assert raw and secret.encode() not in raw and module.encode() not in raw and b"ChainOfThought" not in raw
    assert control.encode() in _raw_bytes(pg_server.url, plain)
    # and on the server's disk: heap files (a row is never cut across pages) and WAL after a checkpoint
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    disk = b"".join(p.read_bytes() for p in pg_server.data.rglob("*") if p.is_file())
    assert control.encode() in disk and control_module.encode() in disk
    assert secret.encode() not in disk and module.encode() not in disk
    with Journal.open(pg_server.url, name=enc, key=key, readonly=True) as r:
        assert r.replay(tag="t") == program and r.verify().ok


# -- copying between a directory and PostgreSQL ----------------------------------------------------------
def _journal_with_history(path: Any, key: Any, *, compact: bool = False) -> list[Any]:
    p = _program(4)
    with Journal.open(path, key=key) as j:
        j.commit(p, tag="base")
        for i in range(6):
            p.answer.demos[i % 4] = ds.Example(question=f"changed {i}", answer="x")
            j.commit(p, tag=f"t{i}")
            if i == 2:
                j.snapshot()
        if compact:
            j.compact()
        j.snapshot()
        return [(e.seq, e.type, e.path, dict(e.payload), e.timestamp) for e in j.events()]


@pytest.mark.parametrize("key", [None, "correct horse battery staple"], ids=["plain", "encrypted"])
@pytest.mark.parametrize("compact", [False, True], ids=["whole", "compacted"])
def test_copy_dir_to_postgres_to_dir_keeps_everything(tmp_path: Any, pg_url: str, key: Any, compact: bool) -> None:
    from desiru.journal.copy import copy_journal

    src, back, name = tmp_path / "a.journal", tmp_path / "b.journal", fresh_name("copy")
    events = _journal_with_history(src, key, compact=compact)
    r1 = copy_journal(src, pg_url, dst_name=name)
    r2 = copy_journal(f"{pg_url}#{name}", back)
    assert r1.records == r2.records == len(events) and r1.snapshots == r2.snapshots >= 1
    for where, kw in ((src, {}), (pg_url, {"name": name}), (back, {})):
        with Journal.open(where, key=key, readonly=True, **kw) as j:
            assert [(e.seq, e.type, e.path, dict(e.payload), e.timestamp) for e in j.events()] == events
            assert j.store.snapshot_seqs() == file_snapshot_seqs(src)
            assert j.verify().ok
            tags = j.tags()
            assert set(tags) >= {"t3", "t4", "t5"}
    with Journal.open(src, key=key, readonly=True) as a, Journal.open(back, key=key, readonly=True) as b:
        assert a.tags() == b.tags() and a.replay_state() == b.replay_state()
        assert a.journal_id == b.journal_id and a.encryption == b.encryption
    if key is not None:
        with pytest.raises(ds.MissingKeyError):
            Journal.open(pg_url, name=name, readonly=True)


def file_snapshot_seqs(path: Any) -> list[int]:
    from desiru.journal import FileStore

    store = FileStore(path, readonly=True)
    store.open()
    return store.snapshot_seqs()


def test_copy_refuses_an_existing_destination_and_cleans_up_a_failed_one(tmp_path: Any, pg_url: str) -> None:
    from desiru.journal.copy import copy_journal

    src, name = tmp_path / "a.journal", fresh_name("dup")
    _journal_with_history(src, None)
    copy_journal(src, pg_url, dst_name=name)
    with pytest.raises(ds.DesiruError, match="already holds a journal"):
        copy_journal(src, pg_url, dst_name=name)
    with pytest.raises(ds.DesiruError, match="already exists"):
        copy_journal(f"{pg_url}#{name}", src)
    with pytest.raises(ds.DesiruError, match="no journal"):
        copy_journal(f"{pg_url}#{fresh_name('none')}", tmp_path / "c.journal")
    assert not (tmp_path / "c.journal").exists()


def test_cli_takes_postgres_journals(tmp_path: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from desiru.cli import cli

    src, name = tmp_path / "a.journal", fresh_name("cli")
    _journal_with_history(src, None)
    monkeypatch.setenv("DESIRU_PG_URL", pg_url)
    runner = CliRunner()

    def run(*args: str) -> str:
        res = runner.invoke(cli, list(args), catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.output

    assert "copied 20 records and 2 snapshots" in run("copy", str(src), f"pg:{name}")
    assert "ok: 20 records" in run("verify", f"pg:{name}")
    assert "CheckpointTagged" in run("log", f"{pg_url}#{name}")
    res = runner.invoke(cli, ["diff", f"pg:{name}@tag:t4", f"pg:{name}@tag:t5"])
    assert res.exit_code == 1 and '+ answer  demo #1: {question: "changed 5"' in res.output
    run("replay", f"pg:{name}", "--tag", "t5", "-o", str(tmp_path / "t5.json"))
    assert ds.load(tmp_path / "t5.json") == Journal.open(src, readonly=True).replay(tag="t5")
    assert "tagged extra" in run("tag", f"pg:{name}", "extra")
    run("copy", f"pg:{name}", str(tmp_path / "back.journal"))
    assert "ok: 21 records" in run("verify", str(tmp_path / "back.journal"))
    res = runner.invoke(cli, ["repair", f"pg:{name}"])
    assert res.exit_code == 2 and "needs no repair" in res.output
    monkeypatch.delenv("DESIRU_PG_URL")
    res = runner.invoke(cli, ["log", f"pg:{name}"])
    assert res.exit_code == 2 and "DESIRU_PG_URL" in res.output


def test_locations_name_journals_one_way(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from desiru.journal.locate import split_postgres, store_for

    with pytest.raises(ds.DesiruError, match="name= is for journals in PostgreSQL"):
        Journal.open(tmp_path / "x.journal", name="a")
    with pytest.raises(ds.DesiruError, match="two journal names"):
        split_postgres("postgresql://u@h/db#a", "b")
    assert split_postgres("postgresql://u@h/db#a") == ("postgresql://u@h/db", "a")
    assert split_postgres("postgres://u@h/db", "b") == ("postgres://u@h/db", "b")
    monkeypatch.setenv("DESIRU_PG_URL", "postgresql://me@db.lan:5432/runs")
    assert split_postgres("pg:run-1") == ("postgresql://me@db.lan:5432/runs", "run-1")
    store = store_for("pg:run-1", readonly=True)
    assert isinstance(store, PostgresStore) and store.name == "postgresql://me@db.lan:5432/runs#run-1"
    monkeypatch.setenv("DESIRU_PG_URL", "postgresql://me:s3cret@db.lan/runs")  # a password never shows
    assert "s3cret" not in store_for("pg:run-1").name
