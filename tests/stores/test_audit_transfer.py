"""Moving the audit between stores (`import_audit`, `aioflamingock audit export/import`): between every ordered pair
of stores (the in-memory one too), the history that comes out of the second equals, field by field, the history
that went into the first. The history is a real one: runs, a failure, a fix, an undo, made on SQLite by the
engine."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aioflamingock import AuditEntry, ConfigurationError, Flamingock, RunError
from aioflamingock.sqlite import SQLiteTargetSystem
from tests.stores.test_summary import (
    IDS,
    Backend,
    CouchbaseBackend,
    DynamoDBBackend,
    MongoDBBackend,
    SQLBackend,
    SQLiteBackend,
    changes,
)

KINDS = ("memory", "sqlite", "postgresql", "mysql", "mongodb", "dynamodb", "couchbase")


async def a_history() -> list[dict[str, Any]]:
    """Documents of a history with most states in it, as `audit export` writes them."""
    with tempfile.TemporaryDirectory() as directory:
        async with SQLiteBackend(Path(directory)) as db:
            with contextlib.suppress(RunError):
                await db.engine(list(IDS), failing={"c2"}).run()  # c2 fails outside a transaction: a human's
            await db.engine(list(IDS)).fix("c2", "rolled-back")
            await db.engine(list(IDS)).run()
            await db.engine(list(IDS)).undo("c2")
            await db.engine(list(IDS[:4])).run()
            return [entry.to_document() async for entry in db.engine([]).history()]


@pytest.fixture(scope="module")
def exported() -> list[dict[str, Any]]:
    return asyncio.run(a_history())


class MemoryBackend(Backend):
    """The in-memory store (one object for every engine on it), the changes on a SQLite target beside it."""

    def __init__(self, directory: Path) -> None:
        from aioflamingock.memory import InMemoryAuditStore

        self.path, self.kept = directory / "changes.db", InMemoryAuditStore()

    async def __aexit__(self, *exc: object) -> None:
        pass

    def store(self) -> Any:
        return self.kept

    def engine(self, declared: list[str], failing: set[str] | frozenset[str] = frozenset()) -> Flamingock:
        made = changes(set(failing))
        target = SQLiteTargetSystem("db", path=self.path)
        return Flamingock(audit_store=self.kept, target_systems=[target], changes=[made[i] for i in declared])


def maker(kind: str, request: pytest.FixtureRequest) -> Callable[[], Backend]:
    if kind == "memory":
        return lambda: MemoryBackend(Path(tempfile.mkdtemp()))
    if kind == "sqlite":
        return lambda: SQLiteBackend(Path(tempfile.mkdtemp()))
    if kind in ("postgresql", "mysql"):
        server = request.getfixturevalue(f"{kind}_server")
        return lambda: SQLBackend(server)
    if kind == "mongodb":
        server = request.getfixturevalue("mongodb_server")
        return lambda: MongoDBBackend(server)
    if kind == "dynamodb":
        endpoint = request.getfixturevalue("dynamodb_endpoint")
        return lambda: DynamoDBBackend(endpoint, f"x{uuid.uuid4().hex[:10]}-")
    server = request.getfixturevalue("couchbase_server")
    return lambda: CouchbaseBackend(server, Path(tempfile.mkdtemp()))


async def history_of(db: Backend) -> list[AuditEntry]:
    return [entry async for entry in db.engine([]).history()]


@pytest.mark.parametrize(("first", "second"), [(a, b) for a in KINDS for b in KINDS if a != b])
async def test_a_history_moves_between_any_two_stores_as_it_was(
    first: str, second: str, exported: list[dict[str, Any]], request: pytest.FixtureRequest
) -> None:
    given = [AuditEntry.from_document(document) for document in exported]
    async with maker(first, request)() as one, maker(second, request)() as other:
        assert await one.engine([]).import_audit(given) == len(given)
        out_of_one = await history_of(one)
        assert await other.engine([]).import_audit(out_of_one) == len(given)
        assert [entry.to_document() for entry in await history_of(other)] == exported
        # what a run makes of it there: the same as on the first store
        assert [p.action for p in await other.engine(list(IDS)).plan()] == [
            p.action for p in await one.engine(list(IDS)).plan()
        ]


async def test_a_store_that_holds_entries_takes_no_import(exported: list[dict[str, Any]], tmp_path: Path) -> None:
    async with SQLiteBackend(tmp_path) as db:
        await db.engine(list(IDS[:1])).run()
        before = await history_of(db)
        with pytest.raises(ConfigurationError, match=r"already holds entries .* import only into a store that holds"):
            await db.engine([]).import_audit([AuditEntry.from_document(d) for d in exported])
        assert await history_of(db) == before
