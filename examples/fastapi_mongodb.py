"""A FastAPI service on MongoDB that applies its changes at start-up, before it serves anything.

    pip install "aioflamingock[mongodb]" fastapi uvicorn
    MONGODB_URI="mongodb://localhost:27017/?replicaSet=rs0" uvicorn fastapi_mongodb:app --app-dir examples

Start as many instances as you like at once: one takes the lock and applies the changes in
`fastapi_mongodb_changes/`, the others wait for the lock, then find nothing left to apply.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from pymongo import AsyncMongoClient

from aioflamingock import Flamingock
from aioflamingock.mongodb import MongoDBAuditStore, MongoDBTargetSystem

sys.path.insert(0, str(Path(__file__).resolve().parent))  # so that `fastapi_mongodb_changes` imports from anywhere

MONGODB_URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017/?replicaSet=rs0")
MONGODB_DATABASE = os.environ.get("MONGODB_DATABASE", "app")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncMongoClient(MONGODB_URI) as client:  # the application's client: the library never closes it
        app_db = MongoDBTargetSystem("app-db", client=client, database=MONGODB_DATABASE)
        flamingock = Flamingock(
            audit_store=MongoDBAuditStore.from_target(app_db),  # audit log and lock in the app's database
            target_systems=[app_db],
            changes=["fastapi_mongodb_changes"],
        )
        await flamingock.run()  # raises if a change fails: the service does not start half-migrated
        app.state.db = client[MONGODB_DATABASE]
        yield


app = FastAPI(lifespan=lifespan)


@app.get("/users")
async def list_users(request: Request) -> list[dict[str, Any]]:
    return await request.app.state.db.users.find({}, {"_id": 0}).sort("email").to_list()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "8000")))
