"""`_app.py`'s twin on DynamoDB: one Flamingock run, in its own OS process, for the DynamoDB fault-injection tests.

```
python tests/faults/_dynamo_app.py --endpoint URL --prefix P --effects EFFECTS.txt --signals DIR
       [--copies N] [--hang CHANGE_ID] [--park-after-commit] [--nontx-recovery manual|retry] [--delay S]
       [--lease S] [--retry-seconds S] [--timeout-seconds S]
```

The changes, the effect lines, the readiness files and the exit codes are `_harness.py`'s. The audit store's target
(shared path) and the marker path's target each have a client of their own, so the second one takes the marker
path; rows are items of the table `P rows`, with the id `<change id>#<execution id>#<n>`.

`--park-after-commit` makes the marker path's client, once DynamoDB has answered the commit of a change's
transaction, create `DIR/<change id>.ready` and wait for `DIR/<change id>.go` (a botocore `after-call` handler):
the tests kill the process between the commit and its APPLIED entry. `--timeout-seconds` bounds each attempt of a
request (connect and read); `--retry-seconds` how long the backend keeps sending one again.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import AsyncExitStack
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
from aioflamingock.dynamodb import DynamoDBAuditStore, DynamoDBContext, DynamoDBTargetSystem

STORE_DB = "store-db"
APP_DB = "app-db"
REGION = "us-east-1"


def tables(prefix: str) -> dict[str, str]:
    """Every table name an app uses, from the prefix of the test's harness."""
    return {
        "audit_table": f"{prefix}audit",
        "lock_table": f"{prefix}lock",
        "marker_table": f"{prefix}marker",
        "rows": f"{prefix}rows",
    }


def _writer(rows_table: str) -> Any:
    async def write_rows(ctx: DynamoDBContext, change_id: str, execution_id: str) -> None:
        for n in range(ROWS_PER_CHANGE):
            item = {
                "id": {"S": f"{change_id}#{execution_id}#{n}"},
                "changeId": {"S": change_id},
                "executionId": {"S": execution_id},
                "n": {"N": str(n)},
            }
            ctx.transaction.put(TableName=rows_table, Item=item)

    return write_rows


def _park_after_commits(client: Any, probe: Probe) -> None:
    """Once DynamoDB answered a change's commit on this client, park as `--hang` parks inside a change."""

    async def parked(params: dict[str, Any], **kwargs: Any) -> None:
        for action in params.get("TransactItems", []):
            put = action.get("Put", {})
            if "commitId" in put.get("Item", {}):  # the marker: this is a change's transaction
                probe.hang = put["Item"]["changeId"]["S"]
                await probe.after_work(probe.hang)

    captured: dict[int, dict[str, Any]] = {}

    def remember(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
        captured[id(context)] = params

    async def after(context: dict[str, Any], **kwargs: Any) -> None:
        await parked(captured.pop(id(context), {}))

    client.meta.events.register("provide-client-params.dynamodb.TransactWriteItems", remember)
    client.meta.events.register("after-call.dynamodb.TransactWriteItems", after)


def build(args: argparse.Namespace, store_client: Any, app_client: Any) -> Flamingock:
    probe = Probe(args)
    names = tables(args.prefix)
    options = {"marker_table": names["marker_table"], "retry_seconds": args.retry_seconds}
    store_db = DynamoDBTargetSystem(STORE_DB, client=store_client, **options)
    app_db = DynamoDBTargetSystem(APP_DB, client=app_client, **options)
    if args.park_after_commit:
        _park_after_commits(app_client, probe)
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
    ]
    store = DynamoDBAuditStore.from_target(store_db, audit_table=names["audit_table"], lock_table=names["lock_table"])
    return Flamingock(
        audit_store=store,
        target_systems=[store_db, app_db, NonTransactionalTargetSystem(EVENTS)],
        changes=declared,
        lock=lock_options(args),
        listeners=[probe.listener],
    )


async def _run(args: argparse.Namespace) -> RunReport:
    import aioboto3
    from aiobotocore.config import AioConfig

    config = AioConfig(
        retries={"mode": "standard", "max_attempts": 1},
        connect_timeout=args.timeout_seconds,
        read_timeout=args.timeout_seconds,
    )
    options = {
        "endpoint_url": args.endpoint,
        "region_name": REGION,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
        "config": config,
    }
    session = aioboto3.Session()
    async with AsyncExitStack() as stack:
        store_client = await stack.enter_async_context(session.client("dynamodb", **options))
        app_client = await stack.enter_async_context(session.client("dynamodb", **options))
        return await build(args, store_client, app_client).run()


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="_dynamo_app.py")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--prefix", required=True)
    add_common_arguments(parser)
    parser.add_argument("--park-after-commit", action="store_true")
    parser.add_argument("--retry-seconds", type=float, default=10.0)
    parser.add_argument("--timeout-seconds", type=float, default=10.0)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    return run_main(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
