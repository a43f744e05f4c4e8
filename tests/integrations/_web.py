"""Helpers of the web-integration tests: a change the test holds in the middle, a failing change, free ports,
a uvicorn process and the audit as seen from outside."""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import aioflamingock
from aioflamingock import AuditState, Change, Flamingock
from aioflamingock._startup import Startup, StartupStatus
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem

__all__ = [
    "EXAMPLES",
    "Broken",
    "Gate",
    "applied",
    "applied_in",
    "build",
    "free_port",
    "poll",
    "settled",
    "started",
    "uvicorn",
]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STARTUP_SECONDS = 30.0

ROLLED_BACK = (
    "The engine rolled back its transaction: what the change wrote through its context was undone (writes made "
    "any other way are not); the next run applies it again"
)
"""What a run says after a transactional change failed."""


class Gate:
    """A change the test holds in the middle of its `execute` until it calls `release()`."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.released = asyncio.Event()
        gate = self

        class Gated(Change):
            id = "gated"
            order = "0003"
            author = "tests"
            target_system = "app-db"

            async def execute(self, ctx: SQLiteContext) -> None:
                gate.entered.set()
                await gate.released.wait()
                await ctx.connection.execute("CREATE TABLE gated (id INTEGER PRIMARY KEY)")

        self.change = Gated

    def release(self) -> None:
        self.released.set()


class Broken(Change):
    id = "broken"
    order = "0003"
    author = "tests"
    target_system = "app-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        raise RuntimeError("disk full")


def build(database: Path, *changes: str | type[Change]) -> Flamingock:
    app_db = SQLiteTargetSystem("app-db", path=database)
    return Flamingock(audit_store=SQLiteAuditStore.from_target(app_db), target_systems=[app_db], changes=changes)


async def applied(fl: Flamingock) -> list[str]:
    """The changes with an APPLIED entry, read through the engine."""
    return [entry.change_id async for entry in fl.history() if entry.state is AuditState.APPLIED]


def applied_in(database: Path) -> list[str]:
    """The changes with an APPLIED entry, read with plain SQL from another process's point of view."""
    with closing(sqlite3.connect(database)) as conn:
        rows = conn.execute("SELECT change_id FROM flamingock_audit_log WHERE state = 'APPLIED' ORDER BY id")
        return [row[0] for row in rows]


async def settled(startup: Startup) -> StartupStatus:
    """Wait for a background start-up run to end (ready or failed)."""
    for _ in range(1000):
        if startup.status not in {StartupStatus.PENDING, StartupStatus.APPLYING}:
            return startup.status
        await asyncio.sleep(0.01)
    raise AssertionError(f"the start-up run is still {startup.status} after 10 s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def started(command: list[str], *, cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process with its output in `log`, terminated (then killed) on exit."""
    env = {k: v for k, v in os.environ.items() if k != aioflamingock.DISABLE_ENV_VAR} | env
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def uvicorn(app: str, app_dir: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir), "--port", str(port)]


def poll(what: str, check: Callable[[], bool], process: subprocess.Popen[bytes], log: Path) -> None:
    """Wait for `check()` while the process lives; fail with its output otherwise."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while not check():
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before {what}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {STARTUP_SECONDS:.0f} s:\n{log.read_text()}")
        time.sleep(0.05)
