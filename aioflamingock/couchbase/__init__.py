"""Target system, audit store and lock on Couchbase, through an acouchbase cluster the application owns.

```python
cluster = await Cluster.connect("couchbase://db.example", ClusterOptions(PasswordAuthenticator(user, password)))
db = CouchbaseTargetSystem("orders-db", cluster=cluster, bucket="orders")
fl = Flamingock(audit_store=CouchbaseAuditStore.from_target(db), target_systems=[db], changes=["myapp.changes"])
await fl.run()
```

The audit and the lock are read and written with key-value operations only (no query service, no index). A
transactional change runs in a Couchbase ACID transaction; on the store's own bucket the audit entry joins it. Needs
`pip install "aioflamingock[couchbase]"`; the SDK is imported only when a target is created.
"""

from ._store import DEFAULT_AUDIT_COLLECTION, DEFAULT_LOCK_COLLECTION, CouchbaseAuditStore
from ._target import CouchbaseContext, CouchbaseTargetSystem, CouchbaseTransaction

__all__ = [
    "DEFAULT_AUDIT_COLLECTION",
    "DEFAULT_LOCK_COLLECTION",
    "CouchbaseAuditStore",
    "CouchbaseContext",
    "CouchbaseTargetSystem",
    "CouchbaseTransaction",
]
