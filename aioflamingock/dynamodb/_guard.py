"""Refusing the writes a transactional change sends with `ctx.client` instead of adding them to
`ctx.transaction`.

Such a write would commit at once, outside the one `TransactWriteItems` call that holds the change and its audit
entry. botocore lets a handler see every request before it is signed and sent (`before-call`), in the task that
sends it; while a transactional change runs, the target's handler refuses the write requests of the change's task
with a `ChangeMisuseError`, so nothing is sent. Reads stay allowed. A write through another client is not seen.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ..backend import ChangeMisuseError

__all__ = ["WriteWatch", "refuse_writes_outside", "watching"]

_WRITES = frozenset(
    {
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "BatchWriteItem",
        "TransactWriteItems",
        "ExecuteStatement",
        "BatchExecuteStatement",
        "ExecuteTransaction",
        "CreateTable",
        "UpdateTable",
        "DeleteTable",
    }
)
_HANDLER_ID = "aioflamingock-refuse-writes-outside-transaction"


@dataclass
class WriteWatch:
    """The write requests refused while one transactional change ran."""

    refused: list[str] = field(default_factory=list)


watching: ContextVar[WriteWatch | None] = ContextVar("aioflamingock_dynamodb_write_watch", default=None)


def _before_call(model: Any, params: Any, **_: Any) -> None:
    watch = watching.get()
    if watch is None or model.name not in _WRITES:
        return
    table = params.get("TableName") if isinstance(params, dict) else None
    what = f"{model.name}" + (f" on {table!r}" if table else "")
    watch.refused.append(what)
    raise ChangeMisuseError(
        f"a transactional change sent {what} with ctx.client: that write would commit at once, outside the "
        "change's transaction, so it was not sent. Add it to the transaction instead (ctx.transaction.put / "
        "update / delete / condition_check), or make the change `transactional = False`",
        None,
    )


def refuse_writes_outside(client: Any) -> None:
    """Register the handler on `client` (once: botocore keeps one handler per unique id)."""
    client.meta.events.register("before-call.dynamodb", _before_call, unique_id=_HANDLER_ID)
