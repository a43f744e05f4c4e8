"""A listener that turns events into metrics, and metadata recorded in every audit entry of a run.

    python examples/listeners.py [DATA_DIR]     # default: a new temporary directory

It applies `myapp`'s changes (next to this file) to a SQLite database and a stand-in search service.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from myapp.search import SearchClient

from aioflamingock import Event, EventKind, Flamingock, NonTransactionalTargetSystem
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem


class Metrics:
    """A stand-in for a metrics client (Prometheus, StatsD...)."""

    def __init__(self) -> None:
        self.observed: dict[str, float] = {}

    def observe(self, change_id: str, seconds: float) -> None:
        self.observed[change_id] = seconds


metrics = Metrics()


# --8<-- [start:listener]
async def on_event(event: Event) -> None:
    if event.kind is EventKind.CHANGE_FINISHED and event.result is not None:
        metrics.observe(event.change_id or "", event.result.duration_seconds)
    # --8<-- [end:listener]


async def log_event(event: Event) -> None:
    print(event.kind.value, event.change_id or "", event.result.outcome.value if event.result else "")


async def main(data_dir: Path) -> None:
    app_db = SQLiteTargetSystem("app-db", path=data_dir / "app.db")
    client = SearchClient(data_dir / "search.json")
    search = NonTransactionalTargetSystem("search", dependencies={"client": client, "index": "users"})
    # --8<-- [start:register]
    fl = Flamingock(
        audit_store=SQLiteAuditStore.from_target(app_db),
        target_systems=[app_db, search],
        changes=["myapp.changes"],
        metadata={"deployment": "2026.05.1"},  # added to the metadata of every entry this engine writes
        listeners=[on_event, log_event],
    )
    # --8<-- [end:register]
    await fl.run()
    print("observed:", sorted(metrics.observed))
    print("metadata:", {entry.change_id: entry.metadata async for entry in fl.history()})


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))
