"""`Flamingock`: loads the changes, reads the audit, takes the lock only when something is pending, applies."""

from __future__ import annotations

import enum
import os
import socket
import time
import uuid
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Self, TypeVar

from . import _tracing
from ._change import ChangeSpec
from ._discovery import ChangeSource, Declared, declared_changes, load_changes
from ._doctor import doctor
from ._errors import (
    ChangeFailedError,
    ClosedResourceError,
    ConfigurationError,
    FlamingockError,
    LockLostError,
    ManualInterventionRequiredError,
    PendingChangesError,
    RollbackFailedError,
    RunError,
    StoreError,
)
from ._events import Event, EventKind, Listener, notify
from ._health import health
from ._interfaces import (
    AuditStore,
    TargetSystem,
    TransactionalTargetSystem,
    check_identifier,
)
from ._lock import LockKeeper
from ._model import (
    DEFAULT_SERVICE,
    AuditState,
    ChangeIssue,
    ChangeOutcome,
    ChangeResult,
    DoctorCheck,
    Fence,
    Health,
    LockInfo,
    PlannedAction,
    PlannedChange,
    Recovery,
    RunReport,
    RunStatus,
)
from ._planning import PlanRow, blocking, issues, live_holder, read_plan
from ._redact import library_logger, redact
from ._summary import AppliedSummary, summarize

if TYPE_CHECKING:  # imported where first needed: a start-up with nothing pending builds no entry and takes no lock
    from ._apply import Applier
    from ._entry import AuditEntry
    from ._options import LockOptions

__all__ = ["DISABLE_ENV_VAR", "Flamingock", "NonIdempotentRetryWarning"]

logger = library_logger(__name__)

T = TypeVar("T")

UNDO_ALL = "base"
"""`undo(to=UNDO_ALL)` rolls back every applied change (as alembic's `downgrade base`)."""

DISABLE_ENV_VAR = "AIOFLAMINGOCK_DISABLED"
"""Set to `1`/`true` to make `run()` do nothing (for tests of applications that embed the engine)."""


class NonIdempotentRetryWarning(UserWarning):
    """A non-transactional change with `ALWAYS_RETRY` and no `idempotency` note: it may run twice."""


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


def _lock_options(lock: object) -> LockOptions | None:
    """The options given, checked; None for the defaults (built when a run first needs the lock)."""
    if lock is None:
        return None
    from ._options import LockOptions

    if isinstance(lock, LockOptions):
        return lock
    if isinstance(lock, Mapping):
        return LockOptions(**lock)
    raise ConfigurationError([f"lock must be a LockOptions (or a dict of its options), got {type(lock).__name__}"])


def _metadata(metadata: object) -> dict[str, Any]:
    """Recorded in every audit entry, so it must be a mapping with string keys that JSON can hold."""
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping) or not all(isinstance(key, str) for key in metadata):
        raise ConfigurationError([redact(f"metadata must be a dict with string keys, got {metadata!r:.80}")])
    import pydantic_core

    for key, value in metadata.items():
        try:
            pydantic_core.to_json(value)
        except (pydantic_core.PydanticSerializationError, ValueError) as exc:
            kind = type(value).__name__
            problem = f"metadata[{key!r}] cannot be recorded: a {kind} is not JSON ({exc}); pass text or numbers"
            raise ConfigurationError([problem]) from None
    return dict(metadata)


Listed = ChangeSpec | Declared
"""A declared change, loaded (`ChangeSpec`) or known from its package's manifest (`Declared`)."""


def _env_disabled() -> bool:
    return os.environ.get(DISABLE_ENV_VAR, "").strip().lower() in {"1", "true", "yes", "on"}


