"""The fault-injection tests on MongoDB: `_mongo_app.py` as real OS processes against a real server, SIGKILLed in the
middle of each path of the safety protocol, eight of them started at once, and the server stopped under a run.

The server: `AIOFLAMINGOCK_MONGODB_URI` when set, else a SecantusDB started for this module (see `crash_server`);
the test that stops the server always starts a SecantusDB of its own, on disk. `AIOFLAMINGOCK_REQUIRE_SERVERS=1`
turns a missing server into a failure, as in `tests/servers.py`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers import MONGODB_URI_ENV, NO_MONGODB, _stop_secantus, unavailable

from . import _scenarios as scenarios
from ._scenarios import THREE_ROWS
from .conftest import (
    EXIT_LOCK_LOST,
    EXIT_OK,
    LEASE_SECONDS,
    App,
    DocumentEntry,
    Processes,
    wait_until,
)

pytestmark = pytest.mark.slow

APP = Path(__file__).with_name("_mongo_app.py")
TRANSACTION_LIFETIME_SECONDS = 1.0
"""Of the SecantusDB servers started here. A transaction whose client was SIGKILLed keeps what it wrote locked
(the implicit creation of a collection included) until the server reaps it: SecantusDB does so when another
transaction command arrives after this long (default 60 s), a real mongod after `transactionLifetimeLimitSeconds`
(default 60 s). Until then, a next run's transaction on the same documents or collection gets `WriteConflict`."""
SERVER_SELECTION_MS = 2000
STOPPED_EXIT_SECONDS = 30.0
VICTIM = "victim"


@dataclass(frozen=True)
class MongoServer:
    uri: str
    external: bool
    """Not ours (`AIOFLAMINGOCK_MONGODB_URI`): its transaction lifetime is not ours to shorten."""


def _require_pymongo() -> None:
    try:
        import pymongo  # noqa: F401
    except ImportError:
        unavailable(f'PyMongo is not installed: pip install -e ".[dev]" ({NO_MONGODB})')


def _secantus(**options: Any) -> Any:
    try:
        from secantus import SecantusDBServer
    except ImportError:
        unavailable('SecantusDB is not installed: pip install -e ".[dev]"')
    server = SecantusDBServer(host="127.0.0.1", transaction_lifetime_seconds=TRANSACTION_LIFETIME_SECONDS, **options)
    server.start()
    return server


@pytest.fixture(scope="module")
def crash_server() -> Iterator[MongoServer]:
    """A dedicated SecantusDB with a short transaction lifetime: after a SIGKILL the tests wait that lifetime out,
    and the next run's own transaction commands make the server reap what the dead process left open, as a real
    mongod reaps it by itself (chosen over `killAllSessions` so the library meets the abandoned transaction the way
    it would in production, only sooner). On a server of yours (`AIOFLAMINGOCK_MONGODB_URI`), whose lifetime is not
    ours to shorten, `Harness.reap_abandoned` sends `killAllSessions` instead."""
    _require_pymongo()
    uri = os.environ.get(MONGODB_URI_ENV)
    if uri:
        yield MongoServer(uri, external=True)
        return
    server = _secantus(port=0, storage_path=":memory:")
    try:
        yield MongoServer(server.uri, external=False)
    finally:
        _stop_secantus(server)


