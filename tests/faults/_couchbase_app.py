"""`_app.py`'s twin on Couchbase: one Flamingock run, in its own OS process, for the Couchbase fault-injection tests.

```
python tests/faults/_couchbase_app.py --connection URL --username U --password P --bucket B --suffix S
       --sqlite APP.db --effects EFFECTS.txt --signals DIR [--transactions]
       [--copies N] [--hang CHANGE_ID] [--nontx-recovery manual|retry] [--delay S] [--lease S]
```

The changes, the effect lines, the readiness files and the exit codes are `_harness.py`'s. The audit store is in
the collections `_default.audit<S>` and `_default.lock<S>` of bucket B. With `--transactions` (a real Couchbase
Server) `shared-i` takes the shared-transaction path on the store's bucket and `marker-i` the marker path on a
second cluster connection, writing rows into `_default.rows<S>`. Without (the key-value test double has no
transactions) there is no `shared-i`, and `marker-i` takes the marker path on the SQLite file APP.db (`app_rows`),
so that the Couchbase store's STARTED and APPLIED entries are still what recovery reads.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

from _harness import (
    EVENTS,
    ROWS_PER_CHANGE,
    Probe,
    add_common_arguments,
    changes,
    lock_options,
    nontx_recovery,
    run_main,
)

from aioflamingock import Flamingock, NonTransactionalTargetSystem, RunReport, TargetSystem
from aioflamingock.couchbase import CouchbaseAuditStore, CouchbaseContext, CouchbaseTargetSystem
from aioflamingock.sqlite import SQLiteContext, SQLiteTargetSystem

STORE_DB = "store-db"
APP_DB = "app-db"


def collections(suffix: str) -> dict[str, str]:
    return {"audit_collection": f"audit{suffix}", "lock_collection": f"lock{suffix}", "rows": f"rows{suffix}"}


def _writer(rows: str) -> Any:
    async def write_rows(ctx: Any, change_id: str, execution_id: str) -> None:
        if isinstance(ctx, SQLiteContext):
            await ctx.connection.execute(
                "CREATE TABLE IF NOT EXISTS app_rows (change_id TEXT, execution_id TEXT, n INTEGER)"
            )
            await ctx.connection.executemany(
                "INSERT INTO app_rows (change_id, execution_id, n) VALUES (?, ?, ?)",
                [(change_id, execution_id, n) for n in range(ROWS_PER_CHANGE)],
            )
            return
        assert isinstance(ctx, CouchbaseContext) and ctx.transaction is not None
        for n in range(ROWS_PER_CHANGE):
            document = {"changeId": change_id, "executionId": execution_id, "n": n}
            await ctx.transaction.insert(ctx.collection(rows), f"{change_id}#{execution_id}#{n}", document)

    return write_rows


async def _connect(args: argparse.Namespace) -> Any:
    from acouchbase.cluster import Cluster
    from couchbase.auth import PasswordAuthenticator
    from couchbase.options import ClusterOptions, ClusterTimeoutOptions

    timeouts = ClusterTimeoutOptions(kv_timeout=timedelta(seconds=2), connect_timeout=timedelta(seconds=5))
    options = ClusterOptions(PasswordAuthenticator(args.username, args.password), timeout_options=timeouts)
    return await Cluster.connect(args.connection, options)


def build(args: argparse.Namespace, store_cluster: Any, app_cluster: Any) -> Flamingock:
    probe = Probe(args)
    names = collections(args.suffix)
    store_db = CouchbaseTargetSystem(STORE_DB, cluster=store_cluster, bucket=args.bucket)
    app_db: TargetSystem
    if args.transactions:
        app_db = CouchbaseTargetSystem(APP_DB, cluster=app_cluster, bucket=args.bucket)
    else:
        app_db = SQLiteTargetSystem(APP_DB, path=args.sqlite)
    declared = [
        cls
        for i in range(1, args.copies + 1)
        for cls in changes(
            probe,
            i,
            store_target=STORE_DB,
            app_target=APP_DB,
            write_rows=_writer(names["rows"]),
            nontx_recovery=nontx_recovery(args),
        )
        if args.transactions or not cls.id.startswith("shared-")
    ]
    store = CouchbaseAuditStore.from_target(
        store_db, audit_collection=names["audit_collection"], lock_collection=names["lock_collection"]
    )
    return Flamingock(
        audit_store=store,
        target_systems=[store_db, app_db, NonTransactionalTargetSystem(EVENTS)],
        changes=declared,
        lock=lock_options(args),
        listeners=[probe.listener],
    )


async def _run(args: argparse.Namespace) -> RunReport:
    async with AsyncExitStack() as stack:
        store_cluster = await _connect(args)
        stack.push_async_callback(store_cluster.close)
        app_cluster = store_cluster
        if args.transactions:
            app_cluster = await _connect(args)  # another cluster object: the marker path, not the shared one
            stack.push_async_callback(app_cluster.close)
        return await build(args, store_cluster, app_cluster).run()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="_couchbase_app.py")
    for name in ("--connection", "--username", "--password", "--bucket", "--suffix", "--sqlite"):
        parser.add_argument(name, required=True)
    parser.add_argument("--transactions", action="store_true")
    add_common_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    return run_main(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
