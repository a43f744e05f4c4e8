"""PyMongo's errors, translated to ours in one place."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING

from ..backend import StoreError, StoreUnavailableError, TransactionAbortedError, redact

if TYPE_CHECKING:
    from pymongo.errors import PyMongoError

__all__ = ["INSTALL_HINT", "import_pymongo", "is_transient_transaction_error", "translate", "translate_errors"]

INSTALL_HINT = 'pip install "aioflamingock[mongodb]"'
TRANSIENT_TRANSACTION_ERROR = "TransientTransactionError"


def import_pymongo() -> ModuleType:
    """PyMongo, or an `ImportError` that says how to install it."""
    try:
        import pymongo
    except ImportError as exc:
        raise ImportError(f"aioflamingock.mongodb needs PyMongo: {INSTALL_HINT}") from exc
    return pymongo


def is_transient_transaction_error(exc: BaseException) -> bool:
    """Whether the server aborted the transaction `exc` came from (a write conflict, a failover)."""
    has_label = getattr(exc, "has_error_label", None)
    return callable(has_label) and bool(has_label(TRANSIENT_TRANSACTION_ERROR))


def translate(exc: PyMongoError, what: str) -> StoreError:
    """Our exception for a PyMongo error; the caller raises it `from exc`. Messages are redacted: a
    connection error can quote the URI it was given."""
    from pymongo import errors

    message = redact(f"MongoDB failed while {what}: {type(exc).__name__}: {exc}")
    if is_transient_transaction_error(exc):
        return TransactionAbortedError(message)
    transient = (errors.ConnectionFailure, errors.ExecutionTimeout, errors.WTimeoutError)
    if isinstance(exc, transient):  # AutoReconnect, NetworkTimeout and ServerSelectionTimeoutError included
        return StoreUnavailableError(message)
    return StoreError(message)


@contextmanager
def translate_errors(what: str) -> Iterator[None]:
    from pymongo.errors import PyMongoError

    try:
        yield
    except PyMongoError as exc:
        raise translate(exc, what) from exc