class Harness(Processes):
    """Two databases on one server, an effects file and a signal folder in `tmp_path`, and the processes."""

    def __init__(self, tmp_path: Path, server: MongoServer) -> None:
        from pymongo import MongoClient

        super().__init__(tmp_path)
        self.server = server
        suffix = uuid.uuid4().hex[:12]
        self.store_db = f"faults_store_{suffix}"
        self.app_db = f"faults_app_{suffix}"
        self.client: MongoClient[dict[str, Any]] = MongoClient(server.uri, serverSelectionTimeoutMS=10_000)

    # -- processes ----------------------------------------------------------------------------------------------

    def start(
        self,
        *,
        hang: str | None = None,
        nontx_recovery: str = "manual",
        copies: int = 1,
        delay: float = 0.0,
        app_name: str = "aioflamingock-faults",
        server_selection_ms: int = 10_000,
    ) -> App:
        args = [
            *("--uri", self.server.uri, "--store-db", self.store_db, "--target-db", self.app_db),
            *("--effects", str(self.effects_file), "--signals", str(self.signals)),
            *("--copies", str(copies), "--nontx-recovery", nontx_recovery, "--delay", str(delay)),
            *("--lease", str(LEASE_SECONDS), "--server-selection-ms", str(server_selection_ms)),
            *("--app-name", app_name),
            *(("--hang", hang) if hang else ()),
        ]
        return self.launch(APP, args)

    def reap_abandoned(self) -> None:
        """Call right after a SIGKILL: make sure the server will drop what the dead process's open transaction
        holds before the next run needs it (see `crash_server`)."""
        if self.server.external:
            self.client.admin.command("killAllSessions", [])
        else:
            time.sleep(TRANSACTION_LIFETIME_SECONDS + 0.1)

    def cleanup(self) -> None:
        super().cleanup()
        from pymongo.errors import PyMongoError

        try:
            self.client.drop_database(self.store_db)
            self.client.drop_database(self.app_db)
        except PyMongoError:  # the server of a test may be gone already; its databases went with it
            pass
        self.client.close()

    # -- what the processes left behind --------------------------------------------------------------------------

    def audit(self, change_id: str | None = None) -> list[DocumentEntry]:
        query = {} if change_id is None else {"changeId": change_id}
        documents = self.client[self.store_db]["flamingockAuditLog"].find(query, sort=[("seq", 1)])
        return [
            DocumentEntry(d["executionId"], d["changeId"], d["state"], d["txStrategy"], d.get("metadata") or {})
            for d in documents
        ]

    def store_rows(self, change_id: str) -> list[tuple[str, int]]:
        return self.rows(self.store_db, change_id)

    def target_rows(self, change_id: str) -> list[tuple[str, int]]:
        return self.rows(self.app_db, change_id)

    def after_kill(self) -> None:
        self.reap_abandoned()

    def rows(self, database: str, change_id: str) -> list[tuple[str, int]]:
        documents = self.client[database]["app_rows"].find({"changeId": change_id}, sort=[("executionId", 1), ("n", 1)])
        return [(d["executionId"], d["n"]) for d in documents]

    def markers(self) -> list[tuple[str, str]]:
        return [(d["_id"], d["executionId"]) for d in self.client[self.app_db]["flamingockMarker"].find()]

    def lock(self) -> dict[str, Any] | None:
        return self.client[self.store_db]["flamingockLock"].find_one({"_id": "default", "status": "LOCKED"})

    # -- fail points ------------------------------------------------------------------------------------------------

    def block_commands(self, app_name: str, command: str, ms: int) -> None:
        """Hold every `command` of the client named `app_name` for `ms`, then fail it unexecuted."""
        self.client.admin.command(
            "configureFailPoint",
            "failCommand",
            mode="alwaysOn",
            data={
                "failCommands": [command],
                "appName": app_name,
                "blockConnection": True,
                "blockTimeMS": ms,
                "errorCode": 91,  # ShutdownInProgress: the command is answered with an error and never run
            },
        )

    def clear_fail_point(self) -> None:
        self.client.admin.command("configureFailPoint", "failCommand", mode="off")


@pytest.fixture
def mongo(tmp_path: Path, crash_server: MongoServer) -> Iterator[Harness]:
    harness = Harness(tmp_path, crash_server)
    try:
        yield harness
    finally:
        harness.cleanup()


# -- 1. SIGKILL in the middle of each path ---------------------------------------------------------------------------


def test_shared_transaction_crash_leaves_nothing_and_the_next_run_applies_once(mongo: Harness) -> None:
    scenarios.shared_crash_leaves_nothing(mongo)


def test_marker_crash_before_commit_is_applied_again_without_a_human(mongo: Harness) -> None:
    scenarios.marker_crash_before_commit(mongo)


