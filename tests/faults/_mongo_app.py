"""`_app.py`'s twin on MongoDB: one Flamingock run, in its own OS process, for the MongoDB fault-injection tests.

```
python tests/faults/_mongo_app.py --uri URI --store-db A --target-db B --effects EFFECTS.txt --signals DIR
       [--copies N] [--hang CHANGE_ID] [--nontx-recovery manual|retry] [--delay S] [--lease S]
       [--server-selection-ms MS] [--app-name NAME]
```

The changes, the effect lines, the readiness files and the exit codes are `_harness.py`'s. Here the audit store's
database is A (shared path), the marker path's is B on the same client; rows are documents of `app_rows`.
`--server-selection-ms` bounds how long the client looks for a server before an operation fails (small in the
tests that stop the server); `--app-name` names the client to the server, so a test can aim a fail point at this
one process.
"""

from __future__ import annotations

import argparse
import sys
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

from aioflamingock import Flamingock, NonTransactionalTargetSystem, RunReport
from aioflamingock.mongodb import MongoDBAuditStore, MongoDBContext, MongoDBTargetSystem

STORE_DB = "store-db"
APP_DB = "app-db"
ROWS = "app_rows"


async def _write_rows(ctx: MongoDBContext, change_id: str, execution_id: str) -> None:
    assert ctx.session is not None, "a transactional change gets a session"
    await ctx.db[ROWS].insert_many(
        [{"changeId": change_id, "executionId": execution_id, "n": n} for n in range(ROWS_PER_CHANGE)],
        session=ctx.session,
    )


def build(args: argparse.Namespace, client: Any) -> Flamingock:
    probe = Probe(args)
    store_db = MongoDBTargetSystem(STORE_DB, client=client, database=args.store_db)
    app_db = MongoDBTargetSystem(APP_DB, client=client, database=args.target_db)
    declared = [
        cls
        for i in range(1, args.copies + 1)
        for cls in changes(
            probe,
            i,
            store_target=STORE_DB,
            app_target=APP_DB,
            write_rows=_write_rows,
            nontx_recovery=nontx_recovery(args),
        )
    ]
    return Flamingock(
        audit_store=MongoDBAuditStore.from_target(store_db),
        target_systems=[store_db, app_db, NonTransactionalTargetSystem(EVENTS)],
        changes=declared,
        lock=lock_options(args),
        listeners=[probe.listener],
    )


async def _run(args: argparse.Namespace) -> RunReport:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        args.uri,
        appname=args.app_name,
        serverSelectionTimeoutMS=args.server_selection_ms,
        connectTimeoutMS=args.server_selection_ms,
    )
    try:
        return await build(args, client).run()
    finally:
        await client.close()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="_mongo_app.py")
    parser.add_argument("--uri", required=True)
    parser.add_argument("--store-db", required=True)
    parser.add_argument("--target-db", required=True)
    add_common_arguments(parser)
    parser.add_argument("--server-selection-ms", type=int, default=10_000)
    parser.add_argument("--app-name", default="aioflamingock-faults")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    return run_main(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
