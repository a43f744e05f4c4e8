from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from aioflamingock.mongodb import MongoDBAuditStore, MongoDBTargetSystem
from aioflamingock.testing import AuditStoreConformance


def open_store(uri: str, database: str) -> MongoDBAuditStore:
    """Used by the multi-process race: the same database, from another process, with a client of its own."""
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[Any] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    return MongoDBAuditStore.from_target(MongoDBTargetSystem("db", client=client, database=database))


class TestMongoDBAuditStore(AuditStoreConformance):
    @pytest.fixture
    async def store(
        self, mongodb_uri: str, mongodb_database: str, mongodb_client: Any
    ) -> AsyncIterator[MongoDBAuditStore]:
        self._args = [mongodb_uri, mongodb_database]
        target = MongoDBTargetSystem("db", client=mongodb_client, database=mongodb_database)
        async with MongoDBAuditStore.from_target(target) as store:
            yield store

    def process_factory(self) -> tuple[str, list[str]]:
        return "tests.stores.test_mongodb:open_store", self._args


def test_without_pymongo_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['pymongo'] = None\n"
        "from aioflamingock.mongodb import MongoDBTargetSystem\n"
        "try:\n"
        "    MongoDBTargetSystem('db', client=object(), database='app')\n"
        "except ImportError as exc:\n"
        "    sys.exit(str(exc))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert 'pip install "aioflamingock[mongodb]"' in done.stderr
