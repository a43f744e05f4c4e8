"""An audit entry as a row of a SQL table: the columns, and the conversions both ways, shared by the SQL stores."""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from ._errors import CorruptAuditError
from ._interfaces import decode_entry, entry_fix, skip_corrupt
from ._summary import APPLIED_STATES, AppliedSummary, summarize

if TYPE_CHECKING:
    from ._entry import AuditEntry

__all__ = ["AUDIT_COLUMNS", "AuditTable", "entry_row", "row_entry"]

AUDIT_COLUMNS: tuple[str, ...] = (
    "execution_id", "stage_id", "change_id", "author", "created_at", "state", "type", "invoked_class",
    "invoked_method", "source_file", "metadata", "execution_millis", "execution_hostname", "error_trace",
    "system_change", "tx_strategy", "target_system_id", "change_order", "recovery_strategy", "transaction_flag",
)  # fmt: skip
"""The columns of an audit table in a SQL database, one per `AuditEntry` field (snake_case; the document stores use
Flamingock's camelCase names), in this order. `metadata` holds JSON text."""


def entry_row(entry: AuditEntry) -> tuple[Any, ...]:
    """`entry` as the values of `AUDIT_COLUMNS`: what `entry.model_dump(mode="json")` holds, built field by field
    (once per change, so without pydantic's serializer)."""
    row: list[Any] = []
    for column in AUDIT_COLUMNS:
        value = getattr(entry, column)
        if column == "created_at":
            value = json_time(value)
        elif column == "metadata":
            value = _json_text(value) if value else "{}"
        elif isinstance(value, enum.Enum):
            value = value.value
        row.append(value)
    return tuple(row)


def _json_text(value: Any) -> str:
    from pydantic_core import to_jsonable_python

    return json.dumps(to_jsonable_python(value))


def json_time(moment: datetime) -> str:
    """`moment` as pydantic writes a datetime in JSON (ISO 8601; `Z` for UTC)."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


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


class AuditTable:
    """How a SQL store reads its audit table `name` (a column `id` that grows with each append, then
    `AUDIT_COLUMNS`): the statements, written once, and the decoding of the rows they return (the id first).
    `describe(id)` says where a row is, for the error that names a corrupt one."""

    def __init__(self, name: str, describe: Callable[[Any], str], *, page: int = 500) -> None:
        self.name = name
        self._describe = describe
        self._page = page

    def _newest(self, columns: str) -> str:
        """`columns` (of the table aliased `a`) of the newest row of every change, in one statement."""
        return (
            f"SELECT {columns} FROM {self.name} a JOIN "
            f"(SELECT MAX(id) AS id FROM {self.name} GROUP BY change_id) newest ON a.id = newest.id"
        )

    @property
    def newest_sql(self) -> str:
        """The newest row of every change, in one statement."""
        return self._newest("a.id, " + ", ".join("a." + c for c in AUDIT_COLUMNS))

    def summary_sql(self, summary_table: str) -> str:
        """The summary (`last_id, applied, digest`) and the audit's newest id, in one statement, one row."""
        return (
            f"SELECT s.last_id, s.applied, s.digest, (SELECT COALESCE(MAX(id), 0) FROM {self.name}) "
            f"FROM {summary_table} s WHERE s.id = 1"
        )

    @staticmethod
    def summary(rows: Sequence[Sequence[Any]]) -> AppliedSummary | None:
        """The summary from `summary_sql`'s rows, if it accounts for the audit's newest entry."""
        if not rows:
            return None
        last_id, applied, digest, newest = rows[0]
        if last_id != newest or not isinstance(applied, int) or not isinstance(digest, str):
            return None
        return AppliedSummary(applied, digest)

    @property
    def applied_sql(self) -> str:
        """Every change's newest entry: its id, the change's id, and whether its state is in `APPLIED_STATES`."""
        applied = ", ".join(f"'{state.value}'" for state in APPLIED_STATES)
        return self._newest(f"a.id, a.change_id, a.state IN ({applied})")

    @staticmethod
    def summarize_applied(rows: Iterable[Sequence[Any]]) -> tuple[int, AppliedSummary]:
        """From `applied_sql`'s rows: the newest id they account for, and the summary."""
        rows = list(rows)
        made = summarize(str(change_id) for _, change_id, is_applied in rows if is_applied)
        return max((int(row[0]) for row in rows), default=0), made

    def page_sql(self, after: str, limit: str) -> str:
        """A page of rows, oldest first: those with an id above the placeholder `after`, at most `limit`."""
        return f"SELECT id, {', '.join(AUDIT_COLUMNS)} FROM {self.name} WHERE id > {after} ORDER BY id LIMIT {limit}"

    def decode(self, row: Sequence[Any]) -> AuditEntry:
        fix = entry_fix(f"`DELETE FROM {self.name} WHERE id = {row[0]}`")
        return row_entry(row[1:], where=self._describe(row[0]), fix=fix)

    def newest(self, rows: Iterable[Sequence[Any]], change_ids: Iterable[str] | None) -> dict[str, AuditEntry]:
        """`current_states` from the rows of `newest_sql`."""
        wanted = None if change_ids is None else set(change_ids)
        at = 1 + AUDIT_COLUMNS.index("change_id")
        return {row[at]: self.decode(row) for row in rows if wanted is None or row[at] in wanted}

    async def history(
        self, fetch: Callable[[int, int], Awaitable[Sequence[Sequence[Any]]]]
    ) -> AsyncIterator[AuditEntry]:
        """Every entry, oldest first, a page at a time (`fetch(after, limit)` runs `page_sql`): memory stays bounded
        and no cursor stays open between pages. A corrupt entry is skipped, and logged."""
        last = 0
        while True:
            rows = await fetch(last, self._page)
            for row in rows:
                entry = skip_corrupt(partial(self.decode, row))
                if entry is not None:
                    yield entry
            if len(rows) < self._page:
                return
            last = rows[-1][0]
