"""Couchbase (the key-value test double unless told otherwise): the conformance suite, the protocol kit's scenarios
(the transactional ones need ACID transactions: they run on a real Couchbase Server only), and what is the driver's:
its imports, collections, configuration, the transaction bridge and the error table."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest

from aioflamingock import (
    AuditStore,
    ConfigurationError,
    LockLostError,
    StoreError,
    StoreUnavailableError,
    TransactionalTargetSystem,
    TransactionOutcomeUnknownError,
)
from aioflamingock.couchbase import CouchbaseAuditStore, CouchbaseContext, CouchbaseTargetSystem
from aioflamingock.couchbase._kv import Keyspace
from aioflamingock.sqlite import SQLiteContext, SQLiteTargetSystem
from aioflamingock.testing import AuditStoreConformance, BackendProtocol, Instance, ManualClock, ProtocolKit
from aioflamingock.testing._child import EXIT_CODES
from aioflamingock.testing._processes import Children
from tests.servers import (
    COUCHBASE_BUCKET,
    COUCHBASE_PASSWORD,
    COUCHBASE_USER,
    CouchbaseServer,
    start_couchbase_kv_process,
)

from ._owning import OwningStore
from .conftest import connect_couchbase
from .test_sqlite import SQLiteKit


class ClusterOwningStore(OwningStore):
    def __init__(self, server: CouchbaseServer, audit_collection: str, lock_collection: str) -> None:
        super().__init__()
        self._server = server
        self._names = {"audit_collection": audit_collection, "lock_collection": lock_collection}

    async def connect(self, stack: AsyncExitStack) -> AuditStore:
        cluster = await connect_couchbase(self._server)
        stack.push_async_callback(cluster.close)
        target = CouchbaseTargetSystem("db", cluster=cluster, bucket=self._server.bucket)
        return await stack.enter_async_context(CouchbaseAuditStore.from_target(target, **self._names))


def open_store(
    connection_string: str, username: str, password: str, bucket: str, audit: str, lock: str
) -> ClusterOwningStore:
    """Used by the multi-process race: the same collections, from another process, with a cluster of its own."""
    server = CouchbaseServer(connection_string, username, password, bucket, False, lambda: None)
    return ClusterOwningStore(server, audit, lock)


class TestCouchbaseAuditStore(AuditStoreConformance):
    @pytest.fixture
    async def store(
        self, couchbase_server: CouchbaseServer, couchbase_cluster: Any, couchbase_collections: dict[str, str]
    ) -> AsyncIterator[CouchbaseAuditStore]:
        server = couchbase_server
        self._args = [
            server.connection_string,
            server.username,
            server.password,
            server.bucket,
            couchbase_collections["audit_collection"],
            couchbase_collections["lock_collection"],
        ]
        target = CouchbaseTargetSystem("db", cluster=couchbase_cluster, bucket=server.bucket)
        async with CouchbaseAuditStore.from_target(target, **couchbase_collections) as store:
            yield store

    @pytest.fixture
    async def clocked_store(
        self,
        couchbase_server: CouchbaseServer,
        couchbase_cluster: Any,
        couchbase_collections: dict[str, str],
        clock: ManualClock,
    ) -> AsyncIterator[CouchbaseAuditStore]:
        target = CouchbaseTargetSystem("db", cluster=couchbase_cluster, bucket=couchbase_server.bucket)
        async with CouchbaseAuditStore.from_target(target, **couchbase_collections, clock=clock) as store:
            yield store

    def process_factory(self) -> tuple[str, list[str]]:
        return "tests.stores.test_couchbase:open_store", self._args


def test_without_the_sdk_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['acouchbase'] = None; sys.modules['acouchbase.cluster'] = None\n"
        "from aioflamingock.couchbase import CouchbaseTargetSystem\n"
        "try:\n"
        "    CouchbaseTargetSystem('db', cluster=object(), bucket='b')\n"
        "except ImportError as exc:\n"
        "    sys.exit(str(exc))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert 'pip install "aioflamingock[couchbase]"' in done.stderr


def test_importing_the_backend_imports_no_driver() -> None:
    drivers = ["couchbase", "acouchbase"]
    code = f"import sys, aioflamingock.couchbase\nprint(','.join(m for m in {drivers!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == ""


async def test_a_store_used_before_it_is_opened_says_so_like_every_store(
    couchbase_server: Any, couchbase_cluster: Any, couchbase_collections: dict[str, str]
) -> None:
    from aioflamingock import ClosedResourceError
    from aioflamingock.couchbase import CouchbaseAuditStore, CouchbaseTargetSystem

    target = CouchbaseTargetSystem("app", cluster=couchbase_cluster, bucket=couchbase_server.bucket)
    store = CouchbaseAuditStore.from_target(target, **couchbase_collections)
    with pytest.raises(ClosedResourceError, match="is not open"):
        await store.lock.read("default")
    with pytest.raises(ClosedResourceError, match="is not open"):
        target.bucket  # noqa: B018


ROWS = "_default"
TRANSACTIONS_SKIP = (
    "needs Couchbase ACID transactions, which the key-value test double does not have: set "
    "AIOFLAMINGOCK_COUCHBASE_URL to a Couchbase Server 7 cluster, or run with a Docker engine"
)


class CouchbaseKit(ProtocolKit):
    """`app` and its store on one cluster object, `other` on a second one (the marker path), both on the test's
    bucket; effects are documents of the default collection, under a prefix of this kit's own."""

    def __init__(
        self, server: CouchbaseServer, cluster: Any, collections: dict[str, str], directory: str, prefix: str = ""
    ) -> None:
        super().__init__()
        self.server, self.cluster, self.collections, self.directory = server, cluster, collections, directory
        self.prefix = prefix or f"effect::{uuid.uuid4().hex[:12]}::"
        if not server.transactions:
            self.transactions_skip = TRANSACTIONS_SKIP
            self.sqlite = SQLiteKit(directory)  # the double's marker path: a SQLite file

    def process_kit(self) -> tuple[str, list[str]]:
        server = self.server
        cluster = [server.connection_string, server.username, server.password, server.bucket]
        return "tests.stores.test_couchbase:child_kit", [
            *cluster,
            "transactions" if server.transactions else "",
            json.dumps(self.collections),
            self.directory,
            self.prefix,
        ]

    async def _cluster(self) -> Any:
        from .conftest import connect_couchbase

        cluster = await connect_couchbase(self.server)
        self.exit_stack.push_async_callback(cluster.close)
        return cluster

    async def instance(self) -> Instance:
        app = CouchbaseTargetSystem("app", cluster=await self._cluster(), bucket=self.server.bucket)
        other: TransactionalTargetSystem
        if self.server.transactions:
            other = CouchbaseTargetSystem("other", cluster=await self._cluster(), bucket=self.server.bucket)
        else:
            other = SQLiteTargetSystem("other", path=self.sqlite.files["other"])
        return Instance(CouchbaseAuditStore.from_target(app, **self.collections), app, other)

    def _keyspace(self, collection: Any) -> Keyspace:
        return Keyspace(collection, bucket=self.server.bucket, scope="_default", name=ROWS)

    def store_without_creating(self, instance: Instance) -> CouchbaseAuditStore:
        return CouchbaseAuditStore.from_target(instance.app, **self.collections, create_collections=False)  # type: ignore[arg-type]

    async def write(self, ctx: CouchbaseContext | SQLiteContext, key: str, amount: int = 1) -> None:
        if isinstance(ctx, SQLiteContext):
            return await self.sqlite.write(ctx, key, amount)
        collection, key = ctx.collection(ROWS), self.prefix + key
        if ctx.transaction is not None:
            from couchbase.exceptions import DocumentNotFoundException

            try:
                doc = await ctx.transaction.get(collection, key)
            except DocumentNotFoundException:
                await ctx.transaction.insert(collection, key, {"n": amount})
            else:
                await ctx.transaction.replace(doc, {"n": doc.content_as[dict]["n"] + amount})
            return
        keyspace = self._keyspace(collection)
        found = await keyspace.get(key)
        await keyspace.upsert(key, {"n": (found.body["n"] if found else 0) + amount})

    async def count(self, key: str) -> int:
        bucket = self.cluster.bucket(self.server.bucket)
        found = await self._keyspace(bucket.default_scope().collection(ROWS)).get(self.prefix + key)
        in_sqlite = 0 if self.server.transactions else await self.sqlite.count(key)
        return in_sqlite + (0 if found is None else int(found.body["n"]))


