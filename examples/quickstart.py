"""Quickstart: evolve a small SQLite app database, and a search index's settings, through four changes.

    python examples/quickstart.py [DATABASE]     # default: $QUICKSTART_DB, else ./quickstart.db

The changes live next to this file, one per module, in `quickstart_changes/_<ORDER>_<name>.py`.
Run it twice: the second run finds nothing pending, takes no lock and writes nothing.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from aioflamingock import Flamingock, NonTransactionalTargetSystem, RunReport, RunStatus
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so that `quickstart_changes` imports from anywhere


def build(database: Path) -> Flamingock:
    app_db = SQLiteTargetSystem("app-db", path=database)
    settings_file = database.with_suffix(".search.json")  # stands for any external system: a queue, a bucket...
    search = NonTransactionalTargetSystem("search", dependencies={"settings_file": settings_file})
    return Flamingock(
        audit_store=SQLiteAuditStore.from_target(app_db),  # the audit log and the lock live in the app database
        target_systems=[app_db, search],
        changes=["quickstart_changes"],
    )


def summary(report: RunReport) -> str:
    if report.status is RunStatus.NO_CHANGES:
        return f"Nothing pending: all {len(report.changes)} changes are already applied."
    lines = [f"Applied {len(report.applied)} change(s) in {report.duration_seconds:.3f}s:"]
    lines += [f"  {result.change_id:<24} {result.outcome.value}" for result in report.changes]
    return "\n".join(lines)


def next_steps(database: Path) -> str:
    changes = Path(__file__).resolve().parent / "quickstart_changes"
    return (
        f"\nThe database: {database.resolve()} (the users table, and the audit in flamingock_audit_log).\n"
        f"Next: run this again (nothing pending); add a module _0005_<name>.py to {changes} and run again (only it\n"
        "runs); docs/quickstart.md walks through it."
    )


async def main() -> None:
    database = Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("QUICKSTART_DB", "quickstart.db"))
    report = await build(database).run()
    print(summary(report))
    print(next_steps(database))


if __name__ == "__main__":
    asyncio.run(main())
