"""A FastAPI service on SQLite that applies its changes at start-up, through `aioflamingock.fastapi.lifespan`.

    pip install "aioflamingock[fastapi]" uvicorn
    uvicorn fastapi_sqlite:app --app-dir examples                            # serves once the changes are applied
    MIGRATE_IN_BACKGROUND=1 uvicorn fastapi_sqlite:app --app-dir examples    # serves at once; /ready is 503 until then

The database is $APP_DB (default: ./app.db); the changes are in `orders_changes/`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from fastapi import FastAPI, Request

from aioflamingock import Flamingock
from aioflamingock.fastapi import lifespan
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so that `orders_changes` imports from anywhere

DATABASE = Path(os.environ.get("APP_DB", "app.db"))
BACKGROUND = os.environ.get("MIGRATE_IN_BACKGROUND", "") == "1"


def build_flamingock(database: Path) -> Flamingock:
    app_db = SQLiteTargetSystem("app-db", path=database)
    return Flamingock(
        audit_store=SQLiteAuditStore.from_target(app_db),  # the audit log and the lock live in the app database
        target_systems=[app_db],
        changes=["orders_changes"],
    )


# --8<-- [start:own-lifespan]
@asynccontextmanager
async def open_database(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
    """The application's own lifespan: it starts once the changes are applied."""
    async with aiosqlite.connect(DATABASE) as db:
        yield {"db": db}  # lifespan state: `request.state.db` in the handlers
    # --8<-- [end:own-lifespan]


# --8<-- [start:app]
migrations = lifespan(build_flamingock(DATABASE), background=BACKGROUND, lifespan=open_database)
app = FastAPI(lifespan=migrations)
app.add_api_route("/ready", migrations.readiness)  # 200 once the changes are applied, 503 until then


@app.get("/orders")
async def list_orders(request: Request) -> list[dict[str, Any]]:
    async with request.state.db.execute("SELECT id, item, status FROM orders ORDER BY id") as cursor:
        return [{"id": order_id, "item": item, "status": status} async for order_id, item, status in cursor]
    # --8<-- [end:app]


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
