"""The Couchbase backend beyond the conformance suite, on the key-value test double unless told otherwise: runs
through `Flamingock`, what the audit's head document guarantees, the lock's tokens, the collections, the errors.
The transactional paths (shared and marker) need ACID transactions: they run on a real Couchbase Server only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest

from aioflamingock import (
    AuditState,
    Change,
    ChangeFailedError,
    ConfigurationError,
    Flamingock,
    LockLostError,
    LockOptions,
    Recovery,
    RunStatus,
    StoreError,
    StoreUnavailableError,
    TransactionOutcomeUnknownError,
    TxStrategy,
)
from aioflamingock.couchbase import CouchbaseAuditStore, CouchbaseContext, CouchbaseTargetSystem
from aioflamingock.couchbase._audit import HEAD_KEY, entry_key
from aioflamingock.couchbase._kv import Keyspace
from aioflamingock.testing import make_entry
from tests.servers import CouchbaseServer

FAST_LOCK = LockOptions(lease_seconds=10, acquire_timeout_seconds=30, retry_interval_seconds=0.05)
ROWS = "_default"


class SeedRows(Change):
    """Non-transactional: key-value writes."""

    id = "seed-rows"
    order = "0001"
    author = "tester"
    target_system = "app"
    transactional = False
    recovery = Recovery.ALWAYS_RETRY
    idempotency = "upserts"

    async def execute(self, ctx: CouchbaseContext) -> None:
        assert ctx.transaction is None
        for n in range(3):
            await ctx.collection(ROWS).upsert(f"row::{n}", {"n": n})


class FailAfterOneRow(Change):
    id = "fail-after-one-row"
    order = "0002"
    author = "tester"
    target_system = "app"
    transactional = False

    async def execute(self, ctx: CouchbaseContext) -> None:
        await ctx.collection(ROWS).upsert("row::doomed", {"n": -1})
        raise ValueError("boom")

    async def rollback(self, ctx: CouchbaseContext) -> None:
        await ctx.collection(ROWS).remove("row::doomed")


class InsertInTransaction(Change):
    """Transactional: the shared path on the store's bucket, the marker path on another cluster object."""

    id = "insert-in-transaction"
    order = "0003"
    author = "tester"
    target_system = "app"

    async def execute(self, ctx: CouchbaseContext) -> None:
        assert ctx.transaction is not None
        await ctx.transaction.insert(ctx.collection(ROWS), "row::tx", {"n": 99})


@pytest.fixture
def app(couchbase_cluster: Any, couchbase_server: CouchbaseServer) -> CouchbaseTargetSystem:
    return CouchbaseTargetSystem("app", cluster=couchbase_cluster, bucket=couchbase_server.bucket)


@pytest.fixture
async def store(app: CouchbaseTargetSystem, couchbase_collections: dict[str, str]) -> CouchbaseAuditStore:
    return CouchbaseAuditStore.from_target(app, **couchbase_collections)


@pytest.fixture
async def opened(store: CouchbaseAuditStore) -> AsyncIterator[CouchbaseAuditStore]:
    async with store:
        yield store


def flamingock(store: CouchbaseAuditStore, *targets: CouchbaseTargetSystem, changes: list[type[Change]]) -> Flamingock:
    return Flamingock(audit_store=store, target_systems=list(targets), changes=changes, lock=FAST_LOCK)


async def rows(app: CouchbaseTargetSystem) -> dict[str, Any]:
    async with app:
        keyspace = app.keyspace(ROWS, scope="_default")
        found = {}
        for key in ("row::0", "row::1", "row::2", "row::doomed", "row::tx"):
            doc = await keyspace.get(key)
            if doc is not None:
                found[key] = doc.body["n"]
        return found


def needs_transactions(server: CouchbaseServer) -> None:
    if not server.transactions:
        pytest.skip(
            "needs Couchbase ACID transactions, which the key-value test double does not have: set "
            "AIOFLAMINGOCK_COUCHBASE_URL to a Couchbase Server 7 cluster, or run with a Docker engine"
        )


class Counting:
    """Counts the key-value operations a store sends, by wrapping its keyspaces' collections."""

    def __init__(self, *keyspaces: Keyspace) -> None:
        self.calls: list[str] = []
        for keyspace in keyspaces:
            keyspace.collection = self._wrap(keyspace.collection)

    def _wrap(self, collection: Any) -> Any:
        calls = self.calls

        class Wrapped:
            def __getattr__(self, name: str) -> Any:
                operation = getattr(collection, name)

                def counted(*args: Any, **kwargs: Any) -> Any:
                    calls.append(name)
                    return operation(*args, **kwargs)

                return counted

        return Wrapped()


