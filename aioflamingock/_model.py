"""Plain data: audit entries, states, lock records, options and reports."""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ._remedy import Remedy

__all__ = [
    "DEFAULT_ACQUIRE_TIMEOUT_SECONDS",
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_RETRY_INTERVAL_SECONDS",
    "DEFAULT_SERVICE",
    "FAILURE_METADATA_KEY",
    "TRANSACTION_BYPASSED",
    "AuditState",
    "ChangeIssue",
    "ChangeOutcome",
    "ChangeResult",
    "Fence",
    "LockInfo",
    "LockLease",
    "Marker",
    "PlannedAction",
    "PlannedChange",
    "Recovery",
    "RunReport",
    "RunStatus",
    "TxStrategy",
    "first_lower",
    "utc_now",
]

DEFAULT_LEASE_SECONDS = 60.0
DEFAULT_ACQUIRE_TIMEOUT_SECONDS = 180.0
DEFAULT_RETRY_INTERVAL_SECONDS = 1.0
DEFAULT_SERVICE = "default"
MIN_LEASE_SECONDS = 0.5
MAX_SECONDS = 86_400.0
FAILURE_METADATA_KEY = "flamingockFailure"
"""The engine's own key in an entry's `metadata`: why a failure needs a human whatever the change's recovery."""
TRANSACTION_BYPASSED = "TRANSACTION_BYPASSED"
"""`FAILURE_METADATA_KEY`'s value when a transactional change went around the engine's transaction."""


def first_lower(text: str) -> str:
    """A message from pydantic, to follow a colon: only its first letter lowered (values it quotes kept)."""
    return text[:1].lower() + text[1:]


