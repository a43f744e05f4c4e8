"""The SQLite store: the audit log and the lock in two tables of the application's own database, and a second,
independent set of changes in the same file under other table names.

    python examples/stores_sqlite.py [DATABASE]     # default: ./stores.db
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

from aioflamingock import Change, Flamingock
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem


class CreateUsers(Change):
    id = "create-users"
    author = "alice"
    target_system = "app-db"
    order = "0001"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")


class CreateInvoices(Change):
    id = "create-invoices"
    author = "bob"
    target_system = "app-db"
    order = "0001"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total INTEGER NOT NULL)")


async def main(path: Path) -> None:
    # --8<-- [start:setup]
    db = SQLiteTargetSystem("app-db", path=path, busy_timeout_seconds=10.0)
    store = SQLiteAuditStore.from_target(db)  # audit_table="flamingock_audit_log", lock_table="flamingock_lock"
    billing = SQLiteAuditStore.from_target(db, audit_table="billing_audit_log", lock_table="billing_lock")
    await Flamingock(audit_store=store, target_systems=[db], changes=[CreateUsers]).run()
    await Flamingock(audit_store=billing, target_systems=[db], changes=[CreateInvoices], service="billing").run()
    # --8<-- [end:setup]

    with closing(sqlite3.connect(path)) as conn:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall()
        print("tables:", ", ".join(name for (name,) in tables if not name.startswith("sqlite_")))
        for audit in ("flamingock_audit_log", "billing_audit_log"):
            rows = conn.execute(f"SELECT change_id, state, tx_strategy FROM {audit} ORDER BY id").fetchall()
            print(f"{audit}:", rows)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else "stores.db")))
