"""The embedded default: target system, audit store and lock on SQLite (aiosqlite). Zero infrastructure.

```python
db = SQLiteTargetSystem("app-db", path="app.db")
fl = Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=["myapp.changes"])
```
"""

from ._store import SQLiteAuditStore
from ._target import SQLiteContext, SQLiteTargetSystem, SQLiteTransaction

__all__ = ["SQLiteAuditStore", "SQLiteContext", "SQLiteTargetSystem", "SQLiteTransaction"]
