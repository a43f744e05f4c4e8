"""botocore's errors, translated to ours in one place, and the retry of requests DynamoDB throttled or that the
network lost.

| what happened | retried | then raised as |
|---|---|---|
| throttled (`ProvisionedThroughputExceededException`, `ThrottlingException`, ...) | yes | `StoreUnavailableError` |
| `InternalServerError`, `ServiceUnavailable`, `TransactionConflictException` | yes | `StoreUnavailableError` |
| no connection, timeouts, a connection closed mid-request | yes | `StoreUnavailableError` |
| anything else (validation, credentials, a missing table) | no | `StoreError` |

Transactions have rules of their own (`_target.py`): what a commit's cancellation means depends on its actions.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from ..backend import (
    Backoff,
    ErrorRule,
    ErrorTable,
    StoreError,
    StoreUnavailableError,
    import_driver,
    library_logger,
    redact,
    retrying,
)

__all__ = [
    "AMBIGUOUS_CODES",
    "DEFAULT_RETRY_SECONDS",
    "ERRORS",
    "RETRYABLE_CODES",
    "THROTTLING_CODES",
    "Backoff",
    "botocore_errors",
    "error_code",
    "import_aiobotocore",
    "is_connection_error",
    "request",
    "translate",
    "was_not_sent",
]

logger = library_logger(__name__)

DEFAULT_RETRY_SECONDS = 10.0
"""How long one request is sent again while DynamoDB throttles it or the connection fails, on top of the retries
the client itself is configured to make."""
_FIRST_PAUSE = 0.05
_MAX_PAUSE = 1.0

THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
"""Refused before it did anything: safe to send again as it is."""
AMBIGUOUS_CODES = frozenset({"InternalServerError", "InternalFailure", "ServiceUnavailable"})
"""The service failed while handling the request: it may or may not have been applied."""
RETRYABLE_CODES = THROTTLING_CODES | AMBIGUOUS_CODES | {"TransactionConflictException"}


def import_aiobotocore() -> ModuleType:
    """aiobotocore's client module (what aioboto3's clients are), or an `ImportError` that says how to install it."""
    return import_driver("aiobotocore.client", backend="dynamodb", driver="aioboto3")


def botocore_errors() -> ModuleType:
    """`botocore.exceptions`, imported where used (botocore ships no type information)."""
    return importlib.import_module("botocore.exceptions")


def error_code(exc: BaseException) -> str:
    """The `Error.Code` of a botocore `ClientError`; empty for anything else."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def is_connection_error(exc: BaseException) -> bool:
    """No answer from DynamoDB: the connection failed, timed out or closed."""
    errors = botocore_errors()
    return isinstance(exc, errors.ConnectionError | errors.HTTPClientError)


def was_not_sent(exc: BaseException) -> bool:
    """Whether a connection error happened before the request could reach DynamoDB (nothing can have been
    applied): the connection was refused or never established."""
    errors = botocore_errors()
    if isinstance(exc, errors.ConnectTimeoutError):
        return True
    cause = getattr(exc, "kwargs", {}).get("error")
    connecting = any(cls.__name__ == "ClientConnectorError" for cls in type(cause).__mro__)
    return isinstance(exc, errors.EndpointConnectionError) and connecting


def is_retryable(exc: BaseException) -> bool:
    """Throttled, failed inside the service, or no answer: worth sending again."""
    return error_code(exc) in RETRYABLE_CODES or is_connection_error(exc)


def _botocore_errors() -> tuple[type[BaseException], ...]:
    errors = botocore_errors()
    return (errors.ClientError, errors.BotoCoreError)


ERRORS = ErrorTable(
    "DynamoDB",
    _botocore_errors,
    [
        ErrorRule(is_retryable, StoreUnavailableError),
        ErrorRule(
            lambda exc: error_code(exc) == "ResourceNotFoundException",
            StoreError,
            "was the table deleted after the store opened?",
        ),
    ],
)
translate = ERRORS.translate


async def request(
    send: Callable[[], Awaitable[dict[str, Any]]],
    what: str,
    *,
    retry_seconds: float,
    passthrough: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """`send()`, sent again while it fails for a transient reason, for up to `retry_seconds`. Errors whose code is in
    `passthrough` are raised as botocore raised them (the caller gives them a meaning); others are translated."""

    def transient(exc: Exception) -> bool:
        return error_code(exc) not in passthrough and is_retryable(exc)

    def again(exc: Exception) -> None:
        logger.debug("DynamoDB: %s failed, sending it again: %s", what, redact(str(exc)))

    try:
        return await retrying(send, seconds=retry_seconds, transient=transient, again=again)
    except _botocore_errors() as exc:
        if error_code(exc) in passthrough:
            raise
        raise translate(exc, what) from exc
