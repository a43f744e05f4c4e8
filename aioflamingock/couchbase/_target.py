from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from ..backend import (
    ClosedResourceError,
    ConfigurationError,
    Marker,
    Transaction,
    TransactionAbortedError,
    TransactionalTargetSystem,
    TransactionOutcomeUnknownError,
    check_identifier,
    library_logger,
)
from ._errors import import_acouchbase, kv, sdk_errors, translate
from ._kv import Keyspace

__all__ = [
    "DEFAULT_SCOPE",
    "MARKER_PREFIX",
    "CouchbaseContext",
    "CouchbaseTargetSystem",
    "CouchbaseTransaction",
    "check_keyspace_name",
]

logger = library_logger(__name__)

DEFAULT_SCOPE = "_default"
MARKER_PREFIX = "flamingockMarker::"
"""Markers are documents `flamingockMarker::<changeId>` in the target bucket's `_default._default` collection, which
every bucket has: the separate-transaction path needs no collection created in the application's bucket."""
_CLEANUP_SECONDS = 10.0


def check_keyspace_name(kind: str, name: object) -> str:
    """Couchbase's rule for bucket, scope and collection names (ours, a subset): letters, digits, `_ - %`, not
    starting with `_` or `%` except the `_default` scope and collection, up to 251 characters."""
    if name == DEFAULT_SCOPE:
        return name
    check_identifier(kind, name)
    assert isinstance(name, str)
    if name.startswith(("_", "%")) or "." in name:
        raise ConfigurationError([f"{kind} {name!r} must not contain '.' nor start with '_' (other than _default)"])
    return name


def _check_cluster(cluster: object) -> None:
    """acouchbase's cluster; the synchronous SDK's blocks the event loop, which is worth naming."""
    module = import_acouchbase()
    if isinstance(cluster, module.AsyncCluster):
        return
    found = type(cluster)
    hint = " (the synchronous SDK blocks the event loop)" if found.__module__.startswith("couchbase.") else ""
    raise ConfigurationError([f"cluster must be an acouchbase.cluster.Cluster, got {found.__name__}{hint}"])


@dataclass(frozen=True)
class CouchbaseContext:
    """What a change on a Couchbase target receives: the application's cluster, the target's bucket and scope.

    In a transactional change, `transaction` is the attempt context of a Couchbase ACID transaction: make every
    write through it (`await ctx.transaction.insert(ctx.collection("users"), key, doc)`), or it is not part of the
    transaction. It is None in a non-transactional change."""

    cluster: Any
    bucket: Any
    scope: Any
    transaction: Any | None = None

    def collection(self, name: str) -> Any:
        """A collection of the target's scope."""
        return self.scope.collection(name)


class CouchbaseTransaction(Transaction):
    context: CouchbaseContext


class _Reattempted(Exception):
    """The SDK called the transaction's logic a second time: its first commit did not finish as expected."""


