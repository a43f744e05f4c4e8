"""`aioflamingock.fastapi.lifespan` in this process: the lifespan entered as Starlette enters it, requests through
httpx's ASGI transport, or a uvicorn server in this process. Uvicorn processes: test_fastapi_sqlite_example.py."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
import pytest

from aioflamingock import Change, ChangeFailedError, ChangeOutcome, PlannedAction
from aioflamingock.sqlite import SQLiteContext
from tests.integrations._web import ROLLED_BACK, Broken, Gate, applied, build, free_port, settled

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from fastapi import FastAPI, Request  # noqa: E402

from aioflamingock.fastapi import FlamingockLifespan, StartupStatus, lifespan  # noqa: E402


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


def app_with(migrations: FlamingockLifespan) -> FastAPI:
    app = FastAPI(lifespan=migrations)
    app.add_api_route("/ready", migrations.readiness)

    @app.get("/ping")
    async def ping() -> str:
        return "pong"

    return app


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app in a uvicorn server in this process, which runs the lifespan and hands its state to requests."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, lifespan="on", log_config=None))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(1000):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            yield http
    finally:
        server.should_exit = True
        await task


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app")


async def test_blocking_lifespan_holds_the_start_while_a_change_runs(database: Path) -> None:
    gate = Gate()
    fl = build(database, gate.change)
    migrations = lifespan(fl)
    app = app_with(migrations)
    entered_app = asyncio.Event()

    async def serve() -> None:
        async with migrations(app):
            entered_app.set()

    task = asyncio.create_task(serve())
    await asyncio.wait_for(gate.entered.wait(), 10)
    await asyncio.sleep(0.2)
    assert not entered_app.is_set(), "the application started while a change was running"
    assert migrations.status is StartupStatus.APPLYING
    gate.release()
    await asyncio.wait_for(task, 10)
    assert entered_app.is_set()
    assert migrations.status is StartupStatus.READY
    assert migrations.report is not None and migrations.report.applied == ["gated"]
    assert await applied(fl) == ["gated"]


async def test_blocking_failure_raises_the_changes_error_and_skips_the_own_lifespan(database: Path) -> None:
    entered: list[str] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[None]:
        entered.append("own")
        yield

    migrations = lifespan(build(database, Broken), lifespan=own)
    with pytest.raises(ChangeFailedError, match="change 'broken' failed: RuntimeError: disk full") as caught:
        async with migrations(app_with(migrations)):
            pytest.fail("the application started although a change failed")
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert entered == []
    assert migrations.status is StartupStatus.FAILED
    assert migrations.error is caught.value
    assert migrations.report is not None and migrations.report.with_outcome(ChangeOutcome.FAILED) == ["broken"]


async def test_background_lifespan_serves_at_once_and_readiness_turns_200(database: Path) -> None:
    gate = Gate()
    fl = build(database, gate.change)
    entered: list[str] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, int]]:
        entered.append("own")
        yield {"answer": 42}

    migrations = lifespan(fl, background=True, lifespan=own)
    app = app_with(migrations)
    async with migrations(app) as state, client(app) as http:
        await asyncio.wait_for(gate.entered.wait(), 10)
        assert (entered, state) == (["own"], {"answer": 42}), "in the background mode the application starts at once"
        assert (await http.get("/ping")).json() == "pong"
        response = await http.get("/ready")
        assert (response.status_code, response.json()) == (503, {"status": "applying"})

        gate.release()
        assert await settled(migrations) is StartupStatus.READY
        response = await http.get("/ready")
        assert (response.status_code, response.json()) == (200, {"status": "ready"})
        assert await applied(fl) == ["gated"]


async def test_background_failure_is_logged_and_keeps_readiness_at_503(
    database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    migrations = lifespan(build(database, Broken), background=True)
    app = app_with(migrations)
    async with migrations(app), client(app) as http:
        assert await settled(migrations) is StartupStatus.FAILED
        response = await http.get("/ready")
        assert response.status_code == 503
        assert response.json() == {
            "status": "failed",
            "error": "ChangeFailedError: change 'broken' failed: RuntimeError: disk full. " + ROLLED_BACK,
        }
        assert (await http.get("/ping")).json() == "pong", "the application keeps serving"
        assert (await http.get("/ready")).status_code == 503, "and stays unready"
    assert isinstance(migrations.error, ChangeFailedError)
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and r.name.startswith("aioflamingock")]
    assert any("disk full" in r.getMessage() and "RuntimeError: disk full" in (r.exc_text or "") for r in logged)


async def test_shutdown_cancels_an_unfinished_background_run_which_releases_the_lock(database: Path) -> None:
    gate = Gate()
    fl = build(database, gate.change)
    migrations = lifespan(fl, background=True)
    async with asyncio.timeout(10), migrations(app_with(migrations)):
        await gate.entered.wait()
        assert await fl.lock_info() is not None, "the run holds the lock while the change runs"
    # The lifespan's exit waited for the cancelled run: its lock is free, the change not recorded as applied.
    assert migrations.status is StartupStatus.FAILED
    assert isinstance(migrations.error, asyncio.CancelledError)
    assert await fl.lock_info() is None
    assert [p.action for p in await fl.plan()] == [PlannedAction.APPLY]


class SeedGreeting(Change):
    id = "seed-greeting"
    order = "0001"
    author = "tests"
    target_system = "app-db"

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE greetings (text TEXT NOT NULL)")
        await ctx.connection.execute("INSERT INTO greetings VALUES ('hello')")


async def test_own_lifespan_starts_after_the_changes_its_state_reaches_handlers_and_its_cleanup_runs(
    database: Path,
) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[dict[str, str]]:
        async with aiosqlite.connect(database) as db, db.execute("SELECT text FROM greetings") as cursor:
            row = await cursor.fetchone()  # the table exists: the change ran before this lifespan
        assert row is not None
        events.append(f"own lifespan entered, status {migrations.status}")
        yield {"greeting": row[0]}
        events.append("own lifespan cleaned up")

    migrations = lifespan(build(database, SeedGreeting), lifespan=own)
    app = app_with(migrations)

    @app.get("/greeting")
    async def greeting(request: Request) -> str:
        return str(request.state.greeting)

    async with serving(app) as http:
        assert (await http.get("/greeting")).json() == "hello"
        assert (await http.get("/ready")).json() == {"status": "ready"}
        events.append("served")
    assert events == ["own lifespan entered, status ready", "served", "own lifespan cleaned up"]


def test_lifespan_wants_the_engine_itself() -> None:
    with pytest.raises(TypeError, match=r"pass the engine itself, not `fl.run\(\)`"):
        lifespan("not an engine")  # type: ignore[arg-type]


def test_without_fastapi_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "aioflamingock.fastapi")
    monkeypatch.setitem(sys.modules, "starlette.requests", None)
    with pytest.raises(ImportError, match=r'pip install "aioflamingock\[fastapi\]"'):
        import aioflamingock.fastapi  # noqa: F401


async def test_where_the_application_logs_at_info_the_start_up_line_is_its_own_once(
    database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)  # a handler on the root logger, at INFO: the application's own logging
    gate = Gate()
    gate.release()  # a change that runs straight through
    migrations = lifespan(build(database, gate.change))
    async with migrations(app_with(migrations)):
        pass
    lines = [(r.name, r.getMessage()) for r in caplog.records if r.getMessage().startswith("aioflamingock: ")]
    assert len(lines) == 1 and lines[0][0] == "aioflamingock.startup", lines
    assert lines[0][1].startswith("aioflamingock: 1 change(s) applied in "), lines
