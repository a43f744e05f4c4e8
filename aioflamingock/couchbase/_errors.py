"""The Couchbase SDK's errors, translated to ours in one place.

| what happened | raised as |
|---|---|
| timeouts, no connection, service unavailable, temporary failure, cancelled, rate limited | `StoreUnavailableError` |
| a mutation's timeout was ambiguous (it may have been applied) | `StoreUnavailableError`, saying so |
| authentication, a missing bucket, scope or collection, anything else | `StoreError` |

The SDK already sends a request again while the server answers "temporary failure" or a node is unreachable, until
the operation's timeout; a failure that reaches us has used that budget. Expected outcomes of a conditional write
(document exists, CAS mismatch, not found) are not errors: the callers give them their meaning.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable
from types import ModuleType
from typing import TypeVar

from ..backend import ErrorRule, ErrorTable, StoreError, StoreUnavailableError, import_driver, named

__all__ = ["ERRORS", "import_acouchbase", "kv", "sdk_errors", "translate"]

T = TypeVar("T")

_TRANSIENT = (
    "TimeoutException",
    "UnAmbiguousTimeoutException",
    "MissingConnectionException",
    "ServiceUnavailableException",
    "TemporaryFailException",
    "RequestCanceledException",
    "RateLimitedException",
    "DocumentLockedException",
)
_AMBIGUOUS = ("AmbiguousTimeoutException", "DurabilitySyncWriteAmbiguousException")
_MISSING = ("BucketNotFoundException", "ScopeNotFoundException", "CollectionNotFoundException")


def import_acouchbase() -> ModuleType:
    """acouchbase's cluster module, or an `ImportError` that says how to install it."""
    return import_driver("acouchbase.cluster", backend="couchbase", driver="the Couchbase SDK")


def sdk_errors() -> ModuleType:
    """`couchbase.exceptions`, imported where used (the SDK ships no type information)."""
    return importlib.import_module("couchbase.exceptions")


ERRORS = ErrorTable(
    "Couchbase",
    lambda: (sdk_errors().CouchbaseException,),
    [
        ErrorRule(named(*_AMBIGUOUS), StoreUnavailableError, "the write may or may not have been applied"),
        ErrorRule(named(*_TRANSIENT), StoreUnavailableError),
        ErrorRule(named(*_MISSING), StoreError, "does it exist, and may these credentials use it?"),
    ],
)
translate = ERRORS.translate


async def kv(what: str, operation: Awaitable[T], *, expected: tuple[type[BaseException], ...] = ()) -> T:
    """Await one SDK operation. Exceptions in `expected` pass through as the SDK raised them; other SDK errors
    are translated."""
    try:
        return await operation
    except expected:
        raise
    except sdk_errors().CouchbaseException as exc:
        raise translate(exc, what) from exc