class CouchbaseTargetSystem(TransactionalTargetSystem):
    """A bucket (and a scope of it) on a cluster the application owns, connects and closes.

    Transactional changes run in Couchbase ACID transactions (Couchbase Server 7.0 or later); a change with
    `transactional = False` uses key-value operations only.
    """

    def __init__(self, id: str, *, cluster: Any, bucket: str, scope: str = DEFAULT_SCOPE) -> None:
        self.id = check_identifier("target system id", id)
        self.bucket_name = check_keyspace_name("bucket", bucket)
        self.scope_name = check_keyspace_name("scope", scope)
        _check_cluster(cluster)
        self.cluster = cluster
        self._bucket: Any = None

    def describe(self) -> str:
        return f"CouchbaseTargetSystem({self.id!r}, bucket={self.bucket_name!r}, scope={self.scope_name!r})"

    @property
    def bucket(self) -> Any:
        if self._bucket is None:
            raise ClosedResourceError(f"{self.describe()} is not open")
        return self._bucket

    def keyspace(self, collection: str, *, scope: str | None = None) -> Keyspace:
        scope = self.scope_name if scope is None else scope
        handle = self.bucket.scope(scope).collection(collection)
        return Keyspace(handle, bucket=self.bucket_name, scope=scope, name=collection)

    def shares_cluster_with(self, other: object) -> bool:
        return isinstance(other, CouchbaseTargetSystem) and other.cluster is self.cluster

    async def _open(self) -> None:
        if self._bucket is None:
            bucket = self.cluster.bucket(self.bucket_name)
            await kv(f"opening bucket {self.bucket_name!r}", bucket.on_connect())
            self._bucket = bucket

    def _context(self, attempt: Any | None) -> CouchbaseContext:
        return CouchbaseContext(self.cluster, self.bucket, self.bucket.scope(self.scope_name), attempt)

    @asynccontextmanager
    async def context(self) -> AsyncIterator[CouchbaseContext]:
        yield self._context(None)

    # -- transactions -------------------------------------------------------------------------------------------

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[CouchbaseTransaction]:
        """One attempt of a Couchbase transaction, driven by the SDK's `transactions.run`, whose logic waits for
        the body of this block. The SDK would call the logic again after a failed commit; the change must not run
        twice inside one attempt we cannot see, so a second call ends the transaction with
        `TransactionOutcomeUnknownError` and the next run reads what the audit says."""
        attempts: asyncio.Queue[Any] = asyncio.Queue()
        commit: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        calls = 0

        async def logic(attempt: Any) -> None:
            nonlocal calls
            calls += 1
            if calls > 1:
                raise _Reattempted()
            attempts.put_nowait(attempt)
            if not await asyncio.shield(commit):
                raise _RolledBack()

        run = asyncio.ensure_future(self.cluster.transactions.run(logic))
        attempt = await _first_attempt(run, attempts)
        try:
            yield CouchbaseTransaction(self._context(attempt))
        except BaseException as exc:
            commit.set_result(False)
            with anyio.CancelScope(shield=True):
                await _rolled_back(run)
            if isinstance(exc, sdk_errors().TransactionOperationFailed):
                raise TransactionAbortedError(f"a Couchbase transaction's operation failed: {exc}") from exc
            raise
        commit.set_result(True)
        with anyio.CancelScope(shield=True):  # a commit cut short would leave its outcome unknown
            await _committed(run)

    async def write_marker(self, tx: Transaction, marker: Marker) -> None:
        assert isinstance(tx, CouchbaseTransaction) and tx.context.transaction is not None
        keyspace = self._markers()
        body = {"changeId": marker.change_id, "executionId": marker.execution_id}
        await tx.context.transaction.insert(keyspace.collection, MARKER_PREFIX + marker.change_id, body)

    async def read_marker(self, change_id: str) -> Marker | None:
        doc = await self._markers().get(MARKER_PREFIX + change_id)
        return None if doc is None else Marker(doc.body["changeId"], doc.body["executionId"])

    async def delete_marker(self, change_id: str) -> None:
        await self._markers().remove(MARKER_PREFIX + change_id)

    def _markers(self) -> Keyspace:
        return self.keyspace(DEFAULT_SCOPE, scope=DEFAULT_SCOPE)


class _RolledBack(Exception):
    """The body raised or was cancelled: the SDK rolls the attempt back."""


async def _rolled_back(run: asyncio.Future[Any]) -> None:
    """Wait, for a bounded time, until the SDK has rolled the attempt back; its error is expected and dropped (the
    body's own exception is what the caller gets)."""
    with anyio.move_on_after(_CLEANUP_SECONDS):
        await asyncio.wait([run])
    if not run.done():
        run.cancel()  # the server's transaction expiry and cleanup finish what the SDK did not
    elif not run.cancelled():
        run.exception()


async def _first_attempt(run: asyncio.Future[Any], attempts: asyncio.Queue[Any]) -> Any:
    """The attempt context the SDK hands to the logic, or the error of a transaction that failed to start."""
    getting = asyncio.ensure_future(attempts.get())
    try:
        await asyncio.wait([run, getting], return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        getting.cancel()
        run.cancel()
        raise
    if getting.done():
        return getting.result()
    getting.cancel()
    await _committed(run)  # raises: the run ended before the logic started
    raise TransactionAbortedError("the Couchbase transaction ended before it started")


async def _committed(run: asyncio.Future[Any]) -> None:
    """Wait for the SDK's commit and translate its failures."""
    errors = sdk_errors()
    try:
        await run
    except errors.TransactionCommitAmbiguous as exc:
        raise TransactionOutcomeUnknownError(f"the Couchbase transaction's commit is ambiguous: {exc}") from exc
    except errors.TransactionFailed as exc:
        cause = _inner_cause(exc)
        if isinstance(cause, _Reattempted):
            raise TransactionOutcomeUnknownError(
                "the Couchbase transaction's commit did not complete and the SDK started it again; "
                "whether it committed is read from the audit on the next run"
            ) from exc
        raise TransactionAbortedError(f"the Couchbase transaction failed: {exc}") from exc
    except errors.TransactionExpired as exc:
        raise TransactionAbortedError(f"the Couchbase transaction expired: {exc}") from exc
    except errors.CouchbaseException as exc:
        raise translate(exc, "committing a transaction") from exc


def _inner_cause(exc: BaseException) -> BaseException | None:
    info = getattr(exc, "_exc_info", None) or {}
    cause = info.get("inner_cause") if isinstance(info, dict) else None
    return cause if isinstance(cause, BaseException) else None
