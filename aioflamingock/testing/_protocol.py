"""The protocol kit: the safety protocol's scenarios, written once, run by every backend through a small kit.

A backend's test module subclasses `BackendProtocol` and provides a `kit` fixture: a `ProtocolKit` on a fresh,
empty backing. The kit says how to build an instance of the application (an audit store, the target it is built
from, another target that cannot share its transactions), how a change writes and how a test counts an effect, and,
where the backing can, how to make a commit abort or lose its answer. The scenarios drive real runs through
`Flamingock` and check the effects and the audit they leave.
"""

from __future__ import annotations

import asyncio
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import anyio
import pytest

from .. import (
    AuditEntry,
    AuditState,
    AuditStore,
    Change,
    ChangeFailedError,
    ChangeOutcome,
    ConfigurationError,
    Flamingock,
    LockAcquisitionTimeoutError,
    LockLostError,
    LockOptions,
    Marker,
    Recovery,
    RunStatus,
    TargetSystem,
    TransactionAbortedError,
    TransactionalTargetSystem,
    TransactionOutcomeUnknownError,
    TxStrategy,
)
from ..backend import utc_now
from ._child import changes_of
from ._processes import ProcessScenarios

__all__ = ["BackendProtocol", "Instance", "ProtocolKit", "simulated_aborts"]

SERVICE = "default"
FAST_LOCK = LockOptions(lease_seconds=10, acquire_timeout_seconds=30, retry_interval_seconds=0.05)
SHORT_LEASE = 0.25


@dataclass
class Instance:
    """One instance of the application, as a backend builds it: `store` (not opened) is built from `app`, so a
    transactional change on `app` takes the shared path; `other` is on the same kind of backing but cannot share
    the store's transactions (the marker path), or None where the backend has no such target."""

    store: AuditStore
    app: TargetSystem
    other: TransactionalTargetSystem | None = None

    def targets(self) -> list[TargetSystem]:
        return [self.app, *([self.other] if self.other is not None else [])]


class ProtocolKit(ABC):
    """A backend's side of the protocol scenarios, made fresh for each test on an empty backing.

    Implement `instance`, `write` and `count`; `abort_commits` and `lose_commit_answers` where the backing can
    make a commit fail that way (the scenarios that need them skip otherwise, saying so). Register what must be
    closed after the test on `exit_stack`.
    """

    transactions_skip: str | None = None
    """Why the store's own target cannot run transactional changes here (the shared-transaction scenarios skip), or
    None. The marker scenarios need `Instance.other` only."""

    def __init__(self) -> None:
        self.exit_stack = AsyncExitStack()

    @abstractmethod
    async def instance(self) -> Instance:
        """A new instance of the application on this kit's backing: new clients or connections each call (the
        concurrency scenario builds eight). Targets are named `app` and `other`."""

    @abstractmethod
    async def write(self, ctx: Any, key: str, amount: int = 1) -> None:
        """Add `amount` to the effect `key` through `ctx`, the context a change receives: inside its transaction
        when it has one, so that the write commits or vanishes with it."""

    @abstractmethod
    async def count(self, key: str) -> int:
        """The effect `key` as the backing holds it now, committed writes only, whichever target wrote it."""

    def store_without_creating(self, instance: Instance) -> AuditStore:
        """A store like `instance.store`, told to check that its tables (indexes, collections) exist instead of
        creating them: `create_tables=False` or the like."""
        raise NotImplementedError

    def abort_commits(self, target: TransactionalTargetSystem, times: int) -> AbstractAsyncContextManager[None]:
        """While entered, the next `times` transactions of `target` are aborted by the backing once their body
        has run (a write conflict, say): nothing of them is committed and the engine may run them again."""
        raise NotImplementedError

    def lose_commit_answers(self, target: TransactionalTargetSystem, times: int) -> AbstractAsyncContextManager[None]:
        """While entered, the next `times` commits of `target` are sent but their answer is lost. Leave the
        backing usable on exit (a transaction left open must end)."""
        raise NotImplementedError

    def process_kit(self) -> tuple[str, list[str]]:
        """How another process builds this kit on the same backing, for the real-process scenarios: an importable
        `module:callable` and its string arguments; the callable returns the kit. Those scenarios skip where this
        raises NotImplementedError (a backing that lives in this process only)."""
        raise NotImplementedError("this backing lives in the test's process: no other process can reach it")

    async def after_kill(self) -> None:
        """Called once a process of the real-process scenarios was SIGKILLed, before anything is read: end what
        the dead process left open that only a server-side timeout would end otherwise (a transaction, say)."""
        return None

    async def stop_backing(self) -> None:
        """Make the backing unreachable, its data kept (the `outage_kit` fixture's kit only)."""
        raise NotImplementedError

    async def start_backing(self) -> None:
        """Make the backing reachable again, with the data it had."""
        raise NotImplementedError

    async def aclose(self) -> None:
        await self.exit_stack.aclose()


