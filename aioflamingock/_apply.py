"""Applying one change under the lock: the three paths of the safety protocol, recovery and undo.

| path | when | what is written |
|---|---|---|
| shared transaction | transactional change on the store's own target | change + APPLIED + lock check, one transaction |
| marker | transactional change on another transactional target | STARTED; change + marker in one transaction; APPLIED |
| non-transactional | otherwise | STARTED; execute; APPLIED (or FAILED, then rollback: ROLLED_BACK / ROLLBACK_FAILED) |
"""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from typing import Any

from ._change import Change, ChangeSpec
from ._driver import retrying
from ._entry import AuditEntry
from ._errors import (
    ChangeMisuseError,
    ConfigurationError,
    LockLostError,
    TransactionAbortedError,
    TransactionBypassedError,
    TransactionOutcomeUnknownError,
    UnawaitedCoroutineError,
)
from ._interfaces import AuditStore, TargetSystem, Transaction, TransactionalTargetSystem
from ._model import (
    FAILURE_METADATA_KEY,
    TRANSACTION_BYPASSED,
    AuditState,
    ChangeOutcome,
    ChangeResult,
    Fence,
    Marker,
    TxStrategy,
    utc_now,
)
from ._redact import library_logger, redact
from ._remedy import Remedy
from ._unawaited import watch_unawaited

__all__ = ["Applier"]

logger = library_logger(__name__)

_MAX_ERROR_TRACE = 16_000
_HOSTNAME = socket.gethostname()


def _needs_human(exc: BaseException | None) -> bool:
    """A failure whose writes may be committed: no later run applies the change again by itself."""
    return isinstance(exc, ChangeMisuseError) and exc.needs_human


def _failure_metadata(exc: BaseException) -> dict[str, Any] | None:
    """What a later run must know about a failure: that it needs a human whatever the change's recovery."""
    return {FAILURE_METADATA_KEY: TRANSACTION_BYPASSED} if _needs_human(exc) else None


def _trace(exc: BaseException, consequence: str | None = None) -> str:
    text = "".join(traceback.format_exception(exc))
    if len(text) > _MAX_ERROR_TRACE:
        text = "...\n" + text[-_MAX_ERROR_TRACE:]
    if consequence:  # the last line, where a reader of the audit looks first
        text += f"\naioflamingock: {consequence}\n"
    return redact(text)


