"""Benchmarks of aioflamingock on SQLite. Run by hand, never in CI:

    python benchmarks/run.py [--repeat N] [--dir PATH]

(a) A run with nothing pending, over 1,000, 10,000 and 100,000 applied changes (beyond 10,000, the audit is grown by
    copying the engine's rows): the SQL statements it issues, whether it takes the lock, and its wall time.
(b) Applying 1,000 trivial changes on each path of the safety protocol: time per change.

Prints a table and writes the figures, with a description of the machine, to benchmarks/results/<time>.json.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from _common import argument_parser, count_call, generate_changes, machine_facts, print_machine, timed, write_results

import aioflamingock
from aioflamingock import Change, Flamingock, NonTransactionalTargetSystem, RunStatus
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem

LOCK_TABLE = "flamingock_lock"
NOOP_SIZES = (1_000, 10_000, 100_000)
APPLIED_BY_ENGINE = 10_000
"""Larger audits are grown by copying the entries the engine wrote (see `seed_audit`)."""
APPLY_COUNT = 1_000

# -- changes, generated ---------------------------------------------------------------------------------------------


async def _insert_row(self: Change, ctx: SQLiteContext) -> None:
    await ctx.connection.execute("INSERT INTO bench (n) VALUES (1)")


def make_changes(count: int, target: str, *, transactional: bool) -> list[type[Change]]:
    return generate_changes(count, target, _insert_row if transactional else count_call, transactional=transactional)


def create_bench_table(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench (id INTEGER PRIMARY KEY, n INTEGER)")
    conn.close()


# -- counting statements --------------------------------------------------------------------------------------------


@contextmanager
def traced_connections(statements: list[str]) -> Iterator[None]:
    """Record every statement of every aiosqlite connection opened meanwhile, from the first PRAGMA on."""
    connect = aiosqlite.connect

    async def connect_and_trace(*args: Any, **kwargs: Any) -> aiosqlite.Connection:
        conn = await connect(*args, **kwargs)
        await conn.set_trace_callback(statements.append)
        return conn

    aiosqlite.connect = connect_and_trace  # type: ignore[assignment]
    try:
        yield
    finally:
        aiosqlite.connect = connect


def touches_lock(statements: list[str]) -> bool:
    """Whether any statement wrote the lock table (acquire, renew and release all do)."""
    writes = ("INSERT", "UPDATE", "DELETE")
    return any(LOCK_TABLE in s and s.lstrip().upper().startswith(writes) for s in statements)


# -- (a) nothing pending --------------------------------------------------------------------------------------------


async def fetch_all(conn: aiosqlite.Connection, sql: str) -> list[Any]:
    async with conn.execute(sql) as cursor:
        return list(await cursor.fetchall())


def seed_audit(path: Path, applied: int, count: int) -> None:
    """Grow the audit from the `applied` entries the engine wrote to `count`, by copying them with new change ids:
    the rows the engine would write, without hours of applying. Rows added by hand make the summary stale: the first
    run reads every state and writes it again."""
    with sqlite3.connect(path) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(flamingock_audit_log)") if row[1] != "id"]
        listed = ", ".join(columns)
        # the engine's rows are ids 1.. for changes c00000..: a copy of row `id` becomes change `offset + id - 1`
        chosen = ", ".join("printf('c%05d', a.id - 1 + ?)" if c == "change_id" else f"a.{c}" for c in columns)
        for offset in range(applied, count, applied):
            limit = min(applied, count - offset)
            conn.execute(
                f"INSERT INTO flamingock_audit_log ({listed}) SELECT {chosen} FROM flamingock_audit_log a "
                f"WHERE a.id <= ? ORDER BY a.id",
                (offset, limit),
            )
    conn.close()


async def noop_run(workdir: Path, count: int, repeat: int) -> dict[str, Any]:
    path = workdir / f"noop-{count}.db"
    create_bench_table(path)
    changes = make_changes(count, "app", transactional=True)

    def engine(declared: list[type[Change]] = changes) -> tuple[Flamingock, SQLiteTargetSystem]:
        db = SQLiteTargetSystem("app", path=path)
        return Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=declared), db

    applied = min(count, APPLIED_BY_ENGINE)
    setup_seconds, report = await timed(engine(changes[:applied])[0].run)
    assert len(report.applied) == applied
    if count > applied:
        seed_audit(path, applied, count)
        assert (await engine()[0].run()).status is RunStatus.NO_CHANGES  # the full read, and the summary written

    # An engine kept open (`async with fl:`): the statements of run() itself, on the audit store's connection.
    open_times: list[float] = []
    runs: list[list[str]] = []
    fl, db = engine()
    async with fl:
        fl.changes()  # load and check the changes outside the measurement, as the first call would
        await db.connection.set_trace_callback(lambda statement: runs[-1].append(statement))
        for _ in range(repeat):
            runs.append([])
            seconds, report = await timed(fl.run)
            assert report.status is RunStatus.NO_CHANGES
            open_times.append(seconds)
        open_statements = runs[-1]
        runs.append([])  # the statements below are ours, not the engine's
        # How much of that is the query itself: the same statement, rows fetched but not decoded.
        query_times = [(await timed(lambda: fetch_all(db.connection, open_statements[0])))[0] for _ in range(repeat)]

    # A fresh engine: run() loads the changes, opens the database, reads, closes.
    cold_times: list[float] = []
    cold_statements: list[str] = []
    for _ in range(repeat):
        cold_statements = []
        with traced_connections(cold_statements):
            seconds, report = await timed(engine()[0].run)
        assert report.status is RunStatus.NO_CHANGES
        cold_times.append(seconds)

    return {
        "changes": count,
        "setup_apply_seconds": setup_seconds,
        "open_engine": {
            "statements": len(open_statements),
            "statement_text": open_statements,
            "lock_taken": touches_lock(open_statements),
            "seconds_median": statistics.median(open_times),
            "query_seconds_median": statistics.median(query_times),
        },
        "fresh_engine": {
            "statements": len(cold_statements),
            "statement_text": cold_statements,
            "lock_taken": touches_lock(cold_statements),
            "seconds_median": statistics.median(cold_times),
        },
    }


# -- (b) applying ---------------------------------------------------------------------------------------------------


@asynccontextmanager
async def counted_statements(*targets: SQLiteTargetSystem) -> AsyncIterator[list[str]]:
    statements: list[str] = []
    for target in targets:
        await target.open()
        await target.connection.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        for target in targets:
            await target.close()


def path_engine(kind: str, workdir: Path, count: int) -> tuple[Flamingock, list[SQLiteTargetSystem]]:
    workdir.mkdir()
    audit_path = workdir / f"{kind}-audit.db"
    audit_db = SQLiteTargetSystem("audit", path=audit_path)
    store = SQLiteAuditStore.from_target(audit_db)
    if kind == "shared":
        create_bench_table(audit_path)
        changes = make_changes(count, "audit", transactional=True)
        return Flamingock(audit_store=store, target_systems=[audit_db], changes=changes), [audit_db]
    if kind == "marker":
        app_path = workdir / f"{kind}-app.db"
        create_bench_table(app_path)
        app_db = SQLiteTargetSystem("app", path=app_path)
        changes = make_changes(count, "app", transactional=True)
        return Flamingock(audit_store=store, target_systems=[audit_db, app_db], changes=changes), [audit_db, app_db]
    external = NonTransactionalTargetSystem("external", dependencies={"calls": []})
    changes = make_changes(count, "external", transactional=False)
    return Flamingock(audit_store=store, target_systems=[audit_db, external], changes=changes), [audit_db]


async def apply_run(kind: str, workdir: Path, count: int, repeat: int) -> dict[str, Any]:
    times: list[float] = []
    for attempt in range(repeat):
        fl, _ = path_engine(kind, workdir / f"{kind}-{attempt}", count)
        fl.changes()
        seconds, report = await timed(fl.run)
        assert len(report.applied) == count, report
        times.append(seconds)
    # The statements per change, from a traced run of the same path (one change more than a run of zero).
    per_change: list[int] = []
    for size in (1, 11):
        fl, targets = path_engine(kind, workdir / f"{kind}-traced-{size}", size)
        async with counted_statements(*targets) as statements:
            await fl.run()
        per_change.append(len(statements))
    seconds = statistics.median(times)
    return {
        "path": kind,
        "changes": count,
        "seconds_median": seconds,
        "ms_per_change": seconds / count * 1000,
        "statements_per_change": (per_change[1] - per_change[0]) / 10,
    }


# -- report ---------------------------------------------------------------------------------------------------------


def filesystem(path: Path) -> str:
    """The file system type holding `path` (Linux only): commits fsync, so it matters."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    best = max((m for m in mounts if resolved.startswith(m[0])), key=lambda m: len(m[0]), default=None)
    return best[1] if best else "unknown"


