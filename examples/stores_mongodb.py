"""The MongoDB store: the audit log and the lock in two collections of the application's database, and a change
that commits in one transaction with its audit entry.

    pip install "aioflamingock[mongodb]"
    MONGODB_URI="mongodb://localhost:27017/?replicaSet=rs0" MONGODB_DATABASE=app python examples/stores_mongodb.py

The server must be a replica set (or a sharded cluster): transactions need one.
"""

from __future__ import annotations

import asyncio
import os

from pymongo import AsyncMongoClient

from aioflamingock import Change, Flamingock
from aioflamingock.mongodb import MongoDBAuditStore, MongoDBContext, MongoDBTargetSystem, session_guard

MONGODB_URI = os.environ.get("MONGODB_URI", "mongodb://localhost:27017/?replicaSet=rs0")
MONGODB_DATABASE = os.environ.get("MONGODB_DATABASE", "app")


class SeedAdminUser(Change):
    id = "seed-admin-user"
    author = "alice"
    target_system = "users-db"
    order = "0001"

    async def execute(self, ctx: MongoDBContext) -> None:
        admin = {"email": "admin@example.com", "name": "Administrator"}
        await ctx.db.users.insert_one(admin, session=ctx.session)  # in the transaction of the APPLIED entry


async def main() -> None:
    # --8<-- [start:setup]
    # session_guard() lets the engine see a write a transactional change makes without `session=ctx.session`
    client = AsyncMongoClient(MONGODB_URI, event_listeners=[session_guard()])  # "mongodb://db-1,db-2/?replicaSet=rs0"
    db = MongoDBTargetSystem("users-db", client=client, database=MONGODB_DATABASE)
    store = MongoDBAuditStore.from_target(db)  # audit_collection="flamingockAuditLog", lock_collection="flamingockLock"
    # --8<-- [end:setup]
    async with client:  # the client is the application's: the library never closes it
        report = await Flamingock(audit_store=store, target_systems=[db], changes=[SeedAdminUser]).run()
        print(report.status.value, report.applied)
        database = client[MONGODB_DATABASE]
        print("collections:", ", ".join(sorted(await database.list_collection_names())))
        async for entry in database.flamingockAuditLog.find({}, sort=[("seq", 1)]):
            print("audit:", entry["changeId"], entry["state"], entry["txStrategy"])


if __name__ == "__main__":
    asyncio.run(main())
