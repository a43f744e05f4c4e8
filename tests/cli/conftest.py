"""The command line against real stores: as users run it (`python -m aioflamingock ...` in a fresh process, `Cli`),
or, where a process adds nothing but half a second, in this one through typer's runner (`InProcess`). Both answer
the same `Result`.

Apps: `examples/cli_app.py` (SQLite, the one the docs show) and `apps/mongo_shop.py` (its MongoDB twin); both
directories are on PYTHONPATH. Every process runs with a timeout, so a hung command fails the test instead of
hanging the suite.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import aioflamingock
from aioflamingock._cli import APP_ENV_VAR, build_app
from tests.servers import Server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
APPS = Path(__file__).with_name("apps")
SHOP_APP = "cli_app:build_flamingock"
MONGO_APP = "mongo_shop:build_flamingock"
SHOP_CHANGES = ["create-orders", "add-order-status", "configure-order-search", "index-orders-by-status"]
STUCK = "configure-order-search"
"""The non-transactional change of both shops: the one a killed process leaves STARTED."""
COMMAND_SECONDS = 60.0
STARTED_SECONDS = 30.0


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Cli:
    """Runs `python -m aioflamingock` (or `program`) in `cwd` with `env`."""

    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    program: tuple[str, ...] = (sys.executable, "-m", "aioflamingock")

    def command(self, *args: str) -> list[str]:
        return [*self.program, *args]

    def __call__(self, *args: str, code: int = 0) -> Result:
        done = subprocess.run(
            self.command(*args), cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=COMMAND_SECONDS
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        assert result.code == code, (
            f"exit {result.code}, expected {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return self(*args, "--json", code=code).json()

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@dataclass
class InProcess:
    """Runs the same command in this process, with `env` set for its duration."""

    env: dict[str, str | None]

    def __call__(self, *args: str, code: int = 0) -> Result:
        from typer.testing import CliRunner

        done = CliRunner().invoke(build_app(), list(args), env=self.env, prog_name="aioflamingock")
        if done.exception is not None and not isinstance(done.exception, SystemExit):
            raise done.exception
        result = Result(done.exit_code, done.stdout, done.stderr)
        assert result.code == code, (
            f"exit {result.code}, expected {code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        return result

    def json(self, *args: str, code: int = 0) -> Any:
        return self(*args, "--json", code=code).json()


def cli_env(**extra: str) -> dict[str, str]:
    """The test process's environment without anything that would change what the CLI does, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in {APP_ENV_VAR, aioflamingock.DISABLE_ENV_VAR}}
    path = [str(EXAMPLES), str(APPS), env.get("PYTHONPATH", "")]
    env.update({"PYTHONPATH": os.pathsep.join(p for p in path if p), "COLUMNS": "200", **extra})
    return env


@dataclass
class Shop:
    """One SQLite shop (`examples/cli_app.py`) in a temporary directory, with `AIOFLAMINGOCK_APP` set: `cli` runs
    commands in a process of their own, `fast` in this one."""

    cli: Cli
    fast: InProcess
    database: Path

    @property
    def settings_file(self) -> Path:
        return self.database.with_suffix(".search.json")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True)) as conn:
            return conn.execute(sql).fetchall()

    def states(self, change_id: str) -> list[str]:
        try:
            rows = self.query(f"SELECT state FROM flamingock_audit_log WHERE change_id = '{change_id}' ORDER BY id")
        except sqlite3.OperationalError:  # the run has not created the table yet
            return []
        return [row[0] for row in rows]


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Shop:
    database = tmp_path / "shop.db"
    monkeypatch.syspath_prepend(str(EXAMPLES))
    own = {"SHOP_DB": str(database), APP_ENV_VAR: SHOP_APP, "COLUMNS": "200"}
    fast = InProcess({**own, aioflamingock.DISABLE_ENV_VAR: None})
    return Shop(Cli(tmp_path, cli_env(**own)), fast, database)


def kill_mid_change(cli: Cli, settings_file: Path, states: Callable[[str], list[str]]) -> int:
    """Start `run` and SIGKILL it while the non-transactional change runs; return the killed pid.

    The change writes `settings_file`; a FIFO there blocks its `open()` until someone reads, so the process is
    parked inside `execute`, after its STARTED entry, with nothing faked: the entry is the one a real run wrote.
    The FIFO is removed afterwards, so that a change executed again would leave a plain file behind."""
    os.mkfifo(settings_file)
    process = cli.start("run")
    try:
        deadline = time.monotonic() + STARTED_SECONDS
        while states(STUCK)[-1:] != ["STARTED"]:
            if process.poll() is not None or time.monotonic() > deadline:
                out, err = process.communicate(timeout=COMMAND_SECONDS)
                pytest.fail(f"{STUCK} never reached STARTED (exit {process.returncode})\n{out}\n{err}")
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=COMMAND_SECONDS)
        settings_file.unlink()
    assert process.returncode == -signal.SIGKILL
    return process.pid


@dataclass
class MongoShop:
    """One MongoDB shop (`apps/mongo_shop.py`) in a database of its own."""

    cli: Cli
    uri: str
    database: str
    settings_file: Path

    def collection(self, name: str) -> list[dict[str, Any]]:
        from pymongo import MongoClient

        client: MongoClient[dict[str, Any]]
        with MongoClient(self.uri, serverSelectionTimeoutMS=5000) as client:
            return list(client[self.database][name].find({}, {"_id": 0}).sort("seq", 1))  # audit order

    def states(self, change_id: str) -> list[str]:
        return [e["state"] for e in self.collection("flamingockAuditLog") if e["changeId"] == change_id]


@pytest.fixture
def mongo_shop(mongodb_server: Server, tmp_path: Path) -> Iterator[MongoShop]:
    from pymongo import MongoClient

    database = f"cli_{uuid.uuid4().hex[:12]}"
    settings = tmp_path / "search.json"
    env = cli_env(
        MONGODB_URI=mongodb_server.uri,
        MONGODB_DATABASE=database,
        SEARCH_SETTINGS=str(settings),
        **{APP_ENV_VAR: MONGO_APP},
    )
    yield MongoShop(Cli(tmp_path, env), mongodb_server.uri, database, settings)
    client: MongoClient[dict[str, Any]]
    with MongoClient(mongodb_server.uri, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(database)
