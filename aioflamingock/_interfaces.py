"""What a target system, an audit store and a lock must do. Every backend implements these; the engine uses
nothing else.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from ._errors import ClosedResourceError, ConfigurationError, CorruptAuditError
from ._model import MAX_SECONDS, DoctorCheck, Fence, LockInfo, LockLease, Marker, first_lower
from ._redact import library_logger, redact
from ._summary import AppliedSummary

if TYPE_CHECKING:
    from ._entry import AuditEntry

__all__ = [
    "LOCK_HORIZON_SECONDS",
    "AuditStore",
    "LocallyTimedLock",
    "Lock",
    "Resource",
    "TargetStore",
    "TargetSystem",
    "Transaction",
    "TransactionalTargetSystem",
    "check_distinct",
    "check_identifier",
    "check_seconds",
    "corrupt_entries",
    "decode_entry",
    "entry_fix",
    "epoch_datetime",
    "lock_info",
    "set_while",
    "skip_corrupt",
]

T = TypeVar("T")
_logger = library_logger(__name__)

_IDENTIFIER = re.compile(r"[A-Za-z0-9._-]{1,128}")


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LOCK_HORIZON_SECONDS = 2 * MAX_SECONDS
"""No lease lasts longer than a day (`LockOptions`): a lock expiring more than two days ahead is corrupt (tampered
with, or written with a broken clock), and counts as expired."""


def epoch_datetime(seconds: float) -> datetime:
    """Seconds since the epoch as a UTC datetime, clamped to what a datetime can hold: never raises."""
    try:
        return EPOCH + timedelta(seconds=seconds)
    except (OverflowError, ValueError, TypeError):
        return datetime.max.replace(tzinfo=UTC) if seconds > 0 else datetime.min.replace(tzinfo=UTC)


def lock_info(key: str, owner: object, token: object, acquired: object, expires: object, now: float) -> LockInfo:
    """A lock record read from a store (times in seconds since the epoch), never raising on what it holds: a value
    that cannot be what it should makes the record corrupt (`LockInfo.problem`), and a corrupt lock is expired."""
    problems = []
    numbers: dict[str, float] = {}
    for name, value in (("acquired", acquired), ("expires", expires), ("token", token)):
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = float("nan")
        if not math.isfinite(number):
            problems.append(f"its {name} field is {value!r}, which is not a {'number' if name == 'token' else 'time'}")
        numbers[name] = number if math.isfinite(number) else 0.0
    if numbers["expires"] > now + LOCK_HORIZON_SECONDS:
        problems.append(f"it expires {numbers['expires'] - now:.3g} s from now, longer than any lease")
    remaining = 0.0 if problems else numbers["expires"] - now
    return LockInfo(
        key,
        str(owner),
        int(numbers["token"]),
        epoch_datetime(numbers["acquired"]),
        epoch_datetime(numbers["expires"]),
        remaining,
        "; ".join(problems) or None,
    )


corrupt_entries: ContextVar[list[CorruptAuditError] | None] = ContextVar("aioflamingock_corrupt", default=None)
"""Set by `doctor()` while it reads the history: every entry `skip_corrupt` skips is collected there."""


def entry_fix(remove: str) -> str:
    """What to do with a corrupt entry: correct it, or remove it (`remove` says how). What to record afterwards is
    the error's `remedy`, when the entry names its change."""
    return f"correct that field, or remove the entry ({remove})"


def decode_entry(document: dict[str, Any], *, where: str, fix: str) -> AuditEntry:
    """An audit entry from a store's document (Flamingock's field names), or `CorruptAuditError` naming `where`,
    the field and `fix` when the document cannot be one."""
    from pydantic import ValidationError

    from ._entry import AuditEntry

    try:
        return AuditEntry.from_document(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error.get("loc", ())) or "the entry"
        found = f"is {error['input']!r}" if error.get("type") != "missing" else "is missing"
        problem = f"{found} ({first_lower(error.get('msg', 'invalid'))})"
        change_id = document.get("changeId", document.get("change_id"))
        raise CorruptAuditError(where, field, problem, fix, change_id=change_id) from None


def skip_corrupt(decode: Callable[[], AuditEntry]) -> AuditEntry | None:
    """For reading the whole history: a corrupt entry is logged (and collected for `doctor()`) and skipped, so one
    bad row of a change no longer declared never makes the history unreadable."""
    try:
        return decode()
    except CorruptAuditError as exc:
        _logger.warning("skipping an audit entry: %s", exc)
        collected = corrupt_entries.get()
        if collected is not None:
            collected.append(exc)
        return None


