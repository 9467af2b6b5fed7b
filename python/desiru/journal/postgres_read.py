"""Reading a PostgreSQL journal: records by seq range in pages, the head, and waiting for appends
(LISTEN/NOTIFY on ``CHANNEL``, so a follower on another machine wakes without polling the table)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from desiru.errors import CorruptDataError, DesiruError
from desiru.journal.postgres_connect import psycopg_driver

#: the LISTEN/NOTIFY channel; the payload names the journal row and its new last seq
CHANNEL = "desiru_journal"
#: records fetched per query while reading
READ_PAGE = 4096


class Reading:
    """The reading half of ``PostgresStore`` (it uses the store's connections and journal row)."""

    def read(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, bytes]]:
        for chunk in self.read_chunks(start, stop):
            for seq, _pos, payload in chunk:
                yield seq, payload

    def read_chunks(self, start: int = 0, stop: int | None = None
                    ) -> Iterator[list[tuple[int, Any, bytes]]]:
        row = self._need_row()
        upto = (1 << 62) if stop is None else stop
        expect: int | None = None
        while True:
            def fn(conn: Any, start: int = start) -> list[Any]:
                cur = conn.cursor(binary=True)
                return cur.execute("SELECT seq, payload FROM desiru_records WHERE journal = %s AND seq >= %s AND "
                                   "seq < %s ORDER BY seq LIMIT %s", (row, start, upto, READ_PAGE)).fetchall()

            rows = self._run("reading the journal", fn)
            if not rows:
                return
            if expect is not None and rows[0][0] != expect:
                raise CorruptDataError(f"records {expect}..{rows[0][0] - 1} are missing", path=self.name,
                                       seq=expect, hint="they were compacted away while reading, or deleted by hand")
            expect = rows[-1][0] + 1
            if expect - rows[0][0] != len(rows):
                bad = next(i for i, r in enumerate(rows) if r[0] != rows[0][0] + i)
                raise CorruptDataError(f"record seq {rows[bad - 1][0] + 1} is missing", path=self.name,
                                       seq=rows[bad - 1][0] + 1, hint="restore the table from a backup")
            yield [(s, None, bytes(p)) for s, p in rows]
            if len(rows) < READ_PAGE:
                return
            start = expect

    def last_seq(self) -> int:
        row = self._need_row()
        return int(self._run("reading the head", lambda conn: conn.execute(
            "SELECT last_seq FROM desiru_journals WHERE id = %s", (row,)).fetchone()[0]))

    def first_seq(self) -> int:
        row = self._need_row()
        last, low = self._run("reading the first seq", lambda conn: conn.execute(
            "SELECT last_seq, (SELECT min(seq) FROM desiru_records WHERE journal = %s) FROM desiru_journals "
            "WHERE id = %s", (row, row)).fetchone())
        return int(low) if low is not None else int(last) + 1

    def wait_for_append(self, after_seq: int, timeout: float, poll: float = 0.02) -> bool:
        """Wait on LISTEN (woken by the NOTIFY every commit sends) until ``last_seq() > after_seq``."""
        psycopg = psycopg_driver()
        row = self._need_row()
        deadline = time.monotonic() + max(0.0, timeout)
        with self._mutex:
            listen = self._listen
            if listen is None or listen.closed or listen.broken:
                try:
                    listen = self._connect()
                    listen.execute("LISTEN desiru_journal")
                except (DesiruError, psycopg.Error):
                    return super().wait_for_append(after_seq, timeout, poll)  # polling still works
                self._listen = listen
        if self.last_seq() > after_seq:  # LISTEN is active now: no commit after this look is missed
            return True
        try:
            while (left := deadline - time.monotonic()) > 0:
                for note in listen.notifies(timeout=left, stop_after=1):
                    jid, _, seq = note.payload.partition(" ")
                    if jid == str(row) and seq.isdigit() and int(seq) > after_seq:
                        return True
        except psycopg.Error:
            with self._mutex:
                self._listen = None
            return self.last_seq() > after_seq
        return self.last_seq() > after_seq


__all__ = ["CHANNEL", "READ_PAGE", "Reading"]
