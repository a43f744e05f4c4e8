"""The harness of the fault-injection tests: starts `_app.py` as real OS processes on real SQLite files, kills or
pauses them at known points, and reads what they left behind with plain `sqlite3`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aioflamingock import LockLostError
from aioflamingock.testing._child import EXIT_CODES
from aioflamingock.testing._processes import Exited

APP = Path(__file__).with_name("_app.py")
ROOT = Path(__file__).resolve().parents[2]

LEASE_SECONDS = 1.5
"""Short, so that a dead holder's lease ends quickly; `_app.py` uses it unless told otherwise."""
EXIT_OK = 0
EXIT_LOCK_LOST = EXIT_CODES[LockLostError]
START_TIMEOUT = 20.0
SETTLE_SECONDS = 0.75
"""How long a started process gets to do something it must not do (finish early), when nothing signals it."""
EXIT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Entry:
    """One audit row, as another process wrote it."""

    id: int
    execution_id: str
    change_id: str
    state: str
    tx_strategy: str
    metadata: dict[str, object]


class App:
    """A running `_app.py` process."""

    def __init__(self, popen: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.popen = popen
        self._out = out
        self._err = err

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return f"stdout: {self._out.read_text()!r}\nstderr: {self._err.read_text()!r}"

    def wait(self, timeout: float = EXIT_TIMEOUT) -> Exited:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"process {self.pid} did not exit within {timeout}s\n{self.output()}") from None
        return Exited(code, self._out.read_text(), self._err.read_text())

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the process."""
        self.popen.kill()
        self.popen.wait(EXIT_TIMEOUT)

    def stop(self) -> None:
        """SIGSTOP, and wait until the process is really stopped (the signal is delivered asynchronously)."""
        os.kill(self.pid, signal.SIGSTOP)
        _, status = os.waitpid(self.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), f"process {self.pid} did not stop\n{self.output()}"

    def cont(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


class Faults:
    """Two database files, an effects file and a signal folder in `tmp_path`, and the processes using them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.effects_file = tmp_path / "effects.txt"
        self.signals = tmp_path / "signals"
        self.signals.mkdir()
        self.apps: list[App] = []
        self.audit_db = tmp_path / "audit.db"
        self.app_db = tmp_path / "app.db"

    def launch(self, script: Path, args: list[str]) -> App:
        n = len(self.apps)
        out, err = self.tmp / f"app-{n}.out", self.tmp / f"app-{n}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            popen = subprocess.Popen([sys.executable, str(script), *args], cwd=ROOT, stdout=stdout, stderr=stderr)
        app = App(popen, out, err)
        self.apps.append(app)
        return app

    def states(self, change_id: str) -> list[str]:
        return [e.state for e in self.audit(change_id)]

    def applied(self) -> dict[str, list[str]]:
        """change id -> execution ids of its APPLIED entries."""
        applied: dict[str, list[str]] = {}
        for entry in self.audit():
            if entry.state == "APPLIED":
                applied.setdefault(entry.change_id, []).append(entry.execution_id)
        return applied

    def run(self, **options: Any) -> Exited:
        return self.start(**options).wait()

    def wait_ready(self, app: App, change_id: str) -> str:
        """Wait until `change_id` is parked inside `app`; return the execution id of `app`'s run."""
        ready = self.signals / f"{change_id}.ready"

        def parked() -> bool:
            if not app.running() and not ready.exists():
                raise AssertionError(f"process {app.pid} exited before {change_id} was ready\n{app.output()}")
            return ready.exists()

        wait_until(parked, START_TIMEOUT, f"{change_id} to be ready")
        execution_id, pid = ready.read_text().split()
        assert int(pid) == app.pid
        ready.unlink()
        return execution_id

    def go(self, change_id: str) -> None:
        (self.signals / f"{change_id}.go").touch()

    def cleanup(self) -> None:
        for app in self.apps:
            if app.running():
                app.kill()  # SIGKILL ends a stopped process too

    def effects(self) -> Counter[str]:
        """How many times each change's `execute` started, over every process."""
        if not self.effects_file.exists():
            return Counter()
        return Counter(line.split()[0] for line in self.effects_file.read_text().splitlines())

    def effect_executions(self, change_id: str) -> list[str]:
        lines = self.effects_file.read_text().splitlines() if self.effects_file.exists() else []
        return [line.split()[1] for line in lines if line.split()[0] == change_id]

    # -- processes ----------------------------------------------------------------------------------------------

    def start(
        self,
        *,
        hang: str | None = None,
        nontx_recovery: str = "manual",
        copies: int = 1,
        delay: float = 0.0,
        block: float = 0.0,
        lease: float = LEASE_SECONDS,
        busy_timeout: float | None = None,
    ) -> App:
        args = [
            *("--audit", str(self.audit_db), "--target", str(self.app_db)),
            *("--effects", str(self.effects_file), "--signals", str(self.signals)),
            *("--copies", str(copies), "--nontx-recovery", nontx_recovery),
            *("--delay", str(delay), "--block", str(block), "--lease", str(lease)),
            *(("--hang", hang) if hang else ()),
            *(("--busy-timeout", str(busy_timeout)) if busy_timeout is not None else ()),
        ]
        return self.launch(APP, args)

    def wait_started(self, app: App) -> None:
        """Wait until `app`'s run has started; it reads the audit right after."""

        def started() -> bool:
            if not app.running():
                raise AssertionError(f"process {app.pid} exited before its run started\n{app.output()}")
            return (self.signals / f"{app.pid}.started").exists()

        wait_until(started, START_TIMEOUT, f"process {app.pid} to start its run")

    def pause_between_statements(self, app: App) -> None:
        """Stop `app` at a moment it holds no write lock on the audit database: stopped in the middle of a lock
        renewal, it would keep every other instance out until resumed (SQLite has one writer at a time)."""
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            app.stop()
            with closing(sqlite3.connect(self.audit_db, timeout=0, isolation_level=None)) as probe:
                try:
                    probe.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:
                    if time.monotonic() > deadline:
                        raise
                else:
                    probe.execute("ROLLBACK")
                    return
            app.cont()
            time.sleep(0.01)

    # -- what the processes left behind --------------------------------------------------------------------------

    def _query(self, db: Path, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        if not db.exists():
            return []
        conn = sqlite3.connect(db, timeout=10)
        try:
            return list(conn.execute(sql, params))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        finally:
            conn.close()

    def audit(self, change_id: str | None = None) -> list[Entry]:
        rows = self._query(
            self.audit_db,
            "SELECT id, execution_id, change_id, state, tx_strategy, metadata FROM flamingock_audit_log ORDER BY id",
        )
        entries = [Entry(r[0], r[1], r[2], r[3], r[4], json.loads(r[5] or "{}")) for r in rows]
        return [e for e in entries if change_id is None or e.change_id == change_id]

    def rows(self, db: Path, change_id: str) -> list[tuple[str, int]]:
        """The committed `app_rows` of a change: (execution id, n)."""
        rows = self._query(db, "SELECT execution_id, n FROM app_rows WHERE change_id = ? ORDER BY rowid", (change_id,))
        return [(r[0], r[1]) for r in rows]

    def markers(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._query(self.app_db, "SELECT change_id, execution_id FROM flamingock_marker")]

    def lock(self) -> tuple[str, int, float] | None:
        rows = self._query(self.audit_db, "SELECT owner, fencing_token, expires_at FROM flamingock_lock")
        return None if not rows else (rows[0][0], rows[0][1], rows[0][2])

    def wait_lease_expired(self) -> None:
        def expired() -> bool:
            lock = self.lock()
            return lock is None or lock[2] < time.time()

        wait_until(expired, LEASE_SECONDS * 4, "the lease to expire")


@pytest.fixture
def faults(tmp_path: Path) -> Iterator[Faults]:
    harness = Faults(tmp_path)
    try:
        yield harness
    finally:
        harness.cleanup()


@pytest.fixture
def make_faults(tmp_path: Path) -> Iterator[Callable[[], Faults]]:
    """For tests that need several independent sets of databases."""
    made: list[Faults] = []

    def make() -> Faults:
        folder = tmp_path / f"set-{len(made)}"
        folder.mkdir()
        made.append(Faults(folder))
        return made[-1]

    try:
        yield make
    finally:
        for harness in made:
            harness.cleanup()
