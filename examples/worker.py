"""An async worker that applies its changes before it consumes a single message.

    python examples/worker.py [DATABASE]     # default: $APP_DB, else ./app.db

Messages arrive from the start (a producer task stands for a broker subscription), but the worker takes none off
the queue until the changes in `orders_changes/` are applied: storing an order needs the table and the column
they create.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiosqlite

from aioflamingock import Flamingock
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so that `orders_changes` imports from anywhere

ORDERS = ["book", "lamp", "desk"]


def build_flamingock(database: Path) -> Flamingock:
    app_db = SQLiteTargetSystem("app-db", path=database)
    return Flamingock(
        audit_store=SQLiteAuditStore.from_target(app_db),  # the audit log and the lock live in the app database
        target_systems=[app_db],
        changes=["orders_changes"],
    )


async def produce(queue: asyncio.Queue[str | None]) -> None:
    """Stands for a broker subscription: messages arrive whether or not the worker is ready for them."""
    for item in ORDERS:
        await queue.put(item)
        print(f"queued   {item}")
    await queue.put(None)  # the end of this example's stream; a real worker runs until it is stopped


# --8<-- [start:consume]
async def consume(queue: asyncio.Queue[str | None], database: Path) -> None:
    async with aiosqlite.connect(database) as db:
        while (item := await queue.get()) is not None:
            await db.execute("INSERT INTO orders (item, status) VALUES (?, 'received')", (item,))
            await db.commit()
            print(f"consumed {item}")


async def main(database: Path) -> None:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    producer = asyncio.create_task(produce(queue))
    report = await build_flamingock(database).run()  # raises if a change fails: nothing is consumed
    print(f"applied  {', '.join(report.applied) or 'nothing: every change was already applied'}")
    await consume(queue, database)
    await producer
    # --8<-- [end:consume]


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1] if len(sys.argv) > 1 else os.environ.get("APP_DB", "app.db"))))
