"""Connections of a PostgreSQL journal store: the driver, connection strings and journal names, and
connecting again (bounded retries) when a connection is lost."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from desiru.errors import DesiruError, JournalLockedError

#: reconnecting: this many attempts, RECONNECT_DELAY s between the first two, each delay doubling
RECONNECT_ATTEMPTS = 5
RECONNECT_DELAY = 0.1
#: seconds to wait for a connection to open
CONNECT_TIMEOUT = 10
URL_HINT = ("write postgresql://USER@HOST:PORT/DB (libpq URL); passwords come from ~/.pgpass (PGPASSFILE), "
            "PGSERVICE or PGPASSWORD, never from the command line")


def psycopg_driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise DesiruError("a PostgreSQL journal needs psycopg 3", hint="pip install 'desiru[postgres]'") from None
    return psycopg


def one_line(exc: BaseException) -> str:
    """A driver message on one line (libpq's come on several, with tabs)."""
    return "; ".join(part.strip() for part in str(exc).splitlines() if part.strip()) or type(exc).__name__


def safe_url(conninfo: str) -> str:
    """The connection string without a password, for messages and names."""
    psycopg = psycopg_driver()
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "postgresql://(unreadable connection string)"
    user = params.get("user") or ""
    host = params.get("host") or ""
    port = params.get("port")
    db = params.get("dbname") or ""
    netloc = f"{user}@" if user else ""
    if host and not host.startswith("/"):
        netloc += host
    if port:
        netloc += f":{port}"
    tail = f"?host={host}" if host.startswith("/") else ""
    return f"postgresql://{netloc}/{db}{tail}"


def check_name(name: Any) -> str:
    """A journal name: a non-empty str of at most 200 characters without NUL."""
    if not isinstance(name, str) or not name or len(name) > 200 or "\x00" in name:
        raise DesiruError(f"a PostgreSQL journal needs a name (1-200 characters), got {name!r}",
                          hint='pass name="run-1" to Journal.open, or write the URL as postgresql://...#run-1')
    return name


class Connections:
    """The connection half of ``PostgresStore`` (it uses the store's conninfo, name, mutex and lock state)."""

    def _connect(self) -> Any:
        psycopg = psycopg_driver()
        try:
            return psycopg.connect(self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                   application_name="desiru")
        except psycopg.ProgrammingError as exc:
            raise DesiruError(f"not a valid PostgreSQL connection string: {one_line(exc)}", path=self.name,
                              hint=URL_HINT) from None
        except psycopg.Error as exc:
            text = one_line(exc)
            if "does not exist" in text and "database" in text:
                hint = "create the database (createdb NAME) or fix the URL's database name"
            elif "password" in text or "authentication" in text:
                hint = "put the password in ~/.pgpass (or PGPASSFILE / PGSERVICE / PGPASSWORD), never in the URL"
            else:
                hint = "check that the server is running and the URL's host and port"
            raise DesiruError(f"cannot connect to PostgreSQL: {text}", path=self.name, hint=hint) from None

    def _connection(self) -> Any:
        """The open connection; (re)connects with bounded retries and retakes the writer lock."""
        if os.getpid() != self._pid:
            raise DesiruError("this PostgreSQL journal was opened in another process (before a fork)",
                              path=self.name, hint="open the journal again in this process")
        conn = self._conn
        if conn is not None and not conn.closed and not conn.broken:
            return conn
        self._drop()
        delay = RECONNECT_DELAY
        for attempt in range(RECONNECT_ATTEMPTS):
            try:
                conn = self._connect()
                break
            except DesiruError:
                if attempt == RECONNECT_ATTEMPTS - 1 or self._row is None:
                    raise  # never reached: fail at once; reached before: retry a bounded number of times
                time.sleep(delay)
                delay *= 2
        self._conn = conn
        if self._locked:
            self._locked = False
            try:
                self._take_lock(conn)
            except JournalLockedError as exc:
                raise JournalLockedError("the connection was lost and another writer took this journal meanwhile",
                                         path=self.name, hint="close the journal and open it again") from exc
            except psycopg_driver().Error as exc:
                self._drop()
                raise DesiruError(f"taking the writer lock again failed: {one_line(exc)}", path=self.name,
                                  hint="the next call tries again") from None
        return conn

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and os.getpid() == self._pid:  # a forked child never hangs up its parent's session
            try:
                conn.close()
            except Exception:  # a broken socket: nothing left to release
                pass

    def _run(self, what: str, fn: Callable[[Any], Any], *, retry: bool = True) -> Any:
        """``fn(connection)`` under the store's mutex, driver errors turned into DesiruError.

        A read that meets a lost connection runs once more on a new one (reads change nothing).
        """
        psycopg = psycopg_driver()
        with self._mutex:
            for attempt in (0, 1):
                conn = self._connection()
                try:
                    return fn(conn)
                except psycopg.errors.UndefinedTable as exc:
                    raise self._missing_table(exc) from None
                except psycopg.OperationalError as exc:
                    if not (conn.closed or conn.broken):
                        raise DesiruError(f"{what} failed: {one_line(exc)}", path=self.name) from None
                    self._drop()
                    if not retry or attempt:
                        raise DesiruError(f"{what} failed: the connection to PostgreSQL was lost ({one_line(exc)})",
                                          path=self.name, hint="the next call reconnects") from None
                except psycopg.Error as exc:
                    raise DesiruError(f"{what} failed: {one_line(exc)}", path=self.name) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _missing_table(self, exc: Any) -> DesiruError:
        return DesiruError(f"a desiru table is missing from the database ({one_line(exc)})", path=self.name,
                           hint="restore the desiru_* tables from a backup, or drop desiru_schema so that the "
                           "next open creates them afresh (the journals in them are lost)")


__all__ = ["CONNECT_TIMEOUT", "RECONNECT_ATTEMPTS", "RECONNECT_DELAY", "URL_HINT", "Connections", "check_name",
           "one_line", "safe_url"]
