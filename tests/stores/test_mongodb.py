"""MongoDB (a MongoDB-compatible server): the conformance suite, the protocol kit's scenarios, and what is the
driver's: its imports, indexes, names and clients."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from aioflamingock import ConfigurationError
from aioflamingock.mongodb import MongoDBAuditStore, MongoDBContext, MongoDBTargetSystem
from aioflamingock.testing import AuditStoreConformance, BackendProtocol, Instance, ProtocolKit
from tests.servers import RestartableSecantus


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


class MongoDBKit(ProtocolKit):
    """`app` and its store on one database, `other` on a second database (the marker path); a new client per
    instance. Commits fail through the server's `failCommand` fail point, which answers before applying them: a lost
    answer here is a commit the server reports as of unknown outcome (a write-concern timeout) that did not happen."""

    def __init__(self, uri: str, client: Any, databases: tuple[str, str], *, timeout_ms: int = 5000) -> None:
        super().__init__()
        self.uri, self.client, self.databases, self.timeout_ms = uri, client, databases, timeout_ms
        self.server: RestartableSecantus | None = None

    def process_kit(self) -> tuple[str, list[str]]:
        return "tests.stores.test_mongodb:child_kit", [self.uri, *self.databases, str(self.timeout_ms)]

    async def stop_backing(self) -> None:
        assert self.server is not None
        self.server.stop()

    async def start_backing(self) -> None:
        assert self.server is not None
        self.server.restart()

    async def after_kill(self) -> None:
        """The dead process's open transaction keeps what it wrote locked until the server reaps it (mongod after
        `transactionLifetimeLimitSeconds`, 60 s; SecantusDB never): end it now."""
        await self.client.admin.command({"killAllSessions": []})

    async def instance(self) -> Instance:
        from pymongo import AsyncMongoClient

        ms = self.timeout_ms
        client: Any = AsyncMongoClient(self.uri, serverSelectionTimeoutMS=ms, connectTimeoutMS=ms)
        self.exit_stack.push_async_callback(client.close)
        app = MongoDBTargetSystem("app", client=client, database=self.databases[0])
        other = MongoDBTargetSystem("other", client=client, database=self.databases[1])
        return Instance(MongoDBAuditStore.from_target(app), app, other)

    def store_without_creating(self, instance: Instance) -> MongoDBAuditStore:
        return MongoDBAuditStore.from_target(instance.app, create_indexes=False)  # type: ignore[arg-type]

    async def write(self, ctx: MongoDBContext, key: str, amount: int = 1) -> None:
        await ctx.db.effects.update_one({"_id": key}, {"$inc": {"n": amount}}, upsert=True, session=ctx.session)

    async def count(self, key: str) -> int:
        found = [await self.client[name].effects.find_one({"_id": key}) for name in self.databases]
        return sum(document["n"] for document in found if document is not None)

    @asynccontextmanager
    async def _fail_commits(self, times: int, data: dict[str, Any]) -> AsyncIterator[None]:
        from pymongo.errors import OperationFailure

        command = {
            "configureFailPoint": "failCommand",
            "mode": {"times": times},
            "data": {"failCommands": ["commitTransaction"], **data},
        }
        try:
            await self.client.admin.command(command)
        except OperationFailure as exc:
            pytest.skip(f"the server has no failCommand fail point (mongod needs enableTestCommands=1): {exc}")
        try:
            yield
        finally:
            await self.client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
            # A transaction whose commit never reached the server is still open there: end it, so that nothing
            # waits for the server to reap it.
            await self.client.admin.command({"killAllSessions": []})

    def abort_commits(self, target: Any, times: int) -> Any:
        return self._fail_commits(times, {"errorCode": 112, "errorLabels": ["TransientTransactionError"]})

    def lose_commit_answers(self, target: Any, times: int) -> Any:
        # a commit that timed out waiting for its write concern: applied or not, the server cannot say
        unknown = {"errorCode": 50, "errorLabels": ["UnknownTransactionCommitResult"]}
        return self._fail_commits(times, unknown)


def child_kit(uri: str, database: str, other_database: str, timeout_ms: str) -> MongoDBKit:
    return MongoDBKit(uri, None, (database, other_database), timeout_ms=int(timeout_ms))


class TestMongoDBProtocol(BackendProtocol):
    @pytest.fixture
    async def kit(
        self, mongodb_uri: str, mongodb_client: Any, mongodb_database: str, mongodb_other_database: str
    ) -> AsyncIterator[ProtocolKit]:
        kit = MongoDBKit(mongodb_uri, mongodb_client, (mongodb_database, mongodb_other_database))
        yield kit
        await kit.aclose()

    @pytest.fixture
    async def outage_kit(self, tmp_path: Path) -> AsyncIterator[ProtocolKit]:
        """A SecantusDB of its own, on disk, which the test stops and starts again with the same data."""
        from pymongo import AsyncMongoClient

        server = RestartableSecantus(tmp_path)
        client: Any = AsyncMongoClient(server.uri, serverSelectionTimeoutMS=10_000)
        kit = MongoDBKit(server.uri, client, ("outage_app", "outage_other"), timeout_ms=2000)
        kit.server = server
        yield kit
        await kit.aclose()
        await client.close()
        server.stop()


@pytest.fixture
def app(mongodb_client: Any, mongodb_database: str) -> MongoDBTargetSystem:
    return MongoDBTargetSystem("app", client=mongodb_client, database=mongodb_database)


async def test_without_create_indexes_a_missing_index_is_named(app: MongoDBTargetSystem) -> None:
    store = MongoDBAuditStore.from_target(app, create_indexes=False)
    with pytest.raises(ConfigurationError) as caught:
        await store.open()
    assert "createIndex({changeId: 1, seq: -1})" in str(caught.value)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"database": "a.b"}, "database 'a.b'"),
        ({"database": ""}, "database ''"),
        ({"audit_collection": "system.audit"}, "system."),
        ({"lock_collection": "bad$name"}, "lock_collection"),
    ],
)
def test_bad_names_are_configuration_errors(mongodb_client: Any, options: dict[str, str], fragment: str) -> None:
    database = options.pop("database", "app")
    with pytest.raises(ConfigurationError, match=fragment.replace(".", r"\.").replace("$", r"\$")):
        MongoDBAuditStore.from_target(MongoDBTargetSystem("app", client=mongodb_client, database=database), **options)


def test_a_client_that_is_not_async_is_refused(mongodb_uri: str) -> None:
    from pymongo import MongoClient

    with MongoClient(mongodb_uri, connect=False) as client, pytest.raises(ConfigurationError, match="AsyncMongoClient"):
        MongoDBTargetSystem("app", client=client, database="app")  # type: ignore[arg-type]
