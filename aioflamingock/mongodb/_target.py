from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ..backend import (
    ConfigurationError,
    DoctorCheck,
    Marker,
    Transaction,
    TransactionAbortedError,
    TransactionalTargetSystem,
    TransactionOutcomeUnknownError,
    check_identifier,
    library_logger,
    redact,
    retrying,
    set_while,
    utc_now,
)
from ._errors import import_pymongo, is_transient_transaction_error, translate, translate_errors
from ._guard import SessionWatch, watching

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.database import AsyncDatabase

__all__ = [
    "CLEANUP_SECONDS",
    "MARKER_COLLECTION",
    "MongoDBContext",
    "MongoDBTargetSystem",
    "MongoDBTransaction",
    "aggregate",
    "check_collection_name",
    "close_cursor",
]

logger = library_logger(__name__)

MARKER_COLLECTION = "flamingockMarker"
UNKNOWN_COMMIT_RESULT = "UnknownTransactionCommitResult"
_COMMIT_ATTEMPTS = 3
_COMMIT_SECONDS = 5.0
"""A commit whose outcome stays unknown is sent at most `_COMMIT_ATTEMPTS` times within this long."""
CLEANUP_SECONDS = 10.0
"""How long an abort or the end of a session may take, shielded from cancellation; an unfinished transaction is
dropped by the server anyway."""
# MongoDB's rule for database names on every platform, and its 64-byte limit.
_DATABASE_NAME = re.compile(r'[^/\\. "$*<>:|?\x00-\x1f\x7f]{1,63}')  # matched whole; no control characters


def check_database_name(name: object) -> str:
    if not isinstance(name, str) or not _DATABASE_NAME.fullmatch(name) or len(name.encode()) > 63:
        raise ConfigurationError(
            [f'database {name!r} must be 1-63 bytes, none of / \\ . " $ * < > : | ?, a space or a control character']
        )
    return name


def check_collection_name(kind: str, name: object) -> str:
    check_identifier(kind, name)
    assert isinstance(name, str)
    if name.startswith("system."):
        raise ConfigurationError([f"{kind} {name!r} must not start with 'system.' (reserved by MongoDB)"])
    if name.startswith(".") or name.endswith(".") or ".." in name:
        raise ConfigurationError([f"{kind} {name!r} must not start or end with '.' nor hold '..' (MongoDB's rule)"])
    return name


def _is_motor(client: object) -> bool:
    """Motor's asyncio client, recognised without importing Motor."""
    return any(
        cls.__name__ == "AsyncIOMotorClient" and cls.__module__.split(".")[0] == "motor" for cls in type(client).__mro__
    )


def _check_client(client: object) -> None:
    """PyMongo's `AsyncMongoClient` or Motor's `AsyncIOMotorClient`; anything else is a mistake worth naming."""
    if _is_motor(client):
        return
    pymongo = import_pymongo()
    if isinstance(client, pymongo.AsyncMongoClient):
        return
    hint = " (the synchronous client blocks the event loop)" if isinstance(client, pymongo.MongoClient) else ""
    expected = "a pymongo.AsyncMongoClient (or a Motor AsyncIOMotorClient)"
    raise ConfigurationError([f"client must be {expected}, got {type(client).__name__}{hint}"])


async def _resolved(value: Any) -> Any:
    """PyMongo's async API returns coroutines where Motor returns objects (`start_session`, `aggregate`,
    `start_transaction`): accept both."""
    return await value if inspect.isawaitable(value) else value


async def aggregate(collection: AsyncCollection[Any], pipeline: list[dict[str, Any]], **kwargs: Any) -> list[Any]:
    cursor = await _resolved(collection.aggregate(pipeline, **kwargs))
    documents: list[Any] = await cursor.to_list(None)
    return documents


async def close_cursor(cursor: Any) -> None:
    await _resolved(cursor.close())


@dataclass(frozen=True)
class MongoDBContext:
    """What a change on a MongoDB target receives. In a transactional change, pass `session=ctx.session` to
    every operation, or it runs outside the transaction; `session` is None in a non-transactional change.
    With a Motor client, these are Motor's objects."""

    client: AsyncMongoClient[Any]
    db: AsyncDatabase[Any]
    session: AsyncClientSession | None


def _transaction_number(session: Any) -> int | None:
    """The number PyMongo gives the session's current transaction (`txnNumber`); not public, so read with care."""
    server_session = getattr(getattr(session, "delegate", session), "_server_session", None)
    number = getattr(server_session, "transaction_id", None)
    return number if isinstance(number, int) else None


class MongoDBTransaction(Transaction):
    context: MongoDBContext

    def __init__(self, context: MongoDBContext, watch: SessionWatch) -> None:
        super().__init__(context)
        self.watch = watch
        self.number = _transaction_number(context.session)

    def running_change(self) -> AbstractContextManager[None]:
        return set_while(watching, self.watch)

    async def bypassed(self) -> str | None:
        session = self.context.session
        assert session is not None
        if session.has_ended:
            return "ended the engine's session (`end_session()`), and with it the transaction"
        if not session.in_transaction:
            return (
                "committed or aborted the engine's transaction itself (`commit_transaction()` or "
                "`abort_transaction()` on `ctx.session`)"
            )
        if self.number is not None and _transaction_number(session) != self.number:
            return "ended the engine's transaction itself and started another one on `ctx.session`"
        if self.watch.outside:
            return (
                "wrote outside the engine's transaction, without `session=ctx.session`: "
                + ", ".join(self.watch.outside)
                + " (those writes are committed and are not undone)"
            )
        return None


