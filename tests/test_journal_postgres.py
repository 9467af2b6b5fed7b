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
