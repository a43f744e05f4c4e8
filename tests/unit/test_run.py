"""`Flamingock.run()`: order, idempotence, failures, transactions, listeners, switches and the lock."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest

from aioflamingock import (
    DISABLE_ENV_VAR,
    AuditState,
    Change,
    ChangeFailedError,
    ChangeOutcome,
    Event,
    EventKind,
    Flamingock,
    LockAcquisitionTimeoutError,
    LockLostError,
    LockOptions,
    NonTransactionalTargetSystem,
    PlannedAction,
    Recovery,
    RunStatus,
    TxStrategy,
)
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem

from ._support import SERVICE, TARGET, SpyStore, history, lock_is_free, recording_change, states_of

FAST_LOCK = LockOptions(lease_seconds=0.6, acquire_timeout_seconds=0.3, retry_interval_seconds=0.05)


def engine(store: SpyStore, target: NonTransactionalTargetSystem, *changes: type[Change], **options: Any) -> Flamingock:
    return Flamingock(audit_store=store, target_systems=[target], changes=changes, **options)


# -- order and idempotence ---------------------------------------------------------------------------------------


async def test_changes_run_in_order_of_their_order_strings(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    changes = [recording_change("c", "0003"), recording_change("a", "0001"), recording_change("b", "0002")]
    report = await engine(store, target, *changes).run()
    assert calls == ["a", "b", "c"]
    assert report.status is RunStatus.SUCCESS
    assert [(r.change_id, r.outcome) for r in report.changes] == [
        ("a", ChangeOutcome.APPLIED),
        ("b", ChangeOutcome.APPLIED),
        ("c", ChangeOutcome.APPLIED),
    ]
    assert [(e.change_id, e.state) for e in await history(store)] == [
        ("a", AuditState.STARTED),
        ("a", AuditState.APPLIED),
        ("b", AuditState.STARTED),
        ("b", AuditState.APPLIED),
        ("c", AuditState.STARTED),
        ("c", AuditState.APPLIED),
    ]
    assert await lock_is_free(store)


async def test_orders_compare_as_strings_not_numbers(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    await engine(store, target, recording_change("two", "2"), recording_change("ten", "10")).run()
    assert calls == ["ten", "two"]


async def test_entries_describe_the_change(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    report = await engine(store, target, recording_change("a", "0001"), metadata={"release": "1.2"}).run()
    started, applied = await history(store)
    for entry in (started, applied):
        assert entry.execution_id == report.execution_id
        assert entry.stage_id == SERVICE
        assert entry.change_id == "a"
        assert entry.author == "tester"
        assert entry.target_system_id == TARGET
        assert entry.change_order == "0001"
        assert entry.tx_strategy is TxStrategy.NON_TX
        assert entry.transaction_flag is False
        assert entry.metadata == {"release": "1.2"}
        assert entry.invoked_class is not None and entry.invoked_class.endswith("Recorded")
        assert entry.error_trace is None
    assert started.created_at <= applied.created_at


async def test_a_second_run_is_no_changes_takes_no_lock_and_writes_nothing(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    changes = [recording_change("a", "0001"), recording_change("b", "0002")]
    await engine(store, target, *changes).run()
    after_first = await history(store)
    attempts = len(store.lock_attempts)

    report = await engine(store, target, *changes).run()

    assert report.status is RunStatus.NO_CHANGES
    assert [(r.change_id, r.outcome) for r in report.changes] == [
        ("a", ChangeOutcome.ALREADY_APPLIED),
        ("b", ChangeOutcome.ALREADY_APPLIED),
    ]
    assert calls == ["a", "b"]
    assert len(store.lock_attempts) == attempts
    assert await history(store) == after_first


async def test_a_new_change_runs_alone_on_the_next_run(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    await engine(store, target, recording_change("a", "0001")).run()
    report = await engine(store, target, recording_change("a", "0001"), recording_change("b", "0002")).run()
    assert calls == ["a", "b"]
    assert report.with_outcome(ChangeOutcome.ALREADY_APPLIED) == ["a"]
    assert report.applied == ["b"]


# -- a failing change --------------------------------------------------------------------------------------------

BOOM = ValueError("disk quota exceeded")


class Fails(Change):
    id = "fails"
    order = "0002"
    author = "tester"
    target_system = TARGET
    transactional = False

    async def execute(self, ctx: Any) -> None:
        ctx["calls"].append(self.id)
        raise BOOM


class FailsAndRollsBack(Fails):
    async def rollback(self, ctx: Any) -> None:
        ctx["calls"].append(f"rollback:{self.id}")


class FailsAndRollbackFails(Fails):
    async def rollback(self, ctx: Any) -> None:
        ctx["calls"].append(f"rollback:{self.id}")
        raise RuntimeError("rollback failed too")


@pytest.mark.parametrize(
    ("change", "rollback_state", "expected_calls"),
    [
        pytest.param(Fails, None, ["a", "fails"], id="no-rollback"),
        pytest.param(
            FailsAndRollsBack, AuditState.ROLLED_BACK, ["a", "fails", "rollback:fails"], id="rollback-succeeds"
        ),
        pytest.param(
            FailsAndRollbackFails, AuditState.ROLLBACK_FAILED, ["a", "fails", "rollback:fails"], id="rollback-fails"
        ),
    ],
)
async def test_a_failing_change_stops_the_run_and_is_recorded(
    store: SpyStore,
    target: NonTransactionalTargetSystem,
    calls: list[str],
    change: type[Change],
    rollback_state: AuditState | None,
    expected_calls: list[str],
) -> None:
    fl = engine(store, target, recording_change("a", "0001"), change, recording_change("c", "0003"))

    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()

    error = caught.value
    assert error.__cause__ is BOOM
    assert error.change_id == "fails"
    assert "'fails'" in str(error) and "disk quota exceeded" in str(error)
    assert calls == expected_calls
    report = error.report
    assert report is not None and report.status is RunStatus.FAILED
    assert [(r.change_id, r.outcome) for r in report.changes] == [
        ("a", ChangeOutcome.APPLIED),
        ("fails", ChangeOutcome.FAILED),
        ("c", ChangeOutcome.NOT_REACHED),
    ]
    failed = report.changes[1]
    assert failed.error is BOOM
    assert failed.rollback_state is rollback_state
    states = [AuditState.STARTED, AuditState.FAILED] + ([rollback_state] if rollback_state else [])
    assert await states_of(store, "fails") == states
    assert await states_of(store, "c") == []
    failed_entry = next(e for e in await history(store) if e.state is AuditState.FAILED)
    assert failed_entry.error_trace is not None and "ValueError: disk quota exceeded" in failed_entry.error_trace
    assert failed_entry.transaction_flag is False
    if rollback_state is AuditState.ROLLBACK_FAILED:
        last = (await history(store))[-1]
        assert last.invoked_method == "rollback"
        assert last.error_trace is not None and "rollback failed too" in last.error_trace
    assert await lock_is_free(store)


async def test_a_huge_error_is_truncated_in_the_audit(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    class Verbose(Change):
        id = "verbose"
        order = "0001"
        author = "tester"
        target_system = TARGET
        transactional = False

        async def execute(self, ctx: Any) -> None:
            raise ValueError("too long " * 25_000)

    with pytest.raises(ChangeFailedError):
        await engine(store, target, Verbose).run()
    failed = (await history(store))[-1]
    assert failed.state is AuditState.FAILED
    assert failed.error_trace is not None and 1_000 < len(failed.error_trace) < 20_000


# -- a transactional change (SQLite, shared transaction) -----------------------------------------------------------


class CreateUsers(Change):
    id = "create-users"
    order = "0001"
    author = "tester"
    target_system = "db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE users (name TEXT)")


class AddUsers(Change):
    id = "add-users"
    order = "0002"
    author = "tester"
    target_system = "db"
    fail = True

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("INSERT INTO users VALUES ('ada'), ('grace')")
        await ctx.connection.execute("CREATE TABLE side_effect (n INTEGER)")
        if AddUsers.fail:
            raise RuntimeError("third user is invalid")


async def _count(db: SQLiteTargetSystem, sql: str) -> int:
    async with db, db.connection.execute(sql) as cursor:
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def sqlite_db(tmp_path: Path) -> SQLiteTargetSystem:
    return SQLiteTargetSystem("db", path=str(tmp_path / "app.db"))


@pytest.mark.parametrize(
    ("path", "states_after_failure"),
    [
        pytest.param(TxStrategy.TX_AUDIT_STORE_SHARED, [AuditState.FAILED], id="shared-transaction"),
        pytest.param(TxStrategy.TX_AUDIT_STORE_SYNC, [AuditState.STARTED, AuditState.FAILED], id="marker"),
    ],
)
async def test_a_failing_transactional_change_leaves_no_partial_writes_and_is_retried(
    sqlite_db: SQLiteTargetSystem,
    monkeypatch: pytest.MonkeyPatch,
    path: TxStrategy,
    states_after_failure: list[AuditState],
) -> None:
    monkeypatch.setattr(AddUsers, "fail", True)
    store = SQLiteAuditStore.from_target(sqlite_db) if path is TxStrategy.TX_AUDIT_STORE_SHARED else SpyStore()
    fl = Flamingock(audit_store=store, target_systems=[sqlite_db], changes=[CreateUsers, AddUsers])

    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()

    assert isinstance(caught.value.__cause__, RuntimeError)
    assert await _count(sqlite_db, "SELECT count(*) FROM users") == 0
    assert await _count(sqlite_db, "SELECT count(*) FROM sqlite_master WHERE name = 'side_effect'") == 0
    async with sqlite_db:
        assert await sqlite_db.read_marker("add-users") is None
    entries = [e async for e in fl.history() if e.change_id == "add-users"]
    assert [e.state for e in entries] == states_after_failure
    assert {(e.tx_strategy, e.transaction_flag) for e in entries} == {(path, True)}
    assert [(p.change_id, p.action) for p in await fl.plan()] == [
        ("create-users", PlannedAction.SKIP),
        ("add-users", PlannedAction.APPLY),
    ]

    monkeypatch.setattr(AddUsers, "fail", False)
    report = await Flamingock(audit_store=store, target_systems=[sqlite_db], changes=[CreateUsers, AddUsers]).run()

    assert report.applied == ["add-users"]
    assert await _count(sqlite_db, "SELECT count(*) FROM users") == 2
    assert [e.state async for e in fl.history()][-1] is AuditState.APPLIED


async def test_a_transactional_change_on_the_stores_own_database_needs_no_started_entry(
    sqlite_db: SQLiteTargetSystem,
) -> None:
    fl = Flamingock(
        audit_store=SQLiteAuditStore.from_target(sqlite_db), target_systems=[sqlite_db], changes=[CreateUsers]
    )
    await fl.run()
    entries = [e async for e in fl.history()]
    assert [(e.state, e.tx_strategy, e.transaction_flag) for e in entries] == [
        (AuditState.APPLIED, TxStrategy.TX_AUDIT_STORE_SHARED, True)
    ]


# -- listeners and logs ------------------------------------------------------------------------------------------


async def test_listeners_receive_events_in_order(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    events: list[Event] = []

    async def listen(event: Event) -> None:
        events.append(event)

    changes = [recording_change("a", "0001"), recording_change("b", "0002")]
    report = await engine(store, target, *changes, listeners=[listen]).run()

    assert [(e.kind, e.change_id) for e in events] == [
        (EventKind.RUN_STARTED, None),
        (EventKind.CHANGE_STARTED, "a"),
        (EventKind.CHANGE_FINISHED, "a"),
        (EventKind.CHANGE_STARTED, "b"),
        (EventKind.CHANGE_FINISHED, "b"),
        (EventKind.RUN_FINISHED, None),
    ]
    assert {e.execution_id for e in events} == {report.execution_id}
    assert events[2].result is not None and events[2].result.outcome is ChangeOutcome.APPLIED
    assert events[-1].report == report


async def test_listeners_see_a_failed_run_finish(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    events: list[Event] = []

    async def listen(event: Event) -> None:
        events.append(event)

    with pytest.raises(ChangeFailedError):
        await engine(store, target, Fails, listeners=[listen]).run()
    assert events[-1].kind is EventKind.RUN_FINISHED
    assert events[-1].report is not None and events[-1].report.status is RunStatus.FAILED
    assert events[-2].result is not None and events[-2].result.outcome is ChangeOutcome.FAILED


async def test_a_listener_that_raises_is_logged_and_does_not_stop_the_run(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[EventKind] = []

    async def broken(event: Event) -> None:
        raise RuntimeError("metrics backend down")

    async def listen(event: Event) -> None:
        seen.append(event.kind)

    with caplog.at_level(logging.ERROR, logger="aioflamingock"):
        report = await engine(store, target, recording_change("a", "0001"), listeners=[broken, listen]).run()

    assert report.status is RunStatus.SUCCESS
    assert calls == ["a"]
    assert len(seen) == 4, "the listener after the broken one still gets every event"
    failures = [r for r in caplog.records if "listener" in r.getMessage() and r.levelno == logging.ERROR]
    assert len(failures) == 4
    assert "metrics backend down" in (failures[0].exc_text or "")  # the traceback, redacted, as text


async def test_the_run_summary_is_logged(
    store: SpyStore, target: NonTransactionalTargetSystem, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="aioflamingock"):
        report = await engine(store, target, recording_change("a", "0001"), recording_change("b", "0002")).run()
    summaries = [r.getMessage() for r in caplog.records if report.execution_id in r.getMessage()]
    assert len(summaries) == 1
    assert "SUCCESS" in summaries[0] and "2 applied" in summaries[0]


async def test_a_failed_run_summary_is_logged(
    store: SpyStore, target: NonTransactionalTargetSystem, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="aioflamingock"), pytest.raises(ChangeFailedError) as caught:
        await engine(store, target, recording_change("a", "0001"), Fails, recording_change("c", "0003")).run()
    assert caught.value.report is not None
    summary = next(r.getMessage() for r in caplog.records if caught.value.report.execution_id in r.getMessage())
    assert "FAILED" in summary and "1 applied" in summary and "1 failed" in summary and "1 not reached" in summary


# -- switched off ------------------------------------------------------------------------------------------------


async def test_enabled_false_makes_run_do_nothing(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    report = await engine(store, target, recording_change("a", "0001"), enabled=False).run()
    assert report.status is RunStatus.NO_CHANGES
    assert calls == []
    assert store.lock_attempts == []
    assert await history(store) == []


@pytest.mark.parametrize("value", ["1", "true", "TRUE"])
async def test_the_environment_variable_makes_run_do_nothing(
    store: SpyStore,
    target: NonTransactionalTargetSystem,
    calls: list[str],
    monkeypatch: pytest.MonkeyPatch,
    value: str,
) -> None:
    assert DISABLE_ENV_VAR == "AIOFLAMINGOCK_DISABLED"
    monkeypatch.setenv("AIOFLAMINGOCK_DISABLED", value)
    report = await engine(store, target, recording_change("a", "0001")).run()
    assert report.status is RunStatus.NO_CHANGES
    assert calls == []
    assert await history(store) == []


async def test_the_environment_variable_set_to_0_does_not_disable(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOFLAMINGOCK_DISABLED", "0")
    await engine(store, target, recording_change("a", "0001")).run()
    assert calls == ["a"]


# -- the lock ----------------------------------------------------------------------------------------------------


async def test_a_lock_held_elsewhere_times_out_naming_the_holder(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    assert await store.lock.try_acquire(SERVICE, "other-host/4242/run-x", 30) is not None
    fl = engine(store, target, recording_change("a", "0001"), lock=FAST_LOCK)

    started = time.monotonic()
    with pytest.raises(LockAcquisitionTimeoutError) as caught:
        await fl.run()

    assert time.monotonic() - started < 2
    assert "other-host/4242/run-x" in str(caught.value)
    assert calls == []
    assert await history(store) == []
    info = await store.lock.read(SERVICE)
    assert info is not None and info.owner == "other-host/4242/run-x", "the holder keeps its lock"


async def test_the_run_waits_for_a_lease_to_end_and_then_applies(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    assert await store.lock.try_acquire(SERVICE, "crashed-instance", 0.3) is not None
    options = LockOptions(lease_seconds=5, acquire_timeout_seconds=5, retry_interval_seconds=3)

    started = time.monotonic()
    report = await engine(store, target, recording_change("a", "0001"), lock=options).run()

    assert report.applied == ["a"]
    assert calls == ["a"]
    assert time.monotonic() - started < 1.5, "it sleeps until the holder's lease ends, not a whole retry interval"


async def test_listeners_see_run_finished_when_the_lock_cannot_be_taken(
    store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    events: list[Event] = []

    async def listen(event: Event) -> None:
        events.append(event)

    assert await store.lock.try_acquire(SERVICE, "other-instance", 30) is not None
    with pytest.raises(LockAcquisitionTimeoutError):
        await engine(store, target, recording_change("a", "0001"), lock=FAST_LOCK, listeners=[listen]).run()
    assert [e.kind for e in events] == [EventKind.RUN_STARTED, EventKind.RUN_FINISHED]


def slow_change(change_recovery: Recovery) -> type[Change]:
    class Slow(Change):
        id = "slow"
        order = "0001"
        author = "tester"
        target_system = TARGET
        transactional = False
        recovery = change_recovery
        idempotency = "the test change only appends to a list"

        async def execute(self, ctx: Any) -> None:
            ctx["running"].set()
            await asyncio.sleep(0.2)
            ctx["calls"].append(self.id)

    return Slow


@pytest.mark.parametrize(
    "recovery",
    [
        Recovery.MANUAL_INTERVENTION,
        Recovery.ALWAYS_RETRY,
    ],
)
async def test_an_instance_starting_during_a_run_waits_and_finds_the_change_applied(
    store: SpyStore, recovery: Recovery
) -> None:
    calls: list[str] = []
    running = asyncio.Event()
    target = NonTransactionalTargetSystem(TARGET, dependencies={"calls": calls, "running": running})
    options = LockOptions(lease_seconds=5, acquire_timeout_seconds=3, retry_interval_seconds=0.02)
    first, second = (engine(store, target, slow_change(recovery), lock=options) for _ in range(2))

    first_run = asyncio.create_task(first.run())
    await running.wait()
    second_report = await second.run()
    first_report = await first_run

    assert calls == ["slow"]
    assert first_report.applied == ["slow"]
    assert second_report.applied == []
    assert second_report.with_outcome(ChangeOutcome.ALREADY_APPLIED) == ["slow"]
    assert await states_of(store, "slow") == [AuditState.STARTED, AuditState.APPLIED]


async def test_a_run_uses_the_service_as_its_lock_key(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    assert await store.lock.try_acquire("other-service", "someone", 30) is not None
    report = await engine(store, target, recording_change("a", "0001"), service="billing", lock=FAST_LOCK).run()
    assert report.applied == ["a"]
    assert {e.stage_id for e in await history(store)} == {"billing"}


class SleepsUntilCancelled(Change):
    id = "slow"
    order = "0002"
    author = "tester"
    target_system = TARGET
    transactional = False

    async def execute(self, ctx: Any) -> None:
        ctx["running"].set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            ctx["calls"].append("cancelled")
            raise
        ctx["calls"].append("finished")


async def test_losing_the_lock_mid_change_cancels_it_and_records_nothing_more(store: SpyStore) -> None:
    calls: list[str] = []
    running = asyncio.Event()
    target = NonTransactionalTargetSystem(TARGET, dependencies={"calls": calls, "running": running})
    options = LockOptions(lease_seconds=0.6, acquire_timeout_seconds=1, retry_interval_seconds=0.05)
    fl = engine(store, target, recording_change("a", "0001"), SleepsUntilCancelled, lock=options)

    async def take_over() -> None:
        await running.wait()
        await store.lock.force_release(SERVICE)
        assert await store.lock.try_acquire(SERVICE, "intruder", 30) is not None

    started = time.monotonic()
    with pytest.raises(LockLostError) as caught:
        await asyncio.gather(fl.run(), take_over())

    assert time.monotonic() - started < 2, "the change is cancelled at the next renewal, not after it finishes"
    assert calls == ["a", "cancelled"]
    assert await states_of(store, "slow") == [AuditState.STARTED]
    assert caught.value.report is not None and "slow" not in caught.value.report.applied
    info = await store.lock.read(SERVICE)
    assert info is not None and info.owner == "intruder", "the new holder's lock is left alone"
