"""Benchmarks of aioflamingock on PostgreSQL, side by side with alembic and yoyo. Run by hand, never in CI:

    python benchmarks/sql.py [--repeat N]

Uses the server at $AIOFLAMINGOCK_POSTGRESQL_URL (postgresql://USER:PASSWORD@HOST:PORT/DATABASE), else the local
server the tests use (tests/servers.py starts it, as root), in a database of its own (`flamingock_bench`, created
and dropped: the role needs CREATEDB). Every figure comes from one server in one run; medians.

(a) Applying 200 trivial changes (one INSERT each) on the shared path, against two floors that send the engine's
    statements, one transaction per change (BEGIN; the change's INSERT; the audit row, inserted only while the lock
    row is ours, which it locks FOR UPDATE; COMMIT), with the same values, into the same tables: with bare asyncpg on
    one connection, and through SQLAlchemy's AsyncEngine (a connection of its pool per change, as the engine takes
    one), the layer every user of `aioflamingock.sql` has. The engine's time is the changes' own, from the first
    change's start to the last one's end, and the whole run's.
(b) A run with nothing pending at 200 and 1,000 applied changes, with a fresh engine each time.
(c) alembic: `upgrade` of 200 trivial revisions (one INSERT each, one transaction per revision), then an `upgrade`
    with nothing to do, through psycopg; and yoyo (`pip install yoyo-migrations`): `apply` of the same 200
    migrations, then an `apply` with nothing to do, through psycopg (`postgresql+psycopg://`).

Prints a table and writes the figures to benchmarks/results/sql-<time>.json.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    ChangesTime,
    alembic_project,
    alembic_upgrade,
    argument_parser,
    generate_changes,
    machine_facts,
    package_version,
    print_machine,
    write_results,
    yoyo_apply,
    yoyo_migrations,
)
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from aioflamingock import Change, Flamingock
from aioflamingock.backend import AUDIT_COLUMNS, AuditEntry, AuditState, TxStrategy, entry_row
from aioflamingock.sql import SQLAuditStore, SQLContext, SQLTargetSystem

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import start_postgresql

COUNT = 200
BENCH_DATABASE = "flamingock_bench"
NOOP_AT = (200, 1_000, 10_000)


async def _insert(self: Change, ctx: SQLContext) -> None:
    await ctx.connection.execute(text("INSERT INTO bench (n) VALUES (1)"))


def setup(sync_url: str) -> None:
    """An empty bench database, with the table the changes insert into."""
    url = make_url(sync_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {url.database} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {url.database}"))
    admin.dispose()
    engine = create_engine(sync_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("CREATE TABLE bench (id SERIAL PRIMARY KEY, n INTEGER)"))
    engine.dispose()


def drop(sync_url: str) -> None:
    url = make_url(sync_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {url.database} WITH (FORCE)"))
    admin.dispose()


def flamingock(url: str, changes: list[type[Change]]) -> tuple[Flamingock, Any]:
    engine = create_async_engine(url)
    target = SQLTargetSystem("db", engine=engine)
    return Flamingock(audit_store=SQLAuditStore.from_target(target), target_systems=[target], changes=changes), engine


async def apply_with_aioflamingock(url: str, sync_url: str, count: int) -> tuple[float, float]:
    """The whole run's time, and the changes' own."""
    setup(sync_url)
    fl, engine = flamingock(url, generate_changes(count, "db", _insert, transactional=True))
    changes = ChangesTime()
    fl.add_listener(changes)
    fl.changes()
    started = time.perf_counter()
    report = await fl.run()
    elapsed = time.perf_counter() - started
    await engine.dispose()
    assert len(report.applied) == count
    return elapsed, changes.seconds


async def noop_with_aioflamingock(url: str, count: int) -> float:
    fl, engine = flamingock(url, generate_changes(count, "db", _insert, transactional=True))
    started = time.perf_counter()
    report = await fl.run()
    elapsed = time.perf_counter() - started
    await engine.dispose()
    assert not report.applied
    return elapsed


def fenced_insert(placeholders: list[str]) -> str:
    """The engine's audit statement, with the driver's placeholders: the row's columns, then the lock's key, owner
    and token."""
    values, (key, owner, token) = placeholders[: len(AUDIT_COLUMNS)], placeholders[len(AUDIT_COLUMNS) :]
    return (
        f"INSERT INTO flamingock_audit_log ({', '.join(AUDIT_COLUMNS)}) SELECT {', '.join(values)} "
        f"FROM flamingock_lock WHERE lock_key = {key} AND owner = {owner} AND fencing_token = {token} FOR UPDATE"
    )


async def floor_tables(url: str, sync_url: str) -> list[tuple[Any, ...]]:
    """An empty bench database with the engine's tables, a lock row of the floor's; the audit rows of 200 changes,
    as the engine would write them, and the lock's key, owner and token after each."""
    setup(sync_url)
    fl, engine = flamingock(url, [])
    await fl.run()  # creates the tables
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO flamingock_lock VALUES ('floor', 'me', 0, 9223372036854775807, 1)"))
    await engine.dispose()
    rows = []
    for i in range(COUNT):
        entry = AuditEntry(
            execution_id=uuid.uuid4().hex,
            stage_id="default",
            change_id=f"c{i:05d}",
            author="bench",
            created_at=datetime.now(UTC),
            state=AuditState.APPLIED,
            invoked_class=f"_common.Bench{i:05d}",
            invoked_method="execute",
            execution_hostname="bench",
            tx_strategy=TxStrategy.TX_AUDIT_STORE_SHARED,
            target_system_id="db",
            change_order=f"{i:05d}",
            transaction_flag=True,
        )
        rows.append((*entry_row(entry), "floor", "me", 1))
    return rows


