"""Target system, audit store and lock on MongoDB, through PyMongo's asyncio client (Motor's is accepted too).

```python
client = AsyncMongoClient("mongodb://db-1,db-2,db-3/?replicaSet=rs0", event_listeners=[session_guard()])
db = MongoDBTargetSystem("users-db", client=client, database="app")
fl = Flamingock(audit_store=MongoDBAuditStore.from_target(db), target_systems=[db], changes=["myapp.changes"])
```

Needs `pip install "aioflamingock[mongodb]"`; PyMongo is imported only when a target is created.
"""

from ._guard import session_guard
from ._store import MongoDBAuditStore
from ._target import MongoDBContext, MongoDBTargetSystem, MongoDBTransaction

__all__ = ["MongoDBAuditStore", "MongoDBContext", "MongoDBTargetSystem", "MongoDBTransaction", "session_guard"]
