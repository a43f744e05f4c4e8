"""How myapp builds its engine: one function, called at start-up, by operations scripts and by tests."""

from __future__ import annotations

from pathlib import Path

from aioflamingock import Flamingock, LockOptions, NonTransactionalTargetSystem
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem

from .search import SearchClient


# --8<-- [start:build]
def build_flamingock(data_dir: Path, *, search_client: SearchClient | None = None) -> Flamingock:
    app_db = SQLiteTargetSystem("app-db", path=data_dir / "app.db")
    # --8<-- [start:search]
    client = search_client or SearchClient(data_dir / "search.json")
    search = NonTransactionalTargetSystem("search", dependencies={"client": client, "index": "users"})
    # --8<-- [end:search]
    return Flamingock(
        audit_store=SQLiteAuditStore.from_target(app_db),  # the audit log and the lock live in the app database
        target_systems=[app_db, search],
        changes=["myapp.changes"],
        lock=LockOptions(lease_seconds=60, acquire_timeout_seconds=180, retry_interval_seconds=1),  # the defaults
        service="default",
    )
    # --8<-- [end:build]
