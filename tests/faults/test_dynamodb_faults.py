"""The fault-injection tests on DynamoDB: `_dynamo_app.py` as real OS processes against a real endpoint, SIGKILLed in
the middle of each path of the safety protocol, eight of them started at once, and the endpoint stopped under a run.

The endpoint: `AIOFLAMINGOCK_DYNAMODB_ENDPOINT` when set, else moto's server in a process of its own, started for
this module. Each test has its own table-name prefix. The tests that stop the endpoint put a TCP proxy in front of
it and stop that: connections are refused and the open ones cut, while the data stays, as when DynamoDB becomes
unreachable and comes back.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.servers import (
    DYNAMODB_CREDENTIALS,
    DYNAMODB_ENDPOINT_ENV,
    DYNAMODB_REGION,
    free_port,
    start_moto_process,
    unavailable,
)

from . import _scenarios as scenarios
from ._scenarios import THREE_ROWS
from .conftest import (
    EXIT_LOCK_LOST,
    EXIT_OK,
    EXIT_STORE_ERROR,
    LEASE_SECONDS,
    App,
    DocumentEntry,
    Exited,
    Processes,
)

pytestmark = pytest.mark.slow

APP = Path(__file__).with_name("_dynamo_app.py")
STOPPED_EXIT_SECONDS = 30.0
RETRY_SECONDS = 2.0
"""The apps' `retry_seconds`, short so that a stopped endpoint ends a run soon."""
TIMEOUT_SECONDS = 2.0


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    external = os.environ.get(DYNAMODB_ENDPOINT_ENV)
    if external:
        yield external
        return
    try:
        import moto.server  # noqa: F401
    except ImportError:
        unavailable('moto\'s server is not installed: pip install -e ".[dev]"')
    port = free_port()
    server = start_moto_process(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def _plain(attribute: dict[str, Any]) -> Any:
    [(kind, value)] = attribute.items()
    if kind == "M":
        return {k: _plain(v) for k, v in value.items()}
    return None if kind == "NULL" else value


class Harness(Processes):
    """The tables of one test (its own prefix) on the endpoint, an effects file, a signal folder, the processes."""

    def __init__(self, tmp_path: Path, endpoint: str, *, app_endpoint: str | None = None) -> None:
        import boto3

        super().__init__(tmp_path)
        self.endpoint = endpoint
        self.app_endpoint = app_endpoint or endpoint
        self.prefix = f"f{uuid.uuid4().hex[:12]}-"
        self.client = boto3.client(
            "dynamodb", endpoint_url=endpoint, region_name=DYNAMODB_REGION, **DYNAMODB_CREDENTIALS
        )
        self.client.create_table(
            TableName=self.table("rows"),
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )

    def table(self, name: str) -> str:
        return f"{self.prefix}{name}"

    # -- processes ----------------------------------------------------------------------------------------------

    def start(
        self,
        *,
        hang: str | None = None,
        park_after_commit: bool = False,
        nontx_recovery: str = "manual",
        copies: int = 1,
        delay: float = 0.0,
    ) -> App:
        args = [
            *("--endpoint", self.app_endpoint, "--prefix", self.prefix),
            *("--effects", str(self.effects_file), "--signals", str(self.signals)),
            *("--copies", str(copies), "--nontx-recovery", nontx_recovery, "--delay", str(delay)),
            *("--lease", str(LEASE_SECONDS), "--retry-seconds", str(RETRY_SECONDS)),
            *("--timeout-seconds", str(TIMEOUT_SECONDS)),
            *(("--hang", hang) if hang else ()),
            *(("--park-after-commit",) if park_after_commit else ()),
        ]
        return self.launch(APP, args)

    def cleanup(self) -> None:
        super().cleanup()
        for name in ("rows", "audit", "lock", "marker"):
            with contextlib.suppress(self.client.exceptions.ResourceNotFoundException):
                self.client.delete_table(TableName=self.table(name))
        self.client.close()

    # -- what the processes left behind --------------------------------------------------------------------------

    def _scan(self, name: str) -> list[dict[str, Any]]:
        try:
            pages = self.client.get_paginator("scan").paginate(TableName=self.table(name), ConsistentRead=True)
            return [item for page in pages for item in page["Items"]]
        except self.client.exceptions.ResourceNotFoundException:
            return []

    def audit(self, change_id: str | None = None) -> list[DocumentEntry]:
        try:
            pages = self.client.get_paginator("query").paginate(
                TableName=self.table("audit"),
                KeyConditionExpression="partitionKey = :p",
                ExpressionAttributeValues={":p": {"S": "auditLog"}},
                ConsistentRead=True,
            )
            items = [item for page in pages for item in page["Items"]]
        except self.client.exceptions.ResourceNotFoundException:
            return []
        entries = [
            DocumentEntry(
                i["executionId"]["S"], i["changeId"]["S"], i["state"]["S"], i["txStrategy"]["S"], _plain(i["metadata"])
            )
            for i in items
        ]
        return [e for e in entries if change_id is None or e.change_id == change_id]

    def store_rows(self, change_id: str) -> list[tuple[str, int]]:
        return self.rows(change_id)

    def target_rows(self, change_id: str) -> list[tuple[str, int]]:
        return self.rows(change_id)

    def rows(self, change_id: str) -> list[tuple[str, int]]:
        found = [
            (i["executionId"]["S"], int(i["n"]["N"])) for i in self._scan("rows") if i["changeId"]["S"] == change_id
        ]
        return sorted(found)

    def markers(self) -> list[tuple[str, str]]:
        return [(i["changeId"]["S"], i["executionId"]["S"]) for i in self._scan("marker")]

    def lock(self) -> dict[str, Any] | None:
        try:
            item: dict[str, Any] | None = self.client.get_item(
                TableName=self.table("lock"), Key={"key": {"S": "default"}}, ConsistentRead=True
            ).get("Item")
        except self.client.exceptions.ResourceNotFoundException:
            return None
        return item


@pytest.fixture
def dynamo(tmp_path: Path, endpoint: str) -> Iterator[Harness]:
    harness = Harness(tmp_path, endpoint)
    try:
        yield harness
    finally:
        harness.cleanup()


# -- 1. SIGKILL in the middle of each path ---------------------------------------------------------------------------


def test_shared_transaction_crash_leaves_nothing_and_the_next_run_applies_once(dynamo: Harness) -> None:
    scenarios.shared_crash_leaves_nothing(dynamo)


def test_marker_crash_before_commit_is_applied_again_without_a_human(dynamo: Harness) -> None:
    scenarios.marker_crash_before_commit(dynamo)


def test_marker_crash_after_commit_is_recorded_without_running_again(dynamo: Harness) -> None:
    """The state between the target's commit and APPLIED, reached for real: the victim's marker-path client parks
    once DynamoDB has answered the commit (items and marker written), before APPLIED is sent; it is killed there."""
    victim = dynamo.start(park_after_commit=True)
    crashed = dynamo.wait_ready(victim, "marker-1")
    victim.kill()
    scenarios.committed_marker_is_recorded(dynamo, crashed)


def test_non_transactional_crash_needs_a_human_under_manual_intervention(dynamo: Harness) -> None:
    scenarios.nontx_crash_needs_a_human(dynamo)


def test_non_transactional_crash_is_retried_under_always_retry(dynamo: Harness) -> None:
    scenarios.nontx_crash_is_retried(dynamo)


# -- 2. eight processes at once ---------------------------------------------------------------------------------------


def test_eight_processes_apply_every_change_exactly_once(dynamo: Harness) -> None:
    scenarios.eight_processes_apply_every_change_once(dynamo)


# -- 3. the endpoint stopped under a run ------------------------------------------------------------------------------


class Proxy:
    """A TCP proxy to the endpoint on a port of its own. `stop()` closes it (new connections are refused) and cuts
    the open ones; `start()` listens again on the same port. The endpoint behind it, and its data, stay."""

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._guard = threading.Lock()

    def start(self) -> None:
        assert self._listener is None
        self._listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                downstream.close()
                continue
            with self._guard:
                self._open |= {downstream, upstream}
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                self._cut(end)

    def _cut(self, end: socket.socket) -> None:
        with self._guard:
            self._open.discard(end)
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        end.close()

    def stop(self) -> None:
        if self._listener is not None:
            self._cut(self._listener)  # shutdown wakes the thread blocked in accept()
            self._listener = None
        with self._guard:
            open_now = list(self._open)
        for end in open_now:
            self._cut(end)


@pytest.fixture
def proxy(endpoint: str) -> Iterator[Proxy]:
    server = Proxy(endpoint)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def behind_proxy(tmp_path: Path, endpoint: str, proxy: Proxy) -> Iterator[Harness]:
    """The apps reach the endpoint through the proxy; the test reads it directly."""
    harness = Harness(tmp_path, endpoint, app_endpoint=proxy.uri)
    try:
        yield harness
    finally:
        harness.cleanup()


def _stopped_run(proxy: Proxy, app: App) -> tuple[Exited, float]:
    stopped_at = time.monotonic()
    proxy.stop()
    ended = app.wait(STOPPED_EXIT_SECONDS)  # fails the test if the process hangs
    return ended, time.monotonic() - stopped_at


@pytest.mark.parametrize("hang", ["shared-1", "marker-1"])
def test_endpoint_stopped_during_a_change_ends_the_run_with_an_error_and_a_later_run_completes(
    behind_proxy: Harness, proxy: Proxy, hang: str
) -> None:
    dynamo = behind_proxy
    victim = dynamo.start(hang=hang)
    crashed = dynamo.wait_ready(victim, hang)
    before = dynamo.audit()

    ended, elapsed = _stopped_run(proxy, victim)

    # Renewals cannot reach the endpoint before the lease ends: the change is cancelled and the run says why.
    assert elapsed < LEASE_SECONDS + STOPPED_EXIT_SECONDS / 3, elapsed
    assert ended.code == EXIT_LOCK_LOST, ended
    assert ended.error.startswith("LockLostError: lost lock 'default': "), ended
    assert "no renewal was confirmed before our lease ended" in ended.error and "unreachable" in ended.error, ended

    proxy.start()
    assert dynamo.audit() == before, "something was recorded after the endpoint went away"
    assert "APPLIED" not in dynamo.states(hang)
    assert dynamo.rows(hang) == [], "the uncommitted change's writes survived"
    assert dynamo.markers() == []

    rerun = dynamo.run()

    assert rerun.code == EXIT_OK, rerun
    assert dynamo.effect_executions(hang) == [crashed, rerun.execution_id]
    assert dynamo.rows(hang) == [(rerun.execution_id, n) for n in THREE_ROWS]
    applied = dynamo.applied()
    assert sorted(applied) == ["marker-1", "nontx-1", "shared-1"]
    assert all(len(executions) == 1 for executions in applied.values()), applied
    assert dynamo.effects() == {"shared-1": 1, "marker-1": 1, "nontx-1": 1} | {hang: 2}
    assert dynamo.markers() == []
    assert dynamo.lock() is None


def test_endpoint_down_at_start_is_a_clear_error_within_the_retry_budget(behind_proxy: Harness, proxy: Proxy) -> None:
    dynamo = behind_proxy
    proxy.stop()
    started = time.monotonic()

    refused = dynamo.run()

    assert time.monotonic() - started < RETRY_SECONDS + 2 * TIMEOUT_SECONDS + 10, "bounded by the retry budget"
    assert refused.code == EXIT_STORE_ERROR, refused
    assert refused.error.startswith("StoreUnavailableError: DynamoDB failed while describing table"), refused
    assert "Could not connect to the endpoint URL" in refused.error, refused
    assert "testing" not in refused.error
    assert dynamo.effects() == {}

    proxy.start()
    rerun = dynamo.run()

    assert rerun.code == EXIT_OK, rerun
    assert sorted(dynamo.applied()) == ["marker-1", "nontx-1", "shared-1"]
