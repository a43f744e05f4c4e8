"""The examples run as users run them: as scripts, in a fresh process."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import aioflamingock

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "quickstart.py"
CHANGE_IDS = ["create-users", "seed-admin-user", "add-user-status", "configure-user-search"]


def run_quickstart(*args: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in {"QUICKSTART_DB", aioflamingock.DISABLE_ENV_VAR}}
    done = subprocess.run(
        [sys.executable, str(QUICKSTART), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def query(database: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(database)) as conn:
        return conn.execute(sql).fetchall()


def audit(database: Path) -> list[tuple[object, ...]]:
    return query(
        database, "SELECT change_id, state, tx_strategy, transaction_flag FROM flamingock_audit_log ORDER BY id"
    )


def test_quickstart_applies_everything_once_then_finds_nothing_pending(tmp_path: Path) -> None:
    database = tmp_path / "app.db"

    first = run_quickstart(str(database), cwd=tmp_path)
    assert "Applied 4 change(s)" in first
    for change_id in CHANGE_IDS:
        assert f"{change_id} " in first
    assert first.index("create-users") < first.index("seed-admin-user") < first.index("add-user-status")

    users = query(database, "SELECT email, name, status FROM users")
    assert users == [("admin@example.com", "Administrator", "active")]
    settings = json.loads((tmp_path / "app.search.json").read_text())
    assert settings["index"] == "users"
    after_first = audit(database)
    assert after_first == [
        ("create-users", "APPLIED", "TX_AUDIT_STORE_SHARED", 1),
        ("seed-admin-user", "APPLIED", "TX_AUDIT_STORE_SHARED", 1),
        ("add-user-status", "APPLIED", "TX_AUDIT_STORE_SHARED", 1),
        ("configure-user-search", "STARTED", "NON_TX", 0),
        ("configure-user-search", "APPLIED", "NON_TX", 0),
    ]
    assert query(database, "SELECT COUNT(*) FROM flamingock_lock") == [(0,)]

    second = run_quickstart(str(database), cwd=tmp_path)
    assert second.splitlines()[0] == "Nothing pending: all 4 changes are already applied."
    assert f"The database: {database.resolve()} " in second and "Next: " in second
    assert audit(database) == after_first
    assert query(database, "SELECT COUNT(*) FROM users") == [(1,)]
    assert query(database, "SELECT COUNT(*) FROM flamingock_lock") == [(0,)]


def test_quickstart_database_path_defaults_to_the_current_directory(tmp_path: Path) -> None:
    run_quickstart(cwd=tmp_path)
    assert (tmp_path / "quickstart.db").exists()
    assert (tmp_path / "quickstart.search.json").exists()


def test_api_reference_names_every_public_name() -> None:
    reference = (ROOT / "docs" / "api.md").read_text()
    missing = [name for name in aioflamingock.__all__ if not re.search(rf"\b{name}\b", reference)]
    assert not missing, f"docs/api.md does not mention {missing}"


def test_dev_py_installs_again_only_when_pyproject_or_the_extras_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`python3 dev.py quickstart` took 5 s for a 0.06 s program, reinstalling every time."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("dev_commands", ROOT / "dev.py")
    assert spec is not None and spec.loader is not None
    dev = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dev)
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_text("")  # a virtual environment already made
    installs: list[tuple[object, ...]] = []
    monkeypatch.setattr(dev, "ROOT", tmp_path)
    monkeypatch.setattr(dev, "VENV", tmp_path / "venv")
    monkeypatch.setattr(dev, "PY", tmp_path / "venv" / "bin" / "python")
    monkeypatch.setattr(dev, "sh", lambda *args: installs.append(args))

    dev.ensure_env("")
    dev.ensure_env("")  # nothing changed: no install
    assert len(installs) == 1
    dev.ensure_env("[dev]")  # other extras
    assert len(installs) == 2
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text() + "\n# a new dependency\n")
    dev.ensure_env("")
    assert len(installs) == 3
