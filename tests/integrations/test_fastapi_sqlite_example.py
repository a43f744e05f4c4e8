"""examples/fastapi_sqlite.py as users start it: `uvicorn fastapi_sqlite:app`, in its own process.

To hold the start-up in the middle of a change, some tests run a copy of the example whose changes package has one
more change, which waits for a file the test creates.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.integrations._web import EXAMPLES, ROLLED_BACK, applied_in, free_port, poll, started, uvicorn

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.slow

EXAMPLE_CHANGES = ["create-orders", "add-order-status"]
FAILURE = (
    f"ChangeFailedError: change 'create-orders' failed: OperationalError: table orders already exists. {ROLLED_BACK}"
)

GATED_CHANGE = """
import os
from pathlib import Path

import anyio

from aioflamingock import Change


class Gated(Change):
    id = "gated"
    author = "tests"
    target_system = "app-db"

    async def execute(self, ctx):
        gate = anyio.Path(os.environ["GATE_DIR"])
        await (gate / "entered").touch()
        while not await (gate / "open").exists():
            await anyio.sleep(0.05)
"""


@pytest.fixture
def gated_example(tmp_path: Path) -> Path:
    """A copy of the example with a third change that runs until the test creates `gate/open`."""
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(EXAMPLES / "fastapi_sqlite.py", app_dir)
    shutil.copytree(EXAMPLES / "orders_changes", app_dir / "orders_changes", ignore=shutil.ignore_patterns("__py*"))
    (app_dir / "orders_changes" / "_0003_gated.py").write_text(GATED_CHANGE)
    (tmp_path / "gate").mkdir()
    return app_dir


def env(tmp_path: Path, *, background: bool) -> dict[str, str]:
    return {
        "APP_DB": str(tmp_path / "app.db"),
        "GATE_DIR": str(tmp_path / "gate"),
        "MIGRATE_IN_BACKGROUND": "1" if background else "0",
    }


def answers(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=2.0)
    except httpx.TransportError:
        return None


def first_answer(url: str, process: subprocess.Popen[bytes], log: Path) -> httpx.Response:
    """The first response the server gives, whatever its status."""
    responses: list[httpx.Response] = []

    def answered() -> bool:
        response = answers(url)
        if response is not None:
            responses.append(response)
        return bool(responses)

    poll(f"an answer from {url}", answered, process, log)
    return responses[0]


def existing_orders_table(database: Path) -> None:
    """Make the first change fail as it would on a database someone changed by hand."""
    with closing(sqlite3.connect(database)) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY)")


def test_uvicorn_opens_its_port_only_once_every_change_is_applied(gated_example: Path, tmp_path: Path) -> None:
    port, log, gate, database = free_port(), tmp_path / "uvicorn.log", tmp_path / "gate", tmp_path / "app.db"
    url = f"http://127.0.0.1:{port}"
    command = uvicorn("fastapi_sqlite:app", gated_example, port)
    with started(command, cwd=tmp_path, env=env(tmp_path, background=False), log=log) as process:
        poll("the gated change", (gate / "entered").exists, process, log)
        for _ in range(10):  # a second, while the change runs
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"{url}/ready", timeout=1.0)
            time.sleep(0.1)
        assert process.poll() is None
        assert "Application startup complete" not in log.read_text()
        assert applied_in(database) == EXAMPLE_CHANGES

        (gate / "open").touch()
        first = first_answer(f"{url}/orders", process, log)
        assert applied_in(database) == [*EXAMPLE_CHANGES, "gated"]
        assert (first.status_code, first.json()) == (200, []), "the own lifespan's connection reached the handler"
        assert httpx.get(f"{url}/ready").json() == {"status": "ready"}


def test_in_the_background_mode_uvicorn_serves_at_once_and_readiness_turns_from_503_to_200(
    gated_example: Path, tmp_path: Path
) -> None:
    port, log, gate, database = free_port(), tmp_path / "uvicorn.log", tmp_path / "gate", tmp_path / "app.db"
    url = f"http://127.0.0.1:{port}"
    command = uvicorn("fastapi_sqlite:app", gated_example, port)
    with started(command, cwd=tmp_path, env=env(tmp_path, background=True), log=log) as process:
        poll("the gated change", (gate / "entered").exists, process, log)
        first = first_answer(f"{url}/ready", process, log)
        assert (first.status_code, first.json()) == (503, {"status": "applying"})
        assert "gated" not in applied_in(database)

        (gate / "open").touch()
        poll("readiness", lambda: httpx.get(f"{url}/ready").status_code == 200, process, log)
        assert httpx.get(f"{url}/ready").json() == {"status": "ready"}
        assert applied_in(database) == [*EXAMPLE_CHANGES, "gated"]
        assert httpx.get(f"{url}/orders").json() == []


def test_uvicorns_default_logging_shows_one_line_saying_what_the_start_up_did(tmp_path: Path) -> None:
    for expected in ("aioflamingock: 2 change(s) applied in ", "aioflamingock: nothing pending (2 change(s)"):
        port, log = free_port(), tmp_path / "uvicorn.log"
        command = uvicorn("fastapi_sqlite:app", EXAMPLES, port)
        with started(command, cwd=tmp_path, env=env(tmp_path, background=False), log=log) as process:
            poll("the start-up", lambda log=log: "Application startup complete" in log.read_text(), process, log)
        lines = log.read_text().splitlines()
        (line,) = [line for line in lines if "aioflamingock:" in line]
        assert line.startswith("INFO:") and expected in line, line
        if "applied in" in expected:
            assert line.endswith(": create-orders, add-order-status"), line
        assert lines.index(line) < next(i for i, x in enumerate(lines) if "Application startup complete" in x)


def test_a_failing_change_stops_uvicorn_with_the_changes_error(tmp_path: Path) -> None:
    existing_orders_table(tmp_path / "app.db")
    log = tmp_path / "uvicorn.log"
    command = uvicorn("fastapi_sqlite:app", EXAMPLES, free_port())
    with started(command, cwd=tmp_path, env=env(tmp_path, background=False), log=log) as process:
        process.wait(timeout=60)
    output = log.read_text()
    assert process.returncode != 0, output
    assert FAILURE in output
    assert "Application startup failed" in output
    assert "Uvicorn running on" not in output


def test_in_the_background_mode_a_failing_change_is_logged_and_readiness_stays_503(tmp_path: Path) -> None:
    existing_orders_table(tmp_path / "app.db")
    port, log = free_port(), tmp_path / "uvicorn.log"
    url = f"http://127.0.0.1:{port}"
    command = uvicorn("fastapi_sqlite:app", EXAMPLES, port)
    with started(command, cwd=tmp_path, env=env(tmp_path, background=True), log=log) as process:

        def failed() -> bool:
            return first_answer(f"{url}/ready", process, log).json()["status"] == "failed"

        poll("the failure", failed, process, log)
        response = httpx.get(f"{url}/ready")
        assert (response.status_code, response.json()) == (503, {"status": "failed", "error": FAILURE})
        assert process.poll() is None, "the server keeps running"
        assert "aioflamingock: the changes were not applied" in log.read_text()
        assert "sqlite3.OperationalError: table orders already exists" in log.read_text(), "with the traceback"
