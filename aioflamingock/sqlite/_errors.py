"""SQLite's errors, translated to ours in one place."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from ..backend import StoreError, StoreUnavailableError

__all__ = ["is_busy", "translate_errors"]

_TRANSIENT = ("database is locked", "database table is locked", "busy")


def is_busy(exc: BaseException) -> bool:
    """Another connection holds the database: waiting may help."""
    return isinstance(exc, sqlite3.OperationalError) and any(text in str(exc).lower() for text in _TRANSIENT)


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        if is_busy(exc):
            raise StoreUnavailableError(f"SQLite busy while {what}: {exc}") from exc
        raise StoreError(f"SQLite failed while {what}: {exc}") from exc
