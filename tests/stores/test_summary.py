"""The start-up summary (SQLite): a run with nothing pending reads one row instead of every change's state, and the
summary never says something the full read does not. Random histories — applied and failed changes, on both
transactional and non-transactional paths, `fix` either way, `undo`, changes no longer declared and declared
again, an entry written by a tool that keeps no summary, an entry deleted by hand — are driven through a real
store; after each step the summary is either absent or exactly the summary of the full read, and its fast answer
never says "nothing pending" when the plan has something to do."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aioflamingock import Change, Flamingock, PendingChangesError, PlannedAction, RunError, RunStatus
from aioflamingock.backend import summary_of
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem

IDS = ("c0", "c1", "c2", "c3", "c4")
NON_TRANSACTIONAL = {"c2", "c3"}
"""c0, c1 and c4 take the shared-transaction path; c2 and c3 write outside a transaction (a failure there needs a
human, unless the change retries: c3 is ALWAYS_RETRY)."""


def changes(failing: set[str]) -> dict[str, type[Change]]:
    """One class per id, which fails when its id is in `failing`."""

    def make(change_id: str, order: int) -> type[Change]:
        async def execute(self: Change, ctx: SQLiteContext) -> None:
            await ctx.connection.execute("INSERT INTO effects (k) VALUES (?)", (change_id,))
            if change_id in failing:
                raise RuntimeError(f"{change_id} fails this time")

        async def rollback(self: Change, ctx: SQLiteContext) -> None:
            await ctx.connection.execute("DELETE FROM effects WHERE k = ?", (change_id,))

        attributes: dict[str, Any] = {
            "id": change_id,
            "order": f"{order:04d}",
            "author": "tests",
            "target_system": "db",
            "transactional": change_id not in NON_TRANSACTIONAL,
            "execute": execute,
            "rollback": rollback,
        }
        if change_id == "c3":
            attributes["recovery"] = "ALWAYS_RETRY"
            attributes["idempotency"] = "its row is keyed by its id: a second insert adds nothing a reader counts"
        return type(f"Change_{change_id}", (Change,), attributes)

    return {change_id: make(change_id, i) for i, change_id in enumerate(IDS)}


def engine(path: Path, declared: list[str], failing: set[str] = frozenset()) -> Flamingock:  # type: ignore[assignment]
    target = SQLiteTargetSystem("db", path=path)
    made = changes(set(failing))
    return Flamingock(
        audit_store=SQLiteAuditStore.from_target(target),
        target_systems=[target],
        changes=[made[change_id] for change_id in declared],
    )


def create_effects(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS effects (k TEXT)")
    connection.close()


async def check_summary(path: Path) -> None:
    """The summary is absent or equals the full read's; where it says a declared set has nothing pending, so does
    the plan."""
    fl = engine(path, list(IDS))
    async with fl:
        store = fl.audit_store
        summary = await store.applied_summary()
        full = summary_of(await store.current_states())
    if summary is not None:
        assert summary == full, "the summary disagrees with the audit"
    for size in range(len(IDS) + 1):
        declared = list(IDS[:size])
        if summary is not None and summary.covers_exactly(declared):
            planned = await engine(path, declared).plan()
            assert all(p.action is PlannedAction.SKIP for p in planned), planned


STEP = st.one_of(
    st.tuples(  # half of them with nothing failing: a run that ends with nothing pending writes the summary
        st.just("run"), st.integers(0, len(IDS)), st.one_of(st.just(set()), st.sets(st.sampled_from(IDS), max_size=2))
    ),
    st.tuples(st.just("fix"), st.sampled_from(IDS), st.sampled_from(["applied", "rolled-back"])),
    st.tuples(st.just("undo"), st.integers(1, len(IDS)), st.just(None)),
    st.tuples(st.just("foreign entry"), st.sampled_from(IDS), st.sampled_from(["STARTED", "APPLIED", "FAILED"])),
    st.tuples(st.just("delete newest"), st.sampled_from(IDS), st.just(None)),
)


async def play(path: Path, steps: list[tuple[str, Any, Any]]) -> None:
    create_effects(path)
    for kind, first, second in steps:
        if kind == "run":
            with contextlib.suppress(RunError):
                await engine(path, list(IDS[:first]), second).run()
        elif kind == "fix":
            await engine(path, list(IDS)).fix(first, second)
        elif kind == "undo":
            with contextlib.suppress(RunError):
                await engine(path, list(IDS[:first])).undo(IDS[first - 1])
        elif kind == "foreign entry":  # a writer that keeps no summary: an older version, say
            with sqlite3.connect(path) as connection:
                if connection.execute("SELECT name FROM sqlite_master WHERE name = 'flamingock_audit_log'").fetchone():
                    connection.execute(
                        "INSERT INTO flamingock_audit_log (execution_id, stage_id, change_id, created_at, state, "
                        "type, metadata, execution_millis, system_change, tx_strategy, recovery_strategy, "
                        "transaction_flag) VALUES (?, 'default', ?, '2026-12-02T00:00:00Z', ?, 'EXECUTION', '{}', 0, "
                        "0, 'NON_TX', 'MANUAL_INTERVENTION', 0)",
                        (uuid.uuid4().hex, first, second),
                    )
            connection.close()
        else:  # a human deleting an entry, as CorruptAuditError's fix says
            with sqlite3.connect(path) as connection:
                if connection.execute("SELECT name FROM sqlite_master WHERE name = 'flamingock_audit_log'").fetchone():
                    connection.execute(
                        "DELETE FROM flamingock_audit_log WHERE id = "
                        "(SELECT MAX(id) FROM flamingock_audit_log WHERE change_id = ?)",
                        (first,),
                    )
            connection.close()
        await check_summary(path)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(STEP, min_size=1, max_size=8))
@example(steps=[("run", 5, set()), ("delete newest", "c0", None)])  # not the audit's newest row: only a trigger sees
@example(steps=[("run", 5, set()), ("run", 5, set()), ("foreign entry", "c1", "STARTED")])
@example(steps=[("run", 3, set()), ("fix", "c4", "applied"), ("run", 5, set())])
def test_the_summary_never_says_more_than_the_full_read(steps: list[tuple[str, Any, Any]]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(play(Path(directory) / "app.db", steps))


# -- the fast path is taken, and left when it must be ---------------------------------------------------------------


async def test_a_run_with_nothing_pending_reads_the_summary_and_not_every_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "app.db"
    create_effects(path)
    assert len((await engine(path, list(IDS)).run()).applied) == len(IDS)

    async def every_state(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a run with nothing pending read every change's state")

    monkeypatch.setattr(SQLiteAuditStore, "current_states", every_state)
    report = await engine(path, list(IDS)).run()
    assert report.status is RunStatus.NO_CHANGES
    monkeypatch.undo()

    with sqlite3.connect(path) as connection:  # a human deletes c4's APPLIED entry
        connection.execute("DELETE FROM flamingock_audit_log WHERE change_id = 'c4'")
    connection.close()
    again = await engine(path, list(IDS)).run()
    assert again.applied == ["c4"], "the deleted entry's change was not seen as pending"


async def test_a_new_change_is_never_taken_for_applied_by_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    create_effects(path)
    await engine(path, list(IDS[:3])).run()
    await engine(path, list(IDS[:3])).run()  # the summary is now up to date with c0..c2
    report = await engine(path, list(IDS)).run()
    assert report.applied == ["c3", "c4"]


async def test_validate_answers_from_the_summary_and_still_names_what_is_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "app.db"
    create_effects(path)
    await engine(path, list(IDS[:3])).run()

    async def every_state(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("validate read every change's state")

    with monkeypatch.context() as patched:
        patched.setattr(SQLiteAuditStore, "current_states", every_state)
        await engine(path, list(IDS[:3])).validate()
    with pytest.raises(PendingChangesError) as caught:
        await engine(path, list(IDS)).validate()
    assert caught.value.pending == ["c3", "c4"]


async def test_a_database_where_the_summary_cannot_be_created_still_runs_reading_every_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An audit made before the summary existed, opened by a role that may not create tables there (simulated:
    root may write any file): the store opens, and runs and plans read every state as before."""
    path = tmp_path / "app.db"
    create_effects(path)
    await engine(path, list(IDS[:2])).run()
    with sqlite3.connect(path) as connection:  # as an older version left it
        connection.execute("DROP TRIGGER flamingock_audit_log_summary_on_update")
        connection.execute("DROP TRIGGER flamingock_audit_log_summary_on_delete")
        connection.execute("DROP TABLE flamingock_audit_log_summary")
    connection.close()
    write = SQLiteTargetSystem._write

    async def read_only(self: SQLiteTargetSystem, sql: str, params: tuple[Any, ...] = ()) -> int:
        if "_summary" in sql:
            raise sqlite3.OperationalError("attempt to write a readonly database")
        return await write(self, sql, params)

    monkeypatch.setattr(SQLiteTargetSystem, "_write", read_only)
    report = await engine(path, list(IDS[:3])).run()
    assert report.applied == ["c2"]
    assert (await engine(path, list(IDS[:3])).run()).status is RunStatus.NO_CHANGES
    fl = engine(path, list(IDS[:3]))
    async with fl:
        assert await fl.audit_store.applied_summary() is None
