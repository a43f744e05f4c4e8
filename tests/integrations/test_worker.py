"""examples/worker.py as users run it, in its own process: the changes first, then the queue."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import aioflamingock
from tests.integrations._web import EXAMPLES, applied_in

pytestmark = pytest.mark.slow

WORKER = EXAMPLES / "worker.py"
QUEUED = ["queued   book", "queued   lamp", "queued   desk"]
CONSUMED = ["consumed book", "consumed lamp", "consumed desk"]


def run_worker(database: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"APP_DB", aioflamingock.DISABLE_ENV_VAR}}
    return subprocess.run(
        [sys.executable, str(WORKER), str(database)],
        cwd=database.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def orders(database: Path) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(database)) as conn:
        return conn.execute("SELECT item, status FROM orders ORDER BY id").fetchall()


def test_messages_wait_in_the_queue_until_every_change_is_applied(tmp_path: Path) -> None:
    database = tmp_path / "app.db"

    first = run_worker(database)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [*QUEUED, "applied  create-orders, add-order-status", *CONSUMED]
    assert applied_in(database) == ["create-orders", "add-order-status"]
    assert orders(database) == [("book", "received"), ("lamp", "received"), ("desk", "received")]

    second = run_worker(database)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == [*QUEUED, "applied  nothing: every change was already applied", *CONSUMED]
    assert applied_in(database) == ["create-orders", "add-order-status"]
    assert len(orders(database)) == 6


def test_a_failing_change_stops_the_worker_before_it_consumes_anything(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    with closing(sqlite3.connect(database)) as conn:  # someone created the table by hand
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)")

    done = run_worker(database)
    assert done.returncode != 0
    assert "consumed" not in done.stdout
    assert "ChangeFailedError: change 'create-orders' failed: OperationalError: table orders already exists" in (
        done.stderr
    )
    assert applied_in(database) == []
    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM orders").fetchone() == (0,)
