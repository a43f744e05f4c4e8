"""Benchmarks of aioflamingock on DynamoDB. Run by hand, never in CI:

    python benchmarks/dynamodb.py [--repeat N]

Uses the endpoint at $AIOFLAMINGOCK_DYNAMODB_ENDPOINT, else starts moto's server (`python -m tests.servers moto
PORT`, one request at a time) in a child process. Every figure comes from one server in one run. The tables are
named under a prefix of this run's and deleted at the end.

(a) A run with nothing pending, over 1,000 and 5,000 applied changes: the requests it sends (counted with botocore's
    `before-send` event on the client, one per HTTP request) and its wall time, each also as a ratio to one plain
    `GetItem` measured the same way.
(b) Applying 200 trivial changes on each path: requests and time per change, against the path's floor, the requests
    a correct protocol cannot do without, sent with the bare client.

Prints a table and writes the figures to benchmarks/results/dynamodb-<time>.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aioboto3
from _common import (
    AppliedRun,
    CallCounter,
    FloorRun,
    Runs,
    argument_parser,
    count_call,
    floor_times,
    fresh_runs,
    generate_changes,
    machine_facts,
    measure_engine,
    measure_floor,
    median_seconds,
    open_runs,
    package_version,
    print_machine,
    progress,
    rotated,
    stop_process,
    tally,
    timed,
    write_results,
)

import aioflamingock
from aioflamingock import Change, Flamingock, NonTransactionalTargetSystem
from aioflamingock.dynamodb import DynamoDBAuditStore, DynamoDBContext, DynamoDBTargetSystem
from aioflamingock.dynamodb._store import SUMMARY_SEQ

ROOT = Path(__file__).resolve().parent.parent
ENDPOINT_ENV = "AIOFLAMINGOCK_DYNAMODB_ENDPOINT"
REGION = "us-east-1"
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
NOOP_SIZES = (1_000, 5_000)
APPLIED_BY_ENGINE = 1_000  # larger audits are grown by copying these entries (see `seed_audit`)
APPLY_COUNT = 200
PATHS = ("shared", "marker", "non-tx")
PARTITION = "auditLog"  # the audit's one partition key value (docs/dynamodb.md, "The tables")
AUDIT_KEYS = (("partitionKey", "S", "HASH"), ("seq", "N", "RANGE"))
LOCK_KEYS = (("key", "S", "HASH"),)
MARKER_KEYS = (("changeId", "S", "HASH"),)
BENCH_KEYS = (("id", "S", "HASH"),)

# -- counting requests ----------------------------------------------------------------------------------------------


class RequestCounter(CallCounter):
    """Every request the watched clients send, by operation (botocore's `before-send`, one per HTTP request, retries
    included), and each call's time from `before-call` to `after-call` (signing, sending, waiting, parsing)."""

    def watch(self, client: Any, label: str = "") -> None:
        prefix = f"{label}:" if label else ""

        def sent(event_name: str, **kwargs: Any) -> None:
            self.sent.append(prefix + event_name.rpartition(".")[2])

        def started(context: dict[str, Any], **kwargs: Any) -> None:
            context["bench_started"] = time.perf_counter()

        def ended(context: dict[str, Any], **kwargs: Any) -> None:
            if "bench_started" in context:
                self.seconds.append(time.perf_counter() - context.pop("bench_started"))

        events = client.meta.events
        events.register("before-send.dynamodb", sent)
        events.register("before-call.dynamodb", started)
        events.register("after-call.dynamodb", ended)
        events.register("after-call-error.dynamodb", ended)


# -- tables ---------------------------------------------------------------------------------------------------------


def S(value: str) -> dict[str, str]:
    return {"S": value}


def N(value: int) -> dict[str, str]:
    return {"N": str(value)}