def child_kit(
    connection: str, user: str, password: str, bucket: str, transactions: str, collections: str, *rest: str
) -> CouchbaseKit:
    server = CouchbaseServer(connection, user, password, bucket, bool(transactions), lambda: None)
    return CouchbaseKit(server, None, json.loads(collections), *rest)


class TestCouchbaseProtocol(BackendProtocol):
    @pytest.fixture
    async def kit(
        self,
        couchbase_server: CouchbaseServer,
        couchbase_cluster: Any,
        couchbase_collections: dict[str, str],
        tmp_path: Path,
    ) -> AsyncIterator[ProtocolKit]:
        kit = CouchbaseKit(couchbase_server, couchbase_cluster, couchbase_collections, str(tmp_path))
        yield kit
        await kit.aclose()


@pytest.fixture
def app(couchbase_cluster: Any, couchbase_server: CouchbaseServer) -> CouchbaseTargetSystem:
    return CouchbaseTargetSystem("app", cluster=couchbase_cluster, bucket=couchbase_server.bucket)


# -- collections, configuration, errors -------------------------------------------------------------------------------


async def test_without_create_collections_a_missing_collection_is_named_with_its_command(
    app: CouchbaseTargetSystem, couchbase_collections: dict[str, str], couchbase_server: CouchbaseServer
) -> None:
    store = CouchbaseAuditStore.from_target(app, **couchbase_collections, create_collections=False)
    with pytest.raises(ConfigurationError) as caught:
        await store.open()
    audit = couchbase_collections["audit_collection"]
    assert f"the audit collection _default.{audit} does not exist in bucket '{couchbase_server.bucket}'" in str(
        caught.value
    )
    assert f"--bucket {couchbase_server.bucket} --create-collection _default.{audit}" in str(caught.value)


