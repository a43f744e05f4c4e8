"""What a run does with a change, given its current audit state: Flamingock's resolver table, as data."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._change import ChangeSpec
from ._model import (
    FAILURE_METADATA_KEY,
    TRANSACTION_BYPASSED,
    AuditState,
    PlannedAction,
    Recovery,
    TxStrategy,
)

if TYPE_CHECKING:
    from ._entry import AuditEntry

__all__ = ["needs_marker_check", "resolve"]

_APPLY = PlannedAction.APPLY
_SKIP = PlannedAction.SKIP
_ISSUE = PlannedAction.MANUAL_INTERVENTION

# current state -> (action under MANUAL_INTERVENTION, action under ALWAYS_RETRY, reason)
_TABLE: dict[AuditState | None, tuple[PlannedAction, PlannedAction, str]] = {
    None: (_APPLY, _APPLY, "never applied"),
    AuditState.ROLLED_BACK: (_APPLY, _APPLY, "rolled back"),
    AuditState.MANUAL_MARKED_AS_ROLLED_BACK: (_APPLY, _APPLY, "marked as rolled back"),
    AuditState.APPLIED: (_SKIP, _SKIP, "already applied"),
    AuditState.MANUAL_MARKED_AS_APPLIED: (_SKIP, _SKIP, "marked as applied"),
    AuditState.STARTED: (_ISSUE, _APPLY, "started but never finished: it may have partly run"),
    AuditState.ROLLBACK_FAILED: (
        _ISSUE,
        _APPLY,
        "failed and its rollback failed too: it may have partly run",
    ),
}
_FAILED_TX = (
    _APPLY,
    _APPLY,
    "failed, and the engine rolled back its transaction: what it wrote through its context was undone "
    "(writes made any other way are not)",
)
_FAILED_NON_TX = (_ISSUE, _APPLY, "failed outside a transaction: it may have partly run")
# A failure the engine recorded as needing a human whatever the recovery (`FAILURE_METADATA_KEY`).
_BYPASSED = (
    _ISSUE,
    _ISSUE,
    "failed after going around the engine's transaction (it ended that transaction itself or wrote outside "
    "it): some of its writes may be committed",
)
_VERDICT_STATES = (AuditState.FAILED, AuditState.ROLLBACK_FAILED)


def needs_marker_check(entry: AuditEntry | None) -> bool:
    """A STARTED entry of the separate-transaction path is settled by the target's marker, not by a human."""
    return (
        entry is not None and entry.state is AuditState.STARTED and entry.tx_strategy is TxStrategy.TX_AUDIT_STORE_SYNC
    )


def resolve(
    spec: ChangeSpec, entry: AuditEntry | None, *, marker_found: bool | None = None
) -> tuple[PlannedAction, str]:
    """The action for `spec` given its newest entry; `marker_found` answers `needs_marker_check`."""
    if needs_marker_check(entry) and marker_found is not None:
        if marker_found:
            return PlannedAction.RECOVER, "its transaction committed in an earlier run (marker found)"
        return PlannedAction.APPLY, "its transaction did not commit in an earlier run (no marker)"
    state = entry.state if entry is not None else None
    if (
        entry is not None
        and state in _VERDICT_STATES
        and entry.metadata.get(FAILURE_METADATA_KEY) == TRANSACTION_BYPASSED
    ):
        row = _BYPASSED
    elif state is AuditState.FAILED:
        row = _FAILED_TX if entry is not None and entry.transaction_flag else _FAILED_NON_TX
    else:
        row = _TABLE[state]
    manual, retry, reason = row
    action = retry if spec.recovery is Recovery.ALWAYS_RETRY else manual
    if state is not None and action is _APPLY and row[0] is _ISSUE:
        reason = f"{reason}; retried (ALWAYS_RETRY)"
    return action, reason