class Tables:
    """Names every table of this run under one prefix, so that runs on a real endpoint never meet; drops them."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.prefix = f"bench{uuid.uuid4().hex[:6]}"

    def name(self, *parts: str) -> str:
        return "-".join((self.prefix, *parts))

    async def create(self, name: str, keys: tuple[tuple[str, str, str], ...], client: Any = None) -> str:
        client = client or self.client
        await client.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": n, "KeyType": k} for n, _, k in keys],
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, t, _ in keys],
            BillingMode="PAY_PER_REQUEST",
        )
        await client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
        return name

    async def drop_all(self) -> None:
        names = []
        async for page in self.client.get_paginator("list_tables").paginate():
            names += [n for n in page["TableNames"] if n.startswith(self.prefix)]
        for name in names:
            await self.client.delete_table(TableName=name)


async def audit_items(client: Any, table: str, **arguments: Any) -> list[dict[str, Any]]:
    """The audit partition as the store reads it (one strongly consistent `Query`, page by page), not decoded."""
    query = {
        "TableName": table,
        "KeyConditionExpression": "partitionKey = :p AND seq < :summary",  # the start-up summary sits above
        "ExpressionAttributeValues": {":p": S(PARTITION), ":summary": {"N": str(SUMMARY_SEQ)}},
        "ConsistentRead": True,
        **arguments,
    }
    items: list[dict[str, Any]] = []
    async for page in client.get_paginator("query").paginate(**query):
        items += page["Items"]
    return items


async def first_entry(client: Any, table: str) -> dict[str, Any]:
    response = await client.query(
        TableName=table,
        KeyConditionExpression="partitionKey = :p",
        ExpressionAttributeValues={":p": S(PARTITION)},
        Limit=1,
    )
    item: dict[str, Any] = response["Items"][0]
    return item


# -- changes, generated ---------------------------------------------------------------------------------------------


def put_into(table: str) -> Callable[[Change, DynamoDBContext], Awaitable[None]]:
    """A transactional change's work: one `Put` of a new item into `table`, in the change's transaction."""

    async def execute(self: Change, ctx: DynamoDBContext) -> None:
        ctx.transaction.put(TableName=table, Item={"id": S(uuid.uuid4().hex)})

    return execute


def store_on(target: DynamoDBTargetSystem, tables: Tables, name: str) -> DynamoDBAuditStore:
    return DynamoDBAuditStore.from_target(
        target, audit_table=tables.name(name, "audit"), lock_table=tables.name(name, "lock")
    )


def make_changes(count: int, tables: Tables, name: str) -> list[type[Change]]:
    return generate_changes(count, "app", put_into(tables.name(name, "bench")), transactional=True)


def engine(client: Any, tables: Tables, name: str, changes: list[type[Change]]) -> Flamingock:
    db = DynamoDBTargetSystem("app", client=client)
    return Flamingock(audit_store=store_on(db, tables, name), target_systems=[db], changes=changes)


# -- (a) nothing pending --------------------------------------------------------------------------------------------


async def seed_audit(client: Any, table: str, count: int) -> None:
    """Grow the audit to `count` APPLIED entries by copying the entries the engine wrote for the first changes, with
    new change ids, classes and `seq` numbers: the items the engine would write, without applying them one by one."""
    template = await audit_items(client, table)
    puts = []
    for i in range(len(template), count):
        item = dict(template[i % len(template)])
        source = item["invokedClass"]["S"].replace(item["changeId"]["S"][1:], f"{i:05d}")
        item.update(seq=N(i + 1), changeId=S(f"c{i:05d}"), invokedClass=S(source), appendId=S(uuid.uuid4().hex))
        puts.append({"PutRequest": {"Item": item}})
    for start in range(0, len(puts), 25):  # BatchWriteItem's limit
        pending = {table: puts[start : start + 25]}
        while pending:
            pending = (await client.batch_write_item(RequestItems=pending)).get("UnprocessedItems") or {}


async def noop_run(client: Any, counter: RequestCounter, tables: Tables, count: int, repeat: int) -> dict[str, Any]:
    name = f"noop{count}"
    await tables.create(tables.name(name, "bench"), BENCH_KEYS)
    by_engine = min(count, APPLIED_BY_ENGINE)
    setup, report = await timed(engine(client, tables, name, make_changes(by_engine, tables, name)).run)
    assert len(report.applied) == by_engine, report
    audit = tables.name(name, "audit")
    seed_seconds, _ = await timed(lambda: seed_audit(client, audit, count))
    changes = make_changes(count, tables, name)

    fresh = await fresh_runs(lambda: engine(client, tables, name, changes), counter, count, repeat)
    kept = await open_runs(engine(client, tables, name, changes), counter, repeat)

    # The unit: one plain round trip on the same table.
    def get_item() -> Awaitable[Any]:
        return client.get_item(TableName=audit, Key={"partitionKey": S(PARTITION), "seq": N(1)}, ConsistentRead=True)

    with counter.counting() as unit:
        await get_item()
    get_seconds = await median_seconds(get_item, max(repeat, 20))
    # The store's read alone, pages fetched and parsed by botocore, not decoded into entries.
    with counter.counting() as read:
        assert len(await audit_items(client, audit)) == count
    read_seconds = await median_seconds(lambda: audit_items(client, audit), max(repeat, 5))

    def figures(runs: Runs) -> dict[str, Any]:
        seconds = runs.seconds_median
        return {
            "requests": len(runs.window.sent),
            "request_names": tally(runs.window.sent),
            "seconds_median": seconds,
            "request_seconds_median": runs.call_seconds_median,
            "x_get_item": seconds / get_seconds,
        }

    return {
        "changes": count,
        "setup_apply_seconds": setup,
        "setup_applied_by_engine": by_engine,
        "setup_seed_seconds": seed_seconds,
        "get_item_requests": len(unit.sent),
        "get_item_seconds_median": get_seconds,
        "read_alone_requests": len(read.sent),
        "read_alone_seconds_median": read_seconds,
        "runs": repeat,
        "fresh_engine": figures(fresh),
        "open_engine": figures(kept),
    }


# -- (b) applying ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clients:
    """The store's client, and a second one to the same endpoint for the marker path's target."""

    store: Any
    app: Any


async def prepare(kind: str, clients: Clients, tables: Tables, name: str, count: int) -> Flamingock:
    """The engine of one measured run, its tables created beforehand: creating them belongs to no change."""
    app_client = clients.app if kind == "marker" else clients.store
    if kind != "non-tx":
        await tables.create(tables.name(name, "bench"), BENCH_KEYS, app_client)
    if kind == "marker":
        await tables.create(tables.name(name, "marker"), MARKER_KEYS, app_client)
    await path_engine(kind, clients, tables, name, count).plan()  # the store creates the audit and lock tables
    return path_engine(kind, clients, tables, name, count)


def path_engine(kind: str, clients: Clients, tables: Tables, name: str, count: int) -> Flamingock:
    audit_db = DynamoDBTargetSystem("audit", client=clients.store)
    store = store_on(audit_db, tables, name)
    bench = put_into(tables.name(name, "bench"))
    if kind == "shared":
        changes = generate_changes(count, "audit", bench, transactional=True)
        return Flamingock(audit_store=store, target_systems=[audit_db], changes=changes)
    if kind == "marker":
        app_db = DynamoDBTargetSystem("app", client=clients.app, marker_table=tables.name(name, "marker"))
        changes = generate_changes(count, "app", bench, transactional=True)
        return Flamingock(audit_store=store, target_systems=[audit_db, app_db], changes=changes)
    external = NonTransactionalTargetSystem("external", dependencies={"calls": []})
    changes = generate_changes(count, "external", count_call, transactional=False)
    return Flamingock(audit_store=store, target_systems=[audit_db, external], changes=changes)


class Floor:
    """The requests a correct protocol cannot do without on one path, sent with the bare clients, with items of the
    store's size and shape (`template` is an audit entry the engine wrote), on tables of their own. Fencing is an
    action inside the same call on DynamoDB, so it is part of the floor: it costs no request.

    - shared: one `TransactWriteItems` [the change's `Put`, lock `ConditionCheck`, `Put` APPLIED];
    - marker: `TransactWriteItems` [lock check, `Put` STARTED]; on the target's client `TransactWriteItems`
      [the change's `Put`, `Put` marker]; `TransactWriteItems` [lock check, `Put` APPLIED]; `DeleteItem` marker;
    - non-tx: `TransactWriteItems` [lock check, `Put` STARTED]; `TransactWriteItems` [lock check, `Put` APPLIED].
    """

    def __init__(self, kind: str, clients: Clients, tables: Tables, name: str, template: dict[str, Any]) -> None:
        self.kind = kind
        self.store = clients.store
        self.app = clients.app if kind == "marker" else clients.store
        self.audit, self.lock, self.bench, self.marker = (
            tables.name(name, t) for t in ("audit", "lock", "bench", "mk")
        )
        self.tables = tables
        self.template = template
        self.seq = itertools.count(1)

    async def create(self) -> None:
        await self.tables.create(self.audit, AUDIT_KEYS, self.store)
        await self.tables.create(self.lock, LOCK_KEYS, self.store)
        if self.kind != "non-tx":
            await self.tables.create(self.bench, BENCH_KEYS, self.app)
        if self.kind == "marker":
            await self.tables.create(self.marker, MARKER_KEYS, self.app)
        await self.store.put_item(TableName=self.lock, Item={"key": S("bench"), "owner": S("me"), "fencingToken": N(1)})

    def fence(self) -> dict[str, Any]:
        check = {
            "TableName": self.lock,
            "Key": {"key": S("bench")},
            "ConditionExpression": "#owner = :owner AND fencingToken = :token",
            "ExpressionAttributeNames": {"#owner": "owner"},
            "ExpressionAttributeValues": {":owner": S("me"), ":token": N(1)},
        }
        return {"ConditionCheck": check}

    def entry(self, i: int, state: str) -> dict[str, Any]:
        item = {
            **self.template,
            "seq": N(next(self.seq)),
            "changeId": S(f"c{i:05d}"),
            "state": S(state),
            "appendId": S(uuid.uuid4().hex),
        }
        return {"Put": {"TableName": self.audit, "Item": item, "ConditionExpression": "attribute_not_exists(seq)"}}

    def change(self) -> dict[str, Any]:
        return {"Put": {"TableName": self.bench, "Item": {"id": S(uuid.uuid4().hex)}}}

    async def record(self, i: int, state: str) -> None:
        await self.store.transact_write_items(TransactItems=[self.fence(), self.entry(i, state)])

    async def one(self, i: int) -> None:
        if self.kind == "shared":
            await self.store.transact_write_items(TransactItems=[self.change(), self.fence(), self.entry(i, "APPLIED")])
            return
        await self.record(i, "STARTED")
        if self.kind == "marker":
            marker = {"changeId": S(f"c{i:05d}"), "executionId": S("x"), "createdAt": S("now"), "commitId": S("c")}
            put = {"Put": {"TableName": self.marker, "Item": marker}}
            await self.app.transact_write_items(TransactItems=[self.change(), put])
        await self.record(i, "APPLIED")
        if self.kind == "marker":
            await self.app.delete_item(TableName=self.marker, Key={"changeId": S(f"c{i:05d}")})


async def floor_run(
    kind: str,
    clients: Clients,
    counter: RequestCounter,
    tables: Tables,
    name: str,
    count: int,
    template: dict[str, Any],
) -> FloorRun:
    floor = Floor(kind, clients, tables, name, template)
    await floor.create()
    return await measure_floor(floor.one, counter, count)


async def engine_run(
    kind: str, clients: Clients, counter: RequestCounter, tables: Tables, name: str, count: int
) -> AppliedRun:
    return await measure_engine(await prepare(kind, clients, tables, name, count), counter, count)


async def apply_run(
    kind: str, clients: Clients, counter: RequestCounter, tables: Tables, repeat: int, template: dict[str, Any]
) -> dict[str, Any]:
    """`repeat` runs of the engine and of the floor, in turn and in alternating order so that a busier moment or a
    bigger server hits both; every table dropped after each pair, so that the server's size stays the same."""
    count = APPLY_COUNT
    runs: list[AppliedRun] = []
    floors: list[FloorRun] = []
    for attempt in range(repeat):
        name = f"{kind.replace('-', '')}{attempt}"
        for which in rotated(("engine", "floor"), attempt):
            if which == "engine":
                runs.append(await engine_run(kind, clients, counter, tables, name, count))
            else:
                floors.append(await floor_run(kind, clients, counter, tables, f"{name}floor", count, template))
        await tables.drop_all()
    seconds = statistics.median(r.seconds for r in runs)
    return {
        "path": kind,
        "changes": count,
        "seconds_median": seconds,
        "ms_per_change": seconds / count * 1000,
        "ms_in_change": statistics.median(r.change_seconds for r in runs) / count * 1000,
        "request_seconds_median": statistics.median(r.call_seconds for r in runs),
        "ms_per_change_first_quarter": statistics.median(r.quarters_ms[0] for r in runs),
        "ms_per_change_last_quarter": statistics.median(r.quarters_ms[1] for r in runs),
        "requests_per_change": statistics.median(r.per_change for r in runs),
        "requests_per_change_range": runs[-1].per_change_range,
        "request_names_per_change": runs[-1].names_per_change,
        "run_constant_requests": runs[-1].run_constant,
        "seconds_each": [r.seconds for r in runs],
        "floor": {
            "requests_per_change": floors[-1].per_change,
            "request_names_per_change": floors[-1].names_per_change,
            **floor_times(floors, count),
        },
    }


# -- server, machine, report ----------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto's server did not answer on port {port}") from None
            time.sleep(0.05)


@contextmanager
def dynamodb_server() -> Iterator[tuple[str, str]]:
    """(endpoint, description): $AIOFLAMINGOCK_DYNAMODB_ENDPOINT, else moto's server in a child process (its own
    interpreter, so it does not share a GIL or an event loop with the benchmark), stopped at the end."""
    endpoint = os.environ.get(ENDPOINT_ENV)
    if endpoint:
        yield endpoint, ENDPOINT_ENV
        return
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.servers", "moto", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}", f"moto {package_version('moto')} server, child process, one request at a time"
    finally:
        stop_process(process)


@asynccontextmanager
async def client(session: aioboto3.Session, endpoint: str) -> AsyncIterator[Any]:
    credentials = {} if os.environ.get("AWS_ACCESS_KEY_ID") else DUMMY_CREDENTIALS
    async with session.client("dynamodb", endpoint_url=endpoint, region_name=REGION, **credentials) as dynamodb:
        yield dynamodb


def machine(server: str) -> dict[str, Any]:
    return {
        **machine_facts(),
        "aioboto3": package_version("aioboto3"),
        "aiobotocore": package_version("aiobotocore"),
        "botocore": package_version("botocore"),
        "server": server,
        "aioflamingock": aioflamingock.__version__,
    }


def print_tables(results: dict[str, Any]) -> None:
    info = results["machine"]
    print_machine(info)
    print(f"Python {info['python']}, aioboto3 {info['aioboto3']} (botocore {info['botocore']}); {info['server']}\n")
    print("(a) run() with nothing pending")
    print(f"{'applied changes':>16} | {'engine':<6} | {'requests':>8} | {'wall time':>10} | {'x GetItem':>9}")
    for row in results["noop"]:
        for name in ("open", "fresh"):
            r = row[f"{name}_engine"]
            ms = r["seconds_median"] * 1000
            print(f"{row['changes']:>16,} | {name:<6} | {r['requests']:>8} | {ms:>7.1f} ms | {r['x_get_item']:>9.1f}")
        get_ms = row["get_item_seconds_median"] * 1000
        print(f"{'':>16} | GetItem | {row['get_item_requests']:>7} | {get_ms:>7.2f} ms |")
        read_ms = row["read_alone_seconds_median"] * 1000
        print(f"{'':>16} | read alone | {row['read_alone_requests']:>4} | {read_ms:>7.1f} ms |")
    print(f"\n(b) applying {APPLY_COUNT} trivial changes")
    print(
        f"{'path':<8} | {'per change':>10} | {'in change':>9} | {'floor':>8} | {'x floor':>7} | {'requests':>8} | "
        f"{'floor':>5} | {'first/last quarter':>18} | {'floor':>13}"
    )
    for row in results["apply"]:
        floor = row["floor"]
        per, inside, fl = row["ms_per_change"], row["ms_in_change"], floor["ms_per_change"]
        growth = f"{row['ms_per_change_first_quarter']:.2f}/{row['ms_per_change_last_quarter']:.2f} ms"
        floor_growth = f"{floor['ms_per_change_first_quarter']:.2f}/{floor['ms_per_change_last_quarter']:.2f}"
        print(
            f"{row['path']:<8} | {per:>7.2f} ms | {inside:>6.2f} ms | {fl:>5.2f} ms | {per / fl:>7.2f} | "
            f"{row['requests_per_change']:>8.2f} | {floor['requests_per_change']:>5g} | {growth:>18} | "
            f"{floor_growth:>13}"
        )
    print("per change: the run's time / changes; in change: the changes' own durations, without the run's constant")
    for row in results["apply"]:
        print(f"{row['path']}: per run, besides the changes: {row['run_constant_requests']}")


async def main(repeat: int) -> None:
    with dynamodb_server() as (endpoint, server):
        info = machine(server)
        counter = RequestCounter()
        session = aioboto3.Session()
        async with client(session, endpoint) as store_client, client(session, endpoint) as app_client:
            counter.watch(store_client)
            counter.watch(app_client, "app")
            clients = Clients(store_client, app_client)
            tables = Tables(store_client)
            try:
                noop = []
                for count in NOOP_SIZES:
                    with progress(f"(a) {count:,} changes"):
                        noop.append(await noop_run(store_client, counter, tables, count, repeat))
                        template = await first_entry(store_client, tables.name(f"noop{count}", "audit"))
                        await tables.drop_all()  # a smaller server for what follows
                apply = []
                for kind in PATHS:
                    with progress(f"(b) {kind}"):
                        apply.append(await apply_run(kind, clients, counter, tables, repeat, template))
            finally:
                with contextlib.suppress(Exception):
                    await tables.drop_all()
    results = {"machine": info, "repeat": repeat, "noop": noop, "apply": apply}
    print_tables(results)
    write_results(results, "dynamodb")


if __name__ == "__main__":
    asyncio.run(main(argument_parser(__doc__).parse_args().repeat))
