"""`aioflamingock.aiohttp.cleanup_ctx` through aiohttp's test server, on the app of examples/aiohttp_app.py; and
that example run as a script."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from aioflamingock import ChangeFailedError, PlannedAction
from tests.integrations._web import (
    EXAMPLES,
    ROLLED_BACK,
    Broken,
    Gate,
    applied,
    build,
    free_port,
    poll,
    settled,
    started,
)

pytest.importorskip("aiohttp")
httpx = pytest.importorskip("httpx")

from aiohttp import web  # noqa: E402
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from aioflamingock.aiohttp import FlamingockCleanupContext, StartupStatus, cleanup_ctx  # noqa: E402

EXAMPLE_CHANGES = ["create-orders", "add-order-status"]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aiohttp_app", EXAMPLES / "aiohttp_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts the examples on sys.path, for `orders_changes`
    return module


example = load_example()


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "app.db"


def migrations_of(app: web.Application) -> FlamingockCleanupContext:
    found = [ctx for ctx in app.cleanup_ctx if isinstance(ctx, FlamingockCleanupContext)]
    assert len(found) == 1
    return found[0]


async def test_blocking_start_opens_no_port_until_every_change_is_applied(database: Path) -> None:
    gate = Gate()
    fl = build(database, "orders_changes", gate.change)
    port = free_port()
    server = TestServer(example.create_app(fl, database), port=port)
    starting = asyncio.create_task(server.start_server())
    try:
        await asyncio.wait_for(gate.entered.wait(), 10)
        await asyncio.sleep(0.2)
        assert not starting.done()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", port)
        assert await applied(fl) == EXAMPLE_CHANGES

        gate.release()
        await asyncio.wait_for(starting, 10)
        async with TestClient(server) as client:
            response = await client.get("/orders")  # the example's own context opened its connection after
            assert (response.status, await response.json()) == (200, [])
            assert await applied(fl) == [*EXAMPLE_CHANGES, "gated"]
            response = await client.get("/ready")
            assert (response.status, await response.json()) == (200, {"status": "ready"})
    finally:
        await server.close()


async def test_background_start_serves_at_once_and_readiness_turns_from_503_to_200(database: Path) -> None:
    gate = Gate()
    fl = build(database, "orders_changes", gate.change)
    app = example.create_app(fl, database, background=True)
    async with TestClient(TestServer(app)) as client:
        await asyncio.wait_for(gate.entered.wait(), 10)
        response = await client.get("/ready")
        assert (response.status, await response.json()) == (503, {"status": "applying"})

        gate.release()
        assert await settled(migrations_of(app)) is StartupStatus.READY
        response = await client.get("/ready")
        assert (response.status, await response.json()) == (200, {"status": "ready"})
        assert await applied(fl) == [*EXAMPLE_CHANGES, "gated"]


async def test_a_failing_change_stops_the_start_with_the_changes_error(database: Path) -> None:
    fl = build(database, "orders_changes", Broken)
    app = example.create_app(fl, database)
    server = TestServer(app)
    try:
        with pytest.raises(ChangeFailedError, match="change 'broken' failed: RuntimeError: disk full") as caught:
            await server.start_server()
        assert isinstance(caught.value.__cause__, RuntimeError)
        assert server.port is None, "no port was opened"
        assert migrations_of(app).status is StartupStatus.FAILED
    finally:
        await server.close()


async def test_in_the_background_mode_a_failing_change_is_logged_and_readiness_stays_503(
    database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = example.create_app(build(database, "orders_changes", Broken), database, background=True)
    async with TestClient(TestServer(app)) as client:
        assert await settled(migrations_of(app)) is StartupStatus.FAILED
        response = await client.get("/ready")
        assert response.status == 503
        assert await response.json() == {
            "status": "failed",
            "error": "ChangeFailedError: change 'broken' failed: RuntimeError: disk full. " + ROLLED_BACK,
        }
        response = await client.get("/orders")  # the changes before the failing one are applied
        assert (response.status, await response.json()) == (200, []), "the application keeps serving"
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and r.name.startswith("aioflamingock")]
    assert any("disk full" in r.getMessage() and "RuntimeError: disk full" in (r.exc_text or "") for r in logged)


async def test_cleanup_cancels_an_unfinished_background_run_which_releases_the_lock(database: Path) -> None:
    gate = Gate()
    fl = build(database, gate.change)
    migrations = cleanup_ctx(fl, background=True)
    app = web.Application()
    app.cleanup_ctx.append(migrations)
    async with asyncio.timeout(10), TestClient(TestServer(app)):
        await gate.entered.wait()
        assert await fl.lock_info() is not None, "the run holds the lock while the change runs"
    assert migrations.status is StartupStatus.FAILED
    assert isinstance(migrations.error, asyncio.CancelledError)
    assert await fl.lock_info() is None
    assert [p.action for p in await fl.plan()] == [PlannedAction.APPLY]


async def test_contexts_appended_after_it_start_once_the_changes_are_applied_and_are_cleaned_up_first(
    database: Path,
) -> None:
    events: list[str] = []
    gate = Gate()
    gate.release()
    fl = build(database, gate.change)
    migrations = cleanup_ctx(fl)

    async def own(app: web.Application) -> AsyncIterator[None]:
        events.append(f"own entered, changes {migrations.status}")
        yield
        events.append(f"own cleaned up, changes {migrations.status}")

    app = web.Application()
    app.cleanup_ctx.append(migrations)
    app.cleanup_ctx.append(own)
    async with TestClient(TestServer(app)):
        events.append("served")
    assert events == ["own entered, changes ready", "served", "own cleaned up, changes ready"]


def test_without_aiohttp_the_import_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "aioflamingock.aiohttp")
    monkeypatch.setitem(sys.modules, "aiohttp", None)
    with pytest.raises(ImportError, match=r'pip install "aioflamingock\[aiohttp\]"'):
        import aioflamingock.aiohttp  # noqa: F401


@pytest.mark.slow
def test_the_example_runs_as_a_script(tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "aiohttp.log"
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, str(EXAMPLES / "aiohttp_app.py")]
    with started(command, cwd=tmp_path, env={"PORT": str(port)}, log=log) as process:

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/ready", timeout=1.0).status_code == 200
            except httpx.TransportError:
                return False

        poll("readiness", ready, process, log)
        assert httpx.get(f"{url}/orders").json() == []
    assert (tmp_path / "app.db").exists(), "the default database is in the current directory"