def utc_now() -> datetime:
    """Now, in UTC, truncated to milliseconds (what every store can keep)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Recovery(enum.StrEnum):
    """What a run does with a change whose outcome is unknown (STARTED, ROLLBACK_FAILED...)."""

    MANUAL_INTERVENTION = "MANUAL_INTERVENTION"
    ALWAYS_RETRY = "ALWAYS_RETRY"


class AuditState(enum.StrEnum):
    """The states a change passes through; its current state is its newest audit entry."""

    STARTED = "STARTED"
    APPLIED = "APPLIED"
    FAILED = "FAILED"
    ROLLED_BACK = "ROLLED_BACK"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"
    MANUAL_MARKED_AS_APPLIED = "MANUAL_MARKED_AS_APPLIED"
    MANUAL_MARKED_AS_ROLLED_BACK = "MANUAL_MARKED_AS_ROLLED_BACK"


class TxStrategy(enum.StrEnum):
    """How a change was applied (Flamingock's `txStrategy` values)."""

    NON_TX = "NON_TX"
    """Non-transactional: STARTED, execute, APPLIED."""
    TX_AUDIT_STORE_SHARED = "TX_AUDIT_STORE_SHARED"
    """One transaction holds the change, its APPLIED entry and the lock check."""
    TX_AUDIT_STORE_SYNC = "TX_AUDIT_STORE_SYNC"
    """A transaction on another target, with a marker record that says whether it committed."""


@dataclass(frozen=True, slots=True)
class Fence:
    """What every audit write under the lock is conditional on: the lock record still holds our token."""

    key: str
    owner: str
    token: int


@dataclass(frozen=True, slots=True)
class LockLease:
    """A lock we hold: its key, our owner name and the fencing token the store gave us. When it ends is the
    engine's business, from the lease it asked for and its own monotonic clock (a store's clock may disagree with
    this host's): see docs/decisions.md."""

    key: str
    owner: str
    token: int

    @property
    def fence(self) -> Fence:
        return Fence(self.key, self.owner, self.token)


@dataclass(frozen=True, slots=True)
class LockInfo:
    """The lock record as read from the store (`remaining_seconds` judged by the store's clock)."""

    key: str
    owner: str
    token: int
    acquired_at: datetime
    expires_at: datetime
    remaining_seconds: float
    problem: str | None = None
    """Why the record cannot be trusted (an impossible expiry, a field that is not a number), or None. A corrupt
    lock counts as expired: the next run takes it over, and `force_unlock()` removes it."""


@dataclass(frozen=True, slots=True)
class Marker:
    """Written in a target's own transaction: proves that the change's transaction committed."""

    change_id: str
    execution_id: str


class RunStatus(enum.StrEnum):
    """How a run ended."""

    SUCCESS = "SUCCESS"
    """Every pending change was applied."""
    NO_CHANGES = "NO_CHANGES"
    """Nothing was pending: no lock was taken and nothing was written."""
    FAILED = "FAILED"
    """The run stopped at a change (see the raised exception's `report`)."""


class ChangeOutcome(enum.StrEnum):
    """What a run did with one change."""

    APPLIED = "APPLIED"
    """Applied by this run."""
    ALREADY_APPLIED = "ALREADY_APPLIED"
    """Applied (or marked applied) before: skipped."""
    RECOVERED = "RECOVERED"
    """Its transaction had committed in an earlier run (marker found): recorded APPLIED without running."""
    FAILED = "FAILED"
    """Its `execute` raised (see `ChangeResult.error`); the run stopped here."""
    NEEDS_MANUAL_INTERVENTION = "NEEDS_MANUAL_INTERVENTION"
    """Its outcome in an earlier run is unknown; the run stopped here until a human says (`fix`)."""
    NOT_REACHED = "NOT_REACHED"
    """Ordered after the change the run stopped at."""
    ROLLED_BACK = "ROLLED_BACK"
    """undo(): its rollback ran and was recorded."""


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """What a run did with one change: its outcome, how long it took and, if it failed, the exception."""

    change_id: str
    outcome: ChangeOutcome
    duration_seconds: float = 0.0
    error: BaseException | None = None
    rollback_state: AuditState | None = None
    """For a failed non-transactional change: ROLLED_BACK or ROLLBACK_FAILED, if it has a rollback."""


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a run (or `undo()`) did: every declared change, in order, with its outcome."""

    execution_id: str
    status: RunStatus
    changes: list[ChangeResult] = field(default_factory=list)
    duration_seconds: float = 0.0

    def with_outcome(self, outcome: ChangeOutcome) -> list[str]:
        """The ids of the changes with this outcome, in order."""
        return [c.change_id for c in self.changes if c.outcome is outcome]

    @property
    def applied(self) -> list[str]:
        """The ids of the changes this run applied, in order."""
        return self.with_outcome(ChangeOutcome.APPLIED)


class PlannedAction(enum.StrEnum):
    """What `run()` would do with a change."""

    APPLY = "APPLY"
    """Pending: never applied, rolled back, failed in a transaction, or retried (`ALWAYS_RETRY`)."""
    SKIP = "SKIP"
    """Applied, or marked applied."""
    RECOVER = "RECOVER"
    """Mark APPLIED without running: the marker shows its transaction committed."""
    MANUAL_INTERVENTION = "MANUAL_INTERVENTION"
    """Its outcome is unknown: the run stops here until a human says (`fix`)."""
    BLOCKED = "BLOCKED"
    """An earlier change needs manual intervention."""


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """One line of `Flamingock.plan()`: a change, what a run would do with it, and why; for a change that needs
    manual intervention, what a human can do about it."""

    change_id: str
    action: PlannedAction
    reason: str
    remedy: Remedy | None = None

    def explain(self, words: Callable[[Remedy], str] = str) -> str:
        """The reason, then the remedy if there is one, in `words` (the library's by default)."""
        return self.reason if self.remedy is None else f"{self.reason}; {words(self.remedy)}"


@dataclass(frozen=True, slots=True)
class ChangeIssue:
    """A change that needs a human (`Flamingock.issues()`): its state, why, and what resolves it."""

    change_id: str
    state: AuditState
    reason: str
    remedy: Remedy

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: `fix` in the library's words, `remedy` as data."""
        return {
            "changeId": self.change_id,
            "state": self.state.value,
            "reason": self.reason,
            "fix": str(self.remedy),
            "remedy": self.remedy.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class DoctorCheck:
    """One finding of `Flamingock.doctor()`: what was checked, whether it is fine, and how to fix it if not."""

    subject: str
    """What was checked: `"changes"`, `"target system 'app-db'"`, `"audit store"`, `"lock"`."""
    check: str
    """The aspect: `"reachable"`, `"tables"`, `"indexes"`, `"privileges"`, `"transactions"`, `"issues"`..."""
    ok: bool
    detail: str
    fix: str | None = None
    """What to do about it, when `ok` is false."""
    remedy: Remedy | None = None
    """The same, as data, when it is something the library can do (`fix`, `force_unlock`)."""

    def to_dict(self) -> dict[str, Any]:
        remedy = None if self.remedy is None else self.remedy.to_dict()
        return {
            "subject": self.subject,
            "check": self.check,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
            "remedy": remedy,
        }


@dataclass(frozen=True, slots=True)
class Health:
    """`Flamingock.health()`: what a readiness probe needs. Ready when the audit store answered and no change
    needs manual intervention."""

    audit_store_reachable: bool
    issues: list[ChangeIssue] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    """Changes a run would still apply (informational: a service may be ready while another instance applies)."""
    error: str | None = None
    """Why the audit store could not be read (redacted)."""

    @property
    def ready(self) -> bool:
        return self.audit_store_reachable and not self.issues

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for a health endpoint."""
        return {
            "ready": self.ready,
            "auditStoreReachable": self.audit_store_reachable,
            "issues": [i.to_dict() for i in self.issues],
            "pending": list(self.pending),
            "error": self.error,
        }
