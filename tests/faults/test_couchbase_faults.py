"""The fault-injection tests on Couchbase: `_couchbase_app.py` as real OS processes against a real server, SIGKILLed
in the middle of a change, eight of them started at once, and the server stopped under a run.

The server: the one `AIOFLAMINGOCK_COUCHBASE_URL` names, else the key-value test double in a process of its own,
started for this module. The double has no ACID transactions: there the apps declare no shared-transaction change
and take the marker path on a SQLite file (see `_couchbase_app.py`); the tests of Couchbase's own transactional
paths need a real server. Each test has its own collections.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.servers import (
    COUCHBASE_BUCKET,
    COUCHBASE_PASSWORD,
    COUCHBASE_USER,
    CouchbaseServer,
    start_couchbase,
    start_couchbase_kv_process,
    unavailable,
)

from . import _scenarios as scenarios
from ._scenarios import THREE_ROWS
from .conftest import EXIT_LOCK_LOST, EXIT_STORE_ERROR, LEASE_SECONDS, App, DocumentEntry, Processes

pytestmark = pytest.mark.slow

APP = Path(__file__).with_name("_couchbase_app.py")
STOPPED_EXIT_SECONDS = 30.0


def double_process() -> tuple[CouchbaseServer, Any]:
    """The key-value test double in a process of its own."""
    process, connection = start_couchbase_kv_process()
    return CouchbaseServer(
        connection, COUCHBASE_USER, COUCHBASE_PASSWORD, COUCHBASE_BUCKET, False, process.kill
    ), process


@pytest.fixture(scope="module")
def couchbase() -> Iterator[CouchbaseServer]:
    try:
        import acouchbase  # noqa: F401
    except ImportError:
        unavailable('the Couchbase SDK is not installed: pip install -e ".[dev]"')
    server = start_couchbase()
    process = None
    if server is None or not server.transactions:
        if server is not None:
            server.stop()  # the in-thread double: these tests want one in a process of their own
        server, process = double_process()
    try:
        yield server
    finally:
        server.stop()
        if process is not None:
            process.wait(10)


class Harness(Processes):
    """The collections of one test on the server (their own suffix), a SQLite file, an effects file, a signal
    folder, the processes; and a synchronous SDK connection to read what they left behind."""

    def __init__(self, tmp_path: Path, server: CouchbaseServer) -> None:
        from couchbase.auth import PasswordAuthenticator
        from couchbase.cluster import Cluster
        from couchbase.options import ClusterOptions, ClusterTimeoutOptions

        super().__init__(tmp_path)
        self.server = server
        self.suffix = uuid.uuid4().hex[:12]
        self.sqlite = tmp_path / "app.db"
        timeouts = ClusterTimeoutOptions(kv_timeout=timedelta(seconds=5))
        options = ClusterOptions(PasswordAuthenticator(server.username, server.password), timeout_options=timeouts)
        self.kinds = ("shared", "marker", "nontx") if server.transactions else ("marker", "nontx")
        self.cluster = Cluster(server.connection_string, options)
        self.bucket = self.cluster.bucket(server.bucket)
        manager = self.bucket.collections()
        for name in ("audit", "lock", "rows"):
            manager.create_collection("_default", f"{name}{self.suffix}")

    def start(
        self, *, hang: str | None = None, nontx_recovery: str = "manual", copies: int = 1, delay: float = 0.0
    ) -> App:
        server = self.server
        args = [
            *("--connection", server.connection_string, "--username", server.username),
            *("--password", server.password, "--bucket", server.bucket, "--suffix", self.suffix),
            *("--sqlite", str(self.sqlite), "--effects", str(self.effects_file), "--signals", str(self.signals)),
            *("--copies", str(copies), "--nontx-recovery", nontx_recovery, "--delay", str(delay)),
            *("--lease", str(LEASE_SECONDS)),
            *(("--hang", hang) if hang else ()),
            *(("--transactions",) if server.transactions else ()),
        ]
        return self.launch(APP, args)

    def cleanup(self) -> None:
        super().cleanup()
        self.cluster.close()

    # -- what the processes left behind --------------------------------------------------------------------------

    def _collection(self, name: str) -> Any:
        return self.bucket.scope("_default").collection(f"{name}{self.suffix}")

    def _get(self, name: str, key: str) -> dict[str, Any] | None:
        from couchbase.exceptions import DocumentNotFoundException

        try:
            body: dict[str, Any] = self._collection(name).get(key).content_as[dict]
        except DocumentNotFoundException:
            return None
        return body

    def audit(self, change_id: str | None = None) -> list[DocumentEntry]:
        head = self._get("audit", "flamingockAuditHead")
        documents = [self._get("audit", f"flamingockAudit::{seq}") for seq in range(1, (head or {}).get("seq", 0) + 1)]
        entries = [
            DocumentEntry(d["executionId"], d["changeId"], d["state"], d["txStrategy"], d["metadata"])
            for d in documents
            if d is not None
        ]
        return [e for e in entries if change_id is None or e.change_id == change_id]

    def lock(self) -> dict[str, Any] | None:
        return self._get("lock", "flamingockLock::default")

    def store_rows(self, change_id: str) -> list[tuple[str, int]]:
        return self._couchbase_rows(change_id)

    def target_rows(self, change_id: str) -> list[tuple[str, int]]:
        return self._couchbase_rows(change_id) if self.server.transactions else self._sqlite_rows(change_id)

    def markers(self) -> list[tuple[str, str]]:
        return self._couchbase_markers() if self.server.transactions else self._sqlite_markers()

    def _couchbase_rows(self, change_id: str) -> list[tuple[str, int]]:
        rows = self._scan("rows", [f"{change_id}#{e}#{n}" for e in self._executions() for n in THREE_ROWS])
        return sorted((r["executionId"], r["n"]) for r in rows)

    def _executions(self) -> set[str]:
        return {line.split()[1] for line in self._effect_lines()}

    def _scan(self, name: str, keys: list[str]) -> list[dict[str, Any]]:
        """The documents at `keys` (the key-value service has no scan: the keys come from the effects file)."""
        found = (self._get(name, key) for key in keys)
        return [body for body in found if body is not None]

    def _couchbase_markers(self) -> list[tuple[str, str]]:
        from couchbase.exceptions import DocumentNotFoundException

        collection = self.bucket.scope("_default").collection("_default")
        markers = []
        for change_id in {line.split()[0] for line in self._effect_lines()}:
            try:
                body = collection.get(f"flamingockMarker::{change_id}").content_as[dict]
            except DocumentNotFoundException:
                continue
            markers.append((body["changeId"], body["executionId"]))
        return markers

    def _effect_lines(self) -> list[str]:
        return self.effects_file.read_text().splitlines() if self.effects_file.exists() else []

    def _sqlite_rows(self, change_id: str) -> list[tuple[str, int]]:
        if not self.sqlite.exists():
            return []
        with closing(sqlite3.connect(self.sqlite)) as db:
            try:
                found = db.execute("SELECT execution_id, n FROM app_rows WHERE change_id = ?", (change_id,))
                return sorted(found.fetchall())
            except sqlite3.OperationalError:  # no table yet
                return []

    def _sqlite_markers(self) -> list[tuple[str, str]]:
        if not self.sqlite.exists():
            return []
        with closing(sqlite3.connect(self.sqlite)) as db:
            try:
                return db.execute("SELECT change_id, execution_id FROM flamingock_marker").fetchall()
            except sqlite3.OperationalError:
                return []


@pytest.fixture
def cb(tmp_path: Path, couchbase: CouchbaseServer) -> Iterator[Harness]:
    harness = Harness(tmp_path, couchbase)
    try:
        yield harness
    finally:
        harness.cleanup()


def needs_transactions(harness: Harness) -> None:
    if not harness.server.transactions:
        pytest.skip(
            "needs Couchbase ACID transactions, which the key-value test double does not have: set "
            "AIOFLAMINGOCK_COUCHBASE_URL to a Couchbase Server 7 cluster, or run with a Docker engine"
        )


# -- 1. SIGKILL in the middle of a change ---------------------------------------------------------------------------


def test_non_transactional_crash_needs_a_human_under_manual_intervention(cb: Harness) -> None:
    scenarios.nontx_crash_needs_a_human(cb)


def test_non_transactional_crash_is_retried_under_always_retry(cb: Harness) -> None:
    scenarios.nontx_crash_is_retried(cb)


def test_marker_crash_before_commit_is_applied_again_without_a_human(cb: Harness) -> None:
    scenarios.marker_crash_before_commit(cb)


def test_shared_transaction_crash_leaves_nothing_and_the_next_run_applies_once(cb: Harness) -> None:
    needs_transactions(cb)
    scenarios.shared_crash_leaves_nothing(cb)


# -- 2. eight processes at once ---------------------------------------------------------------------------------------


def test_eight_processes_apply_every_change_exactly_once(cb: Harness) -> None:
    scenarios.eight_processes_apply_every_change_once(cb, timeout=90)


# -- 3. the server stopped under a run --------------------------------------------------------------------------------


def test_server_stopped_mid_change_ends_the_run_with_a_store_error(tmp_path: Path) -> None:
    """On a double of its own: stopping it loses its data, which only this test uses."""
    process, connection_string = start_couchbase_kv_process()
    server = CouchbaseServer(
        connection_string, COUCHBASE_USER, COUCHBASE_PASSWORD, COUCHBASE_BUCKET, False, process.kill
    )
    harness = Harness(tmp_path, server)
    try:
        victim = harness.start(hang="nontx-1")
        harness.wait_ready(victim, "nontx-1")
        process.kill()
        process.wait(10)
        harness.go("nontx-1")

        stopped = victim.wait(STOPPED_EXIT_SECONDS)
    finally:
        harness.cleanup()
        if process.poll() is None:
            process.kill()
            process.wait(10)

    assert stopped.code in (EXIT_LOCK_LOST, EXIT_STORE_ERROR), stopped
    assert stopped.error.split(":")[0] in ("LockLostError", "StoreUnavailableError", "StoreError"), stopped
    assert COUCHBASE_PASSWORD not in stopped.stderr
