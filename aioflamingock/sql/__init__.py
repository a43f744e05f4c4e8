"""PostgreSQL and MySQL/MariaDB through SQLAlchemy 2's asyncio engine: `SQLTargetSystem` (a transactional target
system on the application's `AsyncEngine`), `SQLAuditStore` (audit log and lock in two tables of its database) and
`AlembicUpgrade` (a ready change: an alembic upgrade, once across every instance).

Needs the `sql` extra and a driver: `pip install "aioflamingock[postgresql]"` (asyncpg), `"aioflamingock[psycopg]"`
or `"aioflamingock[mysql]"` (aiomysql). Importing this module imports no driver.
"""

from ._alembic import AlembicUpgrade
from ._store import SQLAuditStore
from ._target import SQLContext, SQLTargetSystem, SQLTransaction

__all__ = [
    "AlembicUpgrade",
    "SQLAuditStore",
    "SQLContext",
    "SQLTargetSystem",
    "SQLTransaction",
]
