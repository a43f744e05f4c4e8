"""An async worker on DynamoDB that applies its changes before it consumes a single message.

    pip install "aioflamingock[dynamodb]"
    AWS_REGION=eu-west-1 python examples/worker_dynamodb.py                  # AWS, the environment's credentials
    DYNAMODB_ENDPOINT=http://localhost:8000 python examples/worker_dynamodb.py  # DynamoDB Local, any credentials

The first change creates the `orders` table (creating a table is no transactional write); the second seeds it in
one `TransactWriteItems` call with its audit entry and the lock check. Messages arrive from the start (a producer
task stands for a queue subscription), but the worker takes none until both changes are applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

import aioboto3

from aioflamingock import Change, Flamingock, Recovery
from aioflamingock.dynamodb import DynamoDBAuditStore, DynamoDBContext, DynamoDBTargetSystem

DYNAMODB_ENDPOINT = os.environ.get("DYNAMODB_ENDPOINT")  # None: AWS itself
ORDERS = "orders"
MESSAGES = ["book", "lamp", "desk"]


# --8<-- [start:nontx]
class CreateOrdersTable(Change):
    id = "create-orders-table"
    order = "0001"
    author = "alice"
    target_system = "orders-db"
    transactional = False  # a table is created outside any transaction: the change gets ctx.client only
    recovery = Recovery.ALWAYS_RETRY
    idempotency = "an existing table is left as it is"

    async def execute(self, ctx: DynamoDBContext) -> None:
        # An earlier run may have created it and died before recording so: an existing table is fine.
        with contextlib.suppress(ctx.client.exceptions.ResourceInUseException):
            await ctx.client.create_table(
                TableName=ORDERS,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        await ctx.client.get_waiter("table_exists").wait(TableName=ORDERS, WaiterConfig={"Delay": 1})


# --8<-- [end:nontx]


# --8<-- [start:change]
class SeedOrderStatuses(Change):
    id = "seed-order-statuses"
    order = "0002"
    author = "alice"
    target_system = "orders-db"  # the audit store's target: one TransactWriteItems with the APPLIED entry

    async def execute(self, ctx: DynamoDBContext) -> None:
        for status in ("received", "shipped"):
            ctx.transaction.put(  # nothing is sent before execute returns
                TableName=ORDERS,
                Item={"id": {"S": f"status#{status}"}, "label": {"S": status.title()}},
                ConditionExpression="attribute_not_exists(id)",  # if it fails, nothing of the change is written
            )


# --8<-- [end:change]


async def produce(queue: asyncio.Queue[str | None]) -> None:
    """Stands for a queue subscription: messages arrive whether or not the worker is ready for them."""
    for item in MESSAGES:
        await queue.put(item)
        print(f"queued   {item}")
    await queue.put(None)  # the end of this example's stream; a real worker runs until it is stopped


async def consume(queue: asyncio.Queue[str | None], client: Any) -> None:
    while (item := await queue.get()) is not None:
        order = {"id": {"S": f"order#{item}"}, "status": {"S": "received"}}
        await client.put_item(TableName=ORDERS, Item=order)
        print(f"consumed {item}")


async def main() -> None:
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    producer = asyncio.create_task(produce(queue))
    # --8<-- [start:setup]
    session = aioboto3.Session()
    async with session.client("dynamodb", endpoint_url=DYNAMODB_ENDPOINT) as client:  # the application's client
        db = DynamoDBTargetSystem("orders-db", client=client)
        store = DynamoDBAuditStore.from_target(db)  # audit_table="flamingockAuditLog", lock_table="flamingockLock"
        fl = Flamingock(audit_store=store, target_systems=[db], changes=[CreateOrdersTable, SeedOrderStatuses])
        report = await fl.run()  # raises if a change fails: nothing is consumed
        # --8<-- [end:setup]
        print(f"applied  {', '.join(report.applied) or 'nothing: every change was already applied'}")
        await consume(queue, client)
    await producer


if __name__ == "__main__":
    asyncio.run(main())
