"""The FastAPI example as users deploy it: three instances started at once on one database, each in its own
uvicorn process. One applies the changes; the others wait for the lock and find nothing left to apply."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import aioflamingock
from tests.servers import Server

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
pymongo = pytest.importorskip("pymongo")

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INSTANCES = 3
STARTUP_SECONDS = 25.0
CHANGE_IDS = ["create-users-collection", "seed-admin-user", "add-user-roles"]
ADMIN = {"email": "admin@example.com", "name": "Administrator", "roles": ["user", "admin"]}


@pytest.fixture
def database(mongodb_server: Server) -> Iterator[str]:
    name = f"fastapi_{uuid.uuid4().hex[:12]}"
    yield name
    with pymongo.MongoClient(mongodb_server.uri, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_instance(port: int, uri: str, database: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != aioflamingock.DISABLE_ENV_VAR}
    env |= {"MONGODB_URI": uri, "MONGODB_DATABASE": database}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "fastapi_mongodb:app", "--app-dir", str(EXAMPLES), "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_until_serving(process: subprocess.Popen[bytes], url: str, log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{url}: exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url}: not serving after {STARTUP_SECONDS:.0f} s:\n{log.read_text()}")


@pytest.fixture
def instances(mongodb_server: Server, database: str, tmp_path: Path) -> Iterator[list[str]]:
    """Three uvicorn processes started together; their base URLs once each one serves."""
    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for i in range(INSTANCES):
            port, log = free_port(), tmp_path / f"uvicorn-{i}.log"
            started.append((start_instance(port, mongodb_server.uri, database, log), f"http://127.0.0.1:{port}", log))
        deadline = time.monotonic() + STARTUP_SECONDS
        for process, url, log in started:
            wait_until_serving(process, url, log, deadline)
        yield [url for _, url, _ in started]
    finally:
        stop([process for process, _, _ in started])


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_three_instances_start_at_once_and_each_change_is_applied_exactly_once(
    instances: list[str], mongodb_server: Server, database: str
) -> None:
    for url in instances:
        response = httpx.get(f"{url}/users", timeout=5.0)
        assert response.status_code == 200, response.text
        assert response.json() == [ADMIN], url

    with pymongo.MongoClient(mongodb_server.uri, serverSelectionTimeoutMS=5000) as client:
        db = client[database]
        audit = db.flamingockAuditLog
        for change_id in CHANGE_IDS:
            assert audit.count_documents({"changeId": change_id, "state": "APPLIED"}) == 1, change_id
        # The non-transactional change was started once: nobody ran it a second time.
        assert audit.count_documents({"changeId": "create-users-collection", "state": "STARTED"}) == 1
        assert audit.count_documents({"state": {"$nin": ["STARTED", "APPLIED"]}}) == 0
        # One instance applied everything; the two others found nothing pending.
        assert len(audit.distinct("executionId", {"state": "APPLIED"})) == 1

        # Each side effect happened once: one index, one user, each role pushed once.
        unique_indexes = [i for i in db.users.list_indexes() if i.get("unique")]
        assert [(i["name"], dict(i["key"])) for i in unique_indexes] == [("email_unique", {"email": 1})]
        assert list(db.users.find({}, {"_id": 0})) == [ADMIN]