def test_marker_crash_after_commit_is_recorded_without_running_again(mongo: Harness) -> None:
    """The state between the target's commit and APPLIED, reached for real: a fail point holds every
    `findAndModify` of the victim's client (the first statement of an audit append; renewals too), so the process
    commits the change (documents and marker, in database B) and then waits writing APPLIED; it is killed there.
    The held command is answered with an error, never run, so it leaves nothing behind."""
    victim = mongo.start(hang="marker-1", app_name=VICTIM)
    crashed = mongo.wait_ready(victim, "marker-1")
    mongo.block_commands(VICTIM, "findAndModify", 5000)
    try:
        mongo.go("marker-1")
        wait_until(lambda: mongo.markers() != [], LEASE_SECONDS / 2, "the change's transaction to commit")
        victim.kill()
    finally:
        mongo.clear_fail_point()
    scenarios.committed_marker_is_recorded(mongo, crashed)


def test_non_transactional_crash_needs_a_human_under_manual_intervention(mongo: Harness) -> None:
    scenarios.nontx_crash_needs_a_human(mongo)


def test_non_transactional_crash_is_retried_under_always_retry(mongo: Harness) -> None:
    scenarios.nontx_crash_is_retried(mongo)


# -- 2. eight processes at once ---------------------------------------------------------------------------------------


def test_eight_processes_apply_every_change_exactly_once(mongo: Harness) -> None:
    scenarios.eight_processes_apply_every_change_once(mongo)


# -- 3. the server stopped under a run --------------------------------------------------------------------------------


class Restartable:
    """A SecantusDB on disk in `tmp_path`, stopped and started again on the same port with the same data."""

    def __init__(self, tmp_path: Path) -> None:
        self.storage = tmp_path / "secantus-data"
        self.server: Any = _secantus(port=0, storage_path=str(self.storage))
        self.port: int = self.server.address[1]
        self.uri: str = self.server.uri

    def stop(self) -> None:
        if self.server is not None:
            _stop_secantus(self.server)  # the socket-shutdown stop: no 2 s wait for the accept thread
            self.server = None

    def restart(self) -> None:
        assert self.server is None
        self.server = _secantus(port=self.port, storage_path=str(self.storage))
        assert self.server.uri == self.uri


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[Restartable]:
    _require_pymongo()
    server = Restartable(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("hang", ["shared-1", "marker-1"])
def test_server_stopped_during_a_change_ends_the_run_with_an_error_and_a_later_run_completes(
    tmp_path: Path, restartable: Restartable, hang: str
) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    mongo = Harness(run_dir, MongoServer(restartable.uri, external=False))
    try:
        victim = mongo.start(hang=hang, server_selection_ms=SERVER_SELECTION_MS)
        crashed = mongo.wait_ready(victim, hang)
        before = mongo.audit()
        mongo.client.close()  # the test's own client must not hold the server's connections open

        stopped_at = time.monotonic()
        restartable.stop()
        ended = victim.wait(STOPPED_EXIT_SECONDS)  # fails the test if the process hangs
        elapsed = time.monotonic() - stopped_at

        assert elapsed < STOPPED_EXIT_SECONDS
        # Renewals cannot reach the server before the lease ends: the change is cancelled and the run says why.
        assert ended.code == EXIT_LOCK_LOST, ended
        assert ended.error.startswith("LockLostError: lost lock 'default': "), ended
        assert "no renewal was confirmed before our lease ended" in ended.error and "unreachable" in ended.error, ended

        restartable.restart()
        from pymongo import MongoClient

        mongo.client = MongoClient(restartable.uri, serverSelectionTimeoutMS=10_000)
        assert mongo.audit() == before, "something was recorded after the server went away"
        assert "APPLIED" not in mongo.states(hang)
        database = mongo.store_db if hang.startswith("shared") else mongo.app_db
        assert mongo.rows(database, hang) == [], "the uncommitted change's writes survived"
        assert mongo.markers() == []

        rerun = mongo.run()

        assert rerun.code == EXIT_OK, rerun
        assert mongo.effect_executions(hang) == [crashed, rerun.execution_id]
        assert mongo.rows(database, hang) == [(rerun.execution_id, n) for n in THREE_ROWS]
        applied = mongo.applied()
        assert sorted(applied) == ["marker-1", "nontx-1", "shared-1"]
        assert all(len(executions) == 1 for executions in applied.values()), applied
        assert mongo.effects() == {"shared-1": 1, "marker-1": 1, "nontx-1": 1} | {hang: 2}
        assert mongo.markers() == []
        assert mongo.lock() is None
    finally:
        mongo.cleanup()