@asynccontextmanager
async def simulated_aborts(target: TransactionalTargetSystem, times: int) -> AsyncIterator[None]:
    """While entered, the next `times` transactions of `target` are aborted once their body has run, as a database
    aborts one after a write conflict or a deadlock: nothing of them is committed, and `TransactionAbortedError` is
    raised. For a kit's `abort_commits` where the backing cannot be made to abort a transaction on demand."""
    aborts = [times]
    real = target.transaction

    @asynccontextmanager
    async def aborting() -> AsyncIterator[Any]:
        async with real() as tx:
            yield tx
            if aborts[0]:
                aborts[0] -= 1
                raise TransactionAbortedError("deadlock or write conflict (simulated)")

    target.transaction = aborting  # type: ignore[method-assign]
    try:
        yield
    finally:
        del target.transaction


def _change(
    kit: ProtocolKit,
    change_id: str,
    order: str,
    *,
    target: str = "app",
    transactional: bool = True,
    fail: bool = False,
    pause: float = 0.0,
    recovery: Recovery = Recovery.MANUAL_INTERVENTION,
) -> type[Change]:
    """A change that adds 1 to the effect named after it (and 1 back on rollback), counting its executions."""

    async def execute(self: Change, ctx: Any) -> None:
        type(self).executions += 1  # type: ignore[attr-defined]
        await kit.write(ctx, change_id)
        if pause:
            await anyio.sleep(pause)
            await kit.write(ctx, f"{change_id}-after-pause")  # the transaction is still usable after the pause
        if fail:
            raise ValueError("boom")

    async def rollback(self: Change, ctx: Any) -> None:
        await kit.write(ctx, change_id, -1)

    name = f"Kit_{change_id.replace('-', '_')}"
    attributes: dict[str, Any] = {
        "id": change_id,
        "order": order,
        "author": "protocol-kit",
        "target_system": target,
        "transactional": transactional,
        "recovery": recovery,
        "executions": 0,
        "execute": execute,
        "rollback": rollback,
        "__module__": __name__,
        "__qualname__": name,
    }
    return cast("type[Change]", type(name, (Change,), attributes))


def _one_per_path(kit: ProtocolKit, instance: Instance) -> list[type[Change]]:
    """A change on each path the backend has (the same as a process of the real-process scenarios declares)."""
    return [
        _change(kit, change_id, f"{n:04d}", target=target, transactional=transactional)
        for n, (change_id, target, transactional) in enumerate(changes_of(kit, instance), start=1)
    ]


def _flamingock(instance: Instance, *changes: type[Change], lock: LockOptions = FAST_LOCK) -> Flamingock:
    return Flamingock(audit_store=instance.store, target_systems=instance.targets(), changes=changes, lock=lock)


async def _entries(fl: Flamingock, change_id: str) -> list[AuditEntry]:
    return [e async for e in fl.history() if e.change_id == change_id]


def _entry(change_id: str, state: AuditState, strategy: TxStrategy, target: str) -> AuditEntry:
    return AuditEntry(
        execution_id=f"crashed-{uuid.uuid4().hex[:8]}",
        stage_id=SERVICE,
        change_id=change_id,
        created_at=utc_now(),
        state=state,
        tx_strategy=strategy,
        target_system_id=target,
        change_order="0001",
        transaction_flag=strategy is not TxStrategy.NON_TX,
    )


