"""Operations over the engine: validate, issues, fix, undo, history, lock info, and its lifecycle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aioflamingock import (
    AuditState,
    Change,
    ChangeIssue,
    ChangeOutcome,
    ClosedResourceError,
    ConfigurationError,
    Flamingock,
    NonTransactionalTargetSystem,
    PendingChangesError,
    PlannedAction,
    Recovery,
    Remedy,
    RemedyAction,
    RollbackFailedError,
    RunStatus,
)
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem

from ._support import SERVICE, TARGET, SpyStore, entry, history, lock_is_free, recording_change, seed, states_of


def engine(store: SpyStore, target: NonTransactionalTargetSystem, *changes: type[Change]) -> Flamingock:
    return Flamingock(audit_store=store, target_systems=[target], changes=changes)


def three_changes() -> list[type[Change]]:
    return [recording_change("a", "0001"), recording_change("b", "0002"), recording_change("c", "0003")]


# -- validate ----------------------------------------------------------------------------------------------------


async def test_validate_lists_pending_changes(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    await seed(store, entry("a", AuditState.APPLIED))
    with pytest.raises(PendingChangesError) as caught:
        await engine(store, target, *three_changes()).validate()
    assert caught.value.pending == ["b", "c"]
    assert "b: APPLY" in str(caught.value) and "c: APPLY" in str(caught.value)
    assert store.engine_lock_attempts == []


async def test_validate_lists_a_change_needing_intervention(
    store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    await seed(store, entry("a", AuditState.STARTED))
    with pytest.raises(PendingChangesError) as caught:
        await engine(store, target, *three_changes()).validate()
    assert caught.value.pending == ["a", "b", "c"]
    assert "a: MANUAL_INTERVENTION" in str(caught.value) and "c: BLOCKED" in str(caught.value)
    assert str(Remedy.fix("a")) in str(caught.value)
    assert store.engine_lock_attempts == []


async def test_validate_passes_when_everything_is_applied(
    store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    fl = engine(store, target, *three_changes())
    await fl.run()
    await fl.validate()
    await engine(store, target, *three_changes()).validate()


# -- issues and fix ----------------------------------------------------------------------------------------------


async def test_issues_lists_changes_needing_a_human(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    retry = recording_change("c", "0003", recovery=Recovery.ALWAYS_RETRY, idempotency="appending is harmless here")
    await seed(
        store,
        entry("a", AuditState.APPLIED),
        entry("b", AuditState.FAILED, transaction_flag=False),
        entry("c", AuditState.STARTED),
    )
    fl = engine(store, target, recording_change("a", "0001"), recording_change("b", "0002"), retry)

    issues = await fl.issues()

    assert len(issues) == 1
    issue = issues[0]
    assert isinstance(issue, ChangeIssue)
    assert (issue.change_id, issue.state) == ("b", AuditState.FAILED)
    assert issue.remedy == Remedy(RemedyAction.FIX, "b", ("applied", "rolled-back"))
    assert "failed outside a transaction" in issue.reason
    assert store.engine_lock_attempts == []


async def test_issues_lists_every_change_needing_a_human(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    await seed(store, entry("b", AuditState.STARTED), entry("c", AuditState.ROLLBACK_FAILED))
    issues = await engine(store, target, *three_changes()).issues()
    assert [(i.change_id, i.state) for i in issues] == [("b", AuditState.STARTED), ("c", AuditState.ROLLBACK_FAILED)]


async def test_no_issues_when_all_is_well(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    fl = engine(store, target, *three_changes())
    assert await fl.issues() == []
    await fl.run()
    assert await fl.issues() == []


async def test_fix_as_applied_lets_the_next_run_proceed_past_it(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    await seed(store, entry("a", AuditState.APPLIED), entry("b", AuditState.STARTED))
    fl = engine(store, target, *three_changes())

    marked = await fl.fix("b", resolution="applied")

    assert marked.change_id == "b" and marked.state is AuditState.MANUAL_MARKED_AS_APPLIED
    assert (await history(store))[-1] == marked
    assert await lock_is_free(store)
    assert await fl.issues() == []
    report = await engine(store, target, *three_changes()).run()
    assert calls == ["c"]
    assert report.applied == ["c"]
    assert await states_of(store, "b") == [AuditState.STARTED, AuditState.MANUAL_MARKED_AS_APPLIED]


async def test_fix_as_rolled_back_makes_the_next_run_apply_it_again(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    await seed(store, entry("a", AuditState.ROLLBACK_FAILED))
    fl = engine(store, target, recording_change("a", "0001"))

    marked = await fl.fix("a", resolution="rolled-back")

    assert marked.state is AuditState.MANUAL_MARKED_AS_ROLLED_BACK
    assert [(p.change_id, p.action) for p in await fl.plan()] == [("a", PlannedAction.APPLY)]
    await fl.run()
    assert calls == ["a"]


async def test_fix_works_for_a_change_only_the_audit_knows(
    store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    await seed(store, entry("removed-change", AuditState.STARTED, author="bob"))
    marked = await engine(store, target).fix("removed-change", resolution="applied")
    assert (marked.change_id, marked.state, marked.author) == (
        "removed-change",
        AuditState.MANUAL_MARKED_AS_APPLIED,
        "bob",
    )


@pytest.mark.parametrize("resolution", ["done", "APPLIED", "rolled_back", ""])
async def test_fix_rejects_an_unknown_resolution(
    store: SpyStore, target: NonTransactionalTargetSystem, resolution: Any
) -> None:
    await seed(store, entry("a", AuditState.STARTED))
    before = await history(store)
    with pytest.raises(ConfigurationError, match="resolution"):
        await engine(store, target, recording_change("a", "0001")).fix("a", resolution=resolution)
    assert await history(store) == before
    assert store.engine_lock_attempts == []


async def test_fix_rejects_an_unknown_change(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    with pytest.raises(ConfigurationError, match="'ghost' is neither declared nor in the audit"):
        await engine(store, target, recording_change("a", "0001")).fix("ghost", resolution="applied")
    assert await history(store) == []


# -- baseline ----------------------------------------------------------------------------------------------------


async def test_baseline_records_changes_up_to_the_given_one_as_applied_without_running_them(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, *(recording_change(i, f"000{n}") for n, i in enumerate("abc", 1)))
    written = await fl.baseline(to="b")
    assert calls == [], "a baseline runs nothing"
    assert [(e.change_id, e.state, e.invoked_method) for e in written] == [
        ("a", AuditState.MANUAL_MARKED_AS_APPLIED, "baseline"),
        ("b", AuditState.MANUAL_MARKED_AS_APPLIED, "baseline"),
    ]
    assert await history(store) == written and await lock_is_free(store)
    assert (await fl.run()).applied == ["c"] and calls == ["c"]


async def test_baseline_refuses_changes_with_a_history_unless_forced(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    a, b, c = (recording_change(i, f"000{n}") for n, i in enumerate("abc", 1))
    await engine(store, target, a).run()
    await seed(store, entry("b", AuditState.FAILED))
    before, attempts = await history(store), len(store.lock_attempts)
    fl = engine(store, target, a, b, c)
    with pytest.raises(ConfigurationError, match=r"2 change\(s\) already have a history: a \(APPLIED\), b \(FAILED\)"):
        await fl.baseline(to="c")
    assert await history(store) == before and len(store.lock_attempts) == attempts
    written = await fl.baseline(to="c", force=True)
    assert [e.change_id for e in written] == ["b", "c"], "a is applied: left as it is"


async def test_baseline_to_an_unknown_change_is_refused(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    fl = engine(store, target, recording_change("a", "0001"))
    with pytest.raises(ConfigurationError, match="'z' is not a declared change"):
        await fl.baseline(to="z")
    assert await history(store) == [] and store.lock_attempts == []


async def test_adopt_marks_the_changes_named_and_a_dry_run_writes_nothing(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, *(recording_change(i, f"000{n}") for n, i in enumerate("abc", 1)))
    assert await fl.adopt(["c", "a"], dry_run=True) == ["a", "c"]  # in the changes' order
    assert await history(store) == [] and store.lock_attempts == []
    assert await fl.adopt(["c", "a"]) == ["a", "c"]
    assert [(e.change_id, e.state, e.invoked_method) for e in await history(store)] == [
        ("a", AuditState.MANUAL_MARKED_AS_APPLIED, "adopt"),
        ("c", AuditState.MANUAL_MARKED_AS_APPLIED, "adopt"),
    ]
    assert calls == [] and (await fl.run()).applied == ["b"]
    with pytest.raises(ConfigurationError, match=r"'x' not declared change\(s\)"):
        await fl.adopt(["a", "x"])


# -- undo --------------------------------------------------------------------------------------------------------


def reversible(change_id: str, order: str) -> type[Change]:
    base = recording_change(change_id, order)

    class Reversible(base):  # type: ignore[valid-type, misc]
        async def rollback(self, ctx: Any) -> None:
            ctx["calls"].append(f"rollback:{self.id}")

    return Reversible


class BrokenRollback(Change):
    id = "d"
    order = "0004"
    author = "tester"
    target_system = TARGET
    transactional = False

    async def execute(self, ctx: Any) -> None:
        ctx["calls"].append(self.id)

    async def rollback(self, ctx: Any) -> None:
        ctx["calls"].append(f"rollback:{self.id}")
        raise RuntimeError("cannot drop the index")


async def test_undo_rolls_back_newer_changes_newest_first(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    changes = [reversible("a", "0001"), reversible("b", "0002"), reversible("c", "0003")]
    fl = engine(store, target, *changes)
    await fl.run()
    calls.clear()
    applied = len(await history(store))

    report = await fl.undo(to="a")

    assert calls == ["rollback:c", "rollback:b"]
    assert report.status is RunStatus.SUCCESS
    assert [(r.change_id, r.outcome) for r in report.changes] == [
        ("c", ChangeOutcome.ROLLED_BACK),
        ("b", ChangeOutcome.ROLLED_BACK),
    ]
    undone = (await history(store))[applied:]
    assert [(e.change_id, e.state, e.invoked_method) for e in undone] == [
        ("c", AuditState.ROLLED_BACK, "rollback"),
        ("b", AuditState.ROLLED_BACK, "rollback"),
    ]
    assert [(p.change_id, p.action) for p in await fl.plan()] == [
        ("a", PlannedAction.SKIP),
        ("b", PlannedAction.APPLY),
        ("c", PlannedAction.APPLY),
    ]
    assert await lock_is_free(store)


async def test_undo_to_base_rolls_back_every_applied_change(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, reversible("a", "0001"), reversible("b", "0002"), reversible("c", "0003"))
    await fl.run()
    calls.clear()
    report = await fl.undo(to="base")
    assert calls == ["rollback:c", "rollback:b", "rollback:a"]
    assert [(p.change_id, p.action) for p in await fl.plan()] == [(i, PlannedAction.APPLY) for i in "abc"]
    assert report.status is RunStatus.SUCCESS and await lock_is_free(store)


async def test_undo_to_base_means_the_change_when_one_is_called_base(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, reversible("base", "0001"), reversible("b", "0002"))
    await fl.run()
    calls.clear()
    await fl.undo(to="base")
    assert calls == ["rollback:b"]


async def test_undo_to_an_unknown_change_says_what_it_takes(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, reversible("a", "0001"))
    await fl.run()
    attempts = len(store.lock_attempts)
    with pytest.raises(ConfigurationError, match=r"'z' is not a declared change; .* or 'base' to undo every one"):
        await fl.undo(to="z")
    assert len(store.lock_attempts) == attempts and calls == ["a"]  # refused before the lock, nothing rolled back


async def test_undo_skips_changes_that_are_not_applied(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    await seed(store, entry("a", AuditState.APPLIED), entry("c", AuditState.MANUAL_MARKED_AS_APPLIED))
    fl = engine(store, target, reversible("a", "0001"), reversible("b", "0002"), reversible("c", "0003"))
    report = await fl.undo(to="a")
    assert calls == ["rollback:c"]
    assert [r.change_id for r in report.changes] == ["c"]


async def test_undo_with_nothing_newer_changes_nothing(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, reversible("a", "0001"), reversible("b", "0002"))
    await fl.run()
    before = await history(store)
    report = await fl.undo(to="b")
    assert report.status is RunStatus.NO_CHANGES
    assert await history(store) == before


async def test_undo_refuses_when_a_change_to_undo_has_no_rollback(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, reversible("a", "0001"), recording_change("b", "0002"), reversible("c", "0003"))
    await fl.run()
    calls.clear()
    before = await history(store)

    with pytest.raises(ConfigurationError, match="defines no rollback"):
        await fl.undo(to="a")

    assert calls == [], "nothing is rolled back, not even the newer change that could be"
    assert await history(store) == before
    assert await lock_is_free(store)


async def test_undo_to_an_unknown_change_is_rejected(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    with pytest.raises(ConfigurationError, match="'ghost' is not a declared change"):
        await engine(store, target, reversible("a", "0001")).undo(to="ghost")
    assert store.engine_lock_attempts == []


async def test_undo_stops_at_a_rollback_that_fails(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(
        store, target, reversible("a", "0001"), reversible("b", "0002"), reversible("c", "0003"), BrokenRollback
    )
    await fl.run()
    calls.clear()

    with pytest.raises(RollbackFailedError) as caught:
        await fl.undo(to="a")

    assert caught.value.change_id == "d"
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert calls == ["rollback:d"]
    assert (await states_of(store, "d"))[-1] is AuditState.ROLLBACK_FAILED
    assert (await states_of(store, "c"))[-1] is AuditState.APPLIED
    report = caught.value.report
    assert report is not None and [(r.change_id, r.outcome) for r in report.changes] == [("d", ChangeOutcome.FAILED)]
    assert await lock_is_free(store)


class CreateTable(Change):
    id = "create-table"
    order = "0001"
    author = "tester"
    target_system = "db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE base (n INTEGER)")


class CreateExtra(Change):
    id = "create-extra"
    order = "0002"
    author = "tester"
    target_system = "db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE extra (n INTEGER)")

    async def rollback(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("DROP TABLE extra")


async def _tables(db: SQLiteTargetSystem) -> set[str]:
    async with db, db.connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cursor:
        return {str(row[0]) async for row in cursor}


async def test_undo_of_a_transactional_change_runs_its_rollback_in_a_transaction(tmp_path: Path) -> None:
    db = SQLiteTargetSystem("db", path=str(tmp_path / "app.db"))
    fl = Flamingock(
        audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=[CreateTable, CreateExtra]
    )
    await fl.run()
    assert {"base", "extra"} <= await _tables(db)

    await fl.undo(to="create-table")

    assert "extra" not in await _tables(db)
    assert [(e.change_id, e.state) async for e in fl.history()][-1] == ("create-extra", AuditState.ROLLED_BACK)


# -- history -----------------------------------------------------------------------------------------------------


async def test_history_yields_entries_oldest_first(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    fl = engine(store, target, recording_change("a", "0001"), recording_change("b", "0002"))
    first = await fl.run()
    await fl.fix("b", resolution="rolled-back")

    entries = [e async for e in fl.history()]

    assert [(e.change_id, e.state) for e in entries] == [
        ("a", AuditState.STARTED),
        ("a", AuditState.APPLIED),
        ("b", AuditState.STARTED),
        ("b", AuditState.APPLIED),
        ("b", AuditState.MANUAL_MARKED_AS_ROLLED_BACK),
    ]
    assert {e.execution_id for e in entries[:4]} == {first.execution_id}
    assert entries[4].execution_id != first.execution_id
    assert [e.created_at for e in entries] == sorted(e.created_at for e in entries)


# -- lock info and force unlock ----------------------------------------------------------------------------------


async def test_lock_info_and_force_unlock(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    fl = engine(store, target)
    assert await fl.lock_info() is None
    assert await store.lock.try_acquire(SERVICE, "dead-instance", 30) is not None

    info = await fl.lock_info()
    assert info is not None and info.owner == "dead-instance" and info.key == SERVICE

    assert await fl.force_unlock() is True
    assert await fl.lock_info() is None
    assert await fl.force_unlock() is False


# -- lifecycle ---------------------------------------------------------------------------------------------------


async def test_async_with_keeps_resources_open_across_calls_and_closes_them(tmp_path: Path) -> None:
    db = SQLiteTargetSystem("db", path=str(tmp_path / "app.db"))
    fl = Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=[CreateTable])

    async with fl as entered:
        assert entered is fl
        connection = db.connection
        await fl.run()
        await fl.validate()
        assert db.connection is connection, "one connection for every call inside the block"

    with pytest.raises(ClosedResourceError):
        _ = db.connection


async def test_a_closed_engine_cannot_be_used(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    fl = engine(store, target, recording_change("a", "0001"))
    async with fl:
        pass

    with pytest.raises(ClosedResourceError):
        await fl.run()
    with pytest.raises(ClosedResourceError):
        await fl.plan()
    with pytest.raises(ClosedResourceError):
        await fl.fix("a", resolution="applied")
    with pytest.raises(ClosedResourceError):
        [e async for e in fl.history()]
    with pytest.raises(ClosedResourceError):
        async with fl:
            pass
    assert await history(store) == []


async def test_an_engine_cannot_be_entered_twice(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    fl = engine(store, target)
    async with fl:
        with pytest.raises(ClosedResourceError):
            async with fl:
                pass