class Flamingock:
    """The engine. Typical use, in a FastAPI lifespan or before a worker consumes its queue:

    ```python
    fl = Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=["myapp.changes"])
    report = await fl.run()
    ```

    Every method opens what the engine uses and closes it again; `async with fl:` keeps it open across calls.
    """

    def __init__(
        self,
        *,
        audit_store: AuditStore,
        target_systems: Iterable[TargetSystem] = (),
        changes: ChangeSource | Iterable[ChangeSource] = (),
        lock: LockOptions | Mapping[str, float] | None = None,
        service: str = DEFAULT_SERVICE,
        metadata: Mapping[str, Any] | None = None,
        enabled: bool = True,
        listeners: Sequence[Listener] = (),
    ) -> None:
        if not isinstance(audit_store, AuditStore):
            raise ConfigurationError([f"audit_store must be an AuditStore, got {type(audit_store).__name__}"])
        self.audit_store = audit_store
        self.target_systems = self._index_targets(target_systems)
        self.service = check_identifier("service", service)
        self._lock_options = _lock_options(lock)
        self.metadata: dict[str, Any] = _metadata(metadata)
        self.enabled = enabled
        self._sources: list[ChangeSource] = [changes] if isinstance(changes, str | type) else list(changes)
        self._listeners = list(listeners)
        self._digest: tuple[Sequence[Listed], AppliedSummary] | None = None
        self._skipped: tuple[Sequence[Listed], list[ChangeResult]] | None = None
        self._log = {"service": self.service}
        self._specs: list[ChangeSpec] | None = None
        self._state = _State.NEW

    @staticmethod
    def _index_targets(targets: Iterable[TargetSystem]) -> dict[str, TargetSystem]:
        indexed: dict[str, TargetSystem] = {}
        for target in targets:
            if not isinstance(target, TargetSystem):
                raise ConfigurationError([f"target_systems: {target!r} is not a TargetSystem"])
            if target.id in indexed:
                raise ConfigurationError([f"target_systems: two target systems have the id {target.id!r}"])
            indexed[target.id] = target
        return indexed

    @property
    def lock_options(self) -> LockOptions:
        """How the lock behaves: the options given, or the defaults."""
        if self._lock_options is None:
            from ._options import LockOptions

            self._lock_options = LockOptions()
        return self._lock_options

    def add_listener(self, listener: Listener) -> None:
        """Also send every event to `listener` (a progress display, metrics)."""
        self._listeners.append(listener)

    # -- lifecycle ----------------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _State.NEW:
            raise ClosedResourceError(f"this Flamingock is {self._state.value}; create a new one")
        await self._open()
        self._state = _State.OPEN
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._state = _State.CLOSED
        await self._close()

    def _resources(self) -> list[TargetSystem | AuditStore]:
        return [*self.target_systems.values(), self.audit_store]

    async def _open(self) -> None:
        opened: list[TargetSystem | AuditStore] = []
        try:
            for resource in self._resources():
                await resource.open()
                opened.append(resource)
        except BaseException:
            for resource in reversed(opened):
                await resource.close()
            raise

    async def _close(self) -> None:
        for resource in reversed(self._resources()):
            await resource.close()

    @asynccontextmanager
    async def _session(self) -> AsyncIterator[None]:
        if self._state is _State.CLOSED:
            raise ClosedResourceError("this Flamingock is closed; create a new one")
        if self._state is _State.OPEN:
            yield
            return
        await self._open()
        try:
            yield
        finally:
            await self._close()

    # -- changes ------------------------------------------------------------------------------------------------

    def changes(self) -> list[ChangeSpec]:
        """The changes in order, after every check. Raises `ConfigurationError` naming each problem."""
        if self._specs is None:
            specs = load_changes(self._sources)
            self._check_targets(specs)
            self._warn_retries(specs)
            self._specs = specs
        return self._specs

    def _declared(self) -> list[Declared] | None:
        """The declared changes without importing a change module (from the packages' manifests), when they pass
        the checks a full load would make of them; None when the changes are loaded already, or must be."""
        if self._specs is not None:
            return None
        declared = declared_changes(self._sources)
        if declared is None or any(d.warns or d.target_system not in self.target_systems for d in declared):
            return None
        if len({d.id for d in declared}) != len(declared) or len({d.order for d in declared}) != len(declared):
            return None
        return declared

    def _check_targets(self, specs: list[ChangeSpec]) -> None:
        known = ", ".join(sorted(self.target_systems)) or "none"
        problems = [
            f"{spec.where()}: {spec.cls.__qualname__}.target_system {spec.target_system!r} is not a configured "
            f"target system (configured: {known})"
            for spec in specs
            if spec.target_system not in self.target_systems
        ]
        if problems:
            raise ConfigurationError(problems)

    def _warn_retries(self, specs: list[ChangeSpec]) -> None:
        for spec in specs:
            target = self.target_systems[spec.target_system]
            transactional = spec.transactional and isinstance(target, TransactionalTargetSystem)
            if spec.recovery is Recovery.ALWAYS_RETRY and not transactional and not spec.idempotency:
                warnings.warn(
                    f"{spec.where()}: {spec.cls.__qualname__} is non-transactional with ALWAYS_RETRY, so an "
                    f'interrupted run will execute it again; set `idempotency = "..."` saying why that is safe',
                    NonIdempotentRetryWarning,
                    stacklevel=3,
                )

    # -- planning -----------------------------------------------------------------------------------------------

    async def _plan(self, specs: list[ChangeSpec]) -> list[PlanRow]:
        """The run's plan: a change needing manual intervention blocks every later pending change."""
        return blocking(await read_plan(self.audit_store, self.target_systems, specs))

    async def plan(self) -> list[PlannedChange]:
        """What `run()` would do with each change, without taking the lock or writing anything."""
        specs = self.changes()
        async with self._session():
            return [row.planned() for row in await self._plan(specs)]

    async def validate(self) -> None:
        """Raise `PendingChangesError` if a run would apply anything or a change needs manual intervention."""
        declared = self._declared()
        specs = self.changes() if declared is None else None
        async with self._session():
            # One small read, where the store keeps a summary; the change modules are imported only when it is
            # not enough.
            if await self._applied_by_summary(declared or specs or []):
                return
            planned = [row.planned() for row in await self._plan(specs or self.changes())]
        pending = [p for p in planned if p.action is not PlannedAction.SKIP]
        if pending:
            lines = "\n".join(f"  - {p.change_id}: {p.action.value} ({p.explain()})" for p in pending)
            raise PendingChangesError(f"{len(pending)} change(s) pending:\n{lines}", [p.change_id for p in pending])

    async def issues(self) -> list[ChangeIssue]:
        """The changes that need a human to say whether they ran (`fix`)."""
        specs = self.changes()
        async with self._session():
            if await self._applied_by_summary(specs):  # every declared change applied: none has an issue
                return []
            rows = await read_plan(self.audit_store, self.target_systems, specs)
            return issues(rows, await live_holder(self.audit_store, self.service))

    # -- probing ------------------------------------------------------------------------------------------------

    async def health(self, *, timeout_seconds: float = 5.0) -> Health:
        """For a readiness probe: whether the audit store answers within `timeout_seconds` and no change needs
        manual intervention. Reads the store's summary when it says every declared change is applied, else the
        audit (and markers) once; takes no lock, writes nothing, and reports a store failure in the result instead
        of raising. Invalid changes still raise `ConfigurationError`."""
        return await health(self, timeout_seconds)

    async def doctor(self, *, timeout_seconds: float = 10.0) -> list[DoctorCheck]:
        """Check everything a run needs and say how to fix each problem: the changes load and pass their checks;
        every target system and the audit store answer; the store's tables or indexes exist and its account has
        the privileges it needs; who holds the lock; which changes need manual intervention.

        Creates nothing and writes nothing. Never raises for what it finds."""
        return await doctor(self, timeout_seconds)

    # -- running ------------------------------------------------------------------------------------------------

    def _keeper(self, execution_id: str) -> LockKeeper:
        owner = f"{socket.gethostname()}/{os.getpid()}/{execution_id}"
        return LockKeeper(self.audit_store.lock, key=self.service, owner=owner, options=self.lock_options)

    def _applier(self, keeper: LockKeeper, execution_id: str, fence: Fence) -> Applier:
        from ._apply import Applier

        return Applier(
            self.audit_store,
            self.target_systems,
            execution_id=execution_id,
            service=self.service,
            metadata=self.metadata,
            fence=fence,
            lease_check=keeper.check_lease,
        )

    async def _under_lock(self, execution_id: str, work: Callable[[Applier], Awaitable[T]]) -> T:
        """Run `work` with an applier whose every audit write is fenced by the lock we hold meanwhile."""
        keeper = self._keeper(execution_id)

        async def locked(fence: Fence) -> T:
            return await work(self._applier(keeper, execution_id, fence))

        return await keeper.run_holding(locked)

    async def run(self) -> RunReport:
        """Apply every pending change in order, exactly once across all instances of the service.

        Returns the report; raises a `RunError` (with `.report`) when a change fails or needs manual
        intervention, `LockLostError` when the lease was lost, `LockAcquisitionTimeoutError` when another
        instance held the lock too long.
        """
        execution_id = uuid.uuid4().hex
        started = time.monotonic()
        if not self.enabled or _env_disabled():
            logger.info("aioflamingock is disabled; no change was looked at", extra=self._log)
            return RunReport(execution_id, RunStatus.NO_CHANGES)
        declared = self._declared()
        listed: Sequence[Listed] = self.changes() if declared is None else declared
        attributes = {"aioflamingock.service": self.service, "aioflamingock.execution_id": execution_id}
        with _tracing.span("aioflamingock.run", attributes) as span:
            async with self._session():
                await notify(self._listeners, Event(EventKind.RUN_STARTED, execution_id))
                results: list[ChangeResult] = []
                try:
                    if await self._applied_by_summary(listed):  # one small read, where the store keeps a summary
                        results += self._all_applied(listed)
                        report = self._report(execution_id, listed, results, started, RunStatus.NO_CHANGES)
                    else:
                        listed = self.changes()  # loaded now if it was described: unchanged on disk, it loads so
                        report = await self._run(listed, execution_id, results, started)
                except Exception as exc:
                    failed = self._report(execution_id, listed, results, started, RunStatus.FAILED)
                    if isinstance(exc, RunError | LockLostError):
                        exc.report = failed
                    await self._finish(failed)
                    raise
            if span is not None:
                span.set_attribute("aioflamingock.status", report.status.value)
                span.set_attribute("aioflamingock.applied", len(report.applied))
        await self._finish(report)
        return report

    async def _run(
        self, specs: list[ChangeSpec], execution_id: str, results: list[ChangeResult], started: float
    ) -> RunReport:
        """The run once the summary was not enough: every state read, and the lock taken if anything is pending."""
        if not any(row.pending for row in await self._plan(specs)):
            await self._refresh_summary()
            results += self._all_applied(specs)
            return self._report(execution_id, specs, results, started, RunStatus.NO_CHANGES)
        # Whatever is pending, even a change that looks stuck, is judged again under the lock: another
        # instance may be applying it right now.

        async def apply_all(applier: Applier) -> None:
            await self._apply_all(await self._plan(specs), applier, results)

        await self._under_lock(execution_id, apply_all)
        await self._refresh_summary()
        return self._report(execution_id, specs, results, started, RunStatus.SUCCESS)

    def _all_applied(self, specs: Sequence[Listed]) -> list[ChangeResult]:
        """Every change ALREADY_APPLIED, built once per loaded list (results are immutable): a run with nothing
        pending at 10,000 changes spent most of its time building them."""
        if self._skipped is None or self._skipped[0] is not specs:
            self._skipped = (specs, [ChangeResult(s.id, ChangeOutcome.ALREADY_APPLIED) for s in specs])
        return self._skipped[1]

    async def _applied_by_summary(self, specs: Sequence[Listed]) -> bool:
        """Whether the store's summary (one small read, when it keeps one that is up to date) says every declared
        change, and no other, is applied: then nothing is pending, whatever the size of the history."""
        try:
            summary = await self.audit_store.applied_summary()
        except StoreError as exc:  # a summary is a shortcut: without it, the run reads every state
            logger.info("the audit's summary could not be read (every state is read instead): %s", exc)
            return False
        if summary is None:
            return False
        if self._digest is None or self._digest[0] is not specs:  # the ids' digest, once per list
            self._digest = (specs, summarize(s.id for s in specs))
        return summary == self._digest[1]

    async def _refresh_summary(self) -> None:
        """After a run that leaves nothing pending: bring the store's summary up to date, so that the next start-up
        reads only it. A failure costs the next start-up a full read, never the run."""
        try:
            await self.audit_store.refresh_summary()
        except StoreError as exc:
            logger.info("the audit's summary was not updated (the next start-up reads every state): %s", exc)

    async def _apply_all(self, plan: list[PlanRow], applier: Applier, results: list[ChangeResult]) -> None:
        for row in plan:
            spec, action, entry = row.spec, row.action, row.entry
            if action is PlannedAction.SKIP:
                results.append(ChangeResult(spec.id, ChangeOutcome.ALREADY_APPLIED))
                continue
            if action is PlannedAction.MANUAL_INTERVENTION:  # every later change is BLOCKED: never reached
                results.append(ChangeResult(spec.id, ChangeOutcome.NEEDS_MANUAL_INTERVENTION))
                self._stop_for_issue(row)
            await notify(self._listeners, Event(EventKind.CHANGE_STARTED, applier.execution_id, spec.id))
            attributes = {
                "aioflamingock.change_id": spec.id,
                "aioflamingock.target_system": spec.target_system,
                "aioflamingock.action": action.value,
                "aioflamingock.execution_id": applier.execution_id,
            }
            with _tracing.span("aioflamingock.change", attributes) as span:
                if action is PlannedAction.RECOVER:
                    assert entry is not None
                    result = await applier.recover(spec, entry.execution_id)
                else:
                    logger.info(
                        "applying change %r (%s)",
                        spec.id,
                        row.reason,
                        extra={**self._log, "execution_id": applier.execution_id, "change_id": spec.id},
                    )
                    result = await applier.apply(spec)
                if span is not None:
                    span.set_attribute("aioflamingock.outcome", result.outcome.value)
                if result.error is not None:
                    _tracing.fail(span, result.error)
            results.append(result)
            await notify(self._listeners, Event(EventKind.CHANGE_FINISHED, applier.execution_id, spec.id, result))
            if result.outcome is ChangeOutcome.FAILED:
                assert result.error is not None
                error = result.error
                remedy = error.remedy if isinstance(error, FlamingockError) else None
                described = error.summary if isinstance(error, FlamingockError) else str(error)
                text = f"change {spec.id!r} failed: {type(error).__name__}: {described}"
                consequence = applier.consequence(spec, error)
                text = f"{text}. {consequence}" if consequence else text
                raise ChangeFailedError(redact(text), spec.id, remedy=remedy) from error

    @staticmethod
    def _stop_for_issue(row: PlanRow) -> NoReturn:
        state = row.entry.state.value if row.entry is not None else "?"
        raise ManualInterventionRequiredError(
            f"change {row.spec.id!r} needs manual intervention: its state is {state}, {row.reason}",
            row.spec.id,
            remedy=row.remedy,
        )

    def _report(
        self,
        execution_id: str,
        specs: Sequence[Listed],
        results: list[ChangeResult],
        started: float,
        status: RunStatus,
    ) -> RunReport:
        rest: list[ChangeResult] = []
        if len(results) < len(specs):  # a result per change, in order, until the run stopped: the rest not reached
            done = {r.change_id for r in results}
            rest = [ChangeResult(s.id, ChangeOutcome.NOT_REACHED) for s in specs if s.id not in done]
        return RunReport(execution_id, status, [*results, *rest], time.monotonic() - started)

    async def _finish(self, report: RunReport) -> None:
        if report.status is RunStatus.NO_CHANGES:  # every change ALREADY_APPLIED: not counted one by one
            counts = Counter({ChangeOutcome.ALREADY_APPLIED: len(report.changes)})
        else:
            counts = Counter(c.outcome for c in report.changes)
        summary = ", ".join(f"{counts[o]} {o.value.lower().replace('_', ' ')}" for o in ChangeOutcome if counts[o])
        logger.info(
            "aioflamingock run %s: %s (%s) in %.3fs",
            report.execution_id,
            report.status.value,
            summary or "no changes",
            report.duration_seconds,
            extra={**self._log, "execution_id": report.execution_id, "status": report.status.value},
        )
        await notify(self._listeners, Event(EventKind.RUN_FINISHED, report.execution_id, report=report))

    # -- operations ---------------------------------------------------------------------------------------------

    async def history(self) -> AsyncIterator[AuditEntry]:
        """Every audit entry, oldest first."""
        async with self._session():
            async for entry in self.audit_store.history():
                yield entry

    async def import_audit(self, entries: Iterable[AuditEntry]) -> int:
        """Write `entries` (another store's history, oldest first: `history()`, or `aioflamingock audit export`)
        into this engine's audit store, which must hold no entry yet, under the lock; then read the history back
        and compare it with them, field by field. Returns how many were written.

        Raises `ConfigurationError` (nothing written) when the store already holds entries, and `StoreError` when
        what reads back differs from what was given (the store then holds what was written: it was empty before)."""
        given = list(entries)
        execution_id = uuid.uuid4().hex
        async with self._session():
            await self._refuse_a_history("import")

            async def write(applier: Applier) -> None:
                await self._refuse_a_history("import")  # again, under the lock
                for entry in given:
                    await applier.record(entry)

            await self._under_lock(execution_id, write)
            back = [entry async for entry in self.audit_store.history()]
        self._compare_imported(given, back)
        logger.info("%d audit entries imported", len(given), extra={**self._log, "execution_id": execution_id})
        return len(given)

    async def _refuse_a_history(self, what: str) -> None:
        async for entry in self.audit_store.history():
            raise ConfigurationError(
                [
                    f"{what}: the audit store already holds entries (the first: {entry.change_id!r}, "
                    f"{entry.state.value}); import only into a store that holds none"
                ]
            )

    @staticmethod
    def _compare_imported(given: list[AuditEntry], back: list[AuditEntry]) -> None:
        if back == given:
            return
        for index, (wrote, read) in enumerate(zip(given, back, strict=False)):
            if wrote != read:
                fields = [f for f in type(wrote).model_fields if getattr(wrote, f) != getattr(read, f)]
                raise StoreError(
                    f"import: entry {index + 1} ({wrote.change_id!r}) reads back differently: {', '.join(fields)}; "
                    "the store holds what was written"
                )
        raise StoreError(
            f"import: {len(given)} entries written, {len(back)} read back; the store holds what was written"
        )

    async def fix(self, change_id: str, resolution: Literal["applied", "rolled-back"]) -> AuditEntry:
        """Record a human's verdict on a change: MANUAL_MARKED_AS_APPLIED or MANUAL_MARKED_AS_ROLLED_BACK."""
        states = {
            "applied": AuditState.MANUAL_MARKED_AS_APPLIED,
            "rolled-back": AuditState.MANUAL_MARKED_AS_ROLLED_BACK,
        }
        if resolution not in states:
            raise ConfigurationError([f"resolution {resolution!r} must be 'applied' or 'rolled-back'"])
        spec = next((s for s in self.changes() if s.id == change_id), None)
        execution_id = uuid.uuid4().hex
        async with self._session():
            current = (await self.audit_store.current_states([change_id])).get(change_id)
            subject: ChangeSpec | AuditEntry | None = spec if spec is not None else current
            if subject is None:
                raise ConfigurationError([f"change {change_id!r} is neither declared nor in the audit"])

            async def mark(applier: Applier) -> AuditEntry:
                return await applier.mark(subject, states[resolution])

            entry = await self._under_lock(execution_id, mark)
        logger.info(
            "change %r marked as %s",
            change_id,
            resolution,
            extra={**self._log, "execution_id": execution_id, "change_id": change_id},
        )
        return entry

    @staticmethod
    def _position(specs: list[ChangeSpec], change_id: str) -> int | None:
        """Where the declared change `change_id` is in the run's order; None when no declared change has that id."""
        return next((i for i, s in enumerate(specs) if s.id == change_id), None)

    async def baseline(self, to: str, *, force: bool = False) -> list[AuditEntry]:
        """Adopt a database already in shape: record every declared change up to `to` (included) as
        `MANUAL_MARKED_AS_APPLIED`, without running it, under the lock. Returns the entries written.

        A change that already has a history is refused (`ConfigurationError`, nothing written) unless `force`: then
        it is marked too, unless it is applied already (nothing to write for it)."""
        specs = self.changes()
        index = self._position(specs, to)
        if index is None:
            raise ConfigurationError([f"baseline: {to!r} is not a declared change; give the last change to adopt"])
        return await self._adopt(specs[: index + 1], force=force, method="baseline")

    async def adopt(self, change_ids: Iterable[str], *, force: bool = False, dry_run: bool = False) -> list[str]:
        """Record the declared changes `change_ids` as `MANUAL_MARKED_AS_APPLIED` without running them, under the
        lock: what another tool applied (`aioflamingock import alembic|yoyo`). Returns the ids marked, in the
        changes' order; with `dry_run`, the ids it would mark, having checked everything and written nothing.

        Refused (`ConfigurationError`, nothing written) for an id that is not a declared change, and for a change
        that already has a history unless `force` (then those applied already are left as they are)."""
        wanted = list(dict.fromkeys(change_ids))
        specs = self.changes()
        declared = {s.id for s in specs}
        unknown = [i for i in wanted if i not in declared]
        if unknown:
            raise ConfigurationError(
                [
                    f"adopt: {', '.join(repr(i) for i in unknown)} not declared change(s); map each to the change that "
                    "did the same (a mapping of names to change ids), or leave it out"
                ]
            )
        named = set(wanted)
        chosen = [s for s in specs if s.id in named]
        if dry_run:
            async with self._session():
                return [s.id for s in await self._adoptable(chosen, force)]
        return [entry.change_id for entry in await self._adopt(chosen, force=force, method="adopt")]

    async def _adopt(self, chosen: list[ChangeSpec], *, force: bool, method: str) -> list[AuditEntry]:
        execution_id = uuid.uuid4().hex
        async with self._session():
            await self._adoptable(chosen, force)  # before the lock is asked for; again under it, as it then reads

            async def mark_all(applier: Applier) -> list[AuditEntry]:
                todo = await self._adoptable(chosen, force)
                marked = AuditState.MANUAL_MARKED_AS_APPLIED
                return [await applier.mark(spec, marked, method=method) for spec in todo]

            written = await self._under_lock(execution_id, mark_all)
        logger.info(
            "%s: %d change(s) marked as applied",
            method,
            len(written),
            extra={**self._log, "execution_id": execution_id},
        )
        return written

    async def _adoptable(self, specs: list[ChangeSpec], force: bool) -> list[ChangeSpec]:
        """The changes a baseline or an adoption marks, from their states read now: those without a history; with
        `force`, also those whose history says they are not applied."""
        states = await self.audit_store.current_states([s.id for s in specs])
        known = [s for s in specs if s.id in states]
        if known and not force:
            listed = ", ".join(f"{s.id} ({states[s.id].state.value})" for s in known)
            raise ConfigurationError(
                [
                    f"{len(known)} change(s) already have a history: {listed}; only changes that never ran are "
                    "adopted. Pass force=True (--force) to mark them too (those applied are left as they are), or "
                    "leave them out"
                ]
            )
        applied = {AuditState.APPLIED, AuditState.MANUAL_MARKED_AS_APPLIED}
        return [s for s in specs if s.id not in states or states[s.id].state not in applied]

    async def undo(self, to: str) -> RunReport:
        """Roll back, newest first, every applied change ordered after `to` (which stays applied); `to="base"`
        rolls back every applied change (unless a declared change has the id `base`: then it means that one)."""
        specs = self.changes()
        index = self._position(specs, to)
        if index is None and to == UNDO_ALL:
            index = -1
        if index is None:
            raise ConfigurationError(
                [
                    f"undo: {to!r} is not a declared change; give the id of the last change to keep applied, or "
                    f"{UNDO_ALL!r} to undo every one"
                ]
            )
        execution_id = uuid.uuid4().hex
        started = time.monotonic()
        results: list[ChangeResult] = []
        async with self._session():
            # Checked before the lock is asked for; checked again under it, against the states read there.
            self._undoable(specs[index + 1 :], await self.audit_store.current_states([s.id for s in specs]))

            async def undo_all(applier: Applier) -> None:
                await self._undo_all(specs[index + 1 :], applier, results)

            try:
                await self._under_lock(execution_id, undo_all)
            except (RunError, LockLostError) as exc:
                exc.report = RunReport(execution_id, RunStatus.FAILED, results, time.monotonic() - started)
                raise
        status = RunStatus.SUCCESS if results else RunStatus.NO_CHANGES
        return RunReport(execution_id, status, results, time.monotonic() - started)

    async def _undo_all(self, specs: list[ChangeSpec], applier: Applier, results: list[ChangeResult]) -> None:
        todo = self._undoable(specs, await self.audit_store.current_states([s.id for s in specs]))
        for spec in todo:
            started = time.monotonic()
            error = await applier.undo(spec)
            if error is not None:
                results.append(ChangeResult(spec.id, ChangeOutcome.FAILED, time.monotonic() - started, error))
                raise RollbackFailedError(redact(f"rollback of change {spec.id!r} failed: {error}"), spec.id) from error
            results.append(ChangeResult(spec.id, ChangeOutcome.ROLLED_BACK, time.monotonic() - started))

    @staticmethod
    def _undoable(specs: list[ChangeSpec], states: Mapping[str, AuditEntry]) -> list[ChangeSpec]:
        """The applied changes among `specs`, newest first; every one must define `rollback`."""
        applied = {AuditState.APPLIED, AuditState.MANUAL_MARKED_AS_APPLIED}
        todo = [s for s in reversed(specs) if s.id in states and states[s.id].state in applied]
        missing = [f"{s.where()}: {s.cls.__qualname__} defines no rollback" for s in todo if not s.has_rollback]
        if missing:
            raise ConfigurationError(missing)
        return todo

    async def lock_info(self) -> LockInfo | None:
        """Who holds the service's lock, if anyone."""
        async with self._session():
            return await self.audit_store.lock.read(self.service)

    async def force_unlock(self) -> bool:
        """Free the service's lock whoever holds it. Only for a holder known to be dead."""
        async with self._session():
            return await self.audit_store.lock.force_release(self.service)