class MongoDBTargetSystem(TransactionalTargetSystem):
    """A MongoDB database reached through a client the application owns and closes.

    Transactions need a replica set or a sharded cluster. They run with write concern `majority` (journaled)
    and read concern `majority`.
    """

    def __init__(self, id: str, *, client: AsyncMongoClient[Any], database: str) -> None:
        self.id = check_identifier("target system id", id)
        self.database = check_database_name(database)
        _check_client(client)
        self.client = client
        self.db: AsyncDatabase[Any] = client.get_database(database)

    def describe(self) -> str:
        return f"MongoDBTargetSystem({self.id!r}, database={self.database!r})"

    def collection(self, name: str) -> AsyncCollection[Any]:
        """`name`, read with `majority` and written with `majority`, journaled (outside transactions)."""
        from pymongo.read_concern import ReadConcern
        from pymongo.write_concern import WriteConcern

        return self.db.get_collection(
            name, read_concern=ReadConcern("majority"), write_concern=WriteConcern("majority", j=True)
        )

    def same_database(self, other: object) -> bool:
        return isinstance(other, MongoDBTargetSystem) and (other.client, other.database) == (
            self.client,
            self.database,
        )

    @asynccontextmanager
    async def context(self) -> AsyncIterator[Any]:
        yield MongoDBContext(self.client, self.db, None)

    async def _diagnose(self) -> list[DoctorCheck]:
        """The server answers, and offers transactions (a replica set or a sharded cluster)."""
        with translate_errors("pinging the server"):
            await self.db.command("ping")
            hello = await self.db.command("hello")
        if hello.get("setName") or hello.get("msg") == "isdbgrid":
            kind = f"replica set {hello['setName']!r}" if hello.get("setName") else "a sharded cluster"
            return [DoctorCheck(self.subject(), "transactions", True, f"supported: {kind}")]
        return [
            DoctorCheck(
                self.subject(),
                "transactions",
                False,
                "the server is a standalone mongod: it has no transactions, so transactional changes and the "
                "audit store cannot run on it",
                "run mongod as a replica set (one node is enough): start it with `--replSet rs0`, then run "
                "`rs.initiate()` once in mongosh",
            )
        ]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MongoDBTransaction]:
        from pymongo.read_concern import ReadConcern
        from pymongo.write_concern import WriteConcern

        with translate_errors("starting a session"):
            session: AsyncClientSession = await _resolved(self.client.start_session())
        try:
            with translate_errors("starting a transaction"):
                await _resolved(
                    session.start_transaction(
                        read_concern=ReadConcern("majority"), write_concern=WriteConcern("majority", j=True)
                    )
                )
            tx = MongoDBTransaction(MongoDBContext(self.client, self.db, session), SessionWatch(session.session_id))
            try:
                yield tx
            except BaseException as exc:
                with anyio.move_on_after(CLEANUP_SECONDS, shield=True):
                    await _abort(session)
                if is_transient_transaction_error(exc):
                    message = redact(f"MongoDB aborted the transaction: {type(exc).__name__}: {exc}")
                    raise TransactionAbortedError(message) from exc
                raise
            await _commit(session)
        finally:
            with anyio.move_on_after(CLEANUP_SECONDS, shield=True):
                await _end(session)

    async def write_marker(self, tx: Transaction, marker: Marker) -> None:
        assert isinstance(tx, MongoDBTransaction) and tx.context.session is not None
        # Upserted inside the change's transaction; the collection is created implicitly the first time.
        with translate_errors(f"writing the marker of {marker.change_id!r}"):
            await self.collection(MARKER_COLLECTION).replace_one(
                {"_id": marker.change_id},
                {"executionId": marker.execution_id, "createdAt": utc_now()},
                upsert=True,
                session=tx.context.session,
            )

    async def read_marker(self, change_id: str) -> Marker | None:
        with translate_errors(f"reading the marker of {change_id!r}"):
            document = await self.collection(MARKER_COLLECTION).find_one({"_id": change_id})
        return None if document is None else Marker(change_id, str(document["executionId"]))

    async def delete_marker(self, change_id: str) -> None:
        with translate_errors(f"deleting the marker of {change_id!r}"):
            await self.collection(MARKER_COLLECTION).delete_one({"_id": change_id})


async def _commit(session: AsyncClientSession) -> None:
    """Commit; retry the commit alone while its outcome is unknown (committing twice is safe: the server
    answers a retried commit with the first one's outcome)."""
    from pymongo.errors import PyMongoError

    def unknown(exc: Exception) -> bool:
        return isinstance(exc, PyMongoError) and exc.has_error_label(UNKNOWN_COMMIT_RESULT)

    def again(exc: Exception) -> None:
        logger.warning("commit outcome unknown, committing again: %s", redact(str(exc)))

    try:
        commit = session.commit_transaction
        await retrying(commit, seconds=_COMMIT_SECONDS, transient=unknown, again=again, attempts=_COMMIT_ATTEMPTS)
    except PyMongoError as exc:
        if unknown(exc):
            message = redact(f"MongoDB did not confirm a commit after {_COMMIT_ATTEMPTS} attempts: {exc}")
            raise TransactionOutcomeUnknownError(message) from exc
        raise translate(exc, "committing a transaction") from exc


async def _abort(session: AsyncClientSession) -> None:
    from pymongo.errors import PyMongoError

    if not session.in_transaction:
        return
    try:
        await session.abort_transaction()
    except PyMongoError as exc:  # the server drops an unfinished transaction by itself
        logger.warning("could not abort a transaction: %s", redact(str(exc)))


async def _end(session: AsyncClientSession) -> None:
    from pymongo.errors import PyMongoError

    try:
        await session.end_session()
    except PyMongoError as exc:
        logger.warning("could not end a session: %s", redact(str(exc)))
