"""PyMongo's errors, translated to ours in one place."""

from __future__ import annotations

from types import ModuleType

from ..backend import ErrorRule, ErrorTable, StoreUnavailableError, TransactionAbortedError

__all__ = [
    "ERRORS",
    "INSTALL_HINT",
    "import_pymongo",
    "is_transient_transaction_error",
    "translate",
    "translate_errors",
]

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


def _unavailable(exc: BaseException) -> bool:
    from pymongo import errors

    # AutoReconnect, NetworkTimeout and ServerSelectionTimeoutError are ConnectionFailures
    return isinstance(exc, errors.ConnectionFailure | errors.ExecutionTimeout | errors.WTimeoutError)


def _pymongo_errors() -> tuple[type[BaseException], ...]:
    from pymongo.errors import PyMongoError

    return (PyMongoError,)


ERRORS = ErrorTable(
    "MongoDB",
    _pymongo_errors,
    [
        ErrorRule(is_transient_transaction_error, TransactionAbortedError),
        ErrorRule(_unavailable, StoreUnavailableError),
    ],
)
translate = ERRORS.translate
translate_errors = ERRORS.boundary
