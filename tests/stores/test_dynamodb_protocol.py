"""What only DynamoDB's store does, on a DynamoDB endpoint (moto's server unless told otherwise): what goes over the
wire, the 100-action limit, conditions, throttling, the marker table. The protocol kit's scenarios, the tables'
configuration and the clients are in `test_dynamodb.py`.

Throttling and lost answers are injected with botocore's own events on the client: `before-call` answers a request
with an error response instead of sending it (DynamoDB throttled it: nothing was applied); `after-call` raises a
read timeout once the real answer has arrived (the request was applied, the client never learns it)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from aioflamingock import (
    AuditEntry,
    AuditState,
    Change,
    ChangeFailedError,
    ConfigurationError,
    Flamingock,
    LockOptions,
    RunStatus,
    StoreError,
    StoreUnavailableError,
    TransactionOutcomeUnknownError,
    TxStrategy,
)
from aioflamingock.dynamodb import DynamoDBAuditStore, DynamoDBContext, DynamoDBTargetSystem
from tests.servers import dynamodb_client_options, dynamodb_session

from ._dynamodb_wire import Wire, key

FAST_LOCK = LockOptions(lease_seconds=10, acquire_timeout_seconds=30, retry_interval_seconds=0.05)


class Names:
    """This test's table names (a fresh prefix per test), for the changes to use."""

    users = "users"
    things = "things"


def count(n: int = 1) -> dict[str, Any]:
    """An `Update` that adds `n` to the `n` of the item `count`: applied twice, it shows."""
    return {
        "TableName": Names.users,
        "Key": key("count"),
        "UpdateExpression": "ADD n :n",
        "ExpressionAttributeValues": {":n": {"N": str(n)}},
    }


class InsertUsers(Change):
    """Shared path: on the store's own client."""

    id = "insert-users"
    order = "0001"
    author = "tester"
    target_system = "app"

    async def execute(self, ctx: DynamoDBContext) -> None:
        ctx.transaction.put(TableName=Names.users, Item=key("1"))
        ctx.transaction.put(TableName=Names.users, Item=key("2"))


class CreateIndexLater(Change):
    """Non-transactional path: a table is no transactional write."""

    id = "create-things"
    order = "0003"
    author = "tester"
    target_system = "app"
    transactional = False
    contexts: list[DynamoDBContext] = []

    async def execute(self, ctx: DynamoDBContext) -> None:
        type(self).contexts.append(ctx)
        await ctx.client.create_table(
            TableName=Names.things,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )


class InsertThing(Change):
    """Marker path: on a target with another client."""

    id = "insert-thing"
    order = "0004"
    author = "tester"
    target_system = "other"
    executions = 0

    async def execute(self, ctx: DynamoDBContext) -> None:
        type(self).executions += 1
        ctx.transaction.put(TableName=Names.users, Item=key("thing"))
        ctx.transaction.update(**count())


class CountOnce(Change):
    """Shared path; the item `count` shows how often its transaction was applied."""

    id = "count-once"
    order = "0005"
    author = "tester"
    target_system = "app"
    executions = 0

    async def execute(self, ctx: DynamoDBContext) -> None:
        type(self).executions += 1
        ctx.transaction.update(**count())

    async def rollback(self, ctx: DynamoDBContext) -> None:
        ctx.transaction.update(**count(-1))


# -- fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def names(dynamodb_prefix: str) -> Iterator[None]:
    Names.users, Names.things = f"{dynamodb_prefix}users", f"{dynamodb_prefix}things"
    InsertThing.executions = CountOnce.executions = 0
    CreateIndexLater.contexts = []
    yield


