"""What operators and platforms observe: health(), doctor(), extra listeners, OpenTelemetry spans, log fields."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from aioflamingock import (
    AuditState,
    Change,
    ChangeFailedError,
    Event,
    EventKind,
    Flamingock,
    NonTransactionalTargetSystem,
    Remedy,
    StoreUnavailableError,
)

from ._support import TARGET, SpyStore, entry, recording_change, seed, states_of


def engine(store: SpyStore, target: NonTransactionalTargetSystem, *changes: type[Change]) -> Flamingock:
    return Flamingock(audit_store=store, target_systems=[target], changes=changes)


class Failing(Change):
    id, order, author, target_system, transactional = "breaks", "0009", "tester", TARGET, False

    async def execute(self, ctx: Any) -> None:
        raise RuntimeError("disk full")


class UnreachableStore(SpyStore):
    async def _open(self) -> None:
        raise StoreUnavailableError("connection refused by mongodb://admin:s3cret@db.internal:27017")


class SlowStore(SpyStore):
    async def current_states(self, change_ids: Any = None) -> Any:
        await anyio.sleep(30)
        return await super().current_states(change_ids)


# -- health -------------------------------------------------------------------------------------------------------


async def test_health_is_ready_when_the_store_answers_and_lists_what_is_pending(
    store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    await seed(store, entry("a", AuditState.APPLIED))
    health = await engine(store, target, recording_change("a", "0001"), recording_change("b", "0002")).health()
    assert health.ready and health.audit_store_reachable
    assert health.pending == ["b"]
    assert health.issues == []
    expected = {"ready": True, "auditStoreReachable": True, "issues": [], "pending": ["b"], "error": None}
    assert health.to_dict() == expected
    assert store.engine_lock_attempts == [], "a probe takes no lock"


async def test_health_is_not_ready_while_a_change_needs_manual_intervention(
    store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    await seed(store, entry("a", AuditState.STARTED))
    health = await engine(store, target, recording_change("a", "0001")).health()
    assert health.audit_store_reachable and not health.ready
    assert [(i.change_id, i.state) for i in health.issues] == [("a", AuditState.STARTED)]
    [issue] = health.to_dict()["issues"]
    assert issue["remedy"] == {"action": "fix", "changeId": "a", "resolutions": ["applied", "rolled-back"]}
    assert issue["fix"] == "check the data, then record what happened: fix('a', 'applied' or 'rolled-back')"


async def test_health_reports_an_unreachable_store_without_raising_or_leaking_its_password(
    target: NonTransactionalTargetSystem,
) -> None:
    health = await engine(UnreachableStore(), target, recording_change("a", "0001")).health()
    assert not health.ready and not health.audit_store_reachable
    assert health.error is not None and "connection refused" in health.error
    assert "s3cret" not in health.error


async def test_health_gives_up_after_its_timeout(target: NonTransactionalTargetSystem) -> None:
    with anyio.fail_after(5):
        health = await engine(SlowStore(), target, recording_change("a", "0001")).health(timeout_seconds=0.2)
    assert not health.ready
    assert health.error == "the audit store did not answer within 0.2 s"


async def test_health_during_a_run_shares_the_open_store(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    """A probe hitting an app while its changes are applied must neither reopen nor close what the run uses, nor
    take the change being applied (STARTED, not yet APPLIED) for one that needs manual intervention."""
    opens: list[str] = []
    running, release = anyio.Event(), anyio.Event()

    class Paused(Change):
        id, order, author, target_system, transactional = "paused", "0001", "tester", TARGET, False

        async def execute(self, ctx: Any) -> None:
            running.set()
            await release.wait()

    original_open = store._open

    async def counting_open() -> None:
        opens.append("open")
        await original_open()

    store._open = counting_open  # type: ignore[method-assign]
    fl = engine(store, target, Paused)
    async with anyio.create_task_group() as tg:
        tg.start_soon(fl.run)
        await running.wait()
        health = await fl.health()
        issues = await fl.issues()
        release.set()
    assert opens == ["open"], "the probe reused the run's open store"
    assert await states_of(store, "paused") == [AuditState.STARTED, AuditState.APPLIED]
    assert health.ready and health.pending == ["paused"]
    assert issues == []


# -- doctor -------------------------------------------------------------------------------------------------------


async def test_doctor_reports_every_problem_with_a_fix(target: NonTransactionalTargetSystem) -> None:
    class Orphan(Change):
        id, order, author, target_system = "orphan", "0002", "tester", "no-such-target"

        async def execute(self, ctx: Any) -> None: ...

    checks = await engine(UnreachableStore(), target, recording_change("a", "0001"), Orphan).doctor()
    problems = {(c.subject, c.check): c for c in checks if not c.ok}
    assert set(problems) == {("changes", "load"), ("audit store", "reachable")}
    assert "no-such-target" in problems["changes", "load"].detail
    assert "s3cret" not in problems["audit store", "reachable"].detail
    assert all(c.fix for c in problems.values())
    assert [c.ok for c in checks if c.subject == f"target system {TARGET!r}"] == [True]


async def test_doctor_names_the_fix_of_each_stuck_change_and_who_holds_the_lock(
    store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    await seed(store, entry("a", AuditState.STARTED))
    async with store:
        assert await store.lock.try_acquire("default", "other-host/42/x", 60) is not None
    checks = await engine(store, target, recording_change("a", "0001")).doctor()
    issue = next(c for c in checks if c.check == "issues")
    assert not issue.ok and issue.remedy == Remedy.fix("a") and issue.fix == str(Remedy.fix("a"))
    lock = next(c for c in checks if c.subject == "lock")
    assert lock.ok and "held by other-host/42/x" in lock.detail
    assert store.engine_lock_attempts == ["other-host/42/x"], "doctor took no lock"


async def test_doctor_is_all_ok_on_a_healthy_setup(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    checks = await engine(store, target, recording_change("a", "0001")).doctor()
    assert all(c.ok for c in checks), checks
    assert {c.subject for c in checks} == {"changes", f"target system {TARGET!r}", "audit store", "audit", "lock"}


# -- listeners, spans, logs -----------------------------------------------------------------------------------------


async def test_add_listener_receives_the_events_of_later_runs(
    store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    seen: list[tuple[EventKind, str | None]] = []

    async def listener(event: Event) -> None:
        seen.append((event.kind, event.change_id))

    fl = engine(store, target, recording_change("a", "0001"))
    fl.add_listener(listener)
    await fl.run()
    assert seen == [
        (EventKind.RUN_STARTED, None),
        (EventKind.CHANGE_STARTED, "a"),
        (EventKind.CHANGE_FINISHED, "a"),
        (EventKind.RUN_FINISHED, None),
    ]


async def test_a_run_and_each_change_are_spans(
    spans: InMemorySpanExporter, store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    report = await engine(store, target, recording_change("a", "0001"), recording_change("b", "0002")).run()
    finished = spans.get_finished_spans()
    assert [s.name for s in finished] == ["aioflamingock.change", "aioflamingock.change", "aioflamingock.run"]
    run = finished[-1]
    assert run.attributes is not None and run.attributes["aioflamingock.execution_id"] == report.execution_id
    assert run.attributes["aioflamingock.status"] == "SUCCESS"
    assert run.attributes["aioflamingock.applied"] == 2
    for change, change_id in zip(finished[:2], ["a", "b"], strict=True):
        assert change.parent is not None and change.parent.span_id == run.context.span_id
        assert change.attributes is not None and change.attributes["aioflamingock.change_id"] == change_id
        assert change.attributes["aioflamingock.outcome"] == "APPLIED"


async def test_a_failed_change_marks_its_span_and_the_run_span_as_errors(
    spans: InMemorySpanExporter, store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    with pytest.raises(ChangeFailedError):
        await engine(store, target, Failing).run()
    change, run = spans.get_finished_spans()
    assert change.status.status_code is StatusCode.ERROR
    assert [e.attributes["exception.message"] for e in change.events if e.attributes] == ["disk full"]
    assert run.status.status_code is StatusCode.ERROR


async def test_log_records_carry_the_service_execution_and_change(
    caplog: pytest.LogCaptureFixture, store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    caplog.set_level(logging.INFO, logger="aioflamingock")
    report = await engine(store, target, recording_change("a", "0001")).run()
    applying = next(r for r in caplog.records if r.getMessage().startswith("applying change 'a'"))
    summary = next(r for r in caplog.records if r.getMessage().startswith("aioflamingock run"))
    assert (applying.service, applying.execution_id, applying.change_id) == ("default", report.execution_id, "a")  # type: ignore[attr-defined]
    assert (summary.service, summary.status) == ("default", "SUCCESS")  # type: ignore[attr-defined]
    assert applying.name == "aioflamingock._engine"
