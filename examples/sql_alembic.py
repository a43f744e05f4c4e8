"""Alembic under the lock: instances of a service starting together each run this, and the alembic upgrade runs
once across them, recorded in the audit (alembic alone has no lock: several `alembic upgrade head` race).

    pip install "aioflamingock[postgresql,alembic]"
    DATABASE_URL="postgresql+asyncpg://app:secret@localhost/app" python examples/sql_alembic.py
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from aioflamingock import Flamingock
from aioflamingock.sql import AlembicUpgrade, SQLAuditStore, SQLTargetSystem

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+asyncpg://app:secret@localhost/app")
PREFIX = os.environ.get("TABLE_PREFIX", "")  # the tests give each run tables of its own


# --8<-- [start:change]
class UpgradeToSeededItems(AlembicUpgrade):
    id = "alembic-0002"
    order = "0001"
    author = "platform"
    target_system = "app-db"
    config = Path(__file__).with_name("alembic_project") / "alembic.ini"
    revision = "0002"  # the next release that adds revisions declares another change, with its own target
    attributes = {"prefix": PREFIX, "version_table": f"{PREFIX}alembic_version"}
    # --8<-- [end:change]


async def main() -> None:
    engine = create_async_engine(DATABASE_URL)
    db = SQLTargetSystem("app-db", engine=engine, marker_table=f"{PREFIX}flamingock_marker")
    store = SQLAuditStore.from_target(
        db, audit_table=f"{PREFIX}flamingock_audit_log", lock_table=f"{PREFIX}flamingock_lock"
    )
    try:
        report = await Flamingock(audit_store=store, target_systems=[db], changes=[UpgradeToSeededItems]).run()
        print(report.status.value, report.applied)
        async with engine.connect() as connection:
            version = await connection.execute(text(f"SELECT version_num FROM {PREFIX}alembic_version"))
            items = await connection.execute(text(f"SELECT name FROM {PREFIX}items ORDER BY id"))
            print("alembic:", version.scalar_one(), "items:", items.scalars().all())
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
