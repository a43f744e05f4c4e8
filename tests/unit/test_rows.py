"""An audit entry as a SQL row: written field by field, it holds what the entry's JSON form holds, and reads back
as the same entry."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from aioflamingock import Recovery
from aioflamingock.backend import AUDIT_COLUMNS, AuditEntry, AuditState, TxStrategy, entry_row, row_entry, utc_now

MOMENTS = [
    utc_now(),
    datetime(2026, 1, 1, tzinfo=UTC),
    datetime(2026, 1, 1, 1, 2, 3, 4567, tzinfo=timezone(timedelta(hours=2))),
    datetime(2026, 1, 1, 1, 2, 3, 4567, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
]
METADATA: list[dict[str, Any]] = [
    {},
    {"ticket": "OPS-1", "nested": [1, {"none": None}], "when": MOMENTS[2], "state": AuditState.FAILED, "set": {3}},
]


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("metadata", METADATA)
def test_a_row_holds_the_entrys_json_form_and_reads_back_as_the_entry(
    moment: datetime, metadata: dict[str, Any]
) -> None:
    entry = AuditEntry(
        execution_id="e1",
        stage_id="orders",
        change_id="c1",
        author="ana",
        created_at=moment,
        state=AuditState.ROLLBACK_FAILED,
        invoked_class="changes.C1",
        invoked_method="rollback",
        metadata=metadata,
        execution_millis=12,
        error_trace="ValueError: boom",
        tx_strategy=TxStrategy.TX_AUDIT_STORE_SYNC,
        target_system_id="db",
        change_order="0001",
        recovery_strategy=Recovery.ALWAYS_RETRY,
        transaction_flag=True,
    )
    data = entry.model_dump(mode="json")
    expected = tuple(json.dumps(data[c]) if c == "metadata" else data[c] for c in AUDIT_COLUMNS)

    row = entry_row(entry)

    assert row == expected
    assert all(isinstance(value, str | int | bool | None) for value in row)
    again = row_entry(row, where="a test row", fix="none")
    assert again.model_dump(mode="json") == data
