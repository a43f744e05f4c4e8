"""A FastAPI service on PostgreSQL (SQLAlchemy's asyncio engine) that applies its changes at start-up, before it
serves anything.

    pip install "aioflamingock[postgresql]" fastapi uvicorn
    DATABASE_URL="postgresql+asyncpg://app:secret@localhost/app" uvicorn fastapi_postgresql:app --app-dir examples

Start as many instances as you like at once: one takes the lock and applies the changes in
`fastapi_postgresql_changes/`, the others wait for the lock, then find nothing left to apply.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from aioflamingock import Flamingock
from aioflamingock.sql import SQLAuditStore, SQLTargetSystem

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so that `fastapi_postgresql_changes` imports from anywhere

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql+asyncpg://app:secret@localhost/app")


# --8<-- [start:lifespan]
@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_async_engine(DATABASE_URL)  # the application's engine: the library never disposes of it
    try:
        app_db = SQLTargetSystem("app-db", engine=engine)
        flamingock = Flamingock(
            audit_store=SQLAuditStore.from_target(app_db),  # audit log and lock in the app's database
            target_systems=[app_db],
            changes=["fastapi_postgresql_changes"],
        )
        await flamingock.run()  # raises if a change fails: the service does not start half-migrated
        app.state.engine = engine
        yield
    finally:
        await engine.dispose()
        # --8<-- [end:lifespan]


app = FastAPI(lifespan=lifespan)


@app.get("/users")
async def list_users(request: Request) -> list[dict[str, Any]]:
    async with request.app.state.engine.connect() as connection:
        rows = await connection.execute(text("SELECT email, name, roles FROM users ORDER BY email"))
        return [dict(row._mapping) for row in rows]


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
