"""`Flamingock.doctor()`: everything a run needs, checked, each problem with its fix. Creates and writes nothing,
and never raises for what it finds."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import anyio

from ._change import ChangeSpec
from ._errors import ConfigurationError, CorruptAuditError, StoreError
from ._interfaces import corrupt_entries, set_while
from ._model import DoctorCheck, LockInfo
from ._planning import PlanRow, issues, live_execution, read_plan
from ._redact import redact
from ._remedy import Remedy
from ._summary import summary_of

if TYPE_CHECKING:
    from ._engine import Flamingock

__all__ = ["doctor"]


async def doctor(fl: Flamingock, timeout_seconds: float) -> list[DoctorCheck]:
    checks: list[DoctorCheck] = []
    specs: list[ChangeSpec] | None = None
    try:
        specs = fl.changes()
        checks.append(DoctorCheck("changes", "load", True, f"{len(specs)} change(s) load and pass every check"))
    except ConfigurationError as exc:
        fix = "fix the change as the message says"
        checks += [DoctorCheck("changes", "load", False, problem, fix) for problem in exc.problems]
    for resource in fl._resources():
        with anyio.move_on_after(timeout_seconds) as scope:
            found = await resource.doctor()
        if scope.cancelled_caught:
            detail = f"{resource.describe()} did not answer within {timeout_seconds:g} s"
            fix = "check that the server is up and reachable from this host"
            found = [DoctorCheck(resource.subject(), "reachable", False, detail, fix)]
        checks += found
    store = [c for c in checks if c.subject == fl.audit_store.subject()]
    if all(c.ok for c in store) and any(c.check == "reachable" for c in store):
        checks += await _audit(fl, specs, timeout_seconds)
    return checks


async def _audit(fl: Flamingock, specs: list[ChangeSpec] | None, timeout_seconds: float) -> list[DoctorCheck]:
    """The audit's entries, the lock and the changes' states, read through the store as a run would."""
    corrupt: list[CorruptAuditError] = []
    try:
        with anyio.fail_after(timeout_seconds):
            async with AsyncExitStack() as stack:  # opened without preparing: nothing is created
                for resource in fl._resources():
                    await stack.enter_async_context(resource._doctor_resource())
                info = await fl.audit_store.lock.read(fl.service)
                with set_while(corrupt_entries, corrupt):
                    count = sum([1 async for _ in fl.audit_store.history()])
                rows = await read_plan(fl.audit_store, fl.target_systems, specs) if specs is not None else None
                summary = await _summary(fl) if not corrupt else None
    except CorruptAuditError as exc:
        return [DoctorCheck("audit store", "read", False, redact(str(exc)), exc.fix, exc.remedy)]
    except Exception as exc:
        detail = redact(f"{type(exc).__name__}: {exc}")
        fix = "the error says what failed: fix it, then run doctor again"
        return [DoctorCheck("audit store", "read", False, detail, fix)]
    checks = [DoctorCheck("audit", "entry", False, redact(str(e)), e.fix, e.remedy) for e in corrupt]
    if not corrupt:
        checks.append(DoctorCheck("audit", "entries", True, f"all {count} entries readable"))
    checks += [summary] if summary is not None else []
    checks.append(_lock(fl.service, info))
    if rows is not None:
        checks += _issues(rows, info)
    return checks


async def _summary(fl: Flamingock) -> DoctorCheck | None:
    """The start-up summary, where the store keeps one, against the full read. They disagree only after an entry
    was changed in place by hand on a store that cannot see it (MongoDB, DynamoDB, Couchbase): runs would trust the
    summary until it is removed."""
    store = fl.audit_store
    try:
        summary = await store.applied_summary()
    except StoreError:  # a shortcut the store cannot read: runs read every state, nothing to check
        return None
    if summary is None:
        return None
    full = summary_of(await store.current_states())
    if summary == full:
        return DoctorCheck("audit", "summary", True, f"the start-up summary matches the audit ({full.count} applied)")
    detail = (
        f"the start-up summary says {summary.count} change(s) applied, the audit {full.count}"
        if summary.count != full.count
        else f"the start-up summary and the audit name different applied changes ({full.count} each)"
    )
    detail += ": an entry was changed by hand, and runs answer from the summary until it is removed"
    fix = f"remove it: {store.summary_removal()}; the next run reads every state and writes it again"
    return DoctorCheck("audit", "summary", False, detail, fix)


def _lock(service: str, info: LockInfo | None) -> DoctorCheck:
    if info is not None and info.problem is not None:
        detail = f"corrupt record of {info.owner}: {info.problem}"
        remedy = Remedy.force_unlock()
        return DoctorCheck("lock", service, False, detail, f"let the next run take it over, or {remedy}", remedy)
    if info is None or info.remaining_seconds <= 0:
        return DoctorCheck("lock", service, True, "free")
    detail = f"held by {info.owner} for {info.remaining_seconds:.0f} s more (token {info.token})"
    return DoctorCheck("lock", service, True, detail)


def _issues(rows: list[PlanRow], info: LockInfo | None) -> list[DoctorCheck]:
    found = issues(rows, live_execution(info))
    if not found:
        detail = f"none need manual intervention; {sum(1 for row in rows if row.pending)} pending"
        return [DoctorCheck("changes", "issues", True, detail)]
    return [
        DoctorCheck("changes", "issues", False, f"{i.change_id}: {i.state.value}, {i.reason}", str(i.remedy), i.remedy)
        for i in found
    ]
