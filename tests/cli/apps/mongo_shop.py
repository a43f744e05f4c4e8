"""The shop of `examples/cli_app.py` on MongoDB, for the command-line tests: `--app mongo_shop:build_flamingock`.

An `async def` factory (the client must be created inside the command's event loop), configured by the environment:
MONGODB_URI, MONGODB_DATABASE, and SEARCH_SETTINGS (the file the non-transactional change writes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from aioflamingock import Flamingock, NonTransactionalTargetSystem
from aioflamingock.mongodb import MongoDBAuditStore, MongoDBTargetSystem


async def build_flamingock() -> Flamingock:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        os.environ["MONGODB_URI"], serverSelectionTimeoutMS=5000
    )
    shop_db = MongoDBTargetSystem("shop-db", client=client, database=os.environ["MONGODB_DATABASE"])
    search = NonTransactionalTargetSystem("search", dependencies={"settings_file": Path(os.environ["SEARCH_SETTINGS"])})
    return Flamingock(
        audit_store=MongoDBAuditStore.from_target(shop_db),
        target_systems=[shop_db, search],
        changes=["mongo_shop_changes"],
    )
