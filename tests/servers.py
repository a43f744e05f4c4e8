"""Real servers for the store tests, started once per session: whichever is available first.

MongoDB, in this order:
1. `AIOFLAMINGOCK_MONGODB_URI` — a replica set you run (transactions need one);
2. a MongoDB replica set in Docker, when `testcontainers` is installed and a Docker engine answers;
3. SecantusDB, a MongoDB-compatible server written in Python, in this process (installed with the `dev` extra).

With `AIOFLAMINGOCK_REQUIRE_SERVERS=1` (CI) a missing server fails the tests instead of skipping them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

__all__ = ["MONGODB_URI_ENV", "REQUIRE_SERVERS_ENV", "Server", "start_mongodb", "unavailable"]

MONGODB_URI_ENV = "AIOFLAMINGOCK_MONGODB_URI"
REQUIRE_SERVERS_ENV = "AIOFLAMINGOCK_REQUIRE_SERVERS"
MONGO_IMAGE = "mongo:7"
_STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class Server:
    uri: str
    stop: Callable[[], None]


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when the environment says servers are required."""
    if os.environ.get(REQUIRE_SERVERS_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_SERVERS_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def start_mongodb() -> Server | None:
    uri = os.environ.get(MONGODB_URI_ENV)
    if uri:
        return Server(uri, lambda: None)
    return _docker_mongodb() or _secantus()


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _docker_mongodb() -> Server | None:
    try:
        from testcontainers.core.container import DockerContainer
    except ImportError:
        return None
    if not _docker_answers():
        return None
    container = (
        DockerContainer(MONGO_IMAGE)
        .with_command(
            "--replSet rs0 --bind_ip_all --setParameter enableTestCommands=1"  # fail points, for commit tests
        )
        .with_exposed_ports(27017)
    )
    container.start()
    try:
        # Discovery would look for the member by its name inside the container: talk to it directly.
        uri = (
            f"mongodb://{container.get_container_host_ip()}:{container.get_exposed_port(27017)}/?directConnection=true"
        )
        _initiate_replica_set(uri)
    except BaseException:
        container.stop()
        raise
    return Server(uri, container.stop)


def _initiate_replica_set(uri: str) -> None:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    with MongoClient(uri, serverSelectionTimeoutMS=int(_STARTUP_SECONDS * 1000)) as client:
        client.admin.command("replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": "localhost:27017"}]})
        deadline = time.monotonic() + _STARTUP_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(PyMongoError):
                if client.admin.command("hello").get("isWritablePrimary"):
                    return
            time.sleep(0.2)
    raise RuntimeError("the MongoDB replica set in Docker elected no primary")


def _secantus() -> Server | None:
    try:
        from secantus import SecantusDBServer
    except ImportError:
        return None
    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=":memory:")
    server.start()
    return Server(server.uri, lambda: _stop_secantus(server))


def _stop_secantus(server: Any) -> None:
    # `stop()` closes the listening socket, which does not wake the thread blocked in `accept()` on Linux:
    # it would wait out its 2 s join timeout. Shutting the socket down wakes it at once.
    listening = getattr(server, "_socket", None)
    if listening is not None:
        with contextlib.suppress(OSError):
            listening.shutdown(socket.SHUT_RDWR)
    server.stop()


NO_MONGODB = (
    f"no MongoDB server: set {MONGODB_URI_ENV} to a replica set's URI, install testcontainers with a Docker "
    'engine running, or install SecantusDB (pip install -e ".[dev]")'
)
