"""What the benchmark runners share: trivial change classes, generated; timing; counting the calls a run sends to
its server; the machine's description; the command line and the results file."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from aioflamingock import Change, Event, EventKind, Flamingock, NonTransactionalContext, RunStatus

__all__ = [
    "PEER_STATEMENT",
    "RESULTS",
    "AppliedRun",
    "CallCounter",
    "ChangesTime",
    "FloorRun",
    "PerChange",
    "Runs",
    "Window",
    "alembic_project",
    "alembic_upgrade",
    "argument_parser",
    "count_call",
    "cpu_model",
    "early_late_ms",
    "floor_times",
    "fresh_runs",
    "generate_changes",
    "machine_facts",
    "measure_engine",
    "measure_floor",
    "median_seconds",
    "open_runs",
    "package_version",
    "per_change_names",
    "print_machine",
    "progress",
    "rotated",
    "stop_process",
    "tally",
    "timed",
    "write_results",
    "yoyo_apply",
    "yoyo_migrations",
]

RESULTS = Path(__file__).resolve().parent / "results"


# -- changes, generated ---------------------------------------------------------------------------------------------


async def count_call(self: Change, ctx: NonTransactionalContext) -> None:
    """The non-transactional changes' work: one entry in the target's `calls` list."""
    ctx["calls"].append(1)


def generate_changes(
    count: int, target: str, execute: Callable[[Change, Any], Awaitable[None]], *, transactional: bool
) -> list[type[Change]]:
    """`count` change classes, ordered c00000, c00001...; explicit classes need `order` set."""
    return [
        type(
            f"Bench{i:05d}",
            (Change,),
            {
                "id": f"c{i:05d}",
                "order": f"{i:05d}",
                "author": "bench",
                "target_system": target,
                "transactional": transactional,
                "execute": execute,
            },
        )
        for i in range(count)
    ]


# -- timing ---------------------------------------------------------------------------------------------------------


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await call()
    return time.perf_counter() - started, result


async def median_seconds(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    return statistics.median([(await timed(call))[0] for _ in range(repeat)])


def early_late_ms(durations: list[float]) -> tuple[float, float]:
    """Mean time per change over the first and the last quarter of a run: equal unless a change costs more as the
    audit grows."""
    quarter = max(len(durations) // 4, 1)
    return statistics.mean(durations[:quarter]) * 1000, statistics.mean(durations[-quarter:]) * 1000


def rotated(kinds: tuple[str, ...], attempt: int) -> tuple[str, ...]:
    """`kinds`, starting at a different one each attempt, so that a busier moment of the server hits each."""
    start = attempt % len(kinds)
    return kinds[start:] + kinds[:start]


@contextlib.contextmanager
def progress(step: str) -> Iterator[None]:
    """How long `step` took, on stderr, once it is done: `(a) 1,000 changes: 12 s`."""
    started = time.perf_counter()
    yield
    print(f"{step}: {time.perf_counter() - started:.0f} s", file=sys.stderr)


# -- counting calls -------------------------------------------------------------------------------------------------


@dataclass
class Window:
    """What was sent meanwhile: `sent`, one name per call counted; `call_seconds`, the time the calls took as the
    client saw them, from the call to its result (concurrent calls overlap)."""

    sent: list[str] = field(default_factory=list)
    call_seconds: float = 0.0


class CallCounter:
    """Every call sent to the server, by name (`sent`), and each call's time until its result (`seconds`), as a
    subclass hooks them in; `counting()` gives those of a window."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.seconds: list[float] = []

    @contextlib.contextmanager
    def counting(self) -> Iterator[Window]:
        sent, seconds = len(self.sent), len(self.seconds)
        window = Window()
        try:
            yield window
        finally:
            window.sent.extend(self.sent[sent:])
            window.call_seconds = sum(self.seconds[seconds:])


def tally(names: list[str]) -> dict[str, int]:
    """How many of each name."""
    return dict(Counter(names))


def per_change_names(names: list[str], count: int) -> dict[str, float]:
    return {name: n / count for name, n in Counter(names).items()}


