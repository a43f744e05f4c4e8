"""Target system, audit store and lock on DynamoDB, through an aioboto3 client the application owns.

```python
session = aioboto3.Session()
async with session.client("dynamodb", region_name="eu-west-1") as client:
    db = DynamoDBTargetSystem("orders-db", client=client)
    fl = Flamingock(audit_store=DynamoDBAuditStore.from_target(db), target_systems=[db], changes=["myapp.changes"])
    await fl.run()
```

A transactional change adds its writes to `ctx.transaction`; they are sent, with the audit entry and a check of the
lock, in one `TransactWriteItems` call. Needs `pip install "aioflamingock[dynamodb]"`; botocore is imported only
when a target is created.
"""

from ._store import DynamoDBAuditStore
from ._target import DynamoDBContext, DynamoDBTargetSystem, DynamoDBTransaction, DynamoDBTransactionBuilder

__all__ = [
    "DynamoDBAuditStore",
    "DynamoDBContext",
    "DynamoDBTargetSystem",
    "DynamoDBTransaction",
    "DynamoDBTransactionBuilder",
]
