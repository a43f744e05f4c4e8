"""aioflamingock on SQLite side by side with alembic and yoyo, in one run, on the same file system. Run by hand,
never in CI:

    python benchmarks/sqlite_peers.py [--repeat N] [--dir PATH]

(a) Applying 200 trivial changes (one INSERT each), SQLite in WAL mode, in this process: aioflamingock on the shared
    path (its changes' own time, from the first change's start to the last one's end, and the whole run); the
    aiosqlite floor, the least a protocol that records each change in the change's own transaction sends (BEGIN
    IMMEDIATE; the change's INSERT; the audit row, inserted only while the lock row is ours; COMMIT); alembic
    `upgrade` (one transaction per revision, no lock, no audit); yoyo `apply` (under its lock, with its log).
(b) A whole process that finds nothing pending, at 1,000 and 10,000 applied, as a user runs it: `python` running
    the engine over a package of one module per change; `alembic upgrade head` and `yoyo apply --batch`, the
    commands. Bytecode is cached (a first run writes it), as in a deployed service.

Prints a table and writes the figures to benchmarks/results/sqlite-peers-<time>.json.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosqlite
from _common import (
    PEER_STATEMENT,
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

from aioflamingock import Change, Flamingock
from aioflamingock.backend import AUDIT_COLUMNS, AuditEntry, AuditState, TxStrategy, entry_row, utc_now
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem

COUNT = 200
NOOP_AT = (1_000, 10_000)


def bench_database(path: Path) -> Path:
    """A database file in WAL mode with the table every tool's changes insert into."""
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("CREATE TABLE bench (id INTEGER PRIMARY KEY, n INTEGER)")
    connection.close()
    return path


# -- (a) applying ---------------------------------------------------------------------------------------------------


async def _insert(self: Change, ctx: SQLiteContext) -> None:
    await ctx.connection.execute(PEER_STATEMENT)


async def apply_with_aioflamingock(directory: Path) -> tuple[float, float]:
    """The whole run's time, and its changes' own."""
    target = SQLiteTargetSystem("db", path=bench_database(directory / "aioflamingock.db"))
    changes = generate_changes(COUNT, "db", _insert, transactional=True)
    fl = Flamingock(audit_store=SQLiteAuditStore.from_target(target), target_systems=[target], changes=changes)
    timing = ChangesTime()
    fl.add_listener(timing)
    fl.changes()
    started = time.perf_counter()
    report = await fl.run()
    elapsed = time.perf_counter() - started
    assert len(report.applied) == COUNT
    return elapsed, timing.seconds


async def floor(directory: Path) -> float:
    """The floor's statements with bare aiosqlite, into the engine's own tables, with the same audit rows."""
    path = bench_database(directory / "floor.db")
    target = SQLiteTargetSystem("db", path=path)
    await Flamingock(audit_store=SQLiteAuditStore.from_target(target), target_systems=[target]).run()  # the tables
    with sqlite3.connect(path) as made:
        made.execute("INSERT INTO flamingock_lock VALUES ('f', 'me', 'LOCKED', 0, 0, 1)")
    made.close()
    rows = [
        (
            *entry_row(
                AuditEntry(
                    execution_id="e" * 32,
                    stage_id="default",
                    change_id=f"c{i:05d}",
                    author="bench",
                    created_at=utc_now(),
                    state=AuditState.APPLIED,
                    invoked_class=f"_common.Bench{i:05d}",
                    invoked_method="execute",
                    tx_strategy=TxStrategy.TX_AUDIT_STORE_SHARED,
                    target_system_id="db",
                    change_order=f"{i:05d}",
                    transaction_flag=True,
                )
            ),
            "f",
            "me",
            1,
        )
        for i in range(COUNT)
    ]
    audit = (
        f"INSERT INTO flamingock_audit_log ({', '.join(AUDIT_COLUMNS)}) SELECT {', '.join('?' * len(AUDIT_COLUMNS))}"
        " WHERE EXISTS (SELECT 1 FROM flamingock_lock WHERE key = ? AND owner = ? AND fencing_token = ?)"
    )
    connection = await aiosqlite.connect(path, isolation_level=None)
    started = time.perf_counter()
    for row in rows:
        await connection.execute_fetchall("BEGIN IMMEDIATE")
        await connection.execute_fetchall(PEER_STATEMENT)
        await connection.execute_fetchall(audit, row)
        await connection.execute_fetchall("COMMIT")
    elapsed = time.perf_counter() - started
    await connection.close()
    return elapsed


def apply_with_alembic(directory: Path) -> float:
    url = f"sqlite:///{bench_database(directory / 'alembic.db')}"
    return alembic_upgrade(alembic_project(directory / "alembic", COUNT), url)


def apply_with_yoyo(directory: Path) -> float:
    url = f"sqlite:///{bench_database(directory / 'yoyo.db')}"
    return yoyo_apply(yoyo_migrations(directory / "yoyo", COUNT), url)


# -- (b) a whole process with nothing pending ------------------------------------------------------------------------


