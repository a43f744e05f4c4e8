"""Benchmarks of aioflamingock on MongoDB. Run by hand, never in CI:

    python benchmarks/mongodb.py [--repeat N]

Uses the server at $AIOFLAMINGOCK_MONGODB_URI (a replica set), else starts SecantusDB, a MongoDB-compatible server
written in Python, in a child process. Every figure comes from one server in one run.

(a) A run with nothing pending, over 1,000, 5,000 and 10,000 applied changes: the commands it sends (counted with a
    `pymongo.monitoring.CommandListener` on the client) and its wall time, each also as a ratio to one `find_one`;
    beside them, the full read of every state and the audit's `$collStats` count alone (which the summary's read
    asks for: metadata on mongod, a scan on SecantusDB).
(b) Applying 500 trivial changes on each path: commands and time per change, against the path's floor.
(c) The same 200 trivial migrations, then a run with nothing pending, with pymongo-migrate: side by side.

Prints a table and writes the figures to benchmarks/results/mongodb-<time>.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from _common import (
    CallCounter,
    Runs,
    argument_parser,
    count_call,
    fresh_runs,
    generate_changes,
    machine_facts,
    median_seconds,
    open_runs,
    package_version,
    print_machine,
    progress,
    tally,
    timed,
    write_results,
)
from pymongo import AsyncMongoClient, MongoClient, monitoring

import aioflamingock
from aioflamingock import AuditState, Change, Flamingock, NonTransactionalTargetSystem, TxStrategy
from aioflamingock.mongodb import MongoDBAuditStore, MongoDBContext, MongoDBTargetSystem
from aioflamingock.testing import make_entry

# (applied changes, runs per figure or None for --repeat, whether to measure an engine kept open as well).
NOOP_PLAN = ((1_000, None, True), (5_000, None, True), (10_000, None, True))
APPLIED_BY_ENGINE = 1_000  # larger audits are grown by copying these entries (see `seed_audit`)
APPLY_COUNT = 500
TOOL_COUNT = 200
AUDIT = "flamingockAuditLog"

# -- counting commands ----------------------------------------------------------------------------------------------


class CommandCounter(CallCounter, monitoring.CommandListener):
    """Every command the client sends, by name, and each one's time as the driver measured it."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.seconds.append(event.duration_micros / 1_000_000)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self.seconds.append(event.duration_micros / 1_000_000)


# -- changes, generated ---------------------------------------------------------------------------------------------


async def _insert_doc(self: Change, ctx: MongoDBContext) -> None:
    await ctx.db.bench.insert_one({"n": 1}, session=ctx.session)


def make_changes(count: int, target: str, *, transactional: bool) -> list[type[Change]]:
    return generate_changes(count, target, _insert_doc if transactional else count_call, transactional=transactional)


# -- timing ---------------------------------------------------------------------------------------------------------


async def fetch(collection: Any, pipeline: list[dict[str, Any]]) -> list[Any]:
    return await (await collection.aggregate(pipeline)).to_list()


def engine(client: AsyncMongoClient[Any], database: str, changes: list[type[Change]]) -> Flamingock:
    db = MongoDBTargetSystem("app", client=client, database=database)
    return Flamingock(audit_store=MongoDBAuditStore.from_target(db), target_systems=[db], changes=changes)


# -- (a) nothing pending --------------------------------------------------------------------------------------------


async def seed_audit(client: AsyncMongoClient[Any], database: str, count: int) -> None:
    """Grow the audit to `count` APPLIED entries by copying the entries the engine wrote for the first changes, with
    new change ids and `seq` numbers: the same documents the engine would write, without 30 minutes of applying."""
    audit = client[database][AUDIT]
    template = [doc async for doc in audit.find({}, {"_id": 0}).sort("seq", 1)]
    last_seq = template[-1]["seq"]
    batch: list[dict[str, Any]] = []
    for i in range(len(template), count):
        doc = dict(template[i % len(template)])
        doc.update(changeId=f"c{i:05d}", seq=last_seq + 1 + i, changeClass=f"Bench{i:05d}")
        batch.append(doc)
        if len(batch) == 1_000:
            await audit.insert_many(batch)
            batch = []
    if batch:
        await audit.insert_many(batch)


