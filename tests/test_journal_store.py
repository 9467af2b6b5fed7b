"""The store contract, run on every store desiru ships."""

from __future__ import annotations

from typing import Any

import pytest
from journal_contract import StoreContract

from desiru.journal import FileStore, JournalStore, MemoryStore
from desiru.journal.memory_store import MemoryBackend


class TestFileStoreContract(StoreContract):
    def connect(self, location: Any, readonly: bool = False) -> JournalStore:
        return FileStore(location, readonly=readonly)


class TestMemoryStoreContract(StoreContract):
    @pytest.fixture
    def location(self) -> MemoryBackend:
        return MemoryBackend()

    def connect(self, location: Any, readonly: bool = False) -> JournalStore:
        return MemoryStore(location, readonly=readonly)