# -- runs -------------------------------------------------------------------------------------------------------------


async def test_non_transactional_changes_run_then_a_second_run_reads_one_document(
    app: CouchbaseTargetSystem, store: CouchbaseAuditStore
) -> None:
    report = await flamingock(store, app, changes=[SeedRows]).run()
    assert report.status is RunStatus.SUCCESS and report.applied == ["seed-rows"]
    assert await rows(app) == {"row::0": 0, "row::1": 1, "row::2": 2}
    async with store:
        assert [(e.change_id, e.state, e.tx_strategy) for e in [x async for x in store.history()]] == [
            ("seed-rows", AuditState.STARTED, TxStrategy.NON_TX),
            ("seed-rows", AuditState.APPLIED, TxStrategy.NON_TX),
        ]
        counting = Counting(store.log.keyspace, store.lock.keyspace)
        again = await flamingock(store, app, changes=[SeedRows]).run()
    assert again.status is RunStatus.NO_CHANGES
    assert counting.calls == ["get"], "a run with nothing pending reads the head and nothing else"


async def test_a_failing_change_is_rolled_back_and_recorded(
    app: CouchbaseTargetSystem, store: CouchbaseAuditStore
) -> None:
    with pytest.raises(ChangeFailedError) as caught:
        await flamingock(store, app, changes=[FailAfterOneRow]).run()
    assert isinstance(caught.value.__cause__, ValueError)
    assert "row::doomed" not in await rows(app)
    async with store:
        history = [x async for x in store.history()]
        assert [e.state for e in history] == [AuditState.STARTED, AuditState.FAILED, AuditState.ROLLED_BACK]
        assert "ValueError: boom" in (history[1].error_trace or "")
        [current] = (await store.current_states()).values()
        assert current.state is AuditState.ROLLED_BACK


async def test_the_shared_transaction_commits_the_change_with_its_entry(
    couchbase_server: CouchbaseServer, app: CouchbaseTargetSystem, store: CouchbaseAuditStore
) -> None:
    needs_transactions(couchbase_server)
    report = await flamingock(store, app, changes=[InsertInTransaction]).run()
    assert report.applied == ["insert-in-transaction"]
    assert (await rows(app))["row::tx"] == 99
    async with store:
        [entry] = [x async for x in store.history()]
    assert (entry.state, entry.tx_strategy) == (AuditState.APPLIED, TxStrategy.TX_AUDIT_STORE_SHARED)


async def test_the_marker_path_on_another_cluster_object(
    couchbase_server: CouchbaseServer, store: CouchbaseAuditStore
) -> None:
    needs_transactions(couchbase_server)
    from .conftest import connect_couchbase

    other_cluster = await connect_couchbase(couchbase_server)
    try:
        other = CouchbaseTargetSystem("app", cluster=other_cluster, bucket=couchbase_server.bucket)
        store_target = store.target
        store_target.id = "store"
        report = await flamingock(store, store_target, other, changes=[InsertInTransaction]).run()
        assert report.applied == ["insert-in-transaction"]
        assert await other.read_marker("insert-in-transaction") is None, "the marker is deleted once APPLIED"
    finally:
        await other_cluster.close()
    async with store:
        states = [(e.state, e.tx_strategy) for e in [x async for x in store.history()]]
    assert states == [
        (AuditState.STARTED, TxStrategy.TX_AUDIT_STORE_SYNC),
        (AuditState.APPLIED, TxStrategy.TX_AUDIT_STORE_SYNC),
    ]


# -- the head document ------------------------------------------------------------------------------------------------


async def test_current_states_is_one_get_whatever_the_size_of_the_audit(opened: CouchbaseAuditStore) -> None:
    lease = await opened.lock.try_acquire("svc", "me", 30)
    assert lease is not None
    for i in range(40):
        await opened.append(
            make_entry(f"c{i % 20}", AuditState.STARTED if i < 20 else AuditState.APPLIED), fence=lease.fence
        )
    counting = Counting(opened.log.keyspace, opened.lock.keyspace)
    states = await opened.current_states()
    assert counting.calls == ["get"]
    assert len(states) == 20 and {e.state for e in states.values()} == {AuditState.APPLIED}


async def test_change_ids_with_dots_are_keys_of_their_own_in_the_head(opened: CouchbaseAuditStore) -> None:
    lease = await opened.lock.try_acquire("svc", "me", 30)
    assert lease is not None
    for change_id in ("a", "a.b", "a.b.c", "v1.2_x-y"):
        await opened.append(make_entry(change_id), fence=lease.fence)
    assert sorted(await opened.current_states()) == ["a", "a.b", "a.b.c", "v1.2_x-y"]
    assert [e.change_id async for e in opened.history()] == ["a", "a.b", "a.b.c", "v1.2_x-y"]


