"""`_app.py`'s twin on MongoDB: one Flamingock run, in its own OS process, for the MongoDB fault-injection tests.

```
python tests/faults/_mongo_app.py --uri URI --store-db A --target-db B --effects EFFECTS.txt --signals DIR
       [--copies N] [--hang CHANGE_ID] [--nontx-recovery manual|retry] [--delay S] [--lease S]
       [--server-selection-ms MS] [--app-name NAME]
```

Per copy `i` it declares three changes, one per path of the safety protocol, in this order:

| change | path | what `execute` does |
|---|---|---|
| `shared-i` | shared transaction (database A, the audit store's) | 3 documents into `app_rows` of A |
| `marker-i` | separate transaction with marker (database B, same client) | 3 documents into `app_rows` of B |
| `nontx-i` | non-transactional | nothing but its effect line (that line *is* its side effect) |

Every `execute` first appends `<change id> <execution id> <pid>` to EFFECTS.txt with one `O_APPEND` write, so
the tests count how often each change really ran, across processes. Documents carry the execution id too.
`DIR/<pid>.started` appears when the run starts, just before it reads the audit.

`--hang ID` makes change ID, after its writes, create `DIR/ID.ready` (holding `<execution id> <pid>`) and wait
until `DIR/ID.go` exists. `--delay S` makes every change sleep S seconds. `--server-selection-ms` bounds how long
the client looks for a server before an operation fails (small in the tests that stop the server); `--app-name`
names the client to the server, so a test can aim a fail point at this one process.

Exit codes as in `_app.py` (`EXIT_CODES`); the error ends stderr as `error: <ErrorType>: <message>`.
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
from typing import Any

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
from aioflamingock.mongodb import MongoDBAuditStore, MongoDBContext, MongoDBTargetSystem

STORE_DB = "store-db"
APP_DB = "app-db"
EVENTS = "events"
ROWS = "app_rows"
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
    uri: str
    store_db: str
    target_db: str
    effects: Path
    signals: Path
    copies: int
    hang: str | None
    nontx_recovery: Recovery
    delay: float
    lease: float
    server_selection_ms: int
    app_name: str


_execution_id = "?"
"""The id of this process's run, set by the RUN_STARTED listener before any change runs."""


def _listener(cfg: Config) -> Listener:
    async def remember_execution(event: Event) -> None:
        global _execution_id
        if event.kind is EventKind.RUN_STARTED:
            _execution_id = event.execution_id
            (cfg.signals / f"{os.getpid()}.started").touch()

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


async def _write_rows(ctx: MongoDBContext, change_id: str) -> None:
    assert ctx.session is not None, "a transactional change gets a session"
    await ctx.db[ROWS].insert_many(
        [{"changeId": change_id, "executionId": _execution_id, "n": n} for n in range(ROWS_PER_CHANGE)],
        session=ctx.session,
    )


def _changes(cfg: Config, i: int) -> list[type[Change]]:
    class Shared(Change):
        id = f"shared-{i}"
        order = f"{i:04d}.1"
        author = "faults"
        target_system = STORE_DB

        async def execute(self, ctx: MongoDBContext) -> None:
            _record_effect(cfg, self.id)
            await _write_rows(ctx, self.id)
            await _after_work(cfg, self.id)

    class Marked(Change):
        id = f"marker-{i}"
        order = f"{i:04d}.2"
        author = "faults"
        target_system = APP_DB

        async def execute(self, ctx: MongoDBContext) -> None:
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


def build(cfg: Config, client: Any) -> Flamingock:
    store_db = MongoDBTargetSystem(STORE_DB, client=client, database=cfg.store_db)
    app_db = MongoDBTargetSystem(APP_DB, client=client, database=cfg.target_db)
    return Flamingock(
        audit_store=MongoDBAuditStore.from_target(store_db),
        target_systems=[store_db, app_db, NonTransactionalTargetSystem(EVENTS)],
        changes=[cls for i in range(1, cfg.copies + 1) for cls in _changes(cfg, i)],
        lock=LockOptions(lease_seconds=cfg.lease, acquire_timeout_seconds=30, retry_interval_seconds=0.2),
        listeners=[_listener(cfg)],
    )


async def _run(cfg: Config) -> RunReport:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        cfg.uri,
        appname=cfg.app_name,
        serverSelectionTimeoutMS=cfg.server_selection_ms,
        connectTimeoutMS=cfg.server_selection_ms,
    )
    try:
        return await build(cfg, client).run()
    finally:
        await client.close()


def _parse(argv: list[str]) -> Config:
    parser = argparse.ArgumentParser(prog="_mongo_app.py")
    parser.add_argument("--uri", required=True)
    parser.add_argument("--store-db", required=True)
    parser.add_argument("--target-db", required=True)
    parser.add_argument("--effects", type=Path, required=True)
    parser.add_argument("--signals", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--hang")
    parser.add_argument("--nontx-recovery", choices=["manual", "retry"], default="manual")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--lease", type=float, default=1.5)
    parser.add_argument("--server-selection-ms", type=int, default=10_000)
    parser.add_argument("--app-name", default="aioflamingock-faults")
    args = parser.parse_args(argv)
    recovery = Recovery.ALWAYS_RETRY if args.nontx_recovery == "retry" else Recovery.MANUAL_INTERVENTION
    return Config(
        args.uri,
        args.store_db,
        args.target_db,
        args.effects,
        args.signals,
        args.copies,
        args.hang,
        recovery,
        args.delay,
        args.lease,
        args.server_selection_ms,
        args.app_name,
    )


def _exit_code(exc: BaseException) -> int:
    return next((code for kind, code in EXIT_CODES if isinstance(exc, kind)), EXIT_UNEXPECTED)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    cfg = _parse(argv)
    try:
        report = asyncio.run(_run(cfg))
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
