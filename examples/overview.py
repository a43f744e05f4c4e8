"""The smallest complete use: one change, one SQLite database, one run.

    python examples/overview.py [DATABASE]     # default: ./overview.db

Run it twice: the second run finds nothing pending, takes no lock and writes nothing.
"""

from __future__ import annotations

import asyncio
import sys

# --8<-- [start:overview]
from aioflamingock import Change, Flamingock
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem


class CreateUsers(Change):  # usually one module per change: myapp/changes/_0001_create_users.py
    id = "create-users"
    author = "alice"
    target_system = "app-db"
    order = "0001"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")


async def main(path: str) -> None:
    db = SQLiteTargetSystem("app-db", path=path)
    fl = Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=[CreateUsers])
    report = await fl.run()  # in a FastAPI lifespan, or before a worker starts consuming
    print(report.status.value, report.applied)
    # --8<-- [end:overview]


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "overview.db"))
