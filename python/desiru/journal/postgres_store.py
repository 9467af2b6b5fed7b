"""A journal kept in PostgreSQL: many writers on many machines, one transaction per commit.

Tables (created on first use, versioned in ``desiru_schema``, migrated by the steps
registered in ``postgres_schema.MIGRATIONS``)::

    desiru_journals   (id, name UNIQUE, format, meta, last_seq)   one row per journal
    desiru_records    (journal, seq, payload)  PRIMARY KEY (journal, seq)
    desiru_snapshots  (journal, seq, blob)
    desiru_aside      (journal, seq, payload, reason, cut_at)      what cut_after removed

A commit is one transaction: it locks the journal's row (``SELECT ... FOR UPDATE``),
reads ``last_seq``, inserts its records after it, moves ``last_seq`` and sends
``NOTIFY desiru_journal`` with ``"<journal row id> <last seq>"``; so concurrent
writers get gap-free seqs in committed order, and a reader sees whole commits only.
Payloads arrive sealed (the journal encrypts above the store): the server never
sees plaintext of an encrypted journal. Every value, journal names included, is a
query parameter; no SQL is built from data.

The exclusive writer of ``lock()`` holds a session advisory lock on (``LOCK_CLASS``,
row id); writers using ``append_new`` take the same lock in shared mode for their
transaction, so they work together but not beside an exclusive writer.

A lost connection: the call that meets it raises ``CommitFailedError`` for a commit
("the commit did not happen") or ``DesiruError`` for anything else; the next call
reconnects, trying ``RECONNECT_ATTEMPTS`` times with delays doubling from
``RECONNECT_DELAY`` seconds between them (about 1.5 s in all, plus up to
``CONNECT_TIMEOUT`` per attempt on a host that does not answer) before it gives up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from desiru import _engine
from desiru.errors import (
    CommitFailedError,
    CorruptDataError,
    DesiruError,
    IncompatibleVersionError,
    JournalLockedError,
)
from desiru.journal.postgres_connect import (
    RECONNECT_ATTEMPTS,
    RECONNECT_DELAY,
    Connections,
    check_name,
    one_line,
    psycopg_driver,
    safe_url,
)
from desiru.journal.postgres_read import CHANNEL, Reading
from desiru.journal.postgres_schema import MIGRATIONS as _MIGRATIONS
from desiru.journal.postgres_schema import SCHEMA_VERSION, TABLES, register_schema_migration
from desiru.journal.store import CutReport, Fault, JournalStore
from desiru.serialization.version import CURRENT_VERSION, Version

#: first key of every advisory lock desiru takes ("dsru"); the second is the journal's row id (0: schema)
LOCK_CLASS = 0x64737275


class PostgresStore(Connections, Reading, JournalStore):
    """One journal (by name) in a PostgreSQL database; see the module docstring."""

    direct_append = False  # a commit is one transaction that allocates its seqs (append_new)

    def __init__(self, conninfo: str, name: str, *, readonly: bool = False) -> None:
        self.conninfo = conninfo
        self.journal = check_name(name)
        self.readonly = readonly
        self.name = f"{safe_url(conninfo)}#{name}"
        self._conn: Any = None
        self._listen: Any = None
        self._row: int | None = None
        self._locked = False
        self._pid = os.getpid()
        self._mutex = threading.RLock()
        self._schema_ok = False
        #: the journal format version the journal was created with (set by open)
        self.version: Version = CURRENT_VERSION

    # -- schema ----------------------------------------------------------------------------------
    def _schema_version(self, conn: Any) -> int:
        if conn.execute("SELECT to_regclass('desiru_schema') IS NOT NULL").fetchone()[0] is False:
            return 0
        row = conn.execute("SELECT version FROM desiru_schema").fetchone()
        return 0 if row is None else int(row[0])

    def _ensure_schema(self, conn: Any, *, create: bool = False) -> bool:
        """Check (and, for a writer, create or migrate) the tables; False when there are none yet."""
        version = self._schema_version(conn)
        if version > SCHEMA_VERSION:
            raise IncompatibleVersionError(
                f"the database holds desiru tables of schema {version}; this release knows schema {SCHEMA_VERSION}",
                path=self.name, hint="upgrade desiru on this machine")
        if version == 0 and not create:
            return False
        if version < SCHEMA_VERSION:
            if self.readonly:
                raise DesiruError(f"the desiru tables are at schema {version}, older than {SCHEMA_VERSION}",
                                  path=self.name, hint="open the journal once as a writer with this release; "
                                  "it migrates them")
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (LOCK_CLASS,))
                version = self._schema_version(conn)  # another process may have done it meanwhile
                while version < SCHEMA_VERSION:
                    step = _MIGRATIONS.get(version)
                    if step is None:
                        raise IncompatibleVersionError(f"no migration of the desiru tables from schema {version}",
                                                       path=self.name, hint="upgrade desiru")
                    for statement in step[1]:
                        conn.execute(statement)
                    version = step[0]
                    conn.execute("UPDATE desiru_schema SET version = %s", (version,))
        missing = [t for t, ok in zip(TABLES, conn.execute(
            "SELECT " + ", ".join(f"to_regclass('{t}') IS NOT NULL" for t in TABLES)).fetchone()) if not ok]
        if missing:
            raise self._missing_table(f"table {', '.join(missing)} does not exist")
        self._schema_ok = True
        return True

    # -- lifecycle -------------------------------------------------------------------------------
    def exists(self) -> bool:
        def fn(conn: Any) -> bool:
            if not self._schema_ok and not self._ensure_schema(conn):
                return False
            return conn.execute("SELECT 1 FROM desiru_journals WHERE name = %s", (self.journal,)).fetchone() \
                is not None

        return bool(self._run("looking for the journal", fn))

    def create(self, meta: dict[str, Any]) -> None:
        if self.readonly:
            raise DesiruError("this store was opened read-only", path=self.name)
        body = _engine.packb(meta)

        def fn(conn: Any) -> None:
            if not self._schema_ok:
                self._ensure_schema(conn, create=True)
            conn.execute("INSERT INTO desiru_journals (name, format, meta) VALUES (%s, %s, %s) "
                         "ON CONFLICT (name) DO NOTHING", (self.journal, str(CURRENT_VERSION), body))

        self._run("creating the journal", fn)

    def open(self) -> dict[str, Any]:
        def fn(conn: Any) -> Any:
            if not self._schema_ok and not self._ensure_schema(conn):
                return None
            return conn.execute("SELECT id, format, meta FROM desiru_journals WHERE name = %s",
                                (self.journal,)).fetchone()

        row = self._run("opening the journal", fn)
        if row is None:
            raise DesiruError("no journal of this name in the database", path=self.name,
                              hint="check the name, or create it with desiru.Journal.open(url, name=...)")
        self._row = int(row[0])
        self.version = version = Version(row[1])
        if version.major != CURRENT_VERSION.major:
            raise IncompatibleVersionError(
                f"journal format {version} cannot be read by this release (format {CURRENT_VERSION})",
                path=self.name, hint="upgrade desiru" if version > CURRENT_VERSION else
                "copy it to a directory with a release that reads both, migrate it there and copy it back")
        meta = _engine.unpackb(bytes(row[2]))
        if not isinstance(meta, dict):
            raise CorruptDataError("the journal's meta is malformed", path=self.name)
        return meta

    def close(self) -> None:
        with self._mutex:
            self.unlock()  # at once: a closed session frees its locks only when the server notices
            self._drop()
            listen, self._listen = self._listen, None
            if listen is not None and os.getpid() == self._pid:
                try:
                    listen.close()
                except Exception:
                    pass

    def __del__(self) -> None:  # a store dropped without close() still hangs up (and frees its lock)
        try:
            self.close()
        except Exception:
            pass

    def _need_row(self) -> int:
        if self._row is None:
            raise DesiruError("the store is not open", path=self.name, hint="call open() first")
        return self._row

    def drop(self) -> None:
        """Delete this journal from the database, records and snapshots included (a failed copy's)."""
        self._need_writable()
        self._run("deleting the journal", lambda conn: conn.execute(
            "DELETE FROM desiru_journals WHERE name = %s", (self.journal,)), retry=False)
        self._row = None

    # -- writers -----------------------------------------------------------------------------------
    def _take_lock(self, conn: Any) -> None:
        row = self._need_row()
        if not conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, row)).fetchone()[0]:
            holder = conn.execute(
                "SELECT a.pid, a.client_addr, a.application_name FROM pg_locks l JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.classid = %s::oid AND l.objid = %s::oid "
                "AND l.objsubid = 2 AND l.granted AND l.pid <> pg_backend_pid() LIMIT 1",
                (LOCK_CLASS, row)).fetchone()
            who = f" (server pid {holder[0]}, client {holder[1] or 'local socket'})" if holder else ""
            raise JournalLockedError(f"another writer holds this journal{who}", path=self.name,
                                     hint="close the other writer first, or open with readonly=True")
        self._locked = True

    def lock(self) -> None:
        if self.readonly:
            raise DesiruError("this store was opened read-only", path=self.name)
        self._need_row()
        with self._mutex:
            if not self._locked:
                self._run("taking the writer lock", self._take_lock)

    def lock_shared(self) -> None:
        """Many writers: each commit takes the journal's lock in shared mode inside its transaction."""
        if self.readonly:
            raise DesiruError("this store was opened read-only", path=self.name)
        self._need_row()

    def unlock(self) -> None:
        with self._mutex:
            if not self._locked:
                return
            self._locked = False
            if os.getpid() != self._pid:
                return  # the lock is the parent's session's, not this forked child's
            conn = self._conn
            if conn is not None and not conn.closed and not conn.broken:
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, self._row))
                except Exception:
                    self._drop()  # closing the session releases the lock too

    def _need_writer(self) -> None:
        if not self._locked:
            raise DesiruError("this operation needs the writer lock", path=self.name)

    def _commit(self, make: Callable[[int], Sequence[tuple[int, bytes]]], *, exclusive: bool
                ) -> Sequence[tuple[int, bytes]]:
        """One transaction: lock the journal row, build the records after its last seq, insert them."""
        psycopg = psycopg_driver()
        row = self._need_row()
        with self._mutex:
            conn = self._connection_for_commit()
            phase = "start"
            records: Sequence[tuple[int, bytes]] = ()
            try:
                with conn.transaction():
                    if exclusive:
                        (last,) = conn.execute("SELECT last_seq FROM desiru_journals WHERE id = %s FOR UPDATE",
                                               (row,)).fetchone()
                    else:
                        last, shared = conn.execute(
                            "SELECT last_seq, pg_try_advisory_xact_lock_shared(%s, %s) FROM desiru_journals "
                            "WHERE id = %s FOR UPDATE", (LOCK_CLASS, row, row)).fetchone()
                        if not shared:
                            raise JournalLockedError("an exclusive writer holds this journal", path=self.name,
                                                     hint="close it, or open every writer in shared mode")
                    records = make(int(last))
                    if not records:
                        return records
                    seqs = [s for s, _ in records]
                    expected = last + 1 if last else seqs[0]
                    if seqs != list(range(expected, expected + len(seqs))):
                        raise DesiruError(f"append of seq {seqs[0]}, expected {expected}", path=self.name)
                    # one statement (one round trip while the row is locked); NOTIFY is sent at COMMIT
                    conn.execute(
                        "WITH r AS (INSERT INTO desiru_records (journal, seq, payload) "
                        "SELECT %s, s, p FROM unnest(%s::bigint[], %s::bytea[]) AS t (s, p)), "
                        "u AS (UPDATE desiru_journals SET last_seq = %s WHERE id = %s) "
                        "SELECT pg_notify(%s, %s)",
                        (row, seqs, [bytes(p) for _, p in records], seqs[-1], row, CHANNEL, f"{row} {seqs[-1]}"))
                    phase = "commit"
            except psycopg.errors.UndefinedTable as exc:
                raise self._missing_table(exc) from None
            except psycopg.OperationalError as exc:
                if not (conn.closed or conn.broken):
                    raise CommitFailedError(f"the commit failed: {one_line(exc)}; it did not happen",
                                            path=self.name) from None
                self._drop()
                if phase == "commit":
                    return self._in_doubt(records, exc)
                raise CommitFailedError(f"the connection to PostgreSQL was lost ({one_line(exc)}); the commit "
                                        "did not happen", path=self.name,
                                        hint="commit again: the next call reconnects") from None
            except psycopg.Error as exc:
                raise CommitFailedError(f"the commit failed: {one_line(exc)}; it did not happen",
                                        path=self.name) from None
            return records

    def _connection_for_commit(self) -> Any:
        try:
            return self._connection()
        except JournalLockedError:
            raise
        except DesiruError as exc:
            raise CommitFailedError(f"{exc.message}; the commit did not happen", path=self.name,
                                    hint=exc.hint) from None

    def _in_doubt(self, records: Sequence[tuple[int, bytes]], exc: BaseException) -> Sequence[tuple[int, bytes]]:
        """The connection broke while COMMIT was on its way: look whether the records landed."""
        first, last = records[0][0], records[-1][0]
        try:
            conn = self._connection()
            got = conn.execute("SELECT seq, payload FROM desiru_records WHERE journal = %s AND seq IN (%s, %s) "
                               "ORDER BY seq", (self._row, first, last)).fetchall()
        except Exception:
            raise DesiruError(f"the connection to PostgreSQL was lost while it confirmed the commit of seqs "
                              f"{first}..{last} ({one_line(exc)}); it may have happened", path=self.name,
                              hint="close the journal and open it again to see what the database holds") from None
        want = [(first, bytes(records[0][1])), (last, bytes(records[-1][1]))]
        if [(s, bytes(p)) for s, p in got] == want[: len({first, last})]:
            return records  # it committed; only the answer was lost
        raise CommitFailedError(f"the connection to PostgreSQL was lost ({one_line(exc)}); the commit did not "
                                "happen", path=self.name, hint="commit again") from None

    def append(self, records: Sequence[tuple[int, bytes]]) -> None:
        self._need_writer()
        if records:
            self._commit(lambda _last: records, exclusive=True)

    def append_new(self, make: Callable[[int], Sequence[tuple[int, bytes]]]) -> Sequence[tuple[int, bytes]]:
        if self.readonly:
            raise DesiruError("this store was opened read-only", path=self.name)
        return self._commit(make, exclusive=self._locked)

    def start_at(self, first_seq: int) -> None:
        """Writer of an empty journal: its log begins at ``first_seq`` (a copy of a compacted journal)."""
        self._need_writer()

        def fn(conn: Any) -> None:
            done = conn.execute("UPDATE desiru_journals SET last_seq = %s WHERE id = %s AND last_seq = 0 AND NOT "
                                "EXISTS (SELECT 1 FROM desiru_records WHERE journal = %s) RETURNING id",
                                (first_seq - 1, self._row, self._row)).fetchone()
            if done is None:
                raise DesiruError("start_at() needs an empty journal", path=self.name)

        self._run("starting the log", fn, retry=False)

    def sync(self) -> None:
        """Nothing to do: a commit is durable when its transaction returns."""

    # -- cutting and dropping ----------------------------------------------------------------------
    def recover(self) -> CutReport | None:
        """Nothing is ever torn: a commit is one transaction."""
        self._need_writer()
        return None

    def cut_after(self, seq: int, reason: str) -> CutReport | None:
        self._need_writer()
        row = self._need_row()

        def fn(conn: Any) -> list[Any]:
            with conn.transaction():
                conn.execute("SELECT 1 FROM desiru_journals WHERE id = %s FOR UPDATE", (row,))
                cut = conn.execute(
                    "WITH d AS (DELETE FROM desiru_records WHERE journal = %s AND seq > %s RETURNING seq, payload), "
                    "a AS (INSERT INTO desiru_aside (journal, seq, payload, reason) SELECT %s, seq, payload, %s "
                    "FROM d) SELECT seq, octet_length(payload) FROM d ORDER BY seq",
                    (row, seq, row, reason)).fetchall()
                if cut:
                    conn.execute("UPDATE desiru_journals SET last_seq = %s WHERE id = %s", (seq, row))
                return list(cut)

        cut = self._run("cutting the journal", fn, retry=False)
        if not cut:
            return None
        return CutReport(after_seq=seq, reason=reason, nbytes=sum(n for _, n in cut),
                         kept_in=f"table desiru_aside (journal {self.journal!r})", seqs=tuple(s for s, _ in cut))

    def drop_before(self, seq: int) -> int:
        self._need_writer()
        row = self._need_row()
        freed = self._run("compacting the journal", lambda conn: conn.execute(
            "WITH d AS (DELETE FROM desiru_records WHERE journal = %s AND seq <= %s RETURNING payload) "
            "SELECT coalesce(sum(octet_length(payload)), 0) FROM d", (row, seq)).fetchone()[0], retry=False)
        return int(freed)

    def check(self) -> tuple[int, list[Fault]]:
        row = self._need_row()

        def fn(conn: Any) -> tuple[Any, Any, list[Any]]:
            stats = conn.execute("SELECT count(*), max(seq), (SELECT last_seq FROM desiru_journals WHERE id = %s) "
                                 "FROM desiru_records WHERE journal = %s", (row, row)).fetchone()
            gaps = conn.execute("SELECT prev, seq FROM (SELECT seq, lag(seq) OVER (ORDER BY seq) AS prev FROM "
                                "desiru_records WHERE journal = %s) t WHERE seq <> prev + 1 ORDER BY seq LIMIT 100",
                                (row,)).fetchall()
            return stats[0], (stats[1], stats[2]), gaps

        count, (high, last), gaps = self._run("checking the journal", fn)
        faults = [Fault(f"seq gap after {prev}", seq=seq) for prev, seq in gaps]
        if high is not None and high != last:
            faults.append(Fault(f"the newest record is seq {high} but the journal's head says {last}", seq=high))
        return int(count), faults

    # -- snapshots ---------------------------------------------------------------------------------
    def _need_writable(self) -> None:
        if self.readonly:
            raise DesiruError("this store was opened read-only", path=self.name)

    def put_snapshot(self, seq: int, blob: bytes) -> None:
        self._need_writable()
        row = self._need_row()
        self._run("writing a snapshot", lambda conn: conn.execute(
            "INSERT INTO desiru_snapshots (journal, seq, blob) VALUES (%s, %s, %s) ON CONFLICT (journal, seq) "
            "DO UPDATE SET blob = EXCLUDED.blob", (row, seq, bytes(blob))), retry=False)

    def get_snapshot(self, seq: int) -> bytes:
        row = self._need_row()
        got = self._run("reading a snapshot", lambda conn: conn.cursor(binary=True).execute(
            "SELECT blob FROM desiru_snapshots WHERE journal = %s AND seq = %s", (row, seq)).fetchone())
        if got is None:
            raise DesiruError(f"no snapshot at seq {seq}", path=self.name, seq=seq)
        return bytes(got[0])

    def snapshot_seqs(self) -> list[int]:
        row = self._need_row()
        return [int(r[0]) for r in self._run("listing snapshots", lambda conn: conn.execute(
            "SELECT seq FROM desiru_snapshots WHERE journal = %s ORDER BY seq", (row,)).fetchall())]

    def delete_snapshot(self, seq: int) -> None:
        self._need_writable()
        row = self._need_row()
        self._run("deleting a snapshot", lambda conn: conn.execute(
            "DELETE FROM desiru_snapshots WHERE journal = %s AND seq = %s", (row, seq)), retry=False)

    def size(self) -> int:
        row = self._need_row()
        return int(self._run("measuring the journal", lambda conn: conn.execute(
            "SELECT coalesce((SELECT sum(octet_length(payload)) FROM desiru_records WHERE journal = %s), 0) + "
            "coalesce((SELECT sum(octet_length(blob)) FROM desiru_snapshots WHERE journal = %s), 0)",
            (row, row)).fetchone()[0]))


__all__ = ["CHANNEL", "RECONNECT_ATTEMPTS", "RECONNECT_DELAY", "SCHEMA_VERSION", "PostgresStore",
           "register_schema_migration", "safe_url"]
