"""SQLite's errors, translated to ours in one place."""

from __future__ import annotations

import sqlite3

from ..backend import ErrorRule, ErrorTable, StoreUnavailableError

__all__ = ["ERRORS", "is_busy", "translate_errors"]

_TRANSIENT = ("database is locked", "database table is locked", "busy")


def is_busy(exc: BaseException) -> bool:
    """Another connection holds the database: waiting may help."""
    return isinstance(exc, sqlite3.OperationalError) and any(text in str(exc).lower() for text in _TRANSIENT)


ERRORS = ErrorTable(
    "SQLite",
    lambda: (sqlite3.Error,),
    [ErrorRule(is_busy, StoreUnavailableError, "another connection holds the database")],
)
translate_errors = ERRORS.boundary
