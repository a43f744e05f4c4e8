"""Every cell of the recovery table (DESIGN section 3), through `plan()` and through `run()`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aioflamingock import (
    AuditEntry,
    AuditState,
    Change,
    ChangeOutcome,
    Flamingock,
    ManualInterventionRequiredError,
    Marker,
    NonTransactionalTargetSystem,
    PlannedAction,
    Recovery,
    Remedy,
    RunStatus,
    TxStrategy,
)
from aioflamingock.memory import InMemoryAuditStore
from aioflamingock.sqlite import SQLiteContext, SQLiteTargetSystem

from ._support import SpyStore, entry, history, lock_is_free, recording_change, seed, states_of

MANUAL = Recovery.MANUAL_INTERVENTION
RETRY = Recovery.ALWAYS_RETRY
APPLY = PlannedAction.APPLY
SKIP = PlannedAction.SKIP
ISSUE = PlannedAction.MANUAL_INTERVENTION

# A current state, described by the newest audit entry; None means "no entry".
NONE = None
ROLLED_BACK = entry("c", AuditState.ROLLED_BACK)
MARKED_ROLLED_BACK = entry("c", AuditState.MANUAL_MARKED_AS_ROLLED_BACK)
APPLIED = entry("c", AuditState.APPLIED)
MARKED_APPLIED = entry("c", AuditState.MANUAL_MARKED_AS_APPLIED)
FAILED_TX = entry("c", AuditState.FAILED, transaction_flag=True, tx_strategy=TxStrategy.TX_AUDIT_STORE_SHARED)
FAILED_NON_TX = entry("c", AuditState.FAILED, transaction_flag=False)
STARTED = entry("c", AuditState.STARTED)
ROLLBACK_FAILED = entry("c", AuditState.ROLLBACK_FAILED)

TABLE = [
    # current state            recovery  expected action
    pytest.param(NONE, MANUAL, APPLY, id="none-manual"),
    pytest.param(NONE, RETRY, APPLY, id="none-retry"),
    pytest.param(ROLLED_BACK, MANUAL, APPLY, id="rolled_back-manual"),
    pytest.param(ROLLED_BACK, RETRY, APPLY, id="rolled_back-retry"),
    pytest.param(MARKED_ROLLED_BACK, MANUAL, APPLY, id="marked_rolled_back-manual"),
    pytest.param(MARKED_ROLLED_BACK, RETRY, APPLY, id="marked_rolled_back-retry"),
    pytest.param(APPLIED, MANUAL, SKIP, id="applied-manual"),
    pytest.param(APPLIED, RETRY, SKIP, id="applied-retry"),
    pytest.param(MARKED_APPLIED, MANUAL, SKIP, id="marked_applied-manual"),
    pytest.param(MARKED_APPLIED, RETRY, SKIP, id="marked_applied-retry"),
    pytest.param(FAILED_TX, MANUAL, APPLY, id="failed_transactional-manual"),
    pytest.param(FAILED_TX, RETRY, APPLY, id="failed_transactional-retry"),
    pytest.param(FAILED_NON_TX, MANUAL, ISSUE, id="failed_non_transactional-manual"),
    pytest.param(FAILED_NON_TX, RETRY, APPLY, id="failed_non_transactional-retry"),
    pytest.param(STARTED, MANUAL, ISSUE, id="started-manual"),
    pytest.param(STARTED, RETRY, APPLY, id="started-retry"),
    pytest.param(ROLLBACK_FAILED, MANUAL, ISSUE, id="rollback_failed-manual"),
    pytest.param(ROLLBACK_FAILED, RETRY, APPLY, id="rollback_failed-retry"),
]

FIX = Remedy.fix("c")


def engine(store: SpyStore, target: NonTransactionalTargetSystem, *changes: type[Change]) -> Flamingock:
    return Flamingock(audit_store=store, target_systems=[target], changes=changes)


def change_c(recovery: Recovery) -> type[Change]:
    return recording_change("c", "0001", recovery=recovery, idempotency="the test change only appends to a list")


@pytest.mark.parametrize(("current", "recovery", "action"), TABLE)
async def test_plan_follows_the_table(
    store: SpyStore,
    target: NonTransactionalTargetSystem,
    current: AuditEntry | None,
    recovery: Recovery,
    action: PlannedAction,
) -> None:
    if current is not None:
        await seed(store, current)
    before = await history(store)

    plan = await engine(store, target, change_c(recovery)).plan()

    assert [(p.change_id, p.action) for p in plan] == [("c", action)]
    if action is ISSUE:
        assert plan[0].remedy == FIX
    assert await history(store) == before
    assert store.engine_lock_attempts == []


@pytest.mark.parametrize(("current", "recovery", "action"), TABLE)
async def test_run_follows_the_table(
    store: SpyStore,
    target: NonTransactionalTargetSystem,
    calls: list[str],
    current: AuditEntry | None,
    recovery: Recovery,
    action: PlannedAction,
) -> None:
    if current is not None:
        await seed(store, current)
    before = await history(store)
    fl = engine(store, target, change_c(recovery))

    if action is ISSUE:
        with pytest.raises(ManualInterventionRequiredError) as caught:
            await fl.run()
        assert caught.value.change_id == "c"
        assert "'c'" in str(caught.value)
        assert caught.value.remedy == FIX and str(caught.value).endswith(f"; {FIX}")
        assert caught.value.report is not None
        assert caught.value.report.with_outcome(ChangeOutcome.NEEDS_MANUAL_INTERVENTION) == ["c"]
        assert calls == []
        assert await history(store) == before
    elif action is SKIP:
        report = await fl.run()
        assert report.status is RunStatus.NO_CHANGES
        assert calls == []
        assert await history(store) == before
    else:
        report = await fl.run()
        assert report.status is RunStatus.SUCCESS
        assert report.applied == ["c"]
        assert calls == ["c"]
        new = (await history(store))[len(before) :]
        assert [e.state for e in new] == [AuditState.STARTED, AuditState.APPLIED]
    assert await lock_is_free(store)


async def test_a_change_needing_intervention_blocks_every_later_change(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    changes = [recording_change("a", "0001"), recording_change("b", "0002"), recording_change("c", "0003")]
    await seed(store, entry("b", AuditState.STARTED))
    fl = engine(store, target, *changes)

    plan = await fl.plan()
    assert [(p.change_id, p.action) for p in plan] == [("a", APPLY), ("b", ISSUE), ("c", PlannedAction.BLOCKED)]
    assert "'b'" in plan[2].reason

    with pytest.raises(ManualInterventionRequiredError) as caught:
        await fl.run()
    assert caught.value.change_id == "b"
    assert caught.value.remedy == Remedy.fix("b")
    assert calls == ["a"]
    report = caught.value.report
    assert report is not None and report.status is RunStatus.FAILED
    assert [(r.change_id, r.outcome) for r in report.changes] == [
        ("a", ChangeOutcome.APPLIED),
        ("b", ChangeOutcome.NEEDS_MANUAL_INTERVENTION),
        ("c", ChangeOutcome.NOT_REACHED),
    ]
    assert await states_of(store, "a") == [AuditState.STARTED, AuditState.APPLIED]
    assert await states_of(store, "b") == [AuditState.STARTED]
    assert await states_of(store, "c") == []
    assert await lock_is_free(store)


async def test_an_issue_on_the_first_pending_change_is_confirmed_under_the_lock_and_writes_nothing(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    await seed(store, entry("a", AuditState.APPLIED), entry("b", AuditState.ROLLBACK_FAILED))
    before = await states_of(store, "b")
    fl = engine(store, target, recording_change("a", "0001"), recording_change("b", "0002"))

    with pytest.raises(ManualInterventionRequiredError) as caught:
        await fl.run()

    # Judged again under the lock (another instance might have been applying it), then nothing written.
    assert len(store.engine_lock_attempts) == 1
    assert await lock_is_free(store)
    assert await states_of(store, "b") == before
    assert calls == []
    report = caught.value.report
    assert report is not None
    assert [(r.change_id, r.outcome) for r in report.changes] == [
        ("a", ChangeOutcome.ALREADY_APPLIED),
        ("b", ChangeOutcome.NEEDS_MANUAL_INTERVENTION),
    ]


# -- the separate-transaction path: a STARTED change is settled by the target's marker ---------------------------


def insert_row(change_recovery: Recovery) -> type[Change]:
    """A transactional change on another SQLite database than the audit store's: the marker path."""

    class InsertRow(Change):
        id = "insert-row"
        order = "0001"
        author = "tester"
        target_system = "app-db"
        recovery = change_recovery

        async def execute(self, ctx: SQLiteContext) -> None:
            await ctx.connection.execute("CREATE TABLE IF NOT EXISTS rows (n INTEGER)")
            await ctx.connection.execute("INSERT INTO rows VALUES (1)")

    return InsertRow