def check_seconds(kind: str, value: object, *, minimum: float = 0.0, maximum: float = MAX_SECONDS) -> float:
    """Validate a duration setting: a real, finite number of seconds from `minimum` to `maximum`."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not minimum <= value <= maximum:
        raise ConfigurationError([f"{kind} must be a number of seconds from {minimum:g} to {maximum:g}, got {value!r}"])
    return float(value)


def check_distinct(owner: str, **names: str) -> None:
    """The tables (collections) a store keeps must be different ones."""
    seen: dict[str, str] = {}
    for kind, name in names.items():
        if name in seen:
            raise ConfigurationError([f"{owner}: {seen[name]} and {kind} are both {name!r}; give each its own name"])
        seen[name] = kind


@contextmanager
def set_while(variable: ContextVar[T], value: T) -> Iterator[None]:
    """`variable` holds `value` inside the block, for the current task (and tasks it starts meanwhile)."""
    token = variable.set(value)
    try:
        yield
    finally:
        variable.reset(token)


def check_identifier(kind: str, value: object) -> str:
    """Validate a name that becomes a key, a table or a collection name."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):  # fullmatch: "x\n" passes `^...$`
        raise ConfigurationError([f"{kind} {value!r} must be 1-128 characters of [A-Za-z0-9._-]"])
    return value


class Resource:
    """Something the engine opens before use and closes after. Opens nest: the last `close()` releases.
    Concurrent opens and closes (a health probe during a run) take turns."""

    _open_count: int = 0
    _turnstile: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    def _opening(self) -> asyncio.Lock:
        # asyncio's lock, one per event loop (a resource may be used from one `asyncio.run` after another): anyio's
        # would import its asyncio backend at every start-up, 15 ms of a run that finds nothing pending.
        loop = asyncio.get_running_loop()
        if self._turnstile is None or self._turnstile[0] is not loop:
            self._turnstile = (loop, asyncio.Lock())
        return self._turnstile[1]

    async def open(self) -> None:
        async with self._opening():
            if self._open_count == 0:
                await self._open()
            self._open_count += 1

    async def close(self) -> None:
        async with self._opening():
            if self._open_count == 0:
                return
            self._open_count -= 1
            if self._open_count == 0:
                await self._close()

    async def _open(self) -> None:
        """Acquire what this resource owns (connections, tables)."""

    async def _close(self) -> None:
        """Release what `_open` acquired."""

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    def subject(self) -> str:
        """How `doctor()` names this resource."""
        return type(self).__name__

    def _doctor_resource(self) -> Resource:
        """What `doctor()` opens: the resource itself, or for a store only its target, so that checking
        creates nothing."""
        return self

    async def doctor(self) -> list[DoctorCheck]:
        """Open this resource and check what it needs. Never raises for a failing resource: every problem is a
        `DoctorCheck` with `ok=False` and a fix."""
        subject = self.subject()
        try:
            async with self._doctor_resource():
                checks = [DoctorCheck(subject, "reachable", True, self.describe())]
                checks += await self._diagnose()
        except Exception as exc:
            return [
                DoctorCheck(
                    subject,
                    "reachable",
                    False,
                    redact(f"{self.describe()}: {type(exc).__name__}: {exc}"),
                    "check the address, the credentials and the network from this host; the error says what failed",
                )
            ]
        return checks

    async def _diagnose(self) -> list[DoctorCheck]:
        """Checks made while open (tables, indexes, privileges, transactions). Nothing to check by default."""
        return []

    def describe(self) -> str:
        """A human description with no credentials in it."""
        return type(self).__name__

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class TargetSystem(Resource, ABC):
    """Where changes apply real work. Hands each change a typed context."""

    id: str
    transactional: bool = False

    @abstractmethod
    def context(self) -> AbstractAsyncContextManager[Any]:
        """The context handed to a non-transactional change (and to its rollback)."""

    def describe(self) -> str:
        return f"{type(self).__name__}({self.id!r})"

    def subject(self) -> str:
        return f"target system {self.id!r}"


class Transaction:
    """One open transaction on a target. `context` is what the change's `execute` receives."""

    def __init__(self, context: Any) -> None:
        self.context = context

    def running_change(self) -> AbstractContextManager[None]:
        """Entered by the engine around the change's own code, and nothing else: where a store can watch what
        the change does through other means than this transaction (for `bypassed`), it watches here."""
        return nullcontext()

    async def bypassed(self) -> str | None:
        """Called once, when the change's code returns or raises inside this transaction: how the change went around
        it, if the store can tell (it committed, rolled back or replaced the transaction; it wrote outside it),
        phrased to follow "the change ..."; `None` when it is, as far as the store can tell, still the
        transaction the target began, holding every write the change made through its context.

        A `None` answer from a store that cannot tell is no proof: say in its docs what it cannot see. A store
        that refused a misuse outright, so that nothing of it was written, may raise `ChangeMisuseError` here: the
        change then fails like any other."""
        return None


class TransactionalTargetSystem(TargetSystem, ABC):
    """A target whose writes can be grouped in one atomic transaction, with a marker record for the
    separate-transaction path."""

    transactional = True
    transaction_retry_seconds: float = 60.0
    """How long the engine keeps running a transaction again while the database aborts it
    (`TransactionAbortedError`), as MongoDB's own `with_transaction` does. A transaction left open by a crashed
    process can hold documents until the server reaps it (MongoDB: after 60 s)."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Open a transaction; commit when the block ends normally, abort when it raises or is cancelled.

        A commit whose outcome is unknown raises `TransactionOutcomeUnknownError`."""

    @abstractmethod
    async def write_marker(self, tx: Transaction, marker: Marker) -> None:
        """Write the marker inside `tx`, so it exists if and only if `tx` committed."""

    @abstractmethod
    async def read_marker(self, change_id: str) -> Marker | None: ...

    @abstractmethod
    async def delete_marker(self, change_id: str) -> None: ...