class PerChange:
    """A listener that puts down to each change the calls sent between its CHANGE_STARTED and CHANGE_FINISHED:
    what is left of a run's calls is its constant (reads, lock, tables or collections)."""

    def __init__(self, counter: CallCounter) -> None:
        self._counter = counter
        self._start = 0
        self.counts: list[int] = []
        self.names: list[str] = []

    async def __call__(self, event: Event) -> None:
        if event.kind is EventKind.CHANGE_STARTED:
            self._start = len(self._counter.sent)
        elif event.kind is EventKind.CHANGE_FINISHED:
            self.counts.append(len(self._counter.sent) - self._start)
            self.names += self._counter.sent[self._start :]


class ChangesTime:
    """A listener: the time from the first change's start to the last change's end (a run's changes, without its
    start-up)."""

    def __init__(self) -> None:
        self.first = self.last = 0.0

    async def __call__(self, event: Event) -> None:
        if event.kind is EventKind.CHANGE_STARTED and not self.first:
            self.first = time.perf_counter()
        elif event.kind is EventKind.CHANGE_FINISHED:
            self.last = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.last - self.first


# -- (a) nothing pending --------------------------------------------------------------------------------------------


@dataclass
class Runs:
    """Wall times and call times of repeated runs, and the last run's window."""

    times: list[float] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)
    window: Window = field(default_factory=Window)

    def add(self, seconds: float, window: Window) -> None:
        self.times.append(seconds)
        self.calls.append(window.call_seconds)
        self.window = window

    @property
    def seconds_median(self) -> float:
        return statistics.median(self.times)

    @property
    def call_seconds_median(self) -> float:
        return statistics.median(self.calls)


async def fresh_runs(engine: Callable[[], Flamingock], counter: CallCounter, count: int, repeat: int) -> Runs:
    """A fresh engine each time, the usual start-up: `await Flamingock(...).run()` loads the changes, opens the
    store, reads; `count` changes, all applied already."""
    runs = Runs()
    for _ in range(repeat):
        with counter.counting() as window:
            seconds, report = await timed(engine().run)
        assert report.status is RunStatus.NO_CHANGES and len(report.changes) == count, report.status
        runs.add(seconds, window)
    return runs


async def open_runs(engine: Flamingock, counter: CallCounter, repeat: int) -> Runs:
    """An engine kept open (`async with fl:`), changes loaded: run() itself."""
    runs = Runs()
    async with engine as fl:
        fl.changes()
        for _ in range(repeat):
            with counter.counting() as window:
                seconds, report = await timed(fl.run)
            assert report.status is RunStatus.NO_CHANGES
            runs.add(seconds, window)
    return runs


# -- (b) applying, against the floor --------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppliedRun:
    """One run of the engine applying `count` changes: its wall time, the calls' time, the calls per change (mean,
    range, by name) and those of the run besides the changes, the changes' own time, their time per change early
    and late."""

    seconds: float
    call_seconds: float
    per_change: float
    per_change_range: list[int]
    names_per_change: dict[str, float]
    run_constant: dict[str, int]
    change_seconds: float
    quarters_ms: tuple[float, float]


async def measure_engine(fl: Flamingock, counter: CallCounter, count: int) -> AppliedRun:
    """`fl.run()`, its changes loaded beforehand, applying `count` changes, counted change by change."""
    fl.changes()
    changes = PerChange(counter)
    fl.add_listener(changes)
    with counter.counting() as seen:
        seconds, report = await timed(fl.run)
    assert len(report.applied) == count, report
    constant = list((Counter(seen.sent) - Counter(changes.names)).elements())
    durations = [c.duration_seconds for c in report.changes]
    return AppliedRun(
        seconds=seconds,
        call_seconds=seen.call_seconds,
        per_change=statistics.mean(changes.counts),
        per_change_range=[min(changes.counts), max(changes.counts)],
        names_per_change=per_change_names(changes.names, count),
        run_constant=tally(constant),
        change_seconds=sum(durations),
        quarters_ms=early_late_ms(durations),
    )


@dataclass(frozen=True)
class FloorRun:
    """`count` changes done by hand, the least a correct protocol sends: their time, calls per change, early and
    late time per change."""

    seconds: float
    per_change: float
    names_per_change: dict[str, float]
    quarters_ms: tuple[float, float]


async def measure_floor(one: Callable[[int], Awaitable[None]], counter: CallCounter, count: int) -> FloorRun:
    """`one(i)` for each of `count` changes, each timed, all counted."""
    durations: list[float] = []
    with counter.counting() as seen:
        for i in range(count):
            seconds, _ = await timed(functools.partial(one, i))
            durations.append(seconds)
    return FloorRun(
        seconds=sum(durations),
        per_change=len(seen.sent) / count,
        names_per_change=per_change_names(seen.sent, count),
        quarters_ms=early_late_ms(durations),
    )


