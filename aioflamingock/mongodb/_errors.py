"""PyMongo's errors, translated to ours in one place."""

from __future__ import annotations

from types import ModuleType

from ..backend import ErrorRule, ErrorTable, StoreUnavailableError, TransactionAbortedError, import_driver

__all__ = [
    "ERRORS",
    "import_pymongo",
    "is_transient_transaction_error",
    "translate",
    "translate_errors",
]

TRANSIENT_TRANSACTION_ERROR = "TransientTransactionError"


def import_pymongo() -> ModuleType:
    """PyMongo, or an `ImportError` that says how to install it."""
    return import_driver("pymongo", backend="mongodb", driver="PyMongo")


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
