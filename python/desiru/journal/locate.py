"""Where a journal lives: a directory, or a journal in PostgreSQL named by a location string.

Locations (docs/journal.md, "PostgreSQL"):

- ``runs/qa.journal``: a journal directory (FileStore);
- ``postgresql://USER@HOST:PORT/DB#NAME`` (or ``postgres://``): the journal NAME in that
  database; any libpq URL works, so a password comes from ~/.pgpass, PGPASSFILE,
  PGSERVICE (``postgresql:///?service=runs#NAME``) or PGPASSWORD, never from the location;
- ``pg:NAME``: the journal NAME in the database of the environment variable DESIRU_PG_URL.

The ``#NAME`` part can be left out when ``name=`` is given.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from desiru.errors import DesiruError

if TYPE_CHECKING:
    from desiru.journal.store import JournalStore

#: the environment variable holding the connection string of ``pg:NAME`` locations
URL_ENV = "DESIRU_PG_URL"
_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(location: Any) -> bool:
    """Whether ``location`` names a journal in PostgreSQL (not a path)."""
    return isinstance(location, str) and (location.startswith(_SCHEMES) or location.startswith("pg:"))


def split_postgres(location: str, name: str | None = None) -> tuple[str, str]:
    """(libpq connection string, journal name) of a PostgreSQL location."""
    if location.startswith("pg:"):
        url = os.environ.get(URL_ENV)
        if not url:
            raise DesiruError(f"{location!r} takes its connection string from ${URL_ENV}, which is not set",
                              hint=f"export {URL_ENV}=postgresql://USER@HOST:PORT/DB (the password in ~/.pgpass)")
        conninfo, fragment = url.partition("#")[0], location[3:]
    else:
        conninfo, _, fragment = location.partition("#")
    if name is not None and fragment and name != fragment:
        raise DesiruError(f"two journal names: {fragment!r} in the location and {name!r} as name=",
                          hint="give the name once")
    journal = name if name is not None else fragment
    if not journal:
        raise DesiruError("a PostgreSQL location needs a journal name", path=conninfo,
                          hint="write postgresql://USER@HOST:PORT/DB#NAME, or pass name=")
    return conninfo, journal


def store_for(location: str | os.PathLike[str], *, name: str | None = None, readonly: bool = False
              ) -> JournalStore:
    """The store at ``location``: a PostgresStore for a PostgreSQL location, else a FileStore."""
    if is_postgres(location):
        from desiru.journal.postgres_store import PostgresStore

        conninfo, journal = split_postgres(str(location), name)
        return PostgresStore(conninfo, journal, readonly=readonly)
    if name is not None:
        raise DesiruError("name= is for journals in PostgreSQL; a journal directory is named by its path",
                          path=location, hint="drop name=, or give a postgresql:// location")
    from desiru.journal.file_store import FileStore

    return FileStore(location, readonly=readonly)


def location_label(location: str | os.PathLike[str], name: str | None = None) -> str:
    """A location for messages: a path as is, a PostgreSQL one without its password."""
    if not is_postgres(location):
        return os.fspath(location)
    from desiru.journal.postgres_store import safe_url

    conninfo, journal = split_postgres(str(location), name)
    return f"{safe_url(conninfo)}#{journal}"


__all__ = ["URL_ENV", "is_postgres", "location_label", "split_postgres", "store_for"]
