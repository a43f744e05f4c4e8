"""An audit entry as a row of a SQL table: the columns, and the conversions both ways, shared by the SQL stores."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ._errors import CorruptAuditError
from ._interfaces import decode_entry
from ._model import AuditEntry

__all__ = ["AUDIT_COLUMNS", "entry_row", "row_entry"]

AUDIT_COLUMNS: tuple[str, ...] = (
    "execution_id", "stage_id", "change_id", "author", "created_at", "state", "type", "invoked_class",
    "invoked_method", "source_file", "metadata", "execution_millis", "execution_hostname", "error_trace",
    "system_change", "tx_strategy", "target_system_id", "change_order", "recovery_strategy", "transaction_flag",
)  # fmt: skip
"""The columns of an audit table in a SQL database, one per `AuditEntry` field (snake_case; the document stores use
Flamingock's camelCase names), in this order. `metadata` holds JSON text."""


def entry_row(entry: AuditEntry) -> tuple[Any, ...]:
    """`entry` as the values of `AUDIT_COLUMNS`."""
    data = entry.model_dump(mode="json")
    return tuple(json.dumps(data[c]) if c == "metadata" else data[c] for c in AUDIT_COLUMNS)


def row_entry(row: Sequence[Any], *, where: str, fix: str) -> AuditEntry:
    """The entry a row of `AUDIT_COLUMNS` holds; `CorruptAuditError` (naming `where` and `fix`) for one that cannot
    be an entry."""
    data = dict(zip(AUDIT_COLUMNS, row, strict=True))
    try:
        data["metadata"] = json.loads(data["metadata"]) if data["metadata"] else {}
    except (TypeError, ValueError):
        problem = f"is {data['metadata']!r:.60}, not JSON"
        raise CorruptAuditError(where, "metadata", problem, fix, change_id=data.get("change_id")) from None
    return decode_entry(data, where=where, fix=fix)