def machine(workdir: Path) -> dict[str, Any]:
    return {
        **machine_facts(),
        "sqlite": sqlite3.sqlite_version,
        "aiosqlite": aiosqlite.__version__,
        "aioflamingock": aioflamingock.__version__,
        "filesystem": filesystem(workdir),
    }


def print_tables(noop: list[dict[str, Any]], apply: list[dict[str, Any]], info: dict[str, Any]) -> None:
    print_machine(info)
    print(f"Python {info['python']}, SQLite {info['sqlite']}, aiosqlite {info['aiosqlite']}")
    print(f"database files on: {info['filesystem']}\n")
    print("(a) run() with nothing pending")
    print(f"{'applied changes':>16} | {'engine':<6} | {'statements':>10} | {'lock taken':>10} | {'wall time':>10}")
    for row in noop:
        for engine in ("open", "fresh"):
            r = row[f"{engine}_engine"]
            lock = "yes" if r["lock_taken"] else "no"
            ms = r["seconds_median"] * 1000
            print(f"{row['changes']:>16,} | {engine:<6} | {r['statements']:>10} | {lock:>10} | {ms:>7.1f} ms")
    print("open: engine kept open with `async with`; fresh: run() loads the changes and opens the database itself")
    for row in noop:
        ms = row["open_engine"]["query_seconds_median"] * 1000
        print(f"the read alone (rows fetched, not decoded), {row['changes']:,} changes: {ms:.1f} ms")
    print(f"\n(b) applying {APPLY_COUNT:,} trivial changes")
    print(f"{'path':<8} | {'total':>8} | {'per change':>10} | {'statements/change':>17}")
    for row in apply:
        total, per = row["seconds_median"], row["ms_per_change"]
        print(f"{row['path']:<8} | {total:>6.2f} s | {per:>7.2f} ms | {row['statements_per_change']:>17g}")


async def main(repeat: int, workdir: Path) -> None:
    info = machine(workdir)
    noop = [await noop_run(workdir, count, repeat) for count in NOOP_SIZES]
    apply = [await apply_run(kind, workdir, APPLY_COUNT, repeat) for kind in ("shared", "marker", "non-tx")]
    print_tables(noop, apply, info)
    write_results({"machine": info, "repeat": repeat, "noop": noop, "apply": apply})


if __name__ == "__main__":
    parser = argument_parser(__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="where the database files go (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        asyncio.run(main(args.repeat, Path(tmp)))