def floor_times(floors: list[FloorRun], count: int) -> dict[str, Any]:
    """The floor's time per change over repeated runs: the median, early and late; each run's."""
    return {
        "ms_per_change": statistics.median(f.seconds for f in floors) / count * 1000,
        "ms_per_change_first_quarter": statistics.median(f.quarters_ms[0] for f in floors),
        "ms_per_change_last_quarter": statistics.median(f.quarters_ms[1] for f in floors),
        "seconds_each": [f.seconds for f in floors],
    }


# -- the tools users would otherwise pick -----------------------------------------------------------------------------

PEER_STATEMENT = "INSERT INTO bench (n) VALUES (1)"
"""What every peer's trivial migration does, as the engine's trivial changes do."""


def alembic_project(directory: Path, count: int, url: str = "") -> Path:
    """An alembic project of `count` revisions in a chain, one `PEER_STATEMENT` each, one transaction per revision;
    the database's URL in alembic.ini (`url`, for the `alembic` command) or given by the caller
    (`config.attributes["url"]`)."""
    versions = directory / "versions"
    versions.mkdir(parents=True)
    (directory / "alembic.ini").write_text(f"[alembic]\nscript_location = %(here)s\nsqlalchemy.url = {url}\n")
    (directory / "env.py").write_text(
        "from alembic import context\nfrom sqlalchemy import create_engine\n"
        "url = context.config.attributes.get('url') or context.config.get_main_option('sqlalchemy.url')\n"
        "engine = create_engine(url)\n"
        "with engine.connect() as connection:\n"
        "    context.configure(connection=connection, transaction_per_migration=True)\n"
        "    with context.begin_transaction():\n        context.run_migrations()\n"
    )
    for i in range(count):
        down = repr(f"r{i - 1:05d}") if i else "None"
        (versions / f"r{i:05d}.py").write_text(
            f"from alembic import op\nrevision = 'r{i:05d}'\ndown_revision = {down}\n"
            f"def upgrade():\n    op.execute({PEER_STATEMENT!r})\n"
        )
    return directory / "alembic.ini"


def alembic_upgrade(ini: Path, url: str) -> float:
    """`alembic upgrade head`, in this process: its time."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ini))
    config.attributes["url"] = url
    started = time.perf_counter()
    command.upgrade(config, "head")
    return time.perf_counter() - started


def yoyo_migrations(directory: Path, count: int) -> Path:
    """`count` yoyo migrations in a chain, one `PEER_STATEMENT` each."""
    directory.mkdir(parents=True)
    for i in range(count):
        depends = f"__depends__ = {{'m{i - 1:05d}'}}\n" if i else ""
        (directory / f"m{i:05d}.py").write_text(f"from yoyo import step\n{depends}steps = [step({PEER_STATEMENT!r})]\n")
    return directory


def yoyo_apply(directory: Path, url: str) -> float:
    """What `yoyo apply` does, in this process, timed from the connection: read the applied migrations, apply the
    rest, under its lock."""
    from yoyo import get_backend, read_migrations

    started = time.perf_counter()
    backend = get_backend(url)
    with backend.lock():
        backend.apply_migrations(backend.to_apply(read_migrations(str(directory))))
    return time.perf_counter() - started


# -- server, machine, command line, results -------------------------------------------------------------------------


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate a server's child process; kill it if it has not ended within 10 s."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def machine_facts() -> dict[str, Any]:
    """The machine and the interpreter; each runner adds its client libraries and server."""
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def print_machine(info: dict[str, Any]) -> None:
    print(f"machine: {info['cpu']}, {info['cores']} cores, {info['os']}")


def argument_parser(doc: str | None) -> argparse.ArgumentParser:
    """The runner's command line: its docstring as the help, `--repeat`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is reported")
    return parser


def write_results(results: dict[str, Any], backend: str | None = None) -> None:
    """benchmarks/results/[<backend>-]<time>.json, and its path on stdout."""
    RESULTS.mkdir(exist_ok=True)
    prefix = f"{backend}-" if backend else ""
    out = RESULTS / f"{prefix}{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten: {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")
