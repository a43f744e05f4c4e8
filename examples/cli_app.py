"""A small shop's application module, for the command line:

    aioflamingock --app cli_app:build_flamingock plan

`build_flamingock` is what `--app` names: a function taking no arguments that returns the engine (it could be
`async def`, or the `Flamingock` object itself). The database is $SHOP_DB (default: ./shop.db); the order-search
settings file sits next to it. The changes are in `cli_app_changes/`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from aioflamingock import Flamingock, NonTransactionalTargetSystem
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so that `cli_app_changes` imports from anywhere


def build_flamingock() -> Flamingock:
    database = Path(os.environ.get("SHOP_DB", "shop.db"))
    shop_db = SQLiteTargetSystem("shop-db", path=database)
    settings_file = database.with_suffix(".search.json")  # stands for a search service's index settings
    search = NonTransactionalTargetSystem("search", dependencies={"settings_file": settings_file})
    return Flamingock(
        audit_store=SQLiteAuditStore.from_target(shop_db),  # the audit log and the lock live in the shop database
        target_systems=[shop_db, search],
        changes=["cli_app_changes"],
    )
