"""`--app` loading and error reporting: what is wrong is named, on one line, with the documented exit code."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aioflamingock import Flamingock
from aioflamingock._cli import APP_ENV_VAR, EXIT_FAILURE, EXIT_USAGE, CliError, load_app

from .conftest import Cli, InProcess, Shop, cli_env

APP_MODULE = """
from aioflamingock import Flamingock
from aioflamingock.memory import InMemoryAuditStore


def build():
    return Flamingock(audit_store=InMemoryAuditStore())


async def build_async():
    return build()


instance = build()
NUMBER = 42


class Nested:
    engine = build()


def needs_args(path, *, mode):
    return build()


def returns_dict():
    return {}


def raises():
    raise ConnectionError("mongodb://admin:hunter2@db.example:27017: connection refused")
"""


@pytest.fixture
def app_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module of app attributes, under a name no other test imports."""
    name = f"cliapp_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(APP_MODULE)
    (tmp_path / f"{name}_broken.py").write_text("import a_dependency_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in (name, f"{name}_broken"):
        sys.modules.pop(module, None)


@pytest.mark.parametrize("attr", ["build", "build_async", "instance", "Nested.engine"])
def test_app_may_be_an_engine_or_a_sync_or_async_factory(app_module: str, attr: str) -> None:
    assert isinstance(asyncio.run(load_app(f"{app_module}:{attr}")), Flamingock)


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("{m}", "--app '{m}' must be MODULE:ATTR"),
        ("{m}:", "--app '{m}:' must be MODULE:ATTR"),
        ("no_such_module_here:build", "no module named 'no_such_module_here' in the current directory or on sys.path"),
        ("{m}_broken:build", "importing '{m}_broken' failed: ModuleNotFoundError: No module named 'a_dependency_that"),
        ("{m}:missing", "module '{m}' has no attribute 'missing'"),
        ("{m}:NUMBER", "--app '{m}:NUMBER' is a int, not a Flamingock or a function returning one"),
        ("{m}:needs_args", "must take no arguments, but it requires path, mode"),
        ("{m}:returns_dict", "--app '{m}:returns_dict' returned a dict, not a Flamingock"),
        ("{m}:raises", "calling it raised ConnectionError: mongodb://admin:hunter2@"),  # redacted when printed
    ],
)
def test_app_errors_name_what_is_wrong(app_module: str, ref: str, message: str) -> None:
    with pytest.raises(CliError) as caught:
        asyncio.run(load_app(ref.format(m=app_module)))
    assert message.format(m=app_module) in str(caught.value)
    assert caught.value.code == EXIT_USAGE


def test_app_errors_exit_2_on_one_line_with_credentials_redacted(app_module: str) -> None:
    fast = InProcess({APP_ENV_VAR: None})
    missing = fast("plan", code=EXIT_USAGE)
    assert missing.stderr.strip() == f"error: no application: pass --app MODULE:ATTR or set {APP_ENV_VAR}"
    failed = fast("--app", f"{app_module}:raises", "plan", code=EXIT_USAGE)
    assert "admin:***@db.example" in failed.stderr and "hunter2" not in failed.stderr
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("error: --app")
    from_env = InProcess({APP_ENV_VAR: f"{app_module}:NUMBER"})("plan", code=EXIT_USAGE)
    assert f"--app '{app_module}:NUMBER' is a int" in from_env.stderr


FAILING_APP = """
from aioflamingock import Change, Flamingock, NonTransactionalTargetSystem
from aioflamingock.memory import InMemoryAuditStore


class Explodes(Change):
    id = "explodes"
    order = "0001"
    author = "tests"
    target_system = "events"
    transactional = False

    async def execute(self, ctx):
        raise RuntimeError("the queue said no")


class Unknown(Change):
    id = "unknown-target"
    order = "0002"
    author = "tests"
    target_system = "nowhere"

    async def execute(self, ctx):
        pass


def failing():
    return Flamingock(audit_store=InMemoryAuditStore(), target_systems=[NonTransactionalTargetSystem("events")],
                      changes=[Explodes])


def misconfigured():
    return Flamingock(audit_store=InMemoryAuditStore(), target_systems=[NonTransactionalTargetSystem("events")],
                      changes=[Unknown])
"""


def test_a_failed_change_is_one_red_line_and_the_traceback_only_with_verbose(tmp_path: Path) -> None:
    (tmp_path / "failing_app.py").write_text(textwrap.dedent(FAILING_APP))
    cli = Cli(tmp_path, cli_env())  # the module is found in the current directory, as with `python -m`

    quiet = cli("--app", "failing_app:failing", "run", code=EXIT_FAILURE)
    errors = [line for line in quiet.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: ChangeFailedError: change 'explodes' failed: RuntimeError: the queue said no"]
    assert "Traceback" not in quiet.stderr
    assert "✗ explodes FAILED" in quiet.stderr
    assert "explodes" in quiet.stdout and "FAILED" in quiet.stdout  # the report of the run that stopped
    report = cli.json("--app", "failing_app:failing", "run", code=EXIT_FAILURE)
    assert report["status"] == "FAILED"
    assert report["changes"][0]["error"] == "RuntimeError: the queue said no"

    verbose = cli("--app", "failing_app:failing", "--verbose", "run", code=EXIT_FAILURE)
    assert "Traceback (most recent call last)" in verbose.stderr and 'raise RuntimeError("the queue' in verbose.stderr
    assert "info: applying change 'explodes'" in verbose.stderr  # the library's INFO logging

    invalid = cli("--app", "failing_app:misconfigured", "plan", code=EXIT_USAGE)
    assert "Unknown.target_system 'nowhere' is not a configured target system (configured: events)" in invalid.stderr


def test_a_store_that_cannot_be_opened_exits_1(shop: Shop, tmp_path: Path) -> None:
    # In a process of its own: after a failed connect, aiosqlite's worker thread may call back into a closed loop.
    unreachable = Cli(tmp_path, {**shop.cli.env, "SHOP_DB": str(tmp_path / "missing-dir" / "shop.db")})
    failed = unreachable("plan", code=EXIT_FAILURE)
    first = failed.stderr.splitlines()[0]
    assert first.startswith("error: StoreError: SQLite failed while opening") and "missing-dir" in first
    assert unreachable.json("health", code=EXIT_FAILURE)["auditStoreReachable"] is False


def test_the_console_script_imports_the_app_from_the_current_directory(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("aioflamingock")
    if not script.exists():
        pytest.skip("the console script is not installed (pip install -e .)")
    (tmp_path / "failing_app.py").write_text(textwrap.dedent(FAILING_APP))
    env = {k: v for k, v in cli_env().items() if k != "PYTHONPATH"}  # only the current directory can help
    plan = Cli(tmp_path, env, program=(str(script),)).json("--app", "failing_app:failing", "plan")
    assert [(p["changeId"], p["action"]) for p in plan] == [("explodes", "APPLY")]
