"""The FastAPI + PostgreSQL example as users deploy it: three instances started at once on one database, each in its
own uvicorn process. One applies the changes; the others wait for the lock and find nothing left to apply."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aioflamingock
from tests.servers import Server, unavailable

from .test_fastapi_mongodb import INSTANCES, STARTUP_SECONDS, free_port, httpx, stop, wait_until_serving

pytest.importorskip("sqlalchemy")
pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CHANGE_IDS = ["create-users-table", "seed-admin-user", "add-user-roles"]
ADMIN = {"email": "admin@example.com", "name": "Administrator", "roles": "user,admin"}


def _sync_engine(url: str, database: str | None = None) -> Any:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql+psycopg")
    return create_engine(parsed.set(database=database or parsed.database), isolation_level="AUTOCOMMIT")


@pytest.fixture
def database_url(postgresql_server: Server) -> Iterator[str]:
    """A database of its own, dropped afterwards (the server's role needs CREATEDB)."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    name = f"fastapi_{uuid.uuid4().hex[:12]}"
    from sqlalchemy.exc import ProgrammingError

    admin = _sync_engine(postgresql_server.uri)
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {name}"))
    except ProgrammingError as exc:
        admin.dispose()
        unavailable(f"the test's PostgreSQL role may not create a database (it needs CREATEDB): {exc.orig}")
    try:
        url = make_url(postgresql_server.uri).set(drivername="postgresql+asyncpg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
        admin.dispose()


def start_instance(port: int, database_url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != aioflamingock.DISABLE_ENV_VAR} | {"DATABASE_URL": database_url}
    command = [sys.executable, "-m", "uvicorn", "fastapi_postgresql:app", "--app-dir", str(EXAMPLES)]
    with log.open("wb") as out:
        return subprocess.Popen([*command, "--port", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)


def test_three_instances_start_at_once_and_each_change_is_applied_exactly_once(
    database_url: str, tmp_path: Path
) -> None:
    from sqlalchemy import text

    started: list[tuple[subprocess.Popen[bytes], str, Path]] = []
    try:
        for i in range(INSTANCES):
            port, log = free_port(), tmp_path / f"uvicorn-{i}.log"
            started.append((start_instance(port, database_url, log), f"http://127.0.0.1:{port}", log))
        deadline = time.monotonic() + STARTUP_SECONDS
        for process, url, log in started:
            wait_until_serving(process, url, log, deadline)
        for _, url, _ in started:
            response = httpx.get(f"{url}/users", timeout=5.0)
            assert response.status_code == 200, response.text
            assert response.json() == [ADMIN], url
    finally:
        stop([process for process, _, _ in started])

    reader = _sync_engine(database_url)
    try:
        with reader.connect() as connection:
            audit = connection.execute(text("SELECT change_id, state, execution_id FROM flamingock_audit_log")).all()
    finally:
        reader.dispose()
    assert sorted((c, s) for c, s, _ in audit) == sorted((c, "APPLIED") for c in CHANGE_IDS), audit
    assert len({e for _, _, e in audit}) == 1, "one instance applied everything; the others found nothing pending"
