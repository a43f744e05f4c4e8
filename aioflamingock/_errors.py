"""The exceptions aioflamingock raises.

```
FlamingockError
├── ConfigurationError               bad changes or options; raised before any lock or write
│   └── ChangeLoadError              a change module failed to import
├── ClosedResourceError              the engine was used after it was closed
├── ChangeMisuseError                a change broke a rule of its context; the change failed
│   ├── UnawaitedCoroutineError      execute/rollback created a coroutine and never awaited it
│   └── TransactionBypassedError     it ended the engine's transaction or wrote outside it: needs a human
├── PendingChangesError              validate(): something would run
├── RunError                         a run stopped; carries the RunReport
│   ├── ChangeFailedError            a change's execute raised; __cause__ is its exception
│   ├── RollbackFailedError          undo(): a change's rollback raised
│   └── ManualInterventionRequiredError   a change's state needs a human: see `fix`
├── LockError
│   ├── LockAcquisitionTimeoutError  another instance held the lock for longer than acquire_timeout
│   └── LockLostError                the lease ended or was taken while we worked; nothing more was recorded
└── StoreError                       the audit store or a target system failed (driver error chained)
    ├── StoreUnavailableError        a transient failure: busy, unreachable; safe to retry
    │   └── TransactionAbortedError  the database aborted a transaction (write conflict); nothing committed
    ├── TransactionOutcomeUnknownError   a commit may or may not have happened
    └── CorruptAuditError            an audit entry cannot be read: names the store, the entry, the field, the fix
```
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._redact import redact
from ._remedy import Remedy

if TYPE_CHECKING:
    from ._model import RunReport

__all__ = [
    "ChangeFailedError",
    "ChangeLoadError",
    "ChangeMisuseError",
    "ClosedResourceError",
    "ConfigurationError",
    "CorruptAuditError",
    "FlamingockError",
    "LockAcquisitionTimeoutError",
    "LockError",
    "LockLostError",
    "ManualInterventionRequiredError",
    "PendingChangesError",
    "RollbackFailedError",
    "RunError",
    "StoreError",
    "StoreUnavailableError",
    "TransactionAbortedError",
    "TransactionBypassedError",
    "TransactionOutcomeUnknownError",
    "UnawaitedCoroutineError",
]


class FlamingockError(Exception):
    """Root of every exception aioflamingock raises.

    `remedy`, when the engine knows one, says what a human can do about it, as data; the message then ends with
    it in the library's words (`str(remedy)`), after `summary`, the message without it. The command line words
    it as a command instead."""

    remedy: Remedy | None = None

    def __init__(self, message: str = "", *, remedy: Remedy | None = None) -> None:
        super().__init__(message if remedy is None else f"{message}; {remedy}")
        self.summary = message
        self.remedy = remedy


class ConfigurationError(FlamingockError):
    """The changes or options are invalid. Raised before the lock is asked for and before any write.

    `problems` lists every problem found, each naming the file and the field to fix.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            message = f"{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class ChangeLoadError(ConfigurationError):
    """A change module could not be imported; the original error is chained."""


class ClosedResourceError(FlamingockError):
    """A resource was used after it was closed; create a new one instead."""


class ChangeMisuseError(FlamingockError):
    """A change used its context in a way the engine cannot make safe. Raised by the engine in place of the
    change's own result, and recorded as the change's failure; `change_id` names it."""

    needs_human: bool = False
    """Whether the change's writes may be committed although it failed: then a later run never applies it
    again by itself, whatever its `recovery`; a human checks the data and says what happened (`fix`)."""

    def __init__(self, message: str, change_id: str | None, *, remedy: Remedy | None = None) -> None:
        super().__init__(message, remedy=remedy)
        self.change_id = change_id


class UnawaitedCoroutineError(ChangeMisuseError):
    """`execute` or `rollback` created a coroutine and never awaited it (a forgotten `await`), so what it was
    meant to do never happened. Raised before anything is recorded as applied; on the transactional paths the
    engine's transaction is rolled back, so a later run applies the change again once its code is fixed."""


class TransactionBypassedError(ChangeMisuseError):
    """A transactional change ended the engine's transaction itself (committed, rolled back or replaced it), or
    wrote outside it where the engine can see such writes. Some of its writes may be committed although the
    change failed, so it needs a human: check the data, then `fix` it."""

    needs_human = True


class PendingChangesError(FlamingockError):
    """`validate()` found changes that a run would apply or that need manual intervention."""

    def __init__(self, message: str, pending: list[str]) -> None:
        super().__init__(message)
        self.pending = pending


class RunError(FlamingockError):
    """A run (or undo) stopped before the end; `report` says what happened to each change."""

    report: RunReport | None

    def __init__(self, message: str, report: RunReport | None = None, *, remedy: Remedy | None = None) -> None:
        super().__init__(message, remedy=remedy)
        self.report = report


class _ChangeRunError(RunError):
    """A run that stopped at one change, `change_id`."""

    def __init__(
        self, message: str, change_id: str, report: RunReport | None = None, *, remedy: Remedy | None = None
    ) -> None:
        super().__init__(message, report, remedy=remedy)
        self.change_id = change_id


class ChangeFailedError(_ChangeRunError):
    """A change's `execute` raised. The change's own exception is `__cause__`; `remedy` is set when its writes may
    be committed and a human must say what happened."""


class RollbackFailedError(_ChangeRunError):
    """A change's `rollback` raised during `undo()`. The change's own exception is `__cause__`."""


class ManualInterventionRequiredError(_ChangeRunError):
    """A change's recorded state means nobody knows whether it ran; a human must say (`fix`): see `remedy`."""


class LockError(FlamingockError):
    """The distributed lock could not be held."""


class LockAcquisitionTimeoutError(LockError):
    """Another instance held the lock for longer than `acquire_timeout_seconds`."""


class LockLostError(LockError):
    """Our lease expired or was taken by another instance; the run stopped and recorded nothing more."""

    report: RunReport | None = None


class StoreError(FlamingockError):
    """The audit store or a target system failed; the driver's exception is chained."""


class StoreUnavailableError(StoreError):
    """A transient failure (busy, unreachable, timed out): retrying later may succeed."""


class TransactionAbortedError(StoreUnavailableError):
    """The database aborted a transaction (a write conflict, a failover): nothing of it was committed, and the
    engine runs it again, `execute` included, a few times before giving up."""


class TransactionOutcomeUnknownError(StoreError):
    """A commit was sent but its outcome is unknown; the next run reads the truth from the store."""


class CorruptAuditError(StoreError):
    """An audit entry the store holds cannot be read back (a field missing, of the wrong kind, or not one of its
    values): tampered with, or written by something else. `where` names the store and the entry, `field` the field,
    `fix` what to do with the entry, and `remedy` what to record afterwards when the entry names its change. A
    run stops on one that is the newest entry of a declared change, since its state is then unknown; `history()`
    skips it with a warning, and `doctor()` lists every one."""

    def __init__(self, where: str, field: str, problem: str, fix: str, *, change_id: object = None) -> None:
        # `problem` quotes what the store holds, which may be anything, a credential included
        message = redact(f"{where}: this audit entry cannot be read: {field} {problem}. To fix it: {fix}")
        # once the entry is corrected or removed, a human says what is true of the change it names, if any
        super().__init__(message, remedy=Remedy.fix(change_id) if isinstance(change_id, str) else None)
        self.where, self.field, self.fix = where, field, fix
