"""PostgreSQL and MySQL/MariaDB through SQLAlchemy 2's asyncio engine: `SQLTargetSystem` (a transactional target
system on the application's `AsyncEngine`) and `SQLAuditStore` (audit log and lock in two tables of its database).

Needs the `sql` extra and a driver: `pip install "aioflamingock[postgresql]"` (asyncpg), `"aioflamingock[psycopg]"`
or `"aioflamingock[mysql]"` (aiomysql). Importing this module imports no driver.
"""

from ._store import SQLAuditStore
from ._target import SQLContext, SQLTargetSystem, SQLTransaction

__all__ = [
    "SQLAuditStore",
    "SQLContext",
    "SQLTargetSystem",
    "SQLTransaction",
]
