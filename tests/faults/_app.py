"""A throwaway application for the fault-injection tests: one Flamingock run, in its own OS process.

```
python tests/faults/_app.py --audit AUDIT.db --target APP.db --effects EFFECTS.txt --signals DIR
       [--copies N] [--hang CHANGE_ID] [--nontx-recovery manual|retry] [--delay S] [--block S] [--lease S]
       [--busy-timeout S]
```

Per copy `i` it declares three changes, one per path of the safety protocol, in this order:

| change | path | what `execute` does |
|---|---|---|
| `shared-i` | shared transaction (the audit store's own database) | 3 rows into `app_rows` of AUDIT.db |
| `marker-i` | separate transaction with marker (APP.db) | 3 rows into `app_rows` of APP.db |
| `nontx-i` | non-transactional | nothing but its effect line (that line *is* its side effect) |

Every `execute` first appends `<change id> <execution id> <pid>` to EFFECTS.txt with one `O_APPEND` write, so
the tests count how often each change really ran, across processes. Rows carry the execution id too.
`DIR/<pid>.started` appears when the run starts, just before it reads the audit.

`--hang ID` makes change ID, after its writes, create `DIR/ID.ready` (holding `<execution id> <pid>`) and wait
until `DIR/ID.go` exists: the tests kill or pause the process at that known point. `--delay S` makes every
change sleep S seconds (asynchronously); `--block S` makes every shared-transaction change block the event loop
for S seconds, like a CPU-bound step or a synchronous call inside `execute`.

Exit codes: see `EXIT_CODES`; the error ends stderr as `error: <ErrorType>: <message>`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aioflamingock import (
    Change,
    ChangeFailedError,
    Event,
    EventKind,
    Flamingock,
    FlamingockError,
    Listener,
    LockAcquisitionTimeoutError,
    LockLostError,
    LockOptions,
    ManualInterventionRequiredError,
    NonTransactionalContext,
    NonTransactionalTargetSystem,
    Recovery,
    RunReport,
    StoreError,
)
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem

AUDIT_DB = "audit-db"
APP_DB = "app-db"
EVENTS = "events"
ROWS_PER_CHANGE = 3
PARK_LIMIT_SECONDS = 60.0
"""A parked change gives up after this long, so a process the tests forgot can never live on."""

EXIT_OK = 0
EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (LockLostError, 3),
    (ManualInterventionRequiredError, 4),
    (ChangeFailedError, 5),
    (LockAcquisitionTimeoutError, 6),
    (StoreError, 7),
    (FlamingockError, 8),
]
EXIT_UNEXPECTED = 9
ERROR_PREFIX = "error: "


@dataclass(frozen=True)
class Config:
    audit: Path
    target: Path
    effects: Path
    signals: Path
    copies: int
    hang: str | None
    nontx_recovery: Recovery
    delay: float
    block: float
    lease: float
    busy_timeout: float | None


_execution_id = "?"
"""The id of this process's run, set by the RUN_STARTED listener before any change runs."""


def _listener(cfg: Config) -> Listener:
    async def remember_execution(event: Event) -> None:
        global _execution_id
        if event.kind is EventKind.RUN_STARTED:
            _execution_id = event.execution_id
            (cfg.signals / f"{os.getpid()}.started").touch()  # the run is about to read the audit

    return remember_execution


def _record_effect(cfg: Config, change_id: str) -> None:
    line = f"{change_id} {_execution_id} {os.getpid()}\n".encode()
    fd = os.open(cfg.effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)  # one write with O_APPEND: lines of concurrent processes never interleave
    finally:
        os.close(fd)


def _signal_ready(cfg: Config, change_id: str) -> None:
    ready = cfg.signals / f"{change_id}.ready"
    partial = ready.with_suffix(".partial")
    partial.write_text(f"{_execution_id} {os.getpid()}")
    partial.rename(ready)  # atomic: the test never reads half a file


async def _after_work(cfg: Config, change_id: str) -> None:
    if cfg.delay:
        await asyncio.sleep(cfg.delay)
    if cfg.hang != change_id:
        return
    _signal_ready(cfg, change_id)
    go = cfg.signals / f"{change_id}.go"
    deadline = time.monotonic() + PARK_LIMIT_SECONDS
    while not go.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{change_id}: nobody created {go.name}")
        await asyncio.sleep(0.005)