CHANGE_MODULE = """from aioflamingock import Change


class C{i:05d}(Change):
    id = "c{i:05d}"
    order = "{i:05d}"
    author = "bench"
    target_system = "db"

    async def execute(self, ctx):
        await ctx.connection.execute({statement!r})
"""

APP = """import asyncio

from aioflamingock import Flamingock
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem

target = SQLiteTargetSystem("db", path={path!r})
fl = Flamingock(audit_store=SQLiteAuditStore.from_target(target), target_systems=[target], changes=["bench_changes"])
asyncio.run(fl.run())
"""


def _environment() -> dict[str, str]:
    """This one's, with bytecode written and read, as a deployed service has it."""
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return environment


def _timed_command(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, env=_environment(), check=True, capture_output=True)
    return time.perf_counter() - started


def _command(name: str) -> str:
    """A console script of the Python running this benchmark."""
    return str(Path(sys.executable).with_name(name)) if Path(sys.executable).with_name(name).exists() else name


def noop_projects(directory: Path, count: int) -> dict[str, tuple[list[str], Path]]:
    """For each tool, a project of `count` trivial migrations, all applied; the command that finds nothing
    pending, and where it runs."""
    ours = directory / f"aioflamingock-{count}"
    package = ours / "bench_changes"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for i in range(count):
        (package / f"_{i:05d}_change.py").write_text(CHANGE_MODULE.format(i=i, statement=PEER_STATEMENT))
    (ours / "bench_app.py").write_text(APP.format(path=str(bench_database(ours / "app.db"))))
    alembic_db = bench_database(directory / f"alembic-{count}.db")
    ini = alembic_project(directory / f"alembic-{count}", count, url=f"sqlite:///{alembic_db}")
    yoyo_db = bench_database(directory / f"yoyo-{count}.db")
    migrations = yoyo_migrations(directory / f"yoyo-{count}", count)
    projects = {
        "aioflamingock": ([sys.executable, "bench_app.py"], ours),
        "alembic": ([_command("alembic"), "-c", str(ini), "upgrade", "head"], ini.parent),
        "yoyo": (
            [_command("yoyo"), "apply", "--batch", "--database", f"sqlite:///{yoyo_db}", str(migrations)],
            directory,
        ),
    }
    for command, cwd in projects.values():
        _timed_command(command, cwd)  # applies everything (and writes the bytecode)
    return projects


# -- main -----------------------------------------------------------------------------------------------------------


async def main(repeat: int, workdir: Path) -> None:
    info = machine_facts() | {
        "sqlite": sqlite3.sqlite_version,
        "aiosqlite": aiosqlite.__version__,
        "alembic": package_version("alembic"),
        "yoyo-migrations": package_version("yoyo-migrations"),
        "aioflamingock": package_version("aioflamingock"),
    }
    print_machine(info)
    runs: dict[str, list[float]] = {"whole": [], "changes": [], "floor": [], "alembic": [], "yoyo": []}
    for attempt in range(repeat):  # interleaved, so that a busier moment of the machine hits each
        directory = workdir / f"apply-{attempt}"
        directory.mkdir()
        whole, changes = await apply_with_aioflamingock(directory)
        runs["whole"].append(whole)
        runs["changes"].append(changes)
        runs["floor"].append(await floor(directory))
        runs["alembic"].append(apply_with_alembic(directory))
        runs["yoyo"].append(apply_with_yoyo(directory))
    apply = {name: statistics.median(times) for name, times in runs.items()}

    noop: dict[int, dict[str, float]] = {}
    for count in NOOP_AT:
        projects = noop_projects(workdir / f"noop-{count}", count)
        times: dict[str, list[float]] = {name: [] for name in projects}
        for _ in range(repeat):
            for name, (command, cwd) in projects.items():
                times[name].append(_timed_command(command, cwd))
        noop[count] = {name: statistics.median(each) for name, each in times.items()}
        shutil.rmtree(workdir / f"noop-{count}", ignore_errors=True)

    per = 1000 / COUNT
    print(f"\n(a) apply {COUNT} trivial changes, SQLite WAL (medians of {repeat})")
    for name, key in (
        ("aioflamingock, its changes", "changes"),
        ("aioflamingock, whole run", "whole"),
        ("floor, aiosqlite", "floor"),
        ("alembic upgrade", "alembic"),
        ("yoyo apply", "yoyo"),
    ):
        print(f"  {name:<27} {apply[key]:.3f} s  {apply[key] * per:.2f} ms/change  {apply[key] / apply['floor']:.2f}x")
    print(f"\n(b) a whole process with nothing pending (medians of {repeat})")
    for count, figures in noop.items():
        cells = "  ".join(f"{name} {seconds:.3f} s" for name, seconds in figures.items())
        print(f"  {count:>6,} applied: {cells}")
    write_results({"machine": info, "repeat": repeat, "count": COUNT, "apply": apply, "noop": noop}, "sqlite-peers")


if __name__ == "__main__":
    parser = argument_parser(__doc__)
    parser.add_argument("--dir", type=Path, default=None, help="where the database files go (default: a temp dir)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=arguments.dir) as tmp:
        asyncio.run(main(arguments.repeat, Path(tmp)))
