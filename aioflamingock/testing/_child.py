"""One instance of the application in a process of its own, for the protocol kit's real-process scenarios.

`ChildSpec.command()` starts a process that calls `main([SPEC])`, SPEC being the spec as JSON: the child builds the
backend's kit from `kit` and `kit_args` (`ProtocolKit.process_kit`), takes one instance of it, and runs, per copy
`i`, the changes of the paths the kit has, in this order:

| change | path | target |
|---|---|---|
| `shared-i` | shared transaction | `app` (the store's own target), unless the kit has `transactions_skip` |
| `marker-i` | separate transaction with marker | `other`, where the kit has one |
| `nontx-i` | non-transactional | `app` |

Each `execute` first appends `<change id> <execution id> <pid>` to the effects file with one `O_APPEND` write (so the
parent counts every execution, committed or not, across processes), then writes the effects `<change id>` and
`<change id>@<execution id>` through the kit, inside its transaction when it has one.

`hang` parks that change once its writes are done; `park_after_commit` parks that marker-path change once its
transaction has committed, before `APPLIED` is written. Parking creates `<signals>/<change id>.ready` (holding
`<execution id> <pid>`) and waits for `<signals>/<change id>.go`. The run's report ends stdout as
`execution_id=<id> status=<status>`; an error ends stderr as `error: <ErrorType>: <message>` and sets the exit code
(`EXIT_CODES`).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .. import (
    Change,
    ChangeFailedError,
    Event,
    EventKind,
    Flamingock,
    FlamingockError,
    LockAcquisitionTimeoutError,
    LockLostError,
    LockOptions,
    ManualInterventionRequiredError,
    Recovery,
    RunReport,
    StoreError,
    TargetSystem,
    Transaction,
)

if TYPE_CHECKING:
    from ._protocol import Instance, ProtocolKit

__all__ = ["ERROR_PREFIX", "EXIT_CODES", "ChildSpec", "Probe", "changes_of", "report_run"]

EXIT_CODES: dict[type[BaseException], int] = {
    LockLostError: 3,
    ManualInterventionRequiredError: 4,
    ChangeFailedError: 5,
    LockAcquisitionTimeoutError: 6,
    StoreError: 7,
    FlamingockError: 8,
}
EXIT_UNEXPECTED = 9
ERROR_PREFIX = "error: "
PARK_LIMIT_SECONDS = 60.0
"""A parked change gives up after this long, so that a child the parent forgot cannot live on."""


@dataclass(frozen=True)
class ChildSpec:
    kit: str
    """`module:callable` returning the kit, called with `kit_args`."""
    kit_args: list[str]
    effects: str
    signals: str
    copies: int = 1
    hang: str | None = None
    park_after_commit: str | None = None
    delay: float = 0.0
    """Every change sleeps this long (asynchronously) after its writes."""
    lease_seconds: float = 1.5
    retry_nontx: bool = False
    """`nontx-i` recovers with ALWAYS_RETRY instead of MANUAL_INTERVENTION."""

    def command(self) -> list[str]:
        run = f"import sys; from {__name__} import main; sys.exit(main(sys.argv[1:]))"
        return [sys.executable, "-c", run, json.dumps(asdict(self))]


class Probe:
    """How a change tells the parent that it ran (a line in `effects`), and where it parks (`signals`)."""

    def __init__(self, effects: str | Path, signals: str | Path) -> None:
        self.effects, self.signals = Path(effects), Path(signals)
        self.execution_id = "?"
        """This process's run, set by the RUN_STARTED listener before any change runs."""
        self.running = ""
        """The change whose `execute` started last."""

    async def listener(self, event: Event) -> None:
        if event.kind is EventKind.RUN_STARTED:
            self.execution_id = event.execution_id

    def record(self, change_id: str) -> None:
        self.running = change_id
        line = f"{change_id} {self.execution_id} {os.getpid()}\n".encode()
        fd = os.open(self.effects, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write with O_APPEND: lines of concurrent processes never interleave
        finally:
            os.close(fd)

    async def park(self, change_id: str) -> None:
        partial = self.signals / f"{change_id}.partial"
        partial.write_text(f"{self.execution_id} {os.getpid()}")
        partial.rename(self.signals / f"{change_id}.ready")  # atomic: the parent never reads half a file
        go = self.signals / f"{change_id}.go"
        deadline = time.monotonic() + PARK_LIMIT_SECONDS
        while not go.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{change_id}: nobody created {go.name}")
            await asyncio.sleep(0.005)


def changes_of(kit: ProtocolKit, instance: Instance, copies: int = 1) -> list[tuple[str, str, bool]]:
    """(change id, target id, transactional) of every change a child declares, in order."""
    declared = []
    for i in range(1, copies + 1):
        if kit.transactions_skip is None:
            declared.append((f"shared-{i}", instance.app.id, True))
        if instance.other is not None:
            declared.append((f"marker-{i}", instance.other.id, True))
        declared.append((f"nontx-{i}", instance.app.id, False))
    return declared


def _change(
    kit: ProtocolKit, probe: Probe, spec: ChildSpec, change_id: str, order: str, target: str, tx: bool
) -> type[Change]:

    async def execute(self: Change, ctx: Any) -> None:
        probe.record(change_id)
        await kit.write(ctx, change_id)
        await kit.write(ctx, f"{change_id}@{probe.execution_id}")
        if spec.delay:
            await asyncio.sleep(spec.delay)
        if spec.hang == change_id:
            await probe.park(change_id)

    retry = spec.retry_nontx and not tx
    attributes: dict[str, Any] = {
        "id": change_id,
        "order": order,
        "author": "protocol-kit",
        "target_system": target,
        "transactional": tx,
        "recovery": Recovery.ALWAYS_RETRY if retry else Recovery.MANUAL_INTERVENTION,
        "execute": execute,
        "__module__": __name__,
        "__qualname__": f"Child_{change_id.replace('-', '_')}",
    }
    if not tx:
        attributes["idempotency"] = "a test double: a second run adds to its effect, which the tests count"
    return cast("type[Change]", type(attributes["__qualname__"], (Change,), attributes))


def _park_after_commit(target: TargetSystem, probe: Probe, change_id: str) -> None:
    """Park once the transaction of `change_id` on `target` has committed (its marker with it)."""
    real = target.transaction  # type: ignore[attr-defined]

    @asynccontextmanager
    async def parking() -> AsyncIterator[Transaction]:
        async with real() as tx:
            yield tx
        if probe.running == change_id:
            await probe.park(change_id)

    target.transaction = parking  # type: ignore[attr-defined]


async def _run(spec: ChildSpec) -> RunReport:
    module, _, attr = spec.kit.partition(":")
    kit: ProtocolKit = getattr(importlib.import_module(module), attr)(*spec.kit_args)
    probe = Probe(spec.effects, spec.signals)
    try:
        instance = await kit.instance()
        if spec.park_after_commit is not None:
            assert instance.other is not None, "park_after_commit needs the kit's marker-path target"
            _park_after_commit(instance.other, probe, spec.park_after_commit)
        changes = [
            _change(kit, probe, spec, change_id, f"{n:04d}", target, tx)
            for n, (change_id, target, tx) in enumerate(changes_of(kit, instance, spec.copies), start=1)
        ]
        lock = LockOptions(lease_seconds=spec.lease_seconds, acquire_timeout_seconds=30, retry_interval_seconds=0.2)
        fl = Flamingock(
            audit_store=instance.store,
            target_systems=instance.targets(),
            changes=changes,
            lock=lock,
            listeners=[probe.listener],
        )
        return await fl.run()
    finally:
        await kit.aclose()


def _exit_code(exc: BaseException) -> int:
    return next((code for kind, code in EXIT_CODES.items() if isinstance(exc, kind)), EXIT_UNEXPECTED)


def _print_report(report: RunReport) -> None:
    sys.stdout.write(f"execution_id={report.execution_id} status={report.status.value}\n")


def report_run(run: Callable[[], Coroutine[Any, Any, RunReport]]) -> int:
    """Run one Flamingock run; print its report; map its error to an exit code, the error last on stderr."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        report = asyncio.run(run())
    except Exception as exc:
        reported = getattr(exc, "report", None)
        if reported is not None:
            _print_report(reported)
        if _exit_code(exc) == EXIT_UNEXPECTED:
            logging.exception("unexpected error")
        sys.stderr.write(f"{ERROR_PREFIX}{type(exc).__name__}: {exc}\n")  # last, after any log line
        return _exit_code(exc)
    _print_report(report)
    return 0


def main(argv: list[str]) -> int:
    spec = ChildSpec(**json.loads(argv[0]))
    return report_run(lambda: _run(spec))
