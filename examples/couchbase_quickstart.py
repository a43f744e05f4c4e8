"""Quickstart on Couchbase: two changes to a bucket's documents, audited and locked in the same bucket.

    pip install "aioflamingock[couchbase]"
    COUCHBASE_URL=couchbase://localhost COUCHBASE_USERNAME=Administrator COUCHBASE_PASSWORD=password \\
        COUCHBASE_BUCKET=app python examples/couchbase_quickstart.py

The audit log and the lock are documents in the collections `_default.flamingockAuditLog` and
`_default.flamingockLock` of the bucket, created on the first run, read and written with key-value operations only.
Run it twice: the second run finds nothing pending, takes no lock and writes nothing.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

from acouchbase.cluster import Cluster
from couchbase.auth import PasswordAuthenticator
from couchbase.exceptions import DocumentNotFoundException
from couchbase.options import ClusterOptions, ClusterTimeoutOptions

from aioflamingock import Change, Flamingock, Recovery
from aioflamingock.couchbase import CouchbaseAuditStore, CouchbaseContext, CouchbaseTargetSystem

PLANS = {"free": {"name": "Free", "price": 0}, "pro": {"name": "Pro", "price": 12}}


# --8<-- [start:changes]
class AddPlans(Change):
    id = "add-plans"
    order = "0001"
    author = "alice"
    target_system = "app-bucket"
    transactional = False  # key-value writes, each atomic on its own
    recovery = Recovery.ALWAYS_RETRY
    idempotency = "upserts: writing the same plans twice leaves the same documents"

    async def execute(self, ctx: CouchbaseContext) -> None:
        plans = ctx.collection("_default")
        for key, plan in PLANS.items():
            await plans.upsert(f"plan::{key}", plan)


class RenamePriceField(Change):
    id = "rename-price-field"
    order = "0002"
    author = "bob"
    target_system = "app-bucket"
    transactional = False

    async def execute(self, ctx: CouchbaseContext) -> None:
        await _rename(ctx, "price", "monthlyPrice")

    async def rollback(self, ctx: CouchbaseContext) -> None:
        await _rename(ctx, "monthlyPrice", "price")


async def _rename(ctx: CouchbaseContext, old: str, new: str) -> None:
    plans = ctx.collection("_default")
    for key in PLANS:
        found = await plans.get(f"plan::{key}")
        plan: dict[str, Any] = found.content_as[dict]
        if old in plan:
            plan[new] = plan.pop(old)
            await plans.replace(f"plan::{key}", plan, cas=found.cas)  # fails if someone changed it meanwhile


# --8<-- [end:changes]


async def show(ctx_bucket: Any) -> None:
    plans = ctx_bucket.default_collection()
    for key in PLANS:
        try:
            print(f"plan::{key} = {(await plans.get(f'plan::{key}')).content_as[dict]}")
        except DocumentNotFoundException:
            print(f"plan::{key} is missing")


async def main() -> None:
    # --8<-- [start:setup]
    auth = PasswordAuthenticator(os.environ["COUCHBASE_USERNAME"], os.environ["COUCHBASE_PASSWORD"])
    timeouts = ClusterTimeoutOptions(kv_timeout=timedelta(seconds=5))
    cluster = await Cluster.connect(os.environ["COUCHBASE_URL"], ClusterOptions(auth, timeout_options=timeouts))
    try:
        bucket = CouchbaseTargetSystem("app-bucket", cluster=cluster, bucket=os.environ["COUCHBASE_BUCKET"])
        fl = Flamingock(
            audit_store=CouchbaseAuditStore.from_target(bucket),
            target_systems=[bucket],
            changes=[AddPlans, RenamePriceField],
        )
        report = await fl.run()
        # --8<-- [end:setup]
        print(f"applied: {', '.join(report.applied) or 'nothing, every change was already applied'}")
        await show(cluster.bucket(os.environ["COUCHBASE_BUCKET"]))
    finally:
        await cluster.close()


if __name__ == "__main__":
    asyncio.run(main())