async def noop_run(
    client: AsyncMongoClient[Any], counter: CommandCounter, count: int, repeat: int, *, kept_open: bool = True
) -> dict[str, Any]:
    database = f"noop_{count}"
    setup, report = await timed(
        engine(client, database, make_changes(APPLIED_BY_ENGINE, "app", transactional=True)).run
    )
    assert len(report.applied) == APPLIED_BY_ENGINE, report
    seed_seconds, _ = await timed(lambda: seed_audit(client, database, count))
    changes = make_changes(count, "app", transactional=True)

    fresh = await fresh_runs(lambda: engine(client, database, changes), counter, count, repeat)
    kept = await open_runs(engine(client, database, changes), counter, repeat if kept_open else 0)

    # The unit: one plain round trip on the same collection.
    audit = client[database][AUDIT]
    with counter.counting() as find_commands:
        await audit.find_one({"changeId": "c00000"})
    find_one = await median_seconds(lambda: audit.find_one({"changeId": "c00000"}), max(repeat, 20))
    # The store's read alone, rows fetched, not decoded: the server's share of the time.
    unfiltered = [{"$sort": {"changeId": 1, "seq": -1}}, {"$group": {"_id": "$changeId", "doc": {"$first": "$$ROOT"}}}]
    read_all = await median_seconds(lambda: fetch(audit, unfiltered), max(repeat, 5))
    # The audit's document count, which the summary's read asks for (mongod: the collection's metadata; SecantusDB
    # counts by scanning), alone: the server's share of a run with nothing pending.
    count_alone = await median_seconds(lambda: fetch(audit, [{"$collStats": {"count": {}}}]), max(repeat, 5))

    def figures(runs: Runs) -> dict[str, Any]:
        seconds = runs.seconds_median
        return {
            "commands": len(runs.window.sent),
            "command_names": tally(runs.window.sent),
            "seconds_median": seconds,
            "x_find_one": seconds / find_one,
        }

    return {
        "changes": count,
        "setup_apply_seconds": setup,
        "setup_applied_by_engine": APPLIED_BY_ENGINE,
        "setup_seed_seconds": seed_seconds,
        "find_one_seconds_median": find_one,
        "find_one_commands": len(find_commands.sent),
        "read_alone_seconds_median": read_all,
        "count_alone_seconds_median": count_alone,
        "fresh_engine": figures(fresh),
        "runs": repeat,
        "open_engine": figures(kept) if kept.times else None,
    }


# -- (b) applying ---------------------------------------------------------------------------------------------------


def path_engine(kind: str, client: AsyncMongoClient[Any], database: str, count: int) -> Flamingock:
    audit_db = MongoDBTargetSystem("audit", client=client, database=database)
    store = MongoDBAuditStore.from_target(audit_db)
    if kind == "shared":
        changes = make_changes(count, "audit", transactional=True)
        return Flamingock(audit_store=store, target_systems=[audit_db], changes=changes)
    if kind == "marker":
        app_db = MongoDBTargetSystem("app", client=client, database=f"{database}_app")
        changes = make_changes(count, "app", transactional=True)
        return Flamingock(audit_store=store, target_systems=[audit_db, app_db], changes=changes)
    external = NonTransactionalTargetSystem("external", dependencies={"calls": []})
    changes = make_changes(count, "external", transactional=False)
    return Flamingock(audit_store=store, target_systems=[audit_db, external], changes=changes)


def _record(state: AuditState) -> dict[str, Any]:
    """The record the engine writes for a change (Flamingock's fields), as the floor's record: the same bytes."""
    entry = make_entry("c00001", state, tx_strategy=TxStrategy.TX_AUDIT_STORE_SHARED, target_system_id="audit")
    return {**entry.to_document(), "createdAt": entry.created_at, "seq": 1}


async def floor(kind: str, client: AsyncMongoClient[Any], counter: CommandCounter, repeat: int) -> dict[str, Any]:
    """The least any library could do per change on this path, with the bare driver, writing the same record the
    engine writes. Transactional paths: one transaction holding the change's insert and its record, one commit.
    Non-transactional: two writes (started, applied), since the change's effect cannot commit with its record."""
    db = client[f"floor_{kind}"]
    started, applied = _record(AuditState.STARTED), _record(AuditState.APPLIED)

    async def one_transaction() -> None:
        async with client.start_session() as session, await session.start_transaction():
            await db.bench.insert_one({"n": 1}, session=session)
            await db.audit.insert_one(dict(applied), session=session)

    async def two_writes() -> None:
        await db.audit.insert_one(dict(started))
        await db.audit.insert_one(dict(applied))

    call = two_writes if kind == "non-tx" else one_transaction
    await call()  # collections created outside the measurement
    with counter.counting() as seen:
        await call()
    return {"commands": len(seen.sent), "seconds_median": await median_seconds(call, max(repeat, 20))}