async def _rows(db: SQLiteTargetSystem) -> int:
    async with db:
        await db.connection.execute("CREATE TABLE IF NOT EXISTS rows (n INTEGER)")
        async with db.connection.execute("SELECT count(*) FROM rows") as cursor:
            row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def _write_marker(db: SQLiteTargetSystem, marker: Marker) -> None:
    async with db, db.transaction() as tx:
        await db.write_marker(tx, marker)


async def _read_marker(db: SQLiteTargetSystem, change_id: str) -> Marker | None:
    async with db:
        return await db.read_marker(change_id)


@pytest.mark.parametrize("recovery", [MANUAL, RETRY])
@pytest.mark.parametrize(
    ("marker_execution_id", "action"),
    [
        pytest.param("run-1", PlannedAction.RECOVER, id="marker-of-that-run"),
        pytest.param(None, APPLY, id="no-marker"),
        pytest.param("run-0", APPLY, id="marker-of-another-run"),
    ],
)
async def test_started_on_the_marker_path_is_settled_by_the_marker(
    tmp_path: Path, recovery: Recovery, marker_execution_id: str | None, action: PlannedAction
) -> None:
    db = SQLiteTargetSystem("app-db", path=str(tmp_path / "app.db"))
    store = InMemoryAuditStore()
    started: dict[str, Any] = {"execution_id": "run-1", "target_system_id": "app-db", "recovery_strategy": recovery}
    await seed(
        store,
        entry(
            "insert-row",
            AuditState.STARTED,
            transaction_flag=True,
            tx_strategy=TxStrategy.TX_AUDIT_STORE_SYNC,
            **started,
        ),
    )
    if marker_execution_id is not None:
        await _write_marker(db, Marker("insert-row", marker_execution_id))
    fl = Flamingock(audit_store=store, target_systems=[db], changes=[insert_row(recovery)])

    assert [(p.change_id, p.action) for p in await fl.plan()] == [("insert-row", action)]
    report = await fl.run()

    assert report.status is RunStatus.SUCCESS
    newest = (await history(store))[-1]
    assert newest.change_id == "insert-row" and newest.state is AuditState.APPLIED
    if action is PlannedAction.RECOVER:
        assert report.with_outcome(ChangeOutcome.RECOVERED) == ["insert-row"]
        assert await _rows(db) == 0, "a recovered change must not run again"
        assert newest.metadata["recoveredFromExecutionId"] == "run-1"
        assert await states_of(store, "insert-row") == [AuditState.STARTED, AuditState.APPLIED]
    else:
        assert report.applied == ["insert-row"]
        assert await _rows(db) == 1
        assert newest.tx_strategy is TxStrategy.TX_AUDIT_STORE_SYNC
        assert await states_of(store, "insert-row") == [AuditState.STARTED, AuditState.STARTED, AuditState.APPLIED]
    assert await _read_marker(db, "insert-row") is None
