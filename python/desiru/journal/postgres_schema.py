"""The tables of a PostgreSQL journal store: their version and the registered SQL migrations between versions."""

from __future__ import annotations

from collections.abc import Sequence

from desiru.errors import DesiruError

#: the version of the tables below; a database at a newer one is refused, an older one migrated
SCHEMA_VERSION = 1
TABLES = ("desiru_schema", "desiru_journals", "desiru_records", "desiru_snapshots", "desiru_aside")

#: schema migrations: from version -> (to version, SQL statements); applied in order under a lock
MIGRATIONS: dict[int, tuple[int, tuple[str, ...]]] = {}


def register_schema_migration(from_version: int, to_version: int, statements: Sequence[str]) -> None:
    """Register the SQL that brings the tables from ``from_version`` to ``to_version`` (0: none yet)."""
    if from_version in MIGRATIONS:
        raise DesiruError(f"a schema migration from version {from_version} is already registered")
    MIGRATIONS[from_version] = (to_version, tuple(statements))


register_schema_migration(0, 1, (
    "CREATE TABLE desiru_schema (one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL)",
    "INSERT INTO desiru_schema (version) VALUES (0)",
    """CREATE TABLE desiru_journals (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name text NOT NULL UNIQUE,
        format text NOT NULL,
        meta bytea NOT NULL,
        last_seq bigint NOT NULL DEFAULT 0,
        created timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE desiru_records (
        journal bigint NOT NULL REFERENCES desiru_journals (id) ON DELETE CASCADE,
        seq bigint NOT NULL,
        payload bytea NOT NULL,
        PRIMARY KEY (journal, seq))""",
    """CREATE TABLE desiru_snapshots (
        journal bigint NOT NULL REFERENCES desiru_journals (id) ON DELETE CASCADE,
        seq bigint NOT NULL,
        blob bytea NOT NULL,
        PRIMARY KEY (journal, seq))""",
    "ALTER TABLE desiru_snapshots ALTER COLUMN blob SET STORAGE EXTERNAL",
    """CREATE TABLE desiru_aside (
        journal bigint NOT NULL REFERENCES desiru_journals (id) ON DELETE CASCADE,
        seq bigint NOT NULL,
        payload bytea NOT NULL,
        reason text NOT NULL,
        cut_at timestamptz NOT NULL DEFAULT now())""",
))


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "TABLES", "register_schema_migration"]