async def _write_rows(ctx: SQLiteContext, change_id: str) -> None:
    await ctx.connection.execute("CREATE TABLE IF NOT EXISTS app_rows (change_id TEXT, execution_id TEXT, n INTEGER)")
    await ctx.connection.executemany(
        "INSERT INTO app_rows (change_id, execution_id, n) VALUES (?, ?, ?)",
        [(change_id, _execution_id, n) for n in range(ROWS_PER_CHANGE)],
    )


def _changes(cfg: Config, i: int) -> list[type[Change]]:
    class Shared(Change):
        id = f"shared-{i}"
        order = f"{i:04d}.1"
        author = "faults"
        target_system = AUDIT_DB

        async def execute(self, ctx: SQLiteContext) -> None:
            _record_effect(cfg, self.id)
            await _write_rows(ctx, self.id)
            if cfg.block:
                time.sleep(cfg.block)  # noqa: ASYNC251 - on purpose: the event loop is stuck in the change's code
            await _after_work(cfg, self.id)

    class Marked(Change):
        id = f"marker-{i}"
        order = f"{i:04d}.2"
        author = "faults"
        target_system = APP_DB

        async def execute(self, ctx: SQLiteContext) -> None:
            _record_effect(cfg, self.id)
            await _write_rows(ctx, self.id)
            await _after_work(cfg, self.id)

    class NonTransactional(Change):
        id = f"nontx-{i}"
        order = f"{i:04d}.3"
        author = "faults"
        target_system = EVENTS
        transactional = False
        recovery = cfg.nontx_recovery
        idempotency = "a test double: running it twice only adds a second line, which the tests count"

        async def execute(self, ctx: NonTransactionalContext) -> None:
            _record_effect(cfg, self.id)
            await _after_work(cfg, self.id)

    return [Shared, Marked, NonTransactional]


def build(cfg: Config) -> Flamingock:
    busy = {} if cfg.busy_timeout is None else {"busy_timeout_seconds": cfg.busy_timeout}
    audit_db = SQLiteTargetSystem(AUDIT_DB, path=cfg.audit, **busy)
    app_db = SQLiteTargetSystem(APP_DB, path=cfg.target, **busy)
    return Flamingock(
        audit_store=SQLiteAuditStore.from_target(audit_db),
        target_systems=[audit_db, app_db, NonTransactionalTargetSystem(EVENTS)],
        changes=[cls for i in range(1, cfg.copies + 1) for cls in _changes(cfg, i)],
        lock=LockOptions(lease_seconds=cfg.lease, acquire_timeout_seconds=30, retry_interval_seconds=0.2),
        listeners=[_listener(cfg)],
    )


def _parse(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(prog="_app.py")
    parser.add_argument("--audit", type=Path, required=True)
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--effects", type=Path, required=True)
    parser.add_argument("--signals", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--hang")
    parser.add_argument("--nontx-recovery", choices=["manual", "retry"], default="manual")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--block", type=float, default=0.0)
    parser.add_argument("--lease", type=float, default=1.5)
    parser.add_argument("--busy-timeout", type=float)
    args = parser.parse_args(argv)
    recovery = Recovery.ALWAYS_RETRY if args.nontx_recovery == "retry" else Recovery.MANUAL_INTERVENTION
    return Config(
        args.audit,
        args.target,
        args.effects,
        args.signals,
        args.copies,
        args.hang,
        recovery,
        args.delay,
        args.block,
        args.lease,
        args.busy_timeout,
    )


def _exit_code(exc: BaseException) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), EXIT_UNEXPECTED)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    cfg = _parse(argv)
    try:
        report: RunReport = asyncio.run(build(cfg).run())
    except Exception as exc:
        report_of = getattr(exc, "report", None)
        if report_of is not None:
            sys.stdout.write(f"execution_id={report_of.execution_id} status={report_of.status.value}\n")
        if _exit_code(exc) == EXIT_UNEXPECTED:
            logging.exception("unexpected error")
        sys.stderr.write(f"{ERROR_PREFIX}{type(exc).__name__}: {exc}\n")  # last, after any log line
        return _exit_code(exc)
    sys.stdout.write(f"execution_id={report.execution_id} status={report.status.value}\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
