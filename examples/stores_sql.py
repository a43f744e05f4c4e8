"""The SQL store on PostgreSQL or MySQL/MariaDB: the application's SQLAlchemy `AsyncEngine`, the audit log and the lock
in two tables of its database, a change through the ORM that commits in one transaction with its audit entry, and
a non-transactional one for DDL on MySQL.

    pip install "aioflamingock[postgresql]"       # or [psycopg], or [mysql]
    DATABASE_URL="postgresql+asyncpg://app:secret@localhost/app" python examples/stores_sql.py
"""

from __future__ import annotations

import asyncio
import os

from sqlalchemy import String, select, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from aioflamingock import Change, Flamingock
from aioflamingock.sql import SQLAuditStore, SQLContext, SQLTargetSystem

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+asyncpg://app:secret@localhost/app")
PREFIX = os.environ.get("TABLE_PREFIX", "")  # the tests give each run tables of its own


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = f"{PREFIX}users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)


# --8<-- [start:changes]
class CreateUsers(Change):
    id = "create-users"
    author = "alice"
    target_system = "app-db"
    order = "0001"
    transactional = False  # DDL: MySQL would commit a transaction with it (PostgreSQL could keep it transactional)
    idempotency = "CREATE TABLE IF NOT EXISTS: running it again changes nothing"

    async def execute(self, ctx: SQLContext) -> None:
        await ctx.connection.run_sync(Base.metadata.create_all)  # autocommit: each statement commits on its own


class SeedAdmin(Change):
    id = "seed-admin"
    author = "alice"
    target_system = "app-db"
    order = "0002"

    async def execute(self, ctx: SQLContext) -> None:
        async with ctx.session() as session:  # in the engine's transaction, with the APPLIED entry
            session.add(User(email="admin@example.com"))
            await session.commit()  # ends the session's savepoint; the engine commits the change with its entry
            # --8<-- [end:changes]


async def main() -> None:
    # --8<-- [start:setup]
    engine = create_async_engine(DATABASE_URL)  # the application's engine, shared with the library
    db = SQLTargetSystem("app-db", engine=engine, marker_table=f"{PREFIX}flamingock_marker")
    store = SQLAuditStore.from_target(
        db, audit_table=f"{PREFIX}flamingock_audit_log", lock_table=f"{PREFIX}flamingock_lock"
    )
    # --8<-- [end:setup]
    try:
        report = await Flamingock(audit_store=store, target_systems=[db], changes=[CreateUsers, SeedAdmin]).run()
        print(report.status.value, report.applied)
        async with engine.connect() as connection:
            print("users:", (await connection.execute(select(User.email))).scalars().all())
            audit = await connection.execute(
                text(f"SELECT change_id, state, tx_strategy FROM {PREFIX}flamingock_audit_log ORDER BY id")
            )
            for change_id, state, strategy in audit:
                print("audit:", change_id, state, strategy)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
