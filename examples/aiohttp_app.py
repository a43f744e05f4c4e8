"""An aiohttp service on SQLite that applies its changes at start-up, through `aioflamingock.aiohttp.cleanup_ctx`.

    pip install "aioflamingock[aiohttp]"
    python examples/aiohttp_app.py                 # serves once the changes are applied
    python examples/aiohttp_app.py --background    # serves at once; /ready is 503 until then

The database is $APP_DB (default: ./app.db), the port $PORT (default: 8080); the changes are in `orders_changes/`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
from aiohttp import web

from aioflamingock import Flamingock
from aioflamingock.aiohttp import cleanup_ctx
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so that `orders_changes` imports from anywhere

DB = web.AppKey("db", aiosqlite.Connection)


def build_flamingock(database: Path) -> Flamingock:
    app_db = SQLiteTargetSystem("app-db", path=database)
    return Flamingock(
        audit_store=SQLiteAuditStore.from_target(app_db),  # the audit log and the lock live in the app database
        target_systems=[app_db],
        changes=["orders_changes"],
    )


async def list_orders(request: web.Request) -> web.Response:
    async with request.app[DB].execute("SELECT id, item, status FROM orders ORDER BY id") as cursor:
        orders = [{"id": order_id, "item": item, "status": status} async for order_id, item, status in cursor]
    return web.json_response(orders)


# --8<-- [start:app]
def create_app(fl: Flamingock, database: Path, *, background: bool = False) -> web.Application:
    async def open_database(app: web.Application) -> AsyncIterator[None]:
        async with aiosqlite.connect(database) as db:
            app[DB] = db
            yield

    migrations = cleanup_ctx(fl, background=background)
    app = web.Application()
    app.cleanup_ctx.append(migrations)  # first: the contexts after it start once the changes are applied
    app.cleanup_ctx.append(open_database)
    app.router.add_get("/ready", migrations.readiness)  # 200 once the changes are applied, 503 until then
    app.router.add_get("/orders", list_orders)
    return app
    # --8<-- [end:app]


if __name__ == "__main__":
    database = Path(os.environ.get("APP_DB", "app.db"))
    app = create_app(build_flamingock(database), database, background="--background" in sys.argv[1:])
    web.run_app(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8080")))
