"""A throwaway application for the SQLite fault-injection tests: one Flamingock run, in its own OS process.

```
python tests/faults/_app.py --audit AUDIT.db --target APP.db --effects EFFECTS.txt --signals DIR
       [--copies N] [--hang CHANGE_ID] [--nontx-recovery manual|retry] [--delay S] [--block S] [--lease S]
       [--busy-timeout S]
```

Per copy `i` it declares, in this order:

| change | path | what `execute` does |
|---|---|---|
| `shared-i` | shared transaction (AUDIT.db, the audit store's own database) | 3 rows into `app_rows` there |
| `marker-i` | separate transaction with marker (APP.db) | 3 rows into `app_rows` there |
| `nontx-i` | non-transactional | nothing but its effect line (that line *is* its side effect) |

Every `execute` first appends `<change id> <execution id> <pid>` to EFFECTS.txt with one `O_APPEND` write, so
the tests count how often each change really ran, across processes. Rows carry the execution id too.
`DIR/<pid>.started` appears when the run starts, just before it reads the audit.

`--hang ID` makes change ID, after its writes, create `DIR/ID.ready` (holding `<execution id> <pid>`) and wait
until `DIR/ID.go` exists: the tests kill or pause the process at that known point. `--delay S` makes every
change sleep S seconds (asynchronously); `--block S` makes every shared-transaction change block the event loop
for S seconds; `--busy-timeout` is SQLite's.

Exit codes: `aioflamingock.testing._child.EXIT_CODES`; the error ends stderr as `error: <ErrorType>: <message>`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aioflamingock import (
    Change,
    Event,
    EventKind,
    Flamingock,
    LockOptions,
    NonTransactionalContext,
    NonTransactionalTargetSystem,
    Recovery,
    RunReport,
)
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem
from aioflamingock.testing._child import Probe, report_run

EVENTS = "events"
ROWS_PER_CHANGE = 3

WriteRows = Callable[[Any, str, str], Awaitable[None]]
"""`write_rows(ctx, change_id, execution_id)`: the app's 3 rows, inside the change's transaction."""


class AppProbe(Probe):
    """The kit's probe, plus `DIR/<pid>.started` when the run starts, `--delay` and `--hang`."""

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args.effects, args.signals)
        self.hang: str | None = args.hang
        self.delay: float = args.delay

    async def listener(self, event: Event) -> None:
        await super().listener(event)
        if event.kind is EventKind.RUN_STARTED:
            (self.signals / f"{os.getpid()}.started").touch()  # the run is about to read the audit

    async def after_work(self, change_id: str) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.hang == change_id:
            await self.park(change_id)


def changes(
    probe: AppProbe,
    i: int,
    *,
    store_target: str,
    app_target: str,
    write_rows: WriteRows,
    nontx_recovery: Recovery,
    block: float = 0.0,
) -> list[type[Change]]:
    """Copy `i` of the three changes. `block` makes the shared change block the event loop for that long, like a
    CPU-bound step or a synchronous call inside `execute`."""

    class Shared(Change):
        id = f"shared-{i}"
        order = f"{i:04d}.1"
        author = "faults"
        target_system = store_target

        async def execute(self, ctx: Any) -> None:
            probe.record(self.id)
            await write_rows(ctx, self.id, probe.execution_id)
            if block:
                time.sleep(block)  # noqa: ASYNC251 - on purpose: the event loop is stuck in the change's code
            await probe.after_work(self.id)

    class Marked(Change):
        id = f"marker-{i}"
        order = f"{i:04d}.2"
        author = "faults"
        target_system = app_target

        async def execute(self, ctx: Any) -> None:
            probe.record(self.id)
            await write_rows(ctx, self.id, probe.execution_id)
            await probe.after_work(self.id)

    class NonTransactional(Change):
        id = f"nontx-{i}"
        order = f"{i:04d}.3"
        author = "faults"
        target_system = EVENTS
        transactional = False
        recovery = nontx_recovery
        idempotency = "a test double: running it twice only adds a second line, which the tests count"

        async def execute(self, ctx: NonTransactionalContext) -> None:
            probe.record(self.id)
            await probe.after_work(self.id)

    return [Shared, Marked, NonTransactional]


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--effects", type=Path, required=True)
    parser.add_argument("--signals", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--hang")
    parser.add_argument("--nontx-recovery", choices=["manual", "retry"], default="manual")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--lease", type=float, default=1.5)


def nontx_recovery(args: argparse.Namespace) -> Recovery:
    return Recovery.ALWAYS_RETRY if args.nontx_recovery == "retry" else Recovery.MANUAL_INTERVENTION


def lock_options(args: argparse.Namespace) -> LockOptions:
    return LockOptions(lease_seconds=args.lease, acquire_timeout_seconds=30, retry_interval_seconds=0.2)


AUDIT_DB = "audit-db"
APP_DB = "app-db"


async def _write_rows(ctx: SQLiteContext, change_id: str, execution_id: str) -> None:
    await ctx.connection.execute("CREATE TABLE IF NOT EXISTS app_rows (change_id TEXT, execution_id TEXT, n INTEGER)")
    await ctx.connection.executemany(
        "INSERT INTO app_rows (change_id, execution_id, n) VALUES (?, ?, ?)",
        [(change_id, execution_id, n) for n in range(ROWS_PER_CHANGE)],
    )


def build(args: argparse.Namespace) -> Flamingock:
    probe = AppProbe(args)
    busy = {} if args.busy_timeout is None else {"busy_timeout_seconds": args.busy_timeout}
    audit_db = SQLiteTargetSystem(AUDIT_DB, path=args.audit, **busy)
    app_db = SQLiteTargetSystem(APP_DB, path=args.target, **busy)
    declared = [
        cls
        for i in range(1, args.copies + 1)
        for cls in changes(
            probe,
            i,
            store_target=AUDIT_DB,
            app_target=APP_DB,
            write_rows=_write_rows,
            nontx_recovery=nontx_recovery(args),
            block=args.block,
        )
    ]
    return Flamingock(
        audit_store=SQLiteAuditStore.from_target(audit_db),
        target_systems=[audit_db, app_db, NonTransactionalTargetSystem(EVENTS)],
        changes=declared,
        lock=lock_options(args),
        listeners=[probe.listener],
    )


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="_app.py")
    parser.add_argument("--audit", required=True)
    parser.add_argument("--target", required=True)
    add_common_arguments(parser)
    parser.add_argument("--block", type=float, default=0.0)
    parser.add_argument("--busy-timeout", type=float)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = _parse(argv)

    async def run() -> RunReport:
        return await build(args).run()

    return report_run(run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
