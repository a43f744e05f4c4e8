"""DynamoDB (moto's server unless told otherwise): the conformance suite, the protocol kit's scenarios, and what is
the driver's: its imports, tables, clients, messages and doctor."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from aioflamingock import AuditStore, ConfigurationError, Flamingock, StoreError
from aioflamingock._redact import redact
from aioflamingock.dynamodb import DynamoDBAuditStore, DynamoDBContext, DynamoDBTargetSystem
from aioflamingock.dynamodb._errors import translate
from aioflamingock.testing import AuditStoreConformance, BackendProtocol, Instance, ManualClock, ProtocolKit
from aioflamingock.testing._child import EXIT_CODES
from aioflamingock.testing._processes import Children
from tests.servers import DYNAMODB_CREDENTIALS, Proxy, SwitchedBacking, dynamodb_client_options, dynamodb_session

from ._dynamodb_wire import Wire, key
from ._owning import OwningStore


def tables(prefix: str) -> dict[str, str]:
    return {"audit_table": f"{prefix}audit", "lock_table": f"{prefix}lock"}


class ClientOwningStore(OwningStore):
    def __init__(self, endpoint: str, prefix: str) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._prefix = prefix

    async def connect(self, stack: AsyncExitStack) -> AuditStore:

        client_context = dynamodb_session().client("dynamodb", **dynamodb_client_options(self._endpoint))
        client = await stack.enter_async_context(client_context)
        target = DynamoDBTargetSystem("db", client=client)
        return await stack.enter_async_context(DynamoDBAuditStore.from_target(target, **tables(self._prefix)))


def open_store(endpoint: str, prefix: str) -> ClientOwningStore:
    """Used by the multi-process race: the same tables, from another process, with a client of its own."""
    return ClientOwningStore(endpoint, prefix)


class TestDynamoDBAuditStore(AuditStoreConformance):
    @pytest.fixture
    async def store(
        self, dynamodb_endpoint: str, dynamodb_prefix: str, dynamodb_client: Any
    ) -> AsyncIterator[DynamoDBAuditStore]:
        self._args = [dynamodb_endpoint, dynamodb_prefix]
        target = DynamoDBTargetSystem("db", client=dynamodb_client)
        async with DynamoDBAuditStore.from_target(target, **tables(dynamodb_prefix)) as store:
            yield store

    @pytest.fixture
    async def clocked_store(
        self, dynamodb_prefix: str, dynamodb_client: Any, clock: ManualClock
    ) -> AsyncIterator[DynamoDBAuditStore]:
        target = DynamoDBTargetSystem("db", client=dynamodb_client)
        async with DynamoDBAuditStore.from_target(target, **tables(dynamodb_prefix), clock=clock) as store:
            yield store

    def process_factory(self) -> tuple[str, list[str]]:
        return "tests.stores.test_dynamodb:open_store", self._args


def test_without_aioboto3_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['aiobotocore'] = None; sys.modules['aiobotocore.client'] = None\n"
        "from aioflamingock.dynamodb import DynamoDBTargetSystem\n"
        "try:\n"
        "    DynamoDBTargetSystem('db', client=object())\n"
        "except ImportError as exc:\n"
        "    sys.exit(str(exc))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert 'pip install "aioflamingock[dynamodb]"' in done.stderr


def test_importing_the_backend_imports_no_driver() -> None:
    drivers = ["boto3", "aioboto3", "botocore", "aiobotocore", "aiohttp"]
    code = f"import sys, aioflamingock.dynamodb\nprint(','.join(m for m in {drivers!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == ""


@pytest.fixture
def app(dynamodb_client: Any, dynamodb_prefix: str) -> DynamoDBTargetSystem:
    return DynamoDBTargetSystem("app", client=dynamodb_client, marker_table=f"{dynamodb_prefix}marker")


class DynamoDBKit(SwitchedBacking, ProtocolKit):
    """`app` and its store on one client, `other` on a second client (the marker path); new clients per instance.
    Commits abort or lose their answer through botocore's events (`Wire`). moto ignores `ClientRequestToken`: a
    commit sent again after a lost answer is cancelled by the entry or marker the first one wrote, which proves that
    one committed."""

    def __init__(self, endpoint: str, client: Any, prefix: str, *, child_endpoint: str | None = None) -> None:
        super().__init__()
        self.endpoint, self.client, self.prefix = endpoint, client, prefix
        self.child_endpoint = child_endpoint or endpoint
        """Where the processes of the real-process scenarios reach DynamoDB (a proxy the test can stop)."""
        self.effects = f"{prefix}effects"
        self.other_client: Any = None

    def process_kit(self) -> tuple[str, list[str]]:
        return "tests.stores.test_dynamodb:child_kit", [self.child_endpoint, self.prefix]

    async def _client(self) -> Any:
        client = dynamodb_session().client("dynamodb", **dynamodb_client_options(self.endpoint))
        return await self.exit_stack.enter_async_context(client)

    async def instance(self) -> Instance:
        if self.other_client is None:  # the first instance: the table the changes write to, the other client
            self.other_client = await self._client()
            if self.client is not None:  # the test's kit, not a process's: it creates the table
                await self.client.create_table(
                    TableName=self.effects,
                    KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
        marker = f"{self.prefix}marker"  # every instance's `other` shares a client: it holds no state of a run
        app = DynamoDBTargetSystem("app", client=await self._client(), marker_table=marker, retry_seconds=1)
        other = DynamoDBTargetSystem("other", client=self.other_client, marker_table=marker, retry_seconds=1)
        return Instance(DynamoDBAuditStore.from_target(app, **tables(self.prefix)), app, other)

    def store_without_creating(self, instance: Instance) -> DynamoDBAuditStore:
        target = instance.app
        return DynamoDBAuditStore.from_target(target, **tables(self.prefix), create_tables=False)  # type: ignore[arg-type]

    async def write(self, ctx: DynamoDBContext, key: str, amount: int = 1) -> None:
        update = {
            "TableName": self.effects,
            "Key": {"id": {"S": key}},
            "UpdateExpression": "ADD n :n",
            "ExpressionAttributeValues": {":n": {"N": str(amount)}},
        }
        if ctx.in_transaction:
            ctx.transaction.update(**update)
        else:
            await ctx.client.update_item(**update)

    async def count(self, key: str) -> int:
        found = await self.client.get_item(TableName=self.effects, Key={"id": {"S": key}}, ConsistentRead=True)
        return int(found["Item"]["n"]["N"]) if "Item" in found else 0

    @asynccontextmanager
    async def _wired(self, target: Any, fault: Callable[[Wire], object]) -> AsyncIterator[None]:
        wire = Wire(target.client)
        fault(wire)
        try:
            yield
        finally:
            wire.close()

    def abort_commits(self, target: Any, times: int) -> Any:
        reasons = {"CancellationReasons": [{"Code": "TransactionConflict"}]}
        return self._wired(
            target, lambda w: w.refuse("TransactWriteItems", "TransactionCanceledException", times, **reasons)
        )

    def lose_commit_answers(self, target: Any, times: int) -> Any:
        return self._wired(target, lambda w: w.lose_answers("TransactWriteItems", times))


def child_kit(endpoint: str, prefix: str) -> DynamoDBKit:
    return DynamoDBKit(endpoint, None, prefix)


class TestDynamoDBProtocol(BackendProtocol):
    @pytest.fixture
    async def kit(
        self, dynamodb_endpoint: str, dynamodb_client: Any, dynamodb_prefix: str
    ) -> AsyncIterator[ProtocolKit]:
        kit = DynamoDBKit(dynamodb_endpoint, dynamodb_client, dynamodb_prefix)
        yield kit
        await kit.aclose()

    @pytest.fixture
    async def outage_kit(
        self, dynamodb_endpoint: str, dynamodb_client: Any, dynamodb_prefix: str
    ) -> AsyncIterator[ProtocolKit]:
        """The processes reach the endpoint through a TCP proxy, which the test stops: connections are refused and
        the open ones cut, while the data stays, as when DynamoDB becomes unreachable and comes back."""
        proxy = Proxy(dynamodb_endpoint)
        proxy.start()
        kit = DynamoDBKit(dynamodb_endpoint, dynamodb_client, dynamodb_prefix, child_endpoint=proxy.uri)
        kit.switch = proxy
        yield kit
        await kit.aclose()
        proxy.stop()


def test_the_builder_refuses_a_101st_action_and_malformed_ones() -> None:
    from aioflamingock.dynamodb import DynamoDBTransactionBuilder

    builder = DynamoDBTransactionBuilder()
    for i in range(100):
        builder.put(TableName="t", Item=key(str(i)))
    with pytest.raises(ConfigurationError, match="at most 100 actions"):
        builder.delete(TableName="t", Key=key("x"))
    with pytest.raises(ValueError, match="needs TableName"):
        DynamoDBTransactionBuilder().put(Item=key("1"))
    with pytest.raises(ValueError, match="one of Put, Update, Delete, ConditionCheck"):
        DynamoDBTransactionBuilder().add({"Get": {"TableName": "t"}})


async def test_without_create_tables_a_missing_table_is_named_with_its_command(
    app: DynamoDBTargetSystem, dynamodb_prefix: str, dynamodb_client: Any
) -> None:
    store = DynamoDBAuditStore.from_target(app, **tables(dynamodb_prefix), create_tables=False)
    with pytest.raises(ConfigurationError) as caught:
        await store.open()
    message = str(caught.value)
    assert f"the audit table '{dynamodb_prefix}audit' does not exist" in message
    assert f"aws dynamodb create-table --table-name {dynamodb_prefix}audit" in message
    assert "KeyType=HASH AttributeName=seq,KeyType=RANGE --billing-mode PAY_PER_REQUEST" in message
    assert not any(t.startswith(f"{dynamodb_prefix}a") for t in (await dynamodb_client.list_tables())["TableNames"])


async def test_a_client_that_is_not_an_aioboto3_dynamodb_client_is_refused(dynamodb_endpoint: str) -> None:
    import aioboto3
    import boto3

    options = dynamodb_client_options(dynamodb_endpoint)
    options.pop("config")
    sync = boto3.client("dynamodb", **options)
    try:
        with pytest.raises(ConfigurationError, match="synchronous"):
            DynamoDBTargetSystem("app", client=sync)
    finally:
        sync.close()
    session = aioboto3.Session()
    not_entered = session.client("dynamodb", **options)
    with pytest.raises(ConfigurationError, match="enter it first"):
        DynamoDBTargetSystem("app", client=not_entered)
    async with not_entered:  # what the application forgot
        pass
    async with session.client("s3", **options) as s3:
        with pytest.raises(ConfigurationError, match="a client for 's3'"):
            DynamoDBTargetSystem("app", client=s3)
    async with session.resource("dynamodb", **options) as resource:
        with pytest.raises(ConfigurationError, match="a resource"):
            DynamoDBTargetSystem("app", client=resource)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"audit_table": "ab"}, "at least 3 characters"),
        ({"lock_table": "bad/name"}, "lock_table"),
        ({"audit_table": "same", "lock_table": "same"}, "both 'same'"),
    ],
)
def test_bad_table_names_are_configuration_errors(dynamodb_client: Any, options: dict[str, str], fragment: str) -> None:
    target = DynamoDBTargetSystem("app", client=dynamodb_client)
    with pytest.raises(ConfigurationError, match=fragment):
        DynamoDBAuditStore.from_target(target, **options)


def test_messages_never_show_credentials() -> None:
    from botocore.exceptions import ClientError

    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    text = (
        "Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, "
        f"Signature=0123abcd aws_secret_access_key={secret} http://user:pw@host"
    )
    redacted = redact(text)
    assert "AKIAIOSFODNN7EXAMPLE" not in redacted and secret not in redacted and "0123abcd" not in redacted
    assert ":pw@" not in redacted
    error = ClientError({"Error": {"Code": "UnrecognizedClientException", "Message": text}}, "Query")
    assert "AKIAIOSFODNN7EXAMPLE" not in str(translate(error, "reading"))


# -- doctor -------------------------------------------------------------------------------------------------------


async def test_doctor_names_each_missing_table(app: DynamoDBTargetSystem, dynamodb_prefix: str) -> None:
    store = DynamoDBAuditStore.from_target(app, **tables(dynamodb_prefix))
    problems = {(c.check, c.detail): c.fix for c in await store.doctor() if not c.ok}
    assert set(problems) == {
        ("tables", f"the audit table '{dynamodb_prefix}audit' does not exist"),
        ("tables", f"the lock table '{dynamodb_prefix}lock' does not exist"),
    }
    assert all(str(fix).startswith("any run creates it") for fix in problems.values())
    assert "does not exist yet" in {c.check: c for c in await app.doctor()}["tables"].detail


async def test_doctor_reports_an_endpoint_that_does_not_answer() -> None:

    from tests.servers import free_port

    options = dynamodb_client_options(f"http://127.0.0.1:{free_port()}")
    options["aws_secret_access_key"] = "s3cretKEY"
    async with dynamodb_session().client("dynamodb", **options) as client:
        app = DynamoDBTargetSystem("app", client=client, retry_seconds=0.2)
        fl = Flamingock(audit_store=DynamoDBAuditStore.from_target(app), target_systems=[app], changes=[])
        checks = await fl.doctor(timeout_seconds=5)
    failed = {(c.subject, c.check) for c in checks if not c.ok}
    assert failed == {("target system 'app'", "reachable"), ("audit store", "reachable")}
    assert all("s3cretKEY" not in c.detail for c in checks)


async def test_an_endpoint_down_at_start_is_a_store_error_within_the_retry_budget(
    dynamodb_endpoint: str, dynamodb_client: Any, dynamodb_prefix: str, tmp_path: Path
) -> None:
    proxy = Proxy(dynamodb_endpoint)  # not started: the processes' connections are refused
    kit = DynamoDBKit(dynamodb_endpoint, dynamodb_client, dynamodb_prefix, child_endpoint=proxy.uri)
    children = Children(kit, tmp_path, await kit.instance())
    try:
        started = time.monotonic()
        refused = await children.run()

        assert time.monotonic() - started < 20, "bounded by the retry budget"
        assert refused.code == EXIT_CODES[StoreError], refused
        assert refused.error.startswith("StoreUnavailableError: DynamoDB failed while describing table"), refused
        assert "Could not connect to the endpoint URL" in refused.error, refused
        assert DYNAMODB_CREDENTIALS["aws_secret_access_key"] not in refused.stderr
        assert children.effects() == {}

        proxy.start()
        rerun = await children.run()

        assert rerun.code == 0, rerun
        assert sorted(await children.applied()) == sorted(children.declared())
    finally:
        await children.close()
        await kit.aclose()
        proxy.stop()