class BackendProtocol(ProcessScenarios):
    """Subclass me and provide a `kit` fixture (a `ProtocolKit` on a fresh backing, closed after the test); for
    the outage scenario, an `outage_kit` fixture too (a kit whose `stop_backing` and `start_backing` work)."""

    @staticmethod
    def _transactions(kit: ProtocolKit) -> None:
        if kit.transactions_skip is not None:
            pytest.skip(kit.transactions_skip)

    @staticmethod
    def _marker(kit: ProtocolKit, instance: Instance) -> TransactionalTargetSystem:
        if instance.other is None:
            pytest.skip("this backend has no target that cannot share the store's transactions")
        return instance.other

    @staticmethod
    def _shared(kit: ProtocolKit, instance: Instance) -> TransactionalTargetSystem:
        BackendProtocol._transactions(kit)
        assert isinstance(instance.app, TransactionalTargetSystem) and instance.store.shares_transactions_with(
            instance.app
        ), "the store of an instance must share the transactions of its `app` target"
        return instance.app

    # -- the shared transaction ------------------------------------------------------------------------------------

    async def test_shared_path_commits_the_change_with_its_applied_entry(self, kit: ProtocolKit) -> None:
        instance = await kit.instance()
        self._shared(kit, instance)
        change = _change(kit, "shared-1", "0001")
        fl = _flamingock(instance, change)
        assert (await fl.run()).applied == ["shared-1"]
        assert await kit.count("shared-1") == 1
        [entry] = await _entries(fl, "shared-1")
        assert (entry.state, entry.tx_strategy, entry.transaction_flag) == (
            AuditState.APPLIED,
            TxStrategy.TX_AUDIT_STORE_SHARED,
            True,
        )

    async def test_a_failing_shared_change_commits_nothing_of_it_and_records_failed(self, kit: ProtocolKit) -> None:
        instance = await kit.instance()
        self._shared(kit, instance)
        fl = _flamingock(instance, _change(kit, "shared-1", "0001"), _change(kit, "shared-2", "0002", fail=True))
        with pytest.raises(ChangeFailedError) as caught:
            await fl.run()
        assert isinstance(caught.value.__cause__, ValueError)
        assert (await kit.count("shared-1"), await kit.count("shared-2")) == (1, 0)
        assert [(e.state, e.transaction_flag) for e in await _entries(fl, "shared-2")] == [(AuditState.FAILED, True)]
        assert await fl.lock_info() is None

    async def test_undo_on_the_shared_path_commits_the_rollback_with_its_entry(self, kit: ProtocolKit) -> None:
        instance = await kit.instance()
        self._shared(kit, instance)
        fl = _flamingock(instance, _change(kit, "shared-1", "0001"), _change(kit, "shared-2", "0002"))
        await fl.run()
        await fl.undo(to="shared-1")
        assert (await kit.count("shared-1"), await kit.count("shared-2")) == (1, 0)
        assert [e.state for e in await _entries(fl, "shared-2")] == [AuditState.APPLIED, AuditState.ROLLED_BACK]

    async def test_a_shared_change_longer_than_its_lease_commits_once_despite_renewals(self, kit: ProtocolKit) -> None:
        """Renewals must not conflict with the transaction that carries the fenced entry."""
        instance = await kit.instance()
        self._shared(kit, instance)
        change = _change(kit, "shared-1", "0001", pause=1.4)  # the lease is renewed about four times meanwhile
        lock = LockOptions(lease_seconds=1.0, acquire_timeout_seconds=10, retry_interval_seconds=0.05)
        fl = _flamingock(instance, change, lock=lock)
        assert (await fl.run()).applied == ["shared-1"]
        assert change.executions == 1  # type: ignore[attr-defined]
        assert (await kit.count("shared-1"), await kit.count("shared-1-after-pause")) == (1, 1)
        assert [e.state for e in await _entries(fl, "shared-1")] == [AuditState.APPLIED]

    async def test_a_cancelled_transaction_commits_nothing(self, kit: ProtocolKit) -> None:
        instance = await kit.instance()
        app = self._shared(kit, instance)
        async with app:
            with anyio.move_on_after(0.3) as scope:
                async with app.transaction() as tx:
                    await kit.write(tx.context, "cancelled")
                    await anyio.sleep(30)
            assert scope.cancelled_caught
            assert await kit.count("cancelled") == 0
            async with app.transaction() as tx:  # what the cancelled transaction wrote is free again
                await kit.write(tx.context, "cancelled")
        assert await kit.count("cancelled") == 1

    @pytest.mark.parametrize("when", ["before its entry", "after its entry"])
    async def test_a_takeover_during_a_shared_transaction_commits_nothing_of_it(
        self, kit: ProtocolKit, when: str
    ) -> None:
        """The stale holder's lease has ended while its transaction is open; another instance takes the lock over.
        Either the takeover waits for that transaction (SQLite's write lock; MongoDB once the fence document is
        written), and the transaction commits before anyone else holds the lock, or the takeover wins and the stale
        transaction commits nothing: its fenced entry stops it."""
        instance, rival = await kit.instance(), await kit.instance()
        app = self._shared(kit, instance)
        late = _entry("late", AuditState.APPLIED, TxStrategy.TX_AUDIT_STORE_SHARED, "app")
        async with instance.store, rival.store:
            old = await instance.store.lock.try_acquire(SERVICE, "old", SHORT_LEASE)
            assert old is not None
            await anyio.sleep(SHORT_LEASE + 0.2)
            takeover: asyncio.Task[Any] | None = None
            won, fenced = False, None
            try:
                async with app.transaction() as tx:
                    await kit.write(tx.context, "late")
                    if when == "after its entry":
                        await instance.store.append_in_transaction(tx, late, fence=old.fence)
                    takeover = asyncio.ensure_future(rival.store.lock.try_acquire(SERVICE, "new", 30))
                    done, _ = await asyncio.wait([takeover], timeout=0.5)
                    won = bool(done) and takeover.result() is not None
                    assert done == {takeover} or not done, "the takeover failed instead of winning or waiting"
                    if when == "before its entry":
                        await instance.store.append_in_transaction(tx, late, fence=old.fence)
            except (LockLostError, TransactionAbortedError) as exc:
                fenced = exc
            assert takeover is not None
            if won:
                assert fenced is not None, "a stale holder committed after another instance took the lock over"
                with pytest.raises(LockLostError):  # and run again, it finds the lock taken
                    async with app.transaction() as tx:
                        await instance.store.append_in_transaction(tx, late, fence=old.fence)
                assert await kit.count("late") == 0
                assert await rival.store.current_states() == {}
            else:  # the takeover waited for the transaction, which committed while its lease was unchallenged
                assert fenced is None, f"the transaction failed although no one took the lock over: {fenced!r}"
                with anyio.fail_after(30):
                    assert await takeover is not None, "once the transaction ended, the expired lease is taken over"
                assert (await kit.count("late"), list(await rival.store.current_states())) == (1, ["late"])

    # -- the marker path ------------------------------------------------------------------------------------------

    async def test_marker_path_records_started_then_applied_and_deletes_the_marker(self, kit: ProtocolKit) -> None:
        instance = await kit.instance()
        other = self._marker(kit, instance)
        fl = _flamingock(instance, _change(kit, "marker-1", "0001", target="other"))
        assert (await fl.run()).applied == ["marker-1"]
        assert await kit.count("marker-1") == 1
        assert [(e.state, e.tx_strategy) for e in await _entries(fl, "marker-1")] == [
            (AuditState.STARTED, TxStrategy.TX_AUDIT_STORE_SYNC),
            (AuditState.APPLIED, TxStrategy.TX_AUDIT_STORE_SYNC),
        ]
        async with other:
            assert await other.read_marker("marker-1") is None

    @pytest.mark.parametrize("committed", [True, False], ids=["after its commit", "before its commit"])
    async def test_a_crash_in_the_marker_path_is_recovered_by_its_marker(
        self, kit: ProtocolKit, committed: bool
    ) -> None:
        """What a run that died in the marker path leaves, made for real: STARTED in the audit and, if its
        transaction committed, the effect and the marker. The next run records it APPLIED without running it
        again, or runs it again when nothing committed; no human is needed either way."""
        instance = await kit.instance()
        other = self._marker(kit, instance)
        started = _entry("marker-1", AuditState.STARTED, TxStrategy.TX_AUDIT_STORE_SYNC, "other")
        async with instance.store, other:
            lease = await instance.store.lock.try_acquire(SERVICE, "crashed-run", 30)
            assert lease is not None
            await instance.store.append(started, fence=lease.fence)
            if committed:
                async with other.transaction() as tx:
                    await kit.write(tx.context, "marker-1")
                    await other.write_marker(tx, Marker("marker-1", started.execution_id))
                assert await other.read_marker("marker-1") == Marker("marker-1", started.execution_id)
            assert await instance.store.lock.release(lease)
        change = _change(kit, "marker-1", "0001", target="other")
        fl = _flamingock(instance, change)
        report = await fl.run()
        assert [c.outcome for c in report.changes] == [ChangeOutcome.RECOVERED if committed else ChangeOutcome.APPLIED]
        assert change.executions == (0 if committed else 1)  # type: ignore[attr-defined]
        assert await kit.count("marker-1") == 1
        newest = (await _entries(fl, "marker-1"))[-1]
        assert newest.state is AuditState.APPLIED
        if committed:
            assert newest.metadata["recoveredFromExecutionId"] == started.execution_id
        async with other:
            assert await other.read_marker("marker-1") is None

    async def test_a_takeover_between_the_marker_commit_and_applied_is_fenced_then_recovered(
        self, kit: ProtocolKit
    ) -> None:
        """The stale holder committed its change and marker, then lost its lease: its APPLIED entry is refused, and
        the instance that took over records the change from its marker, without running it again."""
        instance, rival = await kit.instance(), await kit.instance()
        other = self._marker(kit, instance)
        started = _entry("marker-1", AuditState.STARTED, TxStrategy.TX_AUDIT_STORE_SYNC, "other")
        applied = started.model_copy(update={"state": AuditState.APPLIED, "created_at": utc_now()})
        async with instance.store, other, rival.store:
            old = await instance.store.lock.try_acquire(SERVICE, "old", SHORT_LEASE)
            assert old is not None
            await instance.store.append(started, fence=old.fence)
            async with other.transaction() as tx:
                await kit.write(tx.context, "marker-1")
                await other.write_marker(tx, Marker("marker-1", started.execution_id))
            await anyio.sleep(SHORT_LEASE + 0.2)
            new = await rival.store.lock.try_acquire(SERVICE, "new", 30)
            assert new is not None
            with pytest.raises(LockLostError):
                await instance.store.append(applied, fence=old.fence)
            assert await rival.store.lock.release(new)
        change = _change(kit, "marker-1", "0001", target="other")
        report = await _flamingock(rival, change).run()
        assert [c.outcome for c in report.changes] == [ChangeOutcome.RECOVERED]
        assert change.executions == 0  # type: ignore[attr-defined]
        assert await kit.count("marker-1") == 1

    # -- the non-transactional path -------------------------------------------------------------------------------

    async def test_non_transactional_path_records_started_then_applied(self, kit: ProtocolKit) -> None:
        instance = await kit.instance()
        fl = _flamingock(instance, _change(kit, "nontx-1", "0001", transactional=False))
        assert (await fl.run()).applied == ["nontx-1"]
        assert await kit.count("nontx-1") == 1
        assert [(e.state, e.tx_strategy, e.transaction_flag) for e in await _entries(fl, "nontx-1")] == [
            (AuditState.STARTED, TxStrategy.NON_TX, False),
            (AuditState.APPLIED, TxStrategy.NON_TX, False),
        ]

    async def test_a_failing_non_transactional_change_is_rolled_back_and_recorded(self, kit: ProtocolKit) -> None:
        instance = await kit.instance()
        fl = _flamingock(instance, _change(kit, "nontx-1", "0001", transactional=False, fail=True))
        with pytest.raises(ChangeFailedError) as caught:
            await fl.run()
        assert isinstance(caught.value.__cause__, ValueError)
        assert await kit.count("nontx-1") == 0  # written, then undone by its rollback
        history = await _entries(fl, "nontx-1")
        assert [e.state for e in history] == [AuditState.STARTED, AuditState.FAILED, AuditState.ROLLED_BACK]
        assert "ValueError: boom" in (history[1].error_trace or "")

    # -- the lock -------------------------------------------------------------------------------------------------

    async def test_a_run_with_nothing_pending_takes_no_lock_and_writes_nothing(self, kit: ProtocolKit) -> None:
        """It completes while another instance holds the lock, and the audit is unchanged."""
        instance, rival = await kit.instance(), await kit.instance()
        changes = _one_per_path(kit, instance)
        assert (await _flamingock(instance, *changes).run()).status is RunStatus.SUCCESS
        before = [e async for e in _flamingock(instance, *changes).history()]
        impatient = LockOptions(lease_seconds=10, acquire_timeout_seconds=0.5, retry_interval_seconds=0.05)
        async with rival.store:
            holder = await rival.store.lock.try_acquire(SERVICE, "holder", 30)
            assert holder is not None
            again = _flamingock(instance, *changes, lock=impatient)
            assert (await again.run()).status is RunStatus.NO_CHANGES
            assert [e async for e in again.history()] == before
            assert await rival.store.lock.release(holder)
        assert all(c.executions == 1 for c in changes)  # type: ignore[attr-defined]

    async def test_a_run_waits_while_another_instance_holds_the_lock(self, kit: ProtocolKit) -> None:
        instance, rival = await kit.instance(), await kit.instance()
        change = _change(kit, "nontx-1", "0001", transactional=False)
        async with rival.store:
            holder = await rival.store.lock.try_acquire(SERVICE, "holder", 30)
            assert holder is not None
            impatient = LockOptions(lease_seconds=10, acquire_timeout_seconds=0.3, retry_interval_seconds=0.05)
            with pytest.raises(LockAcquisitionTimeoutError, match="held by 'holder'"):
                await _flamingock(instance, change, lock=impatient).run()
            assert await kit.count("nontx-1") == 0

            async def release_soon() -> None:
                await anyio.sleep(0.4)
                assert await rival.store.lock.release(holder)

            started = anyio.current_time()
            async with anyio.create_task_group() as tg:
                tg.start_soon(release_soon)
                report = await _flamingock(instance, change).run()
        assert report.applied == ["nontx-1"]
        assert anyio.current_time() - started >= 0.4
        assert await kit.count("nontx-1") == 1

    async def test_concurrent_instances_apply_each_change_once(self, kit: ProtocolKit) -> None:
        instances = [await kit.instance() for _ in range(8)]
        changes = _one_per_path(kit, instances[0])
        reports = await asyncio.gather(*(_flamingock(i, *changes).run() for i in instances))
        applied = sorted(change_id for report in reports for change_id in report.applied)
        assert applied == sorted(c.id for c in changes)
        assert [await kit.count(c.id) for c in changes] == [1] * len(changes)
        history = [e async for e in _flamingock(instances[0], *changes).history()]
        assert sorted(e.change_id for e in history if e.state is AuditState.APPLIED) == applied

    # -- what a store needs ----------------------------------------------------------------------------------------

    async def test_doctor_reports_what_is_missing_creates_nothing_and_is_clean_after_a_run(
        self, kit: ProtocolKit
    ) -> None:
        instance = await kit.instance()
        fl = _flamingock(instance, _change(kit, "nontx-1", "0001", transactional=False))
        first = await fl.doctor()
        assert all(c.fix for c in first if not c.ok), "every problem doctor reports says how to fix it"
        assert [c for c in first if not c.ok and c.check == "reachable"] == [], "a live backing is reachable"
        again = await fl.doctor()
        assert [(c.subject, c.check, c.ok, c.detail) for c in again] == [
            (c.subject, c.check, c.ok, c.detail) for c in first
        ], "doctor created something: a second look found less missing"
        await fl.run()
        assert [c for c in await fl.doctor() if not c.ok] == []

    async def test_a_store_told_not_to_create_refuses_to_open_until_a_run_created_what_it_needs(
        self, kit: ProtocolKit
    ) -> None:
        instance = await kit.instance()
        try:
            checking = kit.store_without_creating(instance)
        except NotImplementedError:
            pytest.skip("this backend's store always creates what it needs")
        with pytest.raises(ConfigurationError) as caught:
            await checking.open()
        assert str(caught.value), "the error names what is missing"
        assert (await _flamingock(instance, _change(kit, "nontx-1", "0001", transactional=False)).run()).applied
        async with checking:
            assert list(await checking.current_states()) == ["nontx-1"]

    # -- commits that fail --------------------------------------------------------------------------------------

    async def test_an_aborted_transaction_is_run_again_and_applied_once(self, kit: ProtocolKit) -> None:
        aborts = 2
        instance = await kit.instance()
        app = self._shared(kit, instance)
        change = _change(kit, "shared-1", "0001")
        fl = _flamingock(instance, change)
        async with _kit_fault(kit.abort_commits, app, aborts):
            assert (await fl.run()).applied == ["shared-1"]
        assert change.executions == aborts + 1  # type: ignore[attr-defined]
        assert await kit.count("shared-1") == 1
        assert [e.state for e in await _entries(fl, "shared-1")] == [AuditState.APPLIED]

    async def test_a_transaction_aborted_every_time_fails_the_change_and_commits_nothing(
        self, kit: ProtocolKit
    ) -> None:
        """The run ends with TransactionAbortedError (as the cause of ChangeFailedError once FAILED is recorded;
        alone where the backing aborted that write too); nothing of the change is committed, and the next run
        applies it once."""
        instance = await kit.instance()
        app = self._shared(kit, instance)
        change = _change(kit, "shared-1", "0001")
        fl = _flamingock(instance, change)
        app.transaction_retry_seconds = 0.5
        with anyio.fail_after(10):
            async with _kit_fault(kit.abort_commits, app, 1_000):
                with pytest.raises((ChangeFailedError, TransactionAbortedError)) as caught:
                    await fl.run()
        failed = isinstance(caught.value, ChangeFailedError)
        assert isinstance(caught.value.__cause__ if failed else caught.value, TransactionAbortedError)
        assert change.executions >= 2  # type: ignore[attr-defined]
        assert await kit.count("shared-1") == 0
        recorded = [(e.state, e.transaction_flag) for e in await _entries(fl, "shared-1")]
        assert recorded == ([(AuditState.FAILED, True)] if failed else [])
        assert (await _flamingock(instance, change).run()).applied == ["shared-1"]
        assert await kit.count("shared-1") == 1

    @pytest.mark.parametrize("path", ["shared", "marker"])
    async def test_a_lost_commit_answer_is_settled_and_the_change_applied_once(
        self, kit: ProtocolKit, path: str
    ) -> None:
        instance = await kit.instance()
        target = self._shared(kit, instance) if path == "shared" else self._marker(kit, instance)
        change = _change(kit, f"{path}-1", "0001", target=target.id)
        fl = _flamingock(instance, change)
        async with _kit_fault(kit.lose_commit_answers, target, 1):
            assert (await fl.run()).applied == [f"{path}-1"]
        assert change.executions == 1  # type: ignore[attr-defined]
        assert await kit.count(f"{path}-1") == 1
        assert (await _entries(fl, f"{path}-1"))[-1].state is AuditState.APPLIED

    async def test_a_commit_never_confirmed_is_an_unknown_outcome_never_a_false_state(self, kit: ProtocolKit) -> None:
        """The run ends with TransactionOutcomeUnknownError; whatever the backing did, the audit agrees with the
        effect, and the next run settles the change without applying it twice."""
        instance = await kit.instance()
        app = self._shared(kit, instance)
        app.transaction_retry_seconds = 0.5
        change = _change(kit, "shared-1", "0001")
        fl = _flamingock(instance, change)
        with anyio.fail_after(20):
            async with _kit_fault(kit.lose_commit_answers, app, 1_000):
                with pytest.raises((TransactionOutcomeUnknownError, ChangeFailedError)) as caught:
                    await fl.run()
        unknown = caught.value if isinstance(caught.value, TransactionOutcomeUnknownError) else caught.value.__cause__
        assert isinstance(unknown, TransactionOutcomeUnknownError)
        applied = [e.state for e in await _entries(fl, "shared-1")] == [AuditState.APPLIED]
        assert await kit.count("shared-1") == (1 if applied else 0), "the audit disagrees with the effect"
        await _flamingock(instance, change).run()
        assert await kit.count("shared-1") == 1


def _kit_fault(hook: Any, target: TransactionalTargetSystem, times: int) -> AbstractAsyncContextManager[None]:
    try:
        return hook(target, times)  # type: ignore[no-any-return]
    except NotImplementedError as exc:
        pytest.skip(str(exc) or f"the kit cannot make this backing's commits fail that way ({hook.__name__})")