class Applier:
    """Writes the audit entries of one run; every write is fenced by the lock."""

    def __init__(
        self,
        store: AuditStore,
        targets: Mapping[str, TargetSystem],
        *,
        execution_id: str,
        service: str,
        metadata: Mapping[str, Any],
        fence: Fence,
        lease_check: Callable[[], None],
    ) -> None:
        self._store = store
        self._targets = targets
        self.execution_id = execution_id
        self._service = service
        # The engine's own key is the engine's: a user's value must not make a failure look like one of its verdicts.
        self._metadata = {k: v for k, v in metadata.items() if k != FAILURE_METADATA_KEY}
        self._fence = fence
        self._lease_check = lease_check

    def strategy(self, spec: ChangeSpec) -> TxStrategy:
        target = self._targets[spec.target_system]
        if not (spec.transactional and isinstance(target, TransactionalTargetSystem)):
            return TxStrategy.NON_TX
        if self._store.shares_transactions_with(target):
            return TxStrategy.TX_AUDIT_STORE_SHARED
        return TxStrategy.TX_AUDIT_STORE_SYNC

    def entry(
        self,
        spec: ChangeSpec,
        state: AuditState,
        *,
        method: str = "execute",
        started: float | None = None,
        error: BaseException | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        strategy = self.strategy(spec)
        # Validated, although every field is the engine's own: pydantic-core's validation costs less than
        # `model_construct`, which is Python (measured: 2.3% and 5.5% of a change's CPU time on PostgreSQL).
        return AuditEntry(
            execution_id=self.execution_id,
            stage_id=self._service,
            change_id=spec.id,
            author=spec.author,
            created_at=utc_now(),
            state=state,
            invoked_class=spec.class_name,
            invoked_method=method,
            source_file=spec.source_file,
            metadata={**self._metadata, **(metadata or {})},
            execution_millis=0 if started is None else int((time.monotonic() - started) * 1000),
            execution_hostname=_HOSTNAME,
            error_trace=None if error is None else _trace(error, self.consequence(spec, error)),
            tx_strategy=strategy,
            target_system_id=spec.target_system,
            change_order=spec.order,
            recovery_strategy=spec.recovery,
            transaction_flag=strategy is not TxStrategy.NON_TX,
        )

    async def _append(self, entry: AuditEntry) -> None:
        await self._store.append(entry, fence=self._fence)

    async def record(self, entry: AuditEntry) -> None:
        """import_audit(): an entry written as given (another store's), fenced like every write."""
        await self._append(entry)

    def _transactional_target(self, spec: ChangeSpec) -> TransactionalTargetSystem:
        target = self._targets[spec.target_system]
        assert isinstance(target, TransactionalTargetSystem)
        return target

    def consequence(self, spec: ChangeSpec, error: BaseException | None) -> str | None:
        """For a transactional change that failed: what the engine knows it undid, and what the next run does. A
        failure that needs a human says so itself; a non-transactional one is the `ChangeIssue`'s business."""
        if self.strategy(spec) is TxStrategy.NON_TX or _needs_human(error):
            return None
        return (
            "The engine rolled back its transaction: what the change wrote through its context was undone (writes "
            "made any other way are not); the next run applies it again"
        )

    # -- calling the change's code -------------------------------------------------------------------------------

    async def _call(
        self, spec: ChangeSpec, method: str, ctx: Any, *, tx: Transaction | None = None, change: Change | None = None
    ) -> None:
        """Run the change's `execute` or `rollback` with `ctx`, then refuse what the engine can see it got wrong:
        a coroutine it never awaited, or (in a transaction) going around the engine's transaction."""
        call = getattr(change if change is not None else spec.cls(), method)
        with watch_unawaited() as unawaited:
            try:
                with nullcontext() if tx is None else tx.running_change():
                    await call(ctx)
            except Exception as exc:
                await self._check_transaction(spec, method, tx, cause=exc)
                for item in unawaited:
                    exc.add_note(f"aioflamingock: {method} never awaited {item}")
                raise
            await self._check_transaction(spec, method, tx)
        if unawaited:
            raise UnawaitedCoroutineError(_unawaited_message(spec, method, unawaited), spec.id)

    async def _check_transaction(
        self, spec: ChangeSpec, method: str, tx: Transaction | None, *, cause: BaseException | None = None
    ) -> None:
        problem = None if tx is None else await tx.bypassed()
        if problem is not None:
            raise TransactionBypassedError(
                f"change {spec.id!r} ({spec.where()}): its {method} {problem}. Some of its writes may be committed "
                "although it failed, so it is recorded as failed and needs a human whatever its recovery. Inside a "
                "transactional change, make every write through the context's transaction and never commit, roll "
                "back or begin one yourself",
                spec.id,
                remedy=Remedy.fix(spec.id),
            ) from cause

    # -- apply --------------------------------------------------------------------------------------------------

    async def apply(self, spec: ChangeSpec) -> ChangeResult:
        """Apply one change on its path. A failure of the change is returned; lock loss and unknown commits raise."""
        started = time.monotonic()
        strategy = self.strategy(spec)
        if strategy is TxStrategy.TX_AUDIT_STORE_SHARED:
            error = await self._apply_shared(spec, started)
        elif strategy is TxStrategy.TX_AUDIT_STORE_SYNC:
            error = await self._apply_with_marker(spec, started)
        else:
            return await self._apply_non_transactional(spec, started)
        return self._result(spec, started, error)

    def _result(
        self,
        spec: ChangeSpec,
        started: float,
        error: BaseException | None,
        rollback: AuditState | None = None,
    ) -> ChangeResult:
        outcome = ChangeOutcome.APPLIED if error is None else ChangeOutcome.FAILED
        return ChangeResult(spec.id, outcome, time.monotonic() - started, error, rollback)

    async def _in_transaction(
        self, target: TransactionalTargetSystem, work: Callable[[Transaction], Awaitable[None]]
    ) -> None:
        """Run `work` in one transaction of `target`, again when the database aborted it (nothing committed),
        with a growing pause, until `target.transaction_retry_seconds` would be exceeded."""

        async def once() -> None:
            async with target.transaction() as tx:
                await work(tx)

        def again(exc: Exception) -> None:
            logger.warning("transaction aborted by the database, running it again: %s", redact(str(exc)))

        await retrying(
            once,
            seconds=target.transaction_retry_seconds,
            transient=lambda exc: isinstance(exc, TransactionAbortedError),
            again=again,
        )

    async def _apply_shared(self, spec: ChangeSpec, started: float) -> BaseException | None:
        target = self._transactional_target(spec)

        async def work(tx: Transaction) -> None:
            await self._call(spec, "execute", tx.context, tx=tx)
            applied = self.entry(spec, AuditState.APPLIED, started=started)
            await self._store.append_in_transaction(tx, applied, fence=self._fence)

        return await self._transact_or_record_failure(spec, started, target, work)

    async def _transact_or_record_failure(
        self,
        spec: ChangeSpec,
        started: float,
        target: TransactionalTargetSystem,
        work: Callable[[Transaction], Awaitable[None]],
    ) -> BaseException | None:
        """Run the change's transaction. Its failure (nothing committed) is recorded FAILED and returned; a lost
        lock or an unknown commit outcome is raised, and recorded nothing."""
        try:
            await self._in_transaction(target, work)
        except (LockLostError, TransactionOutcomeUnknownError):
            raise
        except Exception as exc:
            await self._record_failure(spec, started, exc)
            return exc
        return None

    async def _apply_with_marker(self, spec: ChangeSpec, started: float) -> BaseException | None:
        target = self._transactional_target(spec)
        await self._append(self.entry(spec, AuditState.STARTED))

        async def work(tx: Transaction) -> None:
            await self._call(spec, "execute", tx.context, tx=tx)
            await target.write_marker(tx, Marker(spec.id, self.execution_id))
            # This commit is not fenced by the store: don't make it if our lease may have ended.
            self._lease_check()

        error = await self._transact_or_record_failure(spec, started, target, work)
        if error is not None:
            return error
        await self._append(self.entry(spec, AuditState.APPLIED, started=started))
        await self._delete_marker(target, spec)
        return None

    async def _apply_non_transactional(self, spec: ChangeSpec, started: float) -> ChangeResult:
        target = self._targets[spec.target_system]
        change = spec.cls()
        await self._append(self.entry(spec, AuditState.STARTED))
        try:
            async with target.context() as ctx:
                await self._call(spec, "execute", ctx, change=change)
        except Exception as exc:
            await self._record_failure(spec, started, exc)
            rollback = await self._rollback_after_failure(spec, change, target) if spec.has_rollback else None
            return self._result(spec, started, exc, rollback)
        await self._append(self.entry(spec, AuditState.APPLIED, started=started))
        return self._result(spec, started, None)

    def _log(self, spec: ChangeSpec) -> dict[str, str]:
        """Fields for structured log handlers."""
        return {"service": self._service, "execution_id": self.execution_id, "change_id": spec.id}

    async def _record_failure(self, spec: ChangeSpec, started: float, exc: BaseException) -> None:
        logger.error("change %r failed: %s", spec.id, redact(f"{type(exc).__name__}: {exc}"), extra=self._log(spec))
        failed = self.entry(spec, AuditState.FAILED, started=started, error=exc, metadata=_failure_metadata(exc))
        await self._append(failed)

    async def _rollback_after_failure(self, spec: ChangeSpec, change: Change, target: TargetSystem) -> AuditState:
        started = time.monotonic()
        try:
            async with target.context() as ctx:
                await self._call(spec, "rollback", ctx, change=change)
        except Exception as exc:
            error = redact(f"{type(exc).__name__}: {exc}")
            logger.error("rollback of change %r failed: %s", spec.id, error, extra=self._log(spec))
            state = AuditState.ROLLBACK_FAILED
            await self._append(self.entry(spec, state, method="rollback", started=started, error=exc))
            return state
        await self._append(self.entry(spec, AuditState.ROLLED_BACK, method="rollback", started=started))
        return AuditState.ROLLED_BACK

    async def _delete_marker(self, target: TransactionalTargetSystem, spec: ChangeSpec) -> None:
        try:
            await target.delete_marker(spec.id)
        except Exception as exc:  # APPLIED is recorded; a stale marker never matches a later execution id
            logger.warning("could not delete the marker of change %r: %s", spec.id, redact(str(exc)))

    # -- recovery and undo --------------------------------------------------------------------------------------

    async def recover(self, spec: ChangeSpec, started_by: str) -> ChangeResult:
        """The marker shows an earlier run's transaction committed: record APPLIED without running again."""
        started = time.monotonic()
        target = self._transactional_target(spec)
        entry = self.entry(spec, AuditState.APPLIED, metadata={"recoveredFromExecutionId": started_by})
        await self._append(entry)
        await self._delete_marker(target, spec)
        return ChangeResult(spec.id, ChangeOutcome.RECOVERED, time.monotonic() - started)

    async def undo(self, spec: ChangeSpec) -> BaseException | None:
        """Run `rollback` and record ROLLED_BACK; return the rollback's exception if it failed."""
        started = time.monotonic()
        strategy = self.strategy(spec)
        if not spec.has_rollback:
            raise ConfigurationError([f"{spec.where()}: {spec.cls.__qualname__} defines no rollback"])
        try:
            if strategy is TxStrategy.NON_TX:
                async with self._targets[spec.target_system].context() as ctx:
                    await self._call(spec, "rollback", ctx)
            else:
                await self._undo_in_transaction(spec, started, strategy)
                return None
        except (LockLostError, TransactionOutcomeUnknownError):
            raise
        except Exception as exc:
            metadata = _failure_metadata(exc)
            if strategy is TxStrategy.NON_TX or metadata is not None:  # else the transaction undid the rollback
                state = AuditState.ROLLBACK_FAILED
                await self._append(self.entry(spec, state, method="rollback", error=exc, metadata=metadata))
            return exc
        await self._append(self.entry(spec, AuditState.ROLLED_BACK, method="rollback", started=started))
        return None

    async def _undo_in_transaction(self, spec: ChangeSpec, started: float, strategy: TxStrategy) -> None:
        target = self._transactional_target(spec)

        async def work(tx: Transaction) -> None:
            await self._call(spec, "rollback", tx.context, tx=tx)
            self._lease_check()
            if strategy is TxStrategy.TX_AUDIT_STORE_SHARED:
                entry = self.entry(spec, AuditState.ROLLED_BACK, method="rollback", started=started)
                await self._store.append_in_transaction(tx, entry, fence=self._fence)

        await self._in_transaction(target, work)
        if strategy is TxStrategy.TX_AUDIT_STORE_SYNC:
            await self._append(self.entry(spec, AuditState.ROLLED_BACK, method="rollback", started=started))

    async def mark(
        self, spec_or_entry: ChangeSpec | AuditEntry, state: AuditState, *, method: str = "fix"
    ) -> AuditEntry:
        """fix() and baseline(): record a human's verdict (`method` names which, in the entry)."""
        if isinstance(spec_or_entry, ChangeSpec):
            entry = self.entry(spec_or_entry, state, method=method)
        else:
            entry = spec_or_entry.model_copy(
                update={
                    "execution_id": self.execution_id,
                    "created_at": utc_now(),
                    "state": state,
                    "invoked_method": "fix",
                    "execution_millis": 0,
                    "execution_hostname": _HOSTNAME,
                    "error_trace": None,
                    "metadata": {k: v for k, v in spec_or_entry.metadata.items() if k != FAILURE_METADATA_KEY},
                }
            )
        await self._append(entry)
        return entry


def _unawaited_message(spec: ChangeSpec, method: str, unawaited: list[str]) -> str:
    return (
        f"change {spec.id!r} ({spec.where()}): its {method} never awaited "
        + "; ".join(unawaited)
        + ". What that call was meant to do never happened: add the missing `await`. Nothing was recorded as applied"
    )
