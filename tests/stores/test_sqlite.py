from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem
from aioflamingock.testing import AuditStoreConformance


def open_store(path: str) -> SQLiteAuditStore:
    """Used by the multi-process race: the same database file, from another process."""
    return SQLiteAuditStore.from_target(SQLiteTargetSystem("db", path=path))


class TestSQLiteAuditStore(AuditStoreConformance):
    @pytest.fixture
    def db_path(self, tmp_path: Path) -> str:
        return str(tmp_path / "audit.db")

    @pytest.fixture
    async def store(self, db_path: str) -> AsyncIterator[SQLiteAuditStore]:
        self._db_path = db_path
        async with open_store(db_path) as store:
            yield store

    def process_factory(self) -> tuple[str, list[str]]:
        return "tests.stores.test_sqlite:open_store", [self._db_path]
