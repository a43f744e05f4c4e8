"""Operations on an application's changes, as a script or an admin endpoint would call them: plan, validate,
run, issues, fix, undo, history, the lock, a baseline of a database made before, and the audit moved.

    python examples/operations.py [DATA_DIR]     # default: a new temporary directory

It works on `myapp` (next to this file): three changes on a SQLite database and one on a search service. The
search service is down during the first run, so that change fails, its rollback fails too, and a human has to
say what happened before the next run goes on.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from myapp.search import SearchClient
from myapp.startup import build_flamingock

from aioflamingock import ChangeFailedError, Flamingock, PendingChangesError, RunReport


def summary(report: RunReport) -> str:
    return ", ".join(f"{result.change_id} {result.outcome.value}" for result in report.changes)


async def show_plan(fl: Flamingock) -> None:
    # --8<-- [start:plan]
    for planned in await fl.plan():
        print(f"{planned.change_id:20} {planned.action.value:20} {planned.reason}")
    # --8<-- [end:plan]


async def check(fl: Flamingock) -> None:
    # --8<-- [start:validate]
    try:
        await fl.validate()
    except PendingChangesError as exc:
        print(f"database not migrated: {exc.pending}")  # in an application: raise SystemExit(...)
    # --8<-- [end:validate]
    else:
        print("nothing pending")


async def first_run(fl: Flamingock) -> None:
    try:
        await fl.run()
    except ChangeFailedError as exc:
        assert exc.report is not None
        print(f"{type(exc).__name__}: {exc}")
        print(f"  report: {summary(exc.report)}")


async def show_issues(fl: Flamingock) -> None:
    # --8<-- [start:issues]
    for issue in await fl.issues():
        print(issue.change_id, issue.state.value, issue.reason, "->", issue.remedy)
    # --8<-- [end:issues]


async def resolve(fl: Flamingock) -> None:
    # The search service shows no `users` index: the change did not happen.
    # --8<-- [start:fix]
    entry = await fl.fix("create-users-index", resolution="rolled-back")  # the next run applies it again
    # --8<-- [end:fix]
    print(f"recorded {entry.state.value} for {entry.change_id}")


async def show_history(fl: Flamingock) -> None:
    # --8<-- [start:history]
    async for entry in fl.history():
        print(f"{entry.change_id:20} {entry.state.value:28} {entry.tx_strategy.value}")
    # --8<-- [end:history]


async def roll_back(fl: Flamingock) -> None:
    # --8<-- [start:undo]
    report = await fl.undo(to="seed-admin-user")  # roll back every applied change after it, newest first
    # --8<-- [end:undo]
    print(f"undo {report.status.value}: {summary(report)}")


def dead_process_id() -> int:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


async def leave_a_stale_lock(fl: Flamingock) -> None:
    """What a process killed in the middle of a run leaves behind: its lock record, until the lease ends."""
    owner = f"{socket.gethostname()}/{dead_process_id()}/killed-run"
    async with fl.audit_store:
        await fl.audit_store.lock.try_acquire(fl.service, owner, lease_seconds=60)


# --8<-- [start:holder]
def holder_is_dead(owner: str) -> bool:
    """The owner is `host/pid/executionId`: on this host, a holder is dead when its process is gone."""
    host, pid, _ = owner.rsplit("/", 2)
    if host != socket.gethostname():
        return False  # can't tell from here: ask that host
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    return False
    # --8<-- [end:holder]


async def clear_lock(fl: Flamingock) -> None:
    # --8<-- [start:lock]
    info = await fl.lock_info()  # LockInfo(key, owner, token, acquired_at, expires_at, remaining_seconds)
    if info is not None and holder_is_dead(info.owner):
        await fl.force_unlock()  # deletes the record whoever holds it
    # --8<-- [end:lock]
    print(f"lock held by a dead process for {info.remaining_seconds:.0f} s more: released" if info else "lock free")


def database_in_shape(data_dir: Path) -> None:
    """A database someone made before adopting aioflamingock (by hand, or with another tool): the users table with
    its admin and status column, which the first three changes would have made."""
    data_dir.mkdir()
    with sqlite3.connect(data_dir / "app.db") as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL)")
        db.execute("INSERT INTO users (email, name) VALUES ('admin@example.com', 'Administrator')")
        db.execute("ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active'")
    db.close()


async def adopt(data_dir: Path) -> None:
    database_in_shape(data_dir)
    fl = build_flamingock(data_dir)
    # --8<-- [start:baseline]
    written = await fl.baseline(to="add-user-status")  # the last change this database already has
    # --8<-- [end:baseline]
    print(f"baseline: {', '.join(entry.change_id for entry in written)} recorded as applied, none run")
    print(f"run {summary(await fl.run())}")


def new_database(data_dir: Path) -> Flamingock:
    """Another database here; it could as well be another store: MongoDB, DynamoDB..."""
    data_dir.mkdir()
    return build_flamingock(data_dir)


async def move(fl: Flamingock, data_dir: Path) -> None:
    new = new_database(data_dir)
    # --8<-- [start:move]
    entries = [entry async for entry in fl.history()]  # the export: every entry, oldest first
    count = await new.import_audit(entries)  # into a store with no entry yet; read back and compared
    # --8<-- [end:move]
    same = [p.action for p in await new.plan()] == [p.action for p in await fl.plan()]
    print(f"moved {count} entries; the new store plans {'the same' if same else 'differently'}")


async def main(data_dir: Path) -> None:
    fl = build_flamingock(data_dir, search_client=SearchClient(data_dir / "search.json", available=False))
    print("== plan")
    await show_plan(fl)
    print("== validate")
    await check(fl)
    print("== run, with the search service down")
    await first_run(fl)
    print("== issues")
    await show_issues(fl)
    print("== fix")
    await resolve(fl)

    fl = build_flamingock(data_dir)  # the search service is back
    print("== run")
    print(f"run {summary(await fl.run())}")
    print("== validate")
    await check(fl)
    print("== history")
    await show_history(fl)
    print("== undo")
    await roll_back(fl)
    print("== plan")
    await show_plan(fl)
    print("== lock")
    await leave_a_stale_lock(fl)
    await clear_lock(fl)
    print(f"run {summary(await fl.run())}")
    print("== baseline, on a database made before")
    await adopt(data_dir / "made-before")
    print("== move the audit to a new store")
    await move(fl, data_dir / "moved")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))
