"""aioflamingock: versioned, audited, exactly-once changes to the systems an async application depends on."""

from typing import TYPE_CHECKING, Any

from ._change import Change, ChangeSpec
from ._engine import DISABLE_ENV_VAR, Flamingock, NonIdempotentRetryWarning
from ._errors import (
    ChangeFailedError,
    ChangeLoadError,
    ChangeMisuseError,
    ClosedResourceError,
    ConfigurationError,
    CorruptAuditError,
    FlamingockError,
    LockAcquisitionTimeoutError,
    LockError,
    LockLostError,
    ManualInterventionRequiredError,
    PendingChangesError,
    RollbackFailedError,
    RunError,
    StoreError,
    StoreUnavailableError,
    TransactionAbortedError,
    TransactionBypassedError,
    TransactionOutcomeUnknownError,
    UnawaitedCoroutineError,
)
from ._events import Event, EventKind, Listener
from ._generic import NonTransactionalContext, NonTransactionalTargetSystem
from ._interfaces import AuditStore, Lock, TargetSystem, Transaction, TransactionalTargetSystem
from ._model import (
    AuditState,
    ChangeIssue,
    ChangeOutcome,
    ChangeResult,
    DoctorCheck,
    Fence,
    Health,
    LockInfo,
    LockLease,
    Marker,
    PlannedAction,
    PlannedChange,
    Recovery,
    RunReport,
    RunStatus,
    TxStrategy,
)
from ._remedy import Remedy, RemedyAction

if TYPE_CHECKING:
    from ._entry import AuditEntry
    from ._options import LockOptions

__version__ = "0.1.0"

__all__ = [
    "DISABLE_ENV_VAR",
    "AuditEntry",
    "AuditState",
    "AuditStore",
    "Change",
    "ChangeFailedError",
    "ChangeIssue",
    "ChangeLoadError",
    "ChangeMisuseError",
    "ChangeOutcome",
    "ChangeResult",
    "ChangeSpec",
    "ClosedResourceError",
    "ConfigurationError",
    "CorruptAuditError",
    "DoctorCheck",
    "Event",
    "EventKind",
    "Fence",
    "Flamingock",
    "FlamingockError",
    "Health",
    "Listener",
    "Lock",
    "LockAcquisitionTimeoutError",
    "LockError",
    "LockInfo",
    "LockLease",
    "LockLostError",
    "LockOptions",
    "ManualInterventionRequiredError",
    "Marker",
    "NonIdempotentRetryWarning",
    "NonTransactionalContext",
    "NonTransactionalTargetSystem",
    "PendingChangesError",
    "PlannedAction",
    "PlannedChange",
    "Recovery",
    "Remedy",
    "RemedyAction",
    "RollbackFailedError",
    "RunError",
    "RunReport",
    "RunStatus",
    "StoreError",
    "StoreUnavailableError",
    "TargetSystem",
    "Transaction",
    "TransactionAbortedError",
    "TransactionBypassedError",
    "TransactionOutcomeUnknownError",
    "TransactionalTargetSystem",
    "TxStrategy",
    "UnawaitedCoroutineError",
]


_LAZY = {"AuditEntry": "._entry", "LockOptions": "._options"}
"""Pydantic models, imported on first use: a start-up that finds nothing pending needs neither."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