async def apply_run(
    kind: str, client: AsyncMongoClient[Any], counter: CommandCounter, repeat: int, count: int = APPLY_COUNT
) -> dict[str, Any]:
    times: list[float] = []
    per_change: list[float] = []
    names: list[str] = []
    for attempt in range(repeat):
        database = f"apply_{kind.replace('-', '_')}_{attempt}"
        # Collections created beforehand: their implicit creation belongs to no change.
        await client[database].create_collection("bench")
        await client[f"{database}_app"].create_collection("bench")
        fl = path_engine(kind, client, database, count)
        fl.changes()
        with counter.counting() as seen:
            seconds, report = await timed(fl.run)
        assert len(report.applied) == count, report
        times.append(seconds)
        # Per change: a run of `count` changes minus a run of one, over count - 1 changes.
        one = path_engine(kind, client, f"{database}_one", 1)
        await client[f"{database}_one"].create_collection("bench")
        await client[f"{database}_one_app"].create_collection("bench")
        with counter.counting() as seen_one:
            await one.run()
        per_change.append((len(seen.sent) - len(seen_one.sent)) / (count - 1))
        names = seen.sent
    seconds = statistics.median(times)
    return {
        "path": kind,
        "changes": count,
        "seconds_median": seconds,
        "ms_per_change": seconds / count * 1000,
        "commands_per_change": statistics.median(per_change),
        "command_names_whole_run": tally(names),
        "floor": await floor(kind, client, counter, repeat),
    }


# -- (c) an existing tool -------------------------------------------------------------------------------------------


def pymongo_migrate_run(uri: str, count: int, repeat: int) -> dict[str, Any]:
    """pymongo-migrate (synchronous PyMongo): `count` migrations inserting one document each, then no-op runs."""
    from pymongo_migrate.migrations import Migration
    from pymongo_migrate.mongo_migrate import MongoMigrate

    class Insert(Migration):
        def upgrade(self, db: Any) -> None:
            db.bench.insert_one({"n": 1})

        def downgrade(self, db: Any) -> None:
            db.bench.delete_one({"n": 1})

    counter = CommandCounter()
    with MongoClient(uri, event_listeners=[counter]) as client, tempfile.TemporaryDirectory() as empty:
        client["tool_pymongo_migrate"].create_collection("bench")

        def tool() -> MongoMigrate:
            migrate = MongoMigrate(client, "tool_pymongo_migrate", migrations_dir=empty)
            for i in range(count):
                migrate.graph.add_migration(Insert(name=f"m{i:05d}", dependencies=[f"m{i - 1:05d}"] if i else []))
            return migrate

        migrate = tool()
        with counter.counting() as applied:
            started = time.perf_counter()
            migrate.upgrade()
            apply_seconds = time.perf_counter() - started
        assert client["tool_pymongo_migrate"].bench.count_documents({}) == count
        noop_times = []
        for _ in range(repeat):
            migrate = tool()
            with counter.counting() as noop:
                started = time.perf_counter()
                migrate.upgrade()
                noop_times.append(time.perf_counter() - started)
        assert client["tool_pymongo_migrate"].bench.count_documents({}) == count
    return {
        "tool": f"pymongo-migrate {package_version('pymongo-migrate')}",
        "apply_seconds": apply_seconds,
        "apply_commands": len(applied.sent),
        "noop_seconds_median": statistics.median(noop_times),
        "noop_commands": len(noop.sent),
        "notes": "synchronous; no lock; no transaction: a migration and its record are two separate writes",
    }


async def aioflamingock_tool_run(
    client: AsyncMongoClient[Any], counter: CommandCounter, count: int, repeat: int
) -> dict[str, Any]:
    database = "tool_aioflamingock"
    await client[database].create_collection("bench")
    changes = make_changes(count, "app", transactional=True)
    with counter.counting() as applied:
        apply_seconds, report = await timed(engine(client, database, changes).run)
    assert len(report.applied) == count
    noop = await fresh_runs(lambda: engine(client, database, changes), counter, count, repeat)
    return {
        "tool": f"aioflamingock {aioflamingock.__version__}",
        "apply_seconds": apply_seconds,
        "apply_commands": len(applied.sent),
        "noop_seconds_median": noop.seconds_median,
        "noop_commands": len(noop.window.sent),
        "notes": "shared-transaction path, fresh engine each run",
    }


# -- server, machine, report ----------------------------------------------------------------------------------------

_SERVER = """
import sys, time
from secantus import SecantusDBServer
server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=":memory:")
server.start()
print(server.uri, flush=True)
sys.stdin.read()
"""


