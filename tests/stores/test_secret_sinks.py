"""One catalogue of secret forms (tests/unit/test_redaction.py) through every sink, on real stores: the error a
run raises, the audit entries as SQLite and MongoDB keep them, the readiness body, and the command line's output
(run, audit list, issues get, in their human and JSON forms)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from aioflamingock import Change, Flamingock, FlamingockError
from aioflamingock._startup import Startup
from tests.unit.test_redaction import CATALOGUE, assert_no_secret


class Leaks(Change):
    id, order, author, target_system, transactional = "leaks", "0001", "alice", "app", False

    async def execute(self, ctx: Any) -> None:
        raise ConnectionError(CATALOGUE)


async def check_sinks(fl: Flamingock, caplog: pytest.LogCaptureFixture) -> None:
    logged = anyio.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.set()

    seen = Seen(logging.ERROR)
    logging.getLogger("aioflamingock.startup").addHandler(seen)
    startup = Startup(fl, background=True)  # what `lifespan(fl, background=True)` runs
    try:
        with caplog.at_level(logging.INFO, logger="aioflamingock"):
            async with startup.running():
                with anyio.fail_after(30):
                    await logged.wait()  # the start-up's ERROR record, with the failure's traceback
    finally:
        logging.getLogger("aioflamingock.startup").removeHandler(seen)
    assert isinstance(startup.error, FlamingockError)
    assert any(r.name == "aioflamingock.startup" and r.exc_text for r in caplog.records)
    for record in caplog.records:
        assert_no_secret(logging.Formatter().format(record), f"the log record {record.getMessage()[:40]!r}")
    assert_no_secret(str(startup.error), "the raised error")
    assert_no_secret(str(startup.readiness_body()), "the readiness body")
    entries = [e async for e in fl.history()]
    assert entries
    for entry in entries:
        assert_no_secret(str(entry.to_document()), f"the stored {entry.state.value} entry")
    assert_no_secret(str(await fl.issues()), "issues()")


async def test_sqlite_sinks_hide_every_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem

    db = SQLiteTargetSystem("app", path=tmp_path / "app.db")
    fl = Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=[Leaks])
    await check_sinks(fl, caplog)


async def test_mongodb_sinks_hide_every_secret(
    mongodb_client: Any, mongodb_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    from aioflamingock.mongodb import MongoDBAuditStore, MongoDBTargetSystem

    db = MongoDBTargetSystem("app", client=mongodb_client, database=mongodb_database)
    fl = Flamingock(audit_store=MongoDBAuditStore.from_target(db), target_systems=[db], changes=[Leaks])
    await check_sinks(fl, caplog)
    raw = await mongodb_client[mongodb_database].flamingockAuditLog.find({}).to_list(None)
    assert_no_secret(str(raw), "the audit collection as MongoDB holds it")


APP = """
from typing import Any

from aioflamingock import Change, Flamingock
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem

CATALOGUE = {catalogue!r}


class Leaks(Change):
    id, order, author, target_system, transactional = "leaks", "0001", "alice", "app", False

    async def execute(self, ctx: Any) -> None:
        raise ConnectionError(CATALOGUE)


def build():
    db = SQLiteTargetSystem("app", path="app.db")
    return Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=[Leaks])
"""


@pytest.mark.parametrize(
    "command",
    [["run"], ["run", "--json"], ["-v", "run"], ["audit", "list", "--history", "--json"], ["issues", "get", "leaks"]],
    ids=lambda c: " ".join(c),
)
def test_command_line_output_hides_every_secret(tmp_path: Path, command: list[str]) -> None:
    (tmp_path / "leaky_app.py").write_text(textwrap.dedent(APP.format(catalogue=CATALOGUE)))
    base = [sys.executable, "-m", "aioflamingock", "--app", "leaky_app:build"]
    subprocess.run([*base, "run"], cwd=tmp_path, capture_output=True, text=True, timeout=60)  # records the failure
    done = subprocess.run([*base, *command], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.stdout or done.stderr
    assert_no_secret(done.stdout + done.stderr, f"`aioflamingock {' '.join(command)}`")


def test_an_app_that_fails_to_import_is_reported_without_its_secrets(tmp_path: Path) -> None:
    (tmp_path / "broken_app.py").write_text(f"raise RuntimeError({CATALOGUE!r})\n")
    command = [sys.executable, "-m", "aioflamingock", "--app", "broken_app:build", "plan"]
    for verbose in ([], ["-v"]):
        done = subprocess.run([*command[:3], *verbose, *command[3:]], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode != 0 and "broken_app" in done.stderr
        assert_no_secret(done.stdout + done.stderr, f"the --app import error{' (verbose)' if verbose else ''}")
