"""The public contract of a backend: everything an audit store, its lock or a target system implements or may use,
and nothing else. Every backend shipped in this package imports from the core only this module (a test checks it),
so a backend written elsewhere needs nothing more.

```python
from aioflamingock.backend import AuditStore, Lock, TransactionalTargetSystem, check_identifier, lock_info, redact
```

- what a backend implements: `Resource`, `TargetSystem`, `TransactionalTargetSystem`, `Transaction`,
  `AuditStore` (or `TargetStore`, for a store kept in a target's database), `Lock` (or `LocallyTimedLock`, for
  one whose leases are judged by this host's clock);
- the records it reads and writes: `AuditEntry`, `AuditState`, `TxStrategy`, `Fence`, `LockLease`, `LockInfo`,
  `Marker`, `DoctorCheck`;
- the errors it raises: `StoreError`, `StoreUnavailableError`, `TransactionAbortedError`,
  `TransactionOutcomeUnknownError`, `LockLostError`, `ConfigurationError`, `ClosedResourceError`,
  `CorruptAuditError`, `ChangeMisuseError`;
- checking configuration: `check_identifier`, `check_seconds`, `check_distinct`;
- reading what a store holds: `decode_entry` (an entry from a document), `AUDIT_COLUMNS`, `entry_row`,
  `row_entry` and `AuditTable` (an entry as a row of a SQL table), `entry_fix`, `skip_corrupt`, `corrupt_entries`,
  `lock_info`, `epoch_datetime`, `LOCK_HORIZON_SECONDS`, `utc_now`;
- keeping a summary of the applied changes for a start-up that does not read the whole audit: `AppliedSummary`,
  `summarize`, `summary_of`, `APPLIED_STATES`;
- the driver's boundary: `ErrorTable` and `ErrorRule` (one table translating the driver's exceptions), `named`,
  `import_driver` (a driver imported when first needed), `retrying` and `Backoff` (trying again while a failure
  is transient, up to a deadline);
- watching a change, logging: `set_while`, `library_logger`, `redact`;
- a ready change a backend ships (alembic's upgrade in `aioflamingock.sql`): `Change`.
"""

from typing import TYPE_CHECKING, Any

from ._change import Change
from ._driver import Backoff, ErrorRule, ErrorTable, import_driver, named, retrying
from ._errors import (
    ChangeMisuseError,
    ClosedResourceError,
    ConfigurationError,
    CorruptAuditError,
    LockLostError,
    StoreError,
    StoreUnavailableError,
    TransactionAbortedError,
    TransactionOutcomeUnknownError,
)
from ._interfaces import (
    LOCK_HORIZON_SECONDS,
    AuditStore,
    LocallyTimedLock,
    Lock,
    Resource,
    TargetStore,
    TargetSystem,
    Transaction,
    TransactionalTargetSystem,
    check_distinct,
    check_identifier,
    check_seconds,
    corrupt_entries,
    decode_entry,
    entry_fix,
    epoch_datetime,
    lock_info,
    set_while,
    skip_corrupt,
)
from ._model import AuditState, DoctorCheck, Fence, LockInfo, LockLease, Marker, TxStrategy, utc_now
from ._redact import library_logger, redact
from ._rows import AUDIT_COLUMNS, AuditTable, entry_row, row_entry
from ._summary import APPLIED_STATES, AppliedSummary, summarize, summary_of

if TYPE_CHECKING:
    from ._entry import AuditEntry

__all__ = [
    "APPLIED_STATES",
    "AUDIT_COLUMNS",
    "LOCK_HORIZON_SECONDS",
    "AppliedSummary",
    "AuditEntry",
    "AuditState",
    "AuditStore",
    "AuditTable",
    "Backoff",
    "Change",
    "ChangeMisuseError",
    "ClosedResourceError",
    "ConfigurationError",
    "CorruptAuditError",
    "DoctorCheck",
    "ErrorRule",
    "ErrorTable",
    "Fence",
    "LocallyTimedLock",
    "Lock",
    "LockInfo",
    "LockLease",
    "LockLostError",
    "Marker",
    "Resource",
    "StoreError",
    "StoreUnavailableError",
    "TargetStore",
    "TargetSystem",
    "Transaction",
    "TransactionAbortedError",
    "TransactionOutcomeUnknownError",
    "TransactionalTargetSystem",
    "TxStrategy",
    "check_distinct",
    "check_identifier",
    "check_seconds",
    "corrupt_entries",
    "decode_entry",
    "entry_fix",
    "entry_row",
    "epoch_datetime",
    "import_driver",
    "library_logger",
    "lock_info",
    "named",
    "redact",
    "retrying",
    "row_entry",
    "set_while",
    "skip_corrupt",
    "summarize",
    "summary_of",
    "utc_now",
]


def __getattr__(name: str) -> Any:
    """`AuditEntry`, imported on first use: a start-up that finds nothing pending reads no entry."""
    if name == "AuditEntry":
        from ._entry import AuditEntry

        globals()[name] = AuditEntry
        return AuditEntry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
