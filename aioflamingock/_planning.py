"""Planning: what a run would do with each change, read from the audit (and the targets' markers), with no lock
and no write. `plan`, `validate`, `issues`, `health`, `doctor` and `run` all start here."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._change import ChangeSpec
from ._interfaces import AuditStore, TargetSystem, TransactionalTargetSystem
from ._model import ChangeIssue, LockInfo, PlannedAction, PlannedChange
from ._remedy import Remedy
from ._resolver import needs_marker_check, resolve

if TYPE_CHECKING:
    from ._entry import AuditEntry

__all__ = ["PlanRow", "blocking", "issues", "live_execution", "live_holder", "read_plan"]


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One change of a plan: what a run would do with it, why, and the newest audit entry that says so."""

    spec: ChangeSpec
    action: PlannedAction
    reason: str
    entry: AuditEntry | None

    @property
    def pending(self) -> bool:
        """Whether a run would do anything with it."""
        return self.action is not PlannedAction.SKIP

    @property
    def remedy(self) -> Remedy | None:
        """For a change that needs manual intervention: a human says what happened."""
        return Remedy.fix(self.spec.id) if self.action is PlannedAction.MANUAL_INTERVENTION else None

    def planned(self) -> PlannedChange:
        return PlannedChange(self.spec.id, self.action, self.reason, self.remedy)


async def _marker_found(target: TargetSystem, spec: ChangeSpec, entry: AuditEntry | None) -> bool | None:
    if entry is None or not needs_marker_check(entry) or not isinstance(target, TransactionalTargetSystem):
        return None
    marker = await target.read_marker(spec.id)
    return marker is not None and marker.execution_id == entry.execution_id


async def read_plan(
    store: AuditStore, targets: Mapping[str, TargetSystem], specs: Iterable[ChangeSpec]
) -> list[PlanRow]:
    """Each change's action from its own state alone (and its marker, for a STARTED entry of the marker path)."""
    specs = list(specs)
    states = await store.current_states([s.id for s in specs])
    rows = []
    for spec in specs:
        entry = states.get(spec.id)
        found = await _marker_found(targets[spec.target_system], spec, entry)
        action, reason = resolve(spec, entry, marker_found=found)
        rows.append(PlanRow(spec, action, reason, entry))
    return rows


def blocking(rows: Iterable[PlanRow]) -> list[PlanRow]:
    """The run's plan: a change that needs manual intervention blocks every later pending change."""
    plan: list[PlanRow] = []
    blocked_by: str | None = None
    for row in rows:
        if blocked_by is not None and row.pending:
            reason = f"after {blocked_by!r}, which needs manual intervention"
            row = PlanRow(row.spec, PlannedAction.BLOCKED, reason, row.entry)
        elif row.action is PlannedAction.MANUAL_INTERVENTION:
            blocked_by = row.spec.id
        plan.append(row)
    return plan


def live_execution(info: LockInfo | None) -> str | None:
    """The execution id of the run holding the lock right now (owners are `host/pid/executionId`), if any."""
    if info is None or info.remaining_seconds <= 0:
        return None
    return info.owner.rsplit("/", 1)[-1]


async def live_holder(store: AuditStore, service: str) -> str | None:
    """The execution id of the run holding `service`'s lock right now, read from the store."""
    return live_execution(await store.lock.read(service))


def issues(rows: Iterable[PlanRow], holder: str | None) -> list[ChangeIssue]:
    """Changes whose outcome is unknown, except those the lock's live holder (`holder`) is applying right now."""
    return [
        ChangeIssue(row.spec.id, row.entry.state, row.reason, row.remedy)
        for row in rows
        if row.remedy is not None and row.entry is not None and row.entry.execution_id != holder
    ]