async def floor_asyncpg(dsn: str, url: str, sync_url: str) -> float:
    """The engine's statements with bare asyncpg, on one connection."""
    import asyncpg

    rows = await floor_tables(url, sync_url)
    audit = fenced_insert([f"${n}" for n in range(1, len(rows[0]) + 1)])
    connection = await asyncpg.connect(dsn)
    started = time.perf_counter()
    for row in rows:
        async with connection.transaction():
            await connection.execute("INSERT INTO bench (n) VALUES (1)")
            assert await connection.execute(audit, *row) == "INSERT 0 1"
    elapsed = time.perf_counter() - started
    await connection.close()
    return elapsed


async def floor_sqlalchemy(url: str, sync_url: str) -> float:
    """The engine's statements through SQLAlchemy's AsyncEngine, a connection of its pool per change."""
    rows = await floor_tables(url, sync_url)
    names = [f"p{n}" for n in range(len(rows[0]))]
    change, audit = text("INSERT INTO bench (n) VALUES (1)"), text(fenced_insert([f":{n}" for n in names]))
    engine = create_async_engine(url)
    async with engine.connect() as connection:  # the pool's first connection, opened as the engine's is
        await connection.execute(text("SELECT 1"))
    started = time.perf_counter()
    for row in rows:
        async with engine.connect() as connection:
            await connection.begin()
            await connection.execute(change)
            assert (await connection.execute(audit, dict(zip(names, row, strict=True)))).rowcount == 1
            await connection.commit()
    elapsed = time.perf_counter() - started
    await engine.dispose()
    return elapsed