@contextmanager
def mongodb_server() -> Iterator[tuple[str, str]]:
    """(uri, description): $AIOFLAMINGOCK_MONGODB_URI, else SecantusDB in a child process (its own interpreter, so it
    does not share a GIL with the benchmark), stopped when stdin closes."""
    uri = os.environ.get("AIOFLAMINGOCK_MONGODB_URI")
    if uri:
        yield uri, "AIOFLAMINGOCK_MONGODB_URI"
        return
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield process.stdout.readline().strip(), f"SecantusDB {package_version('SecantusDB')}, in-memory, child process"
    finally:
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def machine(server: str, server_version: str) -> dict[str, Any]:
    return {
        **machine_facts(),
        "pymongo": package_version("pymongo"),
        "server": server,
        "server_version": server_version,
        "aioflamingock": aioflamingock.__version__,
    }


def print_tables(results: dict[str, Any]) -> None:
    info = results["machine"]
    print_machine(info)
    print(f"Python {info['python']}, PyMongo {info['pymongo']}; server: {info['server']} ({info['server_version']})\n")
    print("(a) run() with nothing pending")
    print(f"{'applied changes':>16} | {'engine':<6} | {'commands':>8} | {'wall time':>10} | {'x find_one':>10}")
    for row in results["noop"]:
        for name in ("open", "fresh"):
            r = row[f"{name}_engine"]
            if r is None:
                print(f"{row['changes']:>16,} | {name:<6} | not measured")
                continue
            ms = r["seconds_median"] * 1000
            print(f"{row['changes']:>16,} | {name:<6} | {r['commands']:>8} | {ms:>7.1f} ms | {r['x_find_one']:>10.1f}")
        print(
            f"{'':>16} | find_one | {row['find_one_commands']:>6} | {row['find_one_seconds_median'] * 1000:>7.2f} ms |"
        )
        print(f"{'':>16} | read alone       | {row['read_alone_seconds_median'] * 1000:>7.1f} ms |")
        print(f"{'':>16} | count alone      | {row['count_alone_seconds_median'] * 1000:>7.1f} ms |")
    print(f"\n(b) applying {APPLY_COUNT} trivial changes")
    print(f"{'path':<8} | {'per change':>10} | {'floor':>8} | {'x floor':>7} | {'commands':>8} | {'floor':>5}")
    for row in results["apply"]:
        per, fl = row["ms_per_change"], row["floor"]["seconds_median"] * 1000
        cmds, fcmds = row["commands_per_change"], row["floor"]["commands"]
        print(f"{row['path']:<8} | {per:>7.2f} ms | {fl:>5.2f} ms | {per / fl:>7.1f} | {cmds:>8.2f} | {fcmds:>5}")
    print(f"\n(c) {TOOL_COUNT} trivial migrations, then nothing pending")
    print(f"{'tool':<24} | {'apply':>8} | {'commands':>8} | {'no-op':>9} | {'commands':>8}")
    for row in results["tools"]:
        print(
            f"{row['tool']:<24} | {row['apply_seconds']:>6.2f} s | {row['apply_commands']:>8} | "
            f"{row['noop_seconds_median'] * 1000:>6.1f} ms | {row['noop_commands']:>8}"
        )
    ours, theirs = results["tools"]
    print(
        f"aioflamingock / pymongo-migrate: apply {ours['apply_seconds'] / theirs['apply_seconds']:.2f}x time, "
        f"no-op {ours['noop_seconds_median'] / theirs['noop_seconds_median']:.2f}x time"
    )


async def main(repeat: int) -> None:
    with mongodb_server() as (uri, server):
        counter = CommandCounter()
        client: AsyncMongoClient[Any] = AsyncMongoClient(uri, event_listeners=[counter])
        try:
            server_version = (await client.server_info()).get("version", "unknown")
            info = machine(server, str(server_version))
            noop = []
            for count, runs, kept_open in NOOP_PLAN:
                with progress(f"(a) {count:,} changes"):
                    noop.append(await noop_run(client, counter, count, runs or repeat, kept_open=kept_open))
            apply = []
            for kind in ("shared", "marker", "non-tx"):
                with progress(f"(b) {kind}"):
                    apply.append(await apply_run(kind, client, counter, repeat))
            tools = [await aioflamingock_tool_run(client, counter, TOOL_COUNT, repeat)]
            tools.append(await asyncio.to_thread(pymongo_migrate_run, uri, TOOL_COUNT, repeat))
        finally:
            await client.close()
    results = {"machine": info, "repeat": repeat, "noop": noop, "apply": apply, "tools": tools}
    print_tables(results)
    write_results(results, "mongodb")


if __name__ == "__main__":
    asyncio.run(main(argument_parser(__doc__).parse_args().repeat))