@pytest.fixture
async def users(dynamodb_client: Any) -> str:
    await dynamodb_client.create_table(
        TableName=Names.users,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return Names.users


@pytest.fixture
async def other_client(dynamodb_endpoint: str) -> AsyncIterator[Any]:
    """A second client: a target on it cannot share the store's transactions (marker path)."""

    async with dynamodb_session().client("dynamodb", **dynamodb_client_options(dynamodb_endpoint)) as client:
        yield client


@pytest.fixture
def app(dynamodb_client: Any, dynamodb_prefix: str, users: str) -> DynamoDBTargetSystem:
    return DynamoDBTargetSystem("app", client=dynamodb_client, marker_table=f"{dynamodb_prefix}marker")


@pytest.fixture
def other(other_client: Any, dynamodb_prefix: str, users: str) -> DynamoDBTargetSystem:
    return DynamoDBTargetSystem("other", client=other_client, marker_table=f"{dynamodb_prefix}marker")


def tables(prefix: str) -> dict[str, str]:
    return {"audit_table": f"{prefix}audit", "lock_table": f"{prefix}lock"}


@pytest.fixture
def store(app: DynamoDBTargetSystem, dynamodb_prefix: str) -> DynamoDBAuditStore:
    return DynamoDBAuditStore.from_target(app, **tables(dynamodb_prefix))


def flamingock(store: DynamoDBAuditStore, *targets: DynamoDBTargetSystem, changes: list[type[Change]]) -> Flamingock:
    return Flamingock(audit_store=store, target_systems=list(targets), changes=changes, lock=FAST_LOCK)


async def entries(fl: Flamingock, change_id: str) -> list[AuditEntry]:
    return [e async for e in fl.history() if e.change_id == change_id]


async def items(client: Any, table: str) -> dict[str, dict[str, Any]]:
    response = await client.scan(TableName=table, ConsistentRead=True)  # a test may scan; the library never does
    return {
        item[next(iter(k for k in ("id", "changeId", "key") if k in item))]["S"]: item for item in response["Items"]
    }


async def counted(client: Any) -> int:
    item = (await items(client, Names.users)).get("count")
    return 0 if item is None else int(item["n"]["N"])


@pytest.fixture
def wire(dynamodb_client: Any) -> Iterator[Wire]:
    recorder = Wire(dynamodb_client)
    yield recorder
    recorder.close()


# -- shared transaction -------------------------------------------------------------------------------------------


async def test_shared_path_sends_the_items_the_applied_entry_and_the_lock_check_in_one_call(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any, dynamodb_prefix: str, wire: Wire
) -> None:
    fl = flamingock(store, app, changes=[InsertUsers])
    report = await fl.run()
    assert report.applied == ["insert-users"]
    assert "Scan" not in wire.operations()
    assert set(await items(dynamodb_client, Names.users)) == {"1", "2"}
    [entry] = await entries(fl, "insert-users")
    assert (entry.state, entry.tx_strategy, entry.transaction_flag) == (
        AuditState.APPLIED,
        TxStrategy.TX_AUDIT_STORE_SHARED,
        True,
    )
    [transaction] = wire.transactions()
    assert [next(iter(action)) for action in transaction] == ["Put", "Put", "ConditionCheck", "Put"]
    assert transaction[2]["ConditionCheck"]["TableName"] == f"{dynamodb_prefix}lock"
    scanned = (await dynamodb_client.scan(TableName=f"{dynamodb_prefix}audit"))["Items"]
    raw = [item for item in scanned if "changeId" in item]  # and the start-up summary
    assert len(raw) == 1 and len(scanned) == 2
    assert raw[0]["partitionKey"] == {"S": "auditLog"} and raw[0]["seq"] == {"N": "1"}
    assert raw[0]["state"] == {"S": "APPLIED"} and raw[0]["txStrategy"] == {"S": "TX_AUDIT_STORE_SHARED"}
    assert {"executionId", "stageId", "changeOrder", "recoveryStrategy", "transactionFlag", "createdAt"} <= set(raw[0])


class PutExistingUser(Change):
    """Its condition fails: user 1 exists. Its other write must not happen either."""

    id = "put-existing-user"
    order = "0002"
    author = "tester"
    target_system = "app"

    async def execute(self, ctx: DynamoDBContext) -> None:
        ctx.transaction.put(TableName=Names.users, Item=key("3"))
        ctx.transaction.put(TableName=Names.users, Item=key("1"), ConditionExpression="attribute_not_exists(id)")


async def test_a_failed_condition_of_the_change_fails_it_and_writes_nothing_of_it(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any
) -> None:
    fl = flamingock(store, app, changes=[InsertUsers, PutExistingUser])
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    cause = caught.value.__cause__
    assert isinstance(cause, StoreError) and not isinstance(cause, StoreUnavailableError)
    assert f"action 2 (Put on table {Names.users!r})" in str(cause)
    assert set(await items(dynamodb_client, Names.users)) == {"1", "2"}
    assert [e.state for e in await entries(fl, "put-existing-user")] == [AuditState.FAILED]
    assert (await fl.plan())[1].action.value == "APPLY"  # nothing was committed: the next run tries again


class ManyPuts(Change):
    id = "many-puts"
    order = "0001"
    author = "tester"
    target_system = "app"
    puts = 99

    async def execute(self, ctx: DynamoDBContext) -> None:
        for i in range(type(self).puts):
            ctx.transaction.put(TableName=Names.users, Item=key(f"u{i}"))


async def test_more_actions_than_dynamodb_takes_is_an_error_before_anything_is_sent(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any, wire: Wire
) -> None:
    fl = flamingock(store, app, changes=[ManyPuts])
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    assert isinstance(caught.value.__cause__, ConfigurationError)
    message = str(caught.value.__cause__)
    assert "the change adds 99 actions and aioflamingock 2" in message and "at most 98 actions" in message
    assert await items(dynamodb_client, Names.users) == {}
    assert [len(t) for t in wire.transactions()] == [2]  # only the FAILED entry: lock check and put
    ManyPuts.puts = 98
    try:
        assert (await fl.run()).applied == ["many-puts"]
    finally:
        ManyPuts.puts = 99
    assert len(await items(dynamodb_client, Names.users)) == 98


# -- marker path --------------------------------------------------------------------------------------------------


async def test_the_marker_table_is_created_by_the_first_marker_and_left_empty(
    app: DynamoDBTargetSystem, other: DynamoDBTargetSystem, store: DynamoDBAuditStore, other_client: Any
) -> None:
    assert (await flamingock(store, app, other, changes=[InsertThing]).run()).applied == ["insert-thing"]
    assert await counted(other_client) == 1
    assert await items(other_client, other.marker_table) == {}


# -- non-transactional path ---------------------------------------------------------------------------------------


async def test_non_transactional_change_gets_the_client_and_no_transaction(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any
) -> None:
    fl = flamingock(store, app, changes=[CreateIndexLater])
    assert (await fl.run()).applied == ["create-things"]
    [ctx] = CreateIndexLater.contexts
    assert ctx.client is dynamodb_client and not ctx.in_transaction
    with pytest.raises(ConfigurationError, match=r"write with ctx\.client"):
        ctx.transaction  # noqa: B018
    assert Names.things in (await dynamodb_client.list_tables())["TableNames"]
    assert [(e.state, e.tx_strategy, e.transaction_flag) for e in await entries(fl, "create-things")] == [
        (AuditState.STARTED, TxStrategy.NON_TX, False),
        (AuditState.APPLIED, TxStrategy.NON_TX, False),
    ]


# -- the lock -----------------------------------------------------------------------------------------------------


async def test_a_second_run_takes_no_lock_and_writes_nothing(
    app: DynamoDBTargetSystem, other: DynamoDBTargetSystem, store: DynamoDBAuditStore, wire: Wire
) -> None:
    changes: list[type[Change]] = [InsertUsers, CreateIndexLater, InsertThing]
    assert (await flamingock(store, app, other, changes=changes).run()).status is RunStatus.SUCCESS
    wire.sent.clear()
    assert (await flamingock(store, app, other, changes=changes).run()).status is RunStatus.NO_CHANGES
    assert wire.operations() == Counter({"Query": 1})  # the tables were checked when the store first opened
    wire.sent.clear()
    fresh = DynamoDBAuditStore.from_target(app, **tables(app.marker_table.removesuffix("marker")))
    assert (await flamingock(fresh, app, other, changes=changes).run()).status is RunStatus.NO_CHANGES
    # a fresh store object: its audit table checked, and the summary; the lock table only once a lock is needed
    assert wire.operations() == Counter({"DescribeTable": 1, "Query": 1})
    assert [params["TableName"] for name, params in wire.sent if name == "DescribeTable"] == [fresh.audit_table]


async def test_release_deletes_the_lock_item(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any, dynamodb_prefix: str
) -> None:
    await flamingock(store, app, changes=[InsertUsers]).run()
    assert await items(dynamodb_client, f"{dynamodb_prefix}lock") == {}


# -- throttling, lost answers -------------------------------------------------------------------------------------


async def test_throttled_requests_are_sent_again(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore, dynamodb_client: Any, wire: Wire
) -> None:
    queries = wire.refuse("Query", "ThrottlingException", times=2)
    commits = wire.refuse("TransactWriteItems", "ProvisionedThroughputExceededException", times=3)
    locks = wire.refuse("UpdateItem", "RequestLimitExceeded", times=1)
    fl = flamingock(store, app, changes=[CountOnce])
    assert (await fl.run()).applied == ["count-once"]
    assert (queries[0], commits[0], locks[0]) == (2, 3, 1)
    assert CountOnce.executions == 1
    assert await counted(dynamodb_client) == 1


async def test_throttling_that_does_not_end_is_store_unavailable_in_time(
    app: DynamoDBTargetSystem, store: DynamoDBAuditStore
) -> None:
    app.retry_seconds = 0.5
    await store.open()  # the tables exist
    await store.close()
    wire = Wire(app.client)
    try:
        wire.refuse("Query", "ProvisionedThroughputExceededException", times=1000)
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="ProvisionedThroughputExceededException"):
            await flamingock(store, app, changes=[CountOnce]).run()
        assert time.monotonic() - started < 3
    finally:
        wire.close()