async def test_doctor_names_each_missing_collection(
    app: CouchbaseTargetSystem, couchbase_collections: dict[str, str]
) -> None:
    store = CouchbaseAuditStore.from_target(app, **couchbase_collections)
    problems = {(c.check, c.detail): c.fix for c in await store.doctor() if not c.ok}
    audit, lock = couchbase_collections["audit_collection"], couchbase_collections["lock_collection"]
    assert set(problems) == {
        ("collections", f"the audit collection _default.{audit} does not exist"),
        ("collections", f"the lock collection _default.{lock} does not exist"),
    }
    assert all(str(fix).startswith("any run creates it") for fix in problems.values())


async def test_a_bucket_that_does_not_exist_is_a_store_error(couchbase_cluster: Any) -> None:
    target = CouchbaseTargetSystem("app", cluster=couchbase_cluster, bucket="no-such-bucket")
    with pytest.raises(StoreError, match="opening bucket 'no-such-bucket'"):
        await target.open()


def test_the_synchronous_cluster_is_refused_with_a_reason(couchbase_server: CouchbaseServer) -> None:
    from couchbase.auth import PasswordAuthenticator
    from couchbase.cluster import Cluster
    from couchbase.options import ClusterOptions

    options = ClusterOptions(PasswordAuthenticator(couchbase_server.username, couchbase_server.password))
    cluster = Cluster(couchbase_server.connection_string, options)
    try:
        with pytest.raises(ConfigurationError, match="the synchronous SDK blocks the event loop"):
            CouchbaseTargetSystem("app", cluster=cluster, bucket="b")
    finally:
        cluster.close()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"bucket": "a.b"}, "bucket 'a.b' must not contain '.'"),
        ({"bucket": "b", "scope": "_system"}, "scope '_system' must not"),
        ({"bucket": "b", "scope": "x y"}, "scope 'x y' must be 1-128 characters"),
    ],
)
def test_bad_names_are_configuration_errors(couchbase_cluster: Any, options: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        CouchbaseTargetSystem("app", cluster=couchbase_cluster, **options)


def test_bad_collection_names_are_configuration_errors(app: CouchbaseTargetSystem) -> None:
    with pytest.raises(ConfigurationError, match="audit_collection '_audit' must not"):
        CouchbaseAuditStore.from_target(app, audit_collection="_audit")


# -- the transaction bridge -------------------------------------------------------------------------------------------


class SdkLikeTransactions:
    """`cluster.transactions` with the SDK's own control flow (`run_async` of couchbase 4.x: a new attempt, the
    logic, then the commit; a logic that raises is rolled back and raised as `TransactionFailed` with the logic's
    exception as `inner_cause`; a commit that fails starts a new attempt). No server behind it: this checks how the
    target drives the SDK's callback API, not Couchbase's transactions, which need a real server (see above)."""

    def __init__(self, commits: list[bool]) -> None:
        self.commits = commits
        self.attempts = 0
        self.rolled_back = 0
        self.committed = 0

    async def run(self, logic: Any) -> str:
        from couchbase.exceptions import TransactionFailed

        while True:
            self.attempts += 1
            try:
                await logic(object())
            except Exception as exc:
                self.rolled_back += 1
                raise TransactionFailed(exc_info={"inner_cause": exc}) from None
            if self.commits.pop(0):
                self.committed += 1
                return "result"


@pytest.fixture
def sdk_like(
    app: CouchbaseTargetSystem, monkeypatch: pytest.MonkeyPatch
) -> Callable[[list[bool]], SdkLikeTransactions]:
    def install(commits: list[bool]) -> SdkLikeTransactions:
        transactions = SdkLikeTransactions(commits)
        monkeypatch.setattr(type(app.cluster), "transactions", property(lambda self: transactions))
        return transactions

    return install


async def test_the_block_commits_one_attempt(app: CouchbaseTargetSystem, sdk_like: Any) -> None:
    transactions = sdk_like([True])
    async with app, app.transaction() as tx:
        assert tx.context.transaction is not None
    assert (transactions.attempts, transactions.committed, transactions.rolled_back) == (1, 1, 0)


async def test_a_block_that_raises_rolls_back_and_the_caller_gets_its_exception(
    app: CouchbaseTargetSystem, sdk_like: Any
) -> None:
    transactions = sdk_like([True])
    async with app:
        with pytest.raises(ValueError, match="boom"):
            async with app.transaction():
                raise ValueError("boom")
    assert (transactions.attempts, transactions.committed, transactions.rolled_back) == (1, 0, 1)


async def test_a_cancelled_block_rolls_back(app: CouchbaseTargetSystem, sdk_like: Any) -> None:
    transactions = sdk_like([True])
    async with app:
        with anyio.move_on_after(0.05):
            async with app.transaction():
                await anyio.sleep(10)
    assert (transactions.committed, transactions.rolled_back) == (0, 1)


async def test_a_commit_the_sdk_would_run_again_is_an_unknown_outcome(
    app: CouchbaseTargetSystem, sdk_like: Any
) -> None:
    transactions = sdk_like([False, True])
    async with app:
        with pytest.raises(TransactionOutcomeUnknownError, match="started it again"):
            async with app.transaction():
                pass
    assert transactions.attempts == 2 and transactions.committed == 0, "the change must not run in a second attempt"


@pytest.mark.parametrize(
    ("name", "expected", "fragment"),
    [
        ("UnAmbiguousTimeoutException", StoreUnavailableError, "Couchbase failed while reading"),
        ("AmbiguousTimeoutException", StoreUnavailableError, "may or may not have been applied"),
        ("TemporaryFailException", StoreUnavailableError, "TemporaryFailException"),
        ("ServiceUnavailableException", StoreUnavailableError, "ServiceUnavailableException"),
        ("CollectionNotFoundException", StoreError, "does it exist, and may these credentials use it?"),
        ("AuthenticationException", StoreError, "AuthenticationException"),
    ],
)
def test_sdk_errors_are_translated_at_the_boundary_and_redacted(
    name: str, expected: type[StoreError], fragment: str
) -> None:
    import couchbase.exceptions

    from aioflamingock.couchbase._errors import translate

    sdk_error = getattr(couchbase.exceptions, name)(message="via couchbase://admin:s3cret@db.example/app")
    translated = translate(sdk_error, "reading 'x'")
    assert type(translated) is expected
    assert fragment in str(translated)
    assert "s3cret" not in str(translated)


async def test_the_server_gone_mid_change_ends_the_run_with_an_error_that_names_no_secret(tmp_path: Path) -> None:
    """On a double in a process of its own, killed while a change runs (its data goes with it)."""
    process, connection = start_couchbase_kv_process()
    server = CouchbaseServer(connection, COUCHBASE_USER, COUCHBASE_PASSWORD, COUCHBASE_BUCKET, False, process.kill)
    kit = CouchbaseKit(server, None, {"audit_collection": "audit", "lock_collection": "lock"}, str(tmp_path))
    children = Children(kit, tmp_path, await kit.instance())
    try:
        victim = children.start(hang="nontx-1")
        await children.wait_ready(victim, "nontx-1")
        process.kill()
        process.wait(10)
        children.go("nontx-1")

        stopped = await victim.wait(30)
    finally:
        await children.close()
        await kit.aclose()
        process.kill()
        process.wait(10)

    assert stopped.code in (EXIT_CODES[LockLostError], EXIT_CODES[StoreError]), stopped
    assert stopped.error.split(":")[0] in ("LockLostError", "StoreUnavailableError", "StoreError"), stopped
    assert COUCHBASE_PASSWORD not in stopped.stderr
