"""A throwaway application for the fault-injection tests: one Flamingock run on SQLite, in its own OS process.

```
python tests/faults/_app.py --audit AUDIT.db --target APP.db --effects EFFECTS.txt --signals DIR
       [--copies N] [--hang CHANGE_ID] [--nontx-recovery manual|retry] [--delay S] [--block S] [--lease S]
       [--busy-timeout S]
```

The changes, the effect lines, the readiness files and the exit codes are `_harness.py`'s. Here the audit store's
database is AUDIT.db (shared path), the marker path's is APP.db. `--block S` makes every shared-transaction change
block the event loop for S seconds; `--busy-timeout` is SQLite's.
"""

from __future__ import annotations

import argparse
import sys

from _harness import (
    EVENTS,
    ROWS_PER_CHANGE,
    Probe,
    add_common_arguments,
    changes,
    lock_options,
    nontx_recovery,
    run_main,
)

from aioflamingock import Flamingock, NonTransactionalTargetSystem, RunReport
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem

AUDIT_DB = "audit-db"
APP_DB = "app-db"


async def _write_rows(ctx: SQLiteContext, change_id: str, execution_id: str) -> None:
    await ctx.connection.execute("CREATE TABLE IF NOT EXISTS app_rows (change_id TEXT, execution_id TEXT, n INTEGER)")
    await ctx.connection.executemany(
        "INSERT INTO app_rows (change_id, execution_id, n) VALUES (?, ?, ?)",
        [(change_id, execution_id, n) for n in range(ROWS_PER_CHANGE)],
    )


def build(args: argparse.Namespace) -> Flamingock:
    probe = Probe(args)
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

    return run_main(run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