async def test_a_refused_connection_is_store_unavailable_not_unknown(dynamodb_prefix: str) -> None:

    from tests.servers import free_port

    options = dynamodb_client_options(f"http://127.0.0.1:{free_port()}")
    async with dynamodb_session().client("dynamodb", **options) as client:
        target = DynamoDBTargetSystem("app", client=client, retry_seconds=0.3)
        with pytest.raises(StoreUnavailableError) as caught:
            async with target.transaction() as tx:
                tx.context.transaction.put(TableName="t-users", Item=key("1"))
        assert not isinstance(caught.value, TransactionOutcomeUnknownError)
        assert "Could not connect" in str(caught.value)


# -- tables, clients, messages ------------------------------------------------------------------------------------


async def test_a_table_with_other_keys_is_refused(app: DynamoDBTargetSystem, dynamodb_prefix: str) -> None:
    store = DynamoDBAuditStore.from_target(app, audit_table=Names.users, lock_table=f"{dynamodb_prefix}lock")
    with pytest.raises(ConfigurationError, match="exists with another key schema; it needs partitionKey"):
        await store.open()


async def test_without_create_tables_the_marker_path_names_the_missing_marker_table(
    app: DynamoDBTargetSystem, other_client: Any, store: DynamoDBAuditStore, dynamodb_prefix: str
) -> None:
    other = DynamoDBTargetSystem(
        "other", client=other_client, marker_table=f"{dynamodb_prefix}marker", create_tables=False
    )
    with pytest.raises(ChangeFailedError) as caught:
        await flamingock(store, app, other, changes=[InsertThing]).run()
    assert f"the marker table '{dynamodb_prefix}marker' does not exist" in str(caught.value.__cause__)
    assert InsertThing.executions == 1 and await counted(other_client) == 0