async def test_an_append_costs_a_bounded_number_of_operations(opened: CouchbaseAuditStore) -> None:
    lease = await opened.lock.try_acquire("svc", "me", 30)
    assert lease is not None
    await opened.append(make_entry("first"), fence=lease.fence)
    counting = Counting(opened.log.keyspace, opened.lock.keyspace)
    await opened.append(make_entry("second"), fence=lease.fence)
    # the lock read and three paths of the head looked up, at once; three paths of the head written with CAS (the
    # commit point); the entry written, beside an insert of the previous one that fills in a crash's gap. The
    # head itself, which grows with the number of changes, is neither read nor written whole.
    assert sorted(counting.calls) == ["get", "insert", "lookup_in", "mutate_in", "upsert"]


async def test_an_entry_whose_document_a_crash_kept_out_is_still_read_then_written_again(
    opened: CouchbaseAuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    lease = await opened.lock.try_acquire("svc", "me", 30)
    assert lease is not None
    await opened.append(make_entry("a"), fence=lease.fence)

    async def crash(*args: Any) -> None:
        raise RuntimeError("the process died after the head was written")

    with monkeypatch.context() as patch:
        patch.setattr(opened.log, "_write_entries", crash)
        with pytest.raises(RuntimeError):
            await opened.append(make_entry("b"), fence=lease.fence)
    assert await opened.log.keyspace.get(entry_key(2)) is None
    assert [e.change_id async for e in opened.history()] == ["a", "b"], "the newest entry is read from the head"
    await opened.append(make_entry("c"), fence=lease.fence)
    assert await opened.log.keyspace.get(entry_key(2)) is not None, "the next append wrote it"
    assert [e.change_id async for e in opened.history()] == ["a", "b", "c"]


async def test_a_holder_that_passed_its_lock_check_cannot_write_once_another_claimed_the_log(
    opened: CouchbaseAuditStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window the key-value service leaves open: the lock check passed (a paused process), the lease ended and
    another instance took the lock. The head's claim still stops the late write."""
    old = await opened.lock.try_acquire("svc", "old", 0.2)
    assert old is not None
    await opened.append(make_entry("before"), fence=old.fence)
    import asyncio

    await asyncio.sleep(0.3)
    new = await opened.lock.try_acquire("svc", "new", 30)
    assert new is not None and new.token > old.token

    async def passed() -> None:
        return None

    monkeypatch.setattr(opened.lock, "check", lambda fence, what: passed())
    with pytest.raises(LockLostError, match="claimed by a newer holder"):
        await opened.append(make_entry("late"), fence=old.fence)
    assert [e.change_id async for e in opened.history()] == ["before"]


async def test_tokens_keep_counting_after_a_release_deletes_the_lock(opened: CouchbaseAuditStore) -> None:
    first = await opened.lock.try_acquire("svc", "a", 30)
    assert first is not None and await opened.lock.release(first)
    assert await opened.lock.read("svc") is None
    second = await opened.lock.try_acquire("svc", "b", 30)
    assert second is not None and second.token == first.token + 1


async def test_a_head_written_by_something_else_is_a_store_error(opened: CouchbaseAuditStore) -> None:
    await opened.log.keyspace.upsert(HEAD_KEY, {"unexpected": True})
    with pytest.raises((StoreError, KeyError)):
        await opened.current_states()


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
    async with CouchbaseAuditStore.from_target(app, **couchbase_collections):  # creates them
        pass
    async with store:
        assert await store.current_states() == {}


async def test_doctor_finds_missing_collections_without_creating_them(
    app: CouchbaseTargetSystem, store: CouchbaseAuditStore, couchbase_collections: dict[str, str]
) -> None:
    fl = flamingock(store, app, changes=[SeedRows])
    problems = {(c.check, c.detail): c.fix for c in await fl.doctor() if not c.ok}
    audit, lock = couchbase_collections["audit_collection"], couchbase_collections["lock_collection"]
    assert set(problems) == {
        ("collections", f"the audit collection _default.{audit} does not exist"),
        ("collections", f"the lock collection _default.{lock} does not exist"),
    }
    assert all(str(fix).startswith("any run creates it") for fix in problems.values())
    assert [c for c in await fl.doctor() if not c.ok and c.check == "reachable"] == []
    await fl.run()
    assert [c for c in await fl.doctor() if not c.ok] == []


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