class Lock(ABC):
    """The primitives of a lease-based lock, one record per key. Timing and renewal live in the engine."""

    @abstractmethod
    async def try_acquire(self, key: str, owner: str, lease_seconds: float) -> LockLease | None:
        """One conditional write: take the lock if absent, expired or already `owner`'s, incrementing its
        fencing token. `None` if another owner holds an unexpired lease."""

    @abstractmethod
    async def renew(self, lease: LockLease, lease_seconds: float) -> LockLease:
        """Extend our lease. Raises `LockLostError` if the record is gone or holds another owner or token."""

    @abstractmethod
    async def release(self, lease: LockLease) -> bool:
        """Free the lock if it is still ours (delete the record, or mark it released where the record must
        keep counting tokens); `False` if it was not ours."""

    @abstractmethod
    async def read(self, key: str) -> LockInfo | None:
        """The record as it is, with the time left judged by the store's clock."""

    @abstractmethod
    async def force_release(self, key: str) -> bool:
        """Free the lock whoever holds it (operator's `unlock --force`); `False` if nobody held it."""


class LocallyTimedLock(Lock):
    """A lock whose leases are judged by a clock of this host's, because its database has none a condition can
    read (SQLite, DynamoDB's expressions, Couchbase's key-value service): `clock` gives epoch seconds, injectable
    (tests move it by hand; every instance sharing the store must agree on it)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock

    def now_ms(self) -> int:
        """The clock, in epoch milliseconds."""
        return int(self.clock() * 1000)


class AuditStore(Resource, ABC):
    """Append-only record of every state each change went through, and home of the lock."""

    @property
    @abstractmethod
    def lock(self) -> Lock: ...

    @abstractmethod
    async def append(self, entry: AuditEntry, *, fence: Fence) -> None:
        """Append `entry` only if the lock record still holds `fence`'s owner and token, atomically.

        Raises `LockLostError` and writes nothing otherwise."""

    @abstractmethod
    async def current_states(self, change_ids: Iterable[str] | None = None) -> dict[str, AuditEntry]:
        """The newest entry of every change (or of the given ones), in a bounded number of queries."""

    @abstractmethod
    def history(self) -> AsyncIterator[AuditEntry]:
        """Every entry, oldest first."""

    def shares_transactions_with(self, target: TargetSystem) -> bool:
        """Whether audit entries can be written inside `target`'s transactions (shared-transaction path)."""
        return False

    async def applied_summary(self) -> AppliedSummary | None:
        """The summary of the applied changes, from one small read, if the store keeps one and it is up to date
        with every entry in the audit; None otherwise (the engine then reads every change's state). A store that
        keeps one must never return a summary older than an entry written, changed or deleted since."""
        return None

    async def refresh_summary(self) -> None:
        """Make the summary up to date with the audit, reading the audit and writing the summary atomically
        (nothing written in between). Called when a run ends with nothing pending; a no-op by default."""

    def summary_removal(self) -> str:
        """How a human removes the summary, for `doctor()` to say when the summary disagrees with the audit (the
        next run then reads every state and writes it again)."""
        return "remove the store's summary"

    async def append_in_transaction(self, tx: Transaction, entry: AuditEntry, *, fence: Fence) -> None:
        """Append `entry` inside `tx`, checking `fence` in the same transaction. Only called when
        `shares_transactions_with` is true for the transaction's target."""
        raise NotImplementedError(f"{type(self).__name__} does not share transactions")

    def subject(self) -> str:
        return "audit store"


TargetT = TypeVar("TargetT", bound=TargetSystem)
LockT = TypeVar("LockT", bound=Lock)


class TargetStore(AuditStore, Generic[TargetT, LockT]):
    """An audit store kept in a target system's database, on its connection (`from_target`). Opening it opens the
    target, then `_prepare`s what the store needs there (creates or checks its tables), closing the target again
    if that fails; `doctor()` opens only the target, so checking creates nothing. Its `lock` is `_lock`, set by the
    constructor or by `_prepare`."""

    target: TargetT
    _lock: LockT | None = None

    @property
    def lock(self) -> LockT:
        return self._while_open(self._lock)

    def _while_open(self, part: T | None) -> T:
        """`part` of the store, which exists once it is open."""
        if part is None:
            raise ClosedResourceError(f"{self.describe()} is not open")
        return part

    async def _open(self) -> None:
        await self.target.open()
        try:
            await self._prepare()
        except BaseException:
            await self.target.close()
            raise

    async def _close(self) -> None:
        await self.target.close()

    async def _prepare(self) -> None:
        """Once the target is open: create what the store needs in its database, or check that it is there."""

    def _doctor_resource(self) -> Resource:
        return self.target
