"""SQLAlchemy's errors (and, beneath them, asyncpg's, psycopg's and the MySQL drivers'), translated to ours in one
place."""

from __future__ import annotations

import sys
from types import ModuleType

from ..backend import ErrorRule, ErrorTable, StoreUnavailableError, TransactionAbortedError, import_driver

__all__ = [
    "ERRORS",
    "import_sqlalchemy",
    "is_aborted",
    "is_connection_lost",
    "is_denied",
    "mysql_code",
    "sqlstate",
    "translate_errors",
]

ABORTED_SQLSTATES = frozenset({"40001", "40P01"})
"""PostgreSQL's serialization failure and deadlock: the server rolled the whole transaction back."""
ABORTED_MYSQL_CODES = frozenset({1213})
"""MySQL's deadlock (InnoDB rolls the whole transaction back; a lock wait timeout, 1205, ends only the statement)."""


def import_sqlalchemy() -> ModuleType:
    """SQLAlchemy's asyncio extension, or an `ImportError` that says how to install it."""
    return import_driver("sqlalchemy.ext.asyncio", backend="sql", driver="SQLAlchemy 2 with asyncio")


def _orig(exc: BaseException) -> BaseException | None:
    return getattr(exc, "orig", None)


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a PostgreSQL error (asyncpg and psycopg both carry it), or None."""
    for candidate in (_orig(exc), getattr(_orig(exc), "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


_MYSQL_DRIVERS = frozenset({"pymysql", "aiomysql", "asyncmy", "MySQLdb"})
LOST_MYSQL_CODES = frozenset({2002, 2003, 2006, 2013})
"""MySQL's can't connect (socket, TCP), server gone away, connection lost during a query."""


def mysql_code(exc: BaseException) -> int | None:
    """The error number of a MySQL or MariaDB error, wrapped by SQLAlchemy or raw from the driver (as when setting
    a connection's isolation level), or None."""
    for candidate in (_orig(exc), exc):
        if candidate is not None and type(candidate).__module__.partition(".")[0] in _MYSQL_DRIVERS:
            args = candidate.args
            return args[0] if args and isinstance(args[0], int) else None
    return None


def is_aborted(exc: BaseException) -> bool:
    """The server rolled the transaction back (a deadlock, a serialization failure): running it again may work."""
    return sqlstate(exc) in ABORTED_SQLSTATES or mysql_code(exc) in ABORTED_MYSQL_CODES


DENIED_MYSQL_CODES = frozenset({1044, 1142, 1143})
"""MySQL's access denied to a database, a table, a column."""


def is_denied(exc: BaseException) -> bool:
    """The server refused the statement: the role lacks a privilege."""
    return sqlstate(exc) == "42501" or mysql_code(exc) in DENIED_MYSQL_CODES


def is_connection_lost(exc: BaseException) -> bool:
    """The connection broke or could not be made."""
    from sqlalchemy import exc as errors

    if isinstance(exc, errors.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, errors.InterfaceError | errors.TimeoutError):
        return True
    if isinstance(exc, OSError | ConnectionError):
        return True
    if mysql_code(exc) in LOST_MYSQL_CODES:
        return True
    return isinstance(exc, errors.OperationalError) and (sqlstate(exc) or "").startswith("08")


_RAW_MYSQL_ERRORS = {"pymysql.err": "MySQLError", "asyncmy.errors": "MySQLError"}
"""The MySQL drivers' own base errors: SQLAlchemy lets them through unwrapped in a few places (setting a
connection's isolation level on checkout)."""


def _sqlalchemy_errors() -> tuple[type[BaseException], ...]:
    from sqlalchemy.exc import SQLAlchemyError

    raw = [
        getattr(sys.modules[module], name, None) for module, name in _RAW_MYSQL_ERRORS.items() if module in sys.modules
    ]
    return (SQLAlchemyError, OSError, *(error for error in raw if isinstance(error, type)))


ERRORS = ErrorTable(
    "SQL",
    _sqlalchemy_errors,
    [
        ErrorRule(is_aborted, TransactionAbortedError),
        ErrorRule(is_connection_lost, StoreUnavailableError),
    ],
)
translate_errors = ERRORS.boundary