async def main(repeat: int) -> None:
    server = start_postgresql()
    if server is None:
        sys.exit("no PostgreSQL: set AIOFLAMINGOCK_POSTGRESQL_URL, or run as root where PostgreSQL is installed")
    base = make_url(server.uri).set(database=BENCH_DATABASE)  # a database of its own, dropped at the end
    url = base.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    sync_url = base.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    info = machine_facts() | {
        "sqlalchemy": package_version("sqlalchemy"),
        "asyncpg": package_version("asyncpg"),
        "alembic": package_version("alembic"),
        "aioflamingock": package_version("aioflamingock"),
    }
    print_machine(info)
    figures: dict[str, Any] = {"machine": info, "count": COUNT}
    runs, asyncpg_floors, sqlalchemy_floors = [], [], []
    for _ in range(repeat):  # interleaved, so that a busier moment of the machine hits each
        runs.append(await apply_with_aioflamingock(url, sync_url, COUNT))
        asyncpg_floors.append(await floor_asyncpg(dsn, url, sync_url))
        sqlalchemy_floors.append(await floor_sqlalchemy(url, sync_url))
    figures["apply_aioflamingock_s"] = statistics.median(run for run, _ in runs)
    figures["apply_aioflamingock_changes_s"] = statistics.median(changes for _, changes in runs)
    figures["apply_floor_s"] = statistics.median(asyncpg_floors)
    figures["apply_floor_sqlalchemy_s"] = statistics.median(sqlalchemy_floors)
    for count in NOOP_AT:
        await apply_with_aioflamingock(url, sync_url, count)
        figures[f"noop_aioflamingock_{count}_s"] = statistics.median(
            [await noop_with_aioflamingock(url, count) for _ in range(repeat)]
        )
    alembic_apply, alembic_noop = [], []
    for _ in range(repeat):
        setup(sync_url)
        with tempfile.TemporaryDirectory() as directory:
            ini = alembic_project(Path(directory) / f"alembic_{uuid.uuid4().hex[:6]}", COUNT)
            alembic_apply.append(alembic_upgrade(ini, sync_url))
            alembic_noop.append(alembic_upgrade(ini, sync_url))
    figures["apply_alembic_s"] = statistics.median(alembic_apply)
    figures["noop_alembic_200_s"] = statistics.median(alembic_noop)
    yoyo_apply_s, yoyo_noop = [], []
    for _ in range(repeat):
        setup(sync_url)
        with tempfile.TemporaryDirectory() as directory:
            migrations = yoyo_migrations(Path(directory) / "migrations", COUNT)
            yoyo_apply_s.append(yoyo_apply(migrations, sync_url))
            yoyo_noop.append(yoyo_apply(migrations, sync_url))
    figures["apply_yoyo_s"] = statistics.median(yoyo_apply_s)
    figures["noop_yoyo_200_s"] = statistics.median(yoyo_noop)
    drop(sync_url)

    per = 1000 / COUNT
    print(f"\napply {COUNT} trivial changes, shared path (medians of {repeat}):")
    rows = (
        ("aioflamingock, its changes", "apply_aioflamingock_changes_s"),
        ("aioflamingock, whole run", "apply_aioflamingock_s"),
        ("floor, asyncpg", "apply_floor_s"),
        ("floor, SQLAlchemy", "apply_floor_sqlalchemy_s"),
    )
    for name, key in rows:
        print(f"  {name:<27} {figures[key]:.3f} s  {figures[key] * per:.2f} ms/change")
    changes = figures["apply_aioflamingock_changes_s"]
    print(f"  ratio to asyncpg's floor    {changes / figures['apply_floor_s']:.2f}x")
    print(f"  ratio to SQLAlchemy's floor {changes / figures['apply_floor_sqlalchemy_s']:.2f}x")
    print(f"  alembic        {figures['apply_alembic_s']:.3f} s  (psycopg, no lock, no audit)")
    print(f"  yoyo           {figures['apply_yoyo_s']:.3f} s  (psycopg, an advisory lock, its log)")
    print("\na run with nothing pending:")
    for count in NOOP_AT:
        print(f"  aioflamingock, {count} applied  {figures[f'noop_aioflamingock_{count}_s']:.3f} s")
    print(f"  alembic, 200 applied        {figures['noop_alembic_200_s']:.3f} s")
    print(f"  yoyo, 200 applied           {figures['noop_yoyo_200_s']:.3f} s")
    write_results(figures, "sql")


if __name__ == "__main__":
    arguments = argument_parser(__doc__).parse_args()
    asyncio.run(main(arguments.repeat))
