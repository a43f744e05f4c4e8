"""The examples the documentation includes, run as users run them: as scripts, in a fresh process, each checked
for what it prints and for what it leaves in the database, the search service's state file and the audit."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path

import pytest

import aioflamingock
from tests.servers import Server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DOCS = ROOT / "docs"
MYAPP_CHANGES = ["create-users", "seed-admin-user", "add-user-status", "create-users-index"]


def run_example(script: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    clean = {k: v for k, v in os.environ.items() if k != aioflamingock.DISABLE_ENV_VAR}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def query(database: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(database)) as conn:
        return conn.execute(sql).fetchall()


def audit(database: Path, table: str = "flamingock_audit_log") -> list[tuple[object, ...]]:
    return query(database, f"SELECT change_id, state FROM {table} ORDER BY id")


def test_overview_applies_once_then_finds_nothing_pending(tmp_path: Path) -> None:
    assert run_example("overview.py", cwd=tmp_path) == "SUCCESS ['create-users']\n"
    assert run_example("overview.py", cwd=tmp_path) == "NO_CHANGES []\n"
    database = tmp_path / "overview.db"
    assert audit(database) == [("create-users", "APPLIED")]
    assert query(database, "SELECT COUNT(*) FROM users") == [(0,)]


def test_operations_walks_through_a_failure_a_fix_an_undo_and_a_stale_lock(tmp_path: Path) -> None:
    out = run_example("operations.py", str(tmp_path), cwd=tmp_path)
    sections = out.split("== ")[1:]
    titles = [section.splitlines()[0] for section in sections]
    assert titles == [
        "plan",
        "validate",
        "run, with the search service down",
        "issues",
        "fix",
        "run",
        "validate",
        "history",
        "undo",
        "plan",
        "lock",
        "baseline, on a database made before",
        "move the audit to a new store",
    ]
    plan, validate, failed_run, issues, fix, run, validated, history, undo, replan, lock, baseline, moved = (
        section.splitlines()[1:] for section in sections
    )
    assert moved == ["moved 14 entries; the new store plans the same"]  # history's 9, undo's 2, the last run's 3
    assert baseline == [
        "baseline: create-users, seed-admin-user, add-user-status recorded as applied, none run",
        "run create-users ALREADY_APPLIED, seed-admin-user ALREADY_APPLIED, add-user-status ALREADY_APPLIED, "
        "create-users-index APPLIED",
    ]
    assert [line.split()[:2] for line in plan] == [[change, "APPLY"] for change in MYAPP_CHANGES]
    assert validate == [f"database not migrated: {MYAPP_CHANGES}"]
    assert failed_run == [
        "ChangeFailedError: change 'create-users-index' failed: ConnectionError: search service unreachable "
        "(state file search.json)",
        "  report: create-users APPLIED, seed-admin-user APPLIED, add-user-status APPLIED, create-users-index FAILED",
    ]
    (issue,) = issues
    assert issue.startswith("create-users-index ROLLBACK_FAILED ")
    assert issue.endswith(
        "-> check the data, then record what happened: fix('create-users-index', 'applied' or 'rolled-back')"
    )
    assert fix == ["recorded MANUAL_MARKED_AS_ROLLED_BACK for create-users-index"]
    assert run == [
        "run create-users ALREADY_APPLIED, seed-admin-user ALREADY_APPLIED, add-user-status ALREADY_APPLIED, "
        "create-users-index APPLIED"
    ]
    assert validated == ["nothing pending"]
    assert [line.split() for line in history] == [
        ["create-users", "APPLIED", "TX_AUDIT_STORE_SHARED"],
        ["seed-admin-user", "APPLIED", "TX_AUDIT_STORE_SHARED"],
        ["add-user-status", "APPLIED", "TX_AUDIT_STORE_SHARED"],
        ["create-users-index", "STARTED", "NON_TX"],
        ["create-users-index", "FAILED", "NON_TX"],
        ["create-users-index", "ROLLBACK_FAILED", "NON_TX"],
        ["create-users-index", "MANUAL_MARKED_AS_ROLLED_BACK", "NON_TX"],
        ["create-users-index", "STARTED", "NON_TX"],
        ["create-users-index", "APPLIED", "NON_TX"],
    ]
    assert undo == ["undo SUCCESS: create-users-index ROLLED_BACK, add-user-status ROLLED_BACK"]
    assert [line.split()[:2] for line in replan] == [
        ["create-users", "SKIP"],
        ["seed-admin-user", "SKIP"],
        ["add-user-status", "APPLY"],
        ["create-users-index", "APPLY"],
    ]
    assert lock[0].startswith("lock held by a dead process for ") and lock[0].endswith(": released")
    assert lock[1] == (
        "run create-users ALREADY_APPLIED, seed-admin-user ALREADY_APPLIED, add-user-status APPLIED, "
        "create-users-index APPLIED"
    )

    database = tmp_path / "app.db"
    assert query(database, "SELECT email, name, status FROM users") == [
        ("admin@example.com", "Administrator", "active")
    ]
    assert json.loads((tmp_path / "search.json").read_text()) == {"users": {}}
    assert audit(database)[9:] == [  # after the history printed above: the undo, then the last run
        ("create-users-index", "ROLLED_BACK"),
        ("add-user-status", "ROLLED_BACK"),
        ("add-user-status", "APPLIED"),
        ("create-users-index", "STARTED"),
        ("create-users-index", "APPLIED"),
    ]
    assert query(database, "SELECT COUNT(*) FROM flamingock_lock") == [(0,)]


def test_changes_discovery_lists_the_changes_in_order_and_reports_every_mistake(tmp_path: Path) -> None:
    out = run_example("changes_discovery.py", cwd=tmp_path)
    problems = [
        "  - broken_changes/_01_short.py: module name must be `_<ORDER>_<name>.py` with ORDER of at least 4 characters",
        '  - broken_changes/_0002_noauthor.py: B.author is missing or empty (got None); set `author = "..."`',
        "  - broken_changes/_0002_noauthor.py: B.execute must be `async def execute(self, ctx)`",
    ]
    assert out.splitlines() == [
        "0001 create-users myapp.changes._0001_create_users.CreateUsers",
        "0002 seed-admin-user myapp.changes._0002_seed_admin_user.SeedAdminUser",
        "0003 add-user-status myapp.changes._0003_add_user_status.AddUserStatus",
        "0004 create-users-index myapp.changes._0004_create_users_index.CreateUsersIndex",
        "0005 create-synonyms-index __main__.CreateSynonymsIndex",
        "ConfigurationError: 3 problems:",
        *problems,
    ]
    assert not list(tmp_path.iterdir()), "discovery opens nothing"
    page = (DOCS / "changes.md").read_text()
    for line in ["ConfigurationError: 3 problems:", *problems]:
        assert line in page, "docs/changes.md shows the error as changes_discovery.py prints it"


def test_changes_typed_context_hands_the_change_its_own_context(tmp_path: Path) -> None:
    out = run_example("changes_typed_context.py", str(tmp_path), cwd=tmp_path)
    assert out.splitlines() == [
        "SUCCESS ['create-synonyms-index']",
        "indices: {'synonyms': {'synonyms': ['user, account']}}",
    ]
    assert json.loads((tmp_path / "search.json").read_text()) == {"synonyms": {"synonyms": ["user, account"]}}


def test_changes_retry_runs_an_idempotent_change_again_and_warns_without_a_note(tmp_path: Path) -> None:
    out = run_example("changes_retry.py", cwd=tmp_path)
    assert out.splitlines() == [
        "first run: change 'ensure-topics' failed: ConnectionError: connection to the broker was reset; "
        "topics: ['user-events']",
        "second run: SUCCESS ['ensure-topics']; topics: ['user-events', 'audit-events']",
        "states: ['STARTED', 'FAILED', 'STARTED', 'APPLIED']",
        "NonIdempotentRetryWarning: changes_retry.py: EnsureTopicsWithoutNote is non-transactional with "
        'ALWAYS_RETRY, so an interrupted run will execute it again; set `idempotency = "..."` saying why that is '
        "safe",
    ]


def test_changes_testing_runs_as_a_script(tmp_path: Path) -> None:
    assert run_example("changes_testing.py", cwd=tmp_path) == "2 tests passed\n"


def test_changes_testing_passes_under_pytest(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / "changes_testing.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_listeners_receive_every_event_and_metadata_lands_in_every_entry(tmp_path: Path) -> None:
    out = run_example("listeners.py", str(tmp_path), cwd=tmp_path).splitlines()
    events = [line.split() for line in out[:-2]]
    assert events[0] == ["RUN_STARTED"] and events[-1] == ["RUN_FINISHED"]
    assert events[1:-1] == [
        line
        for change in MYAPP_CHANGES
        for line in (["CHANGE_STARTED", change], ["CHANGE_FINISHED", change, "APPLIED"])
    ]
    assert out[-2] == f"observed: {sorted(MYAPP_CHANGES)}"
    assert out[-1] == "metadata: " + str({change: {"deployment": "2026.05.1"} for change in MYAPP_CHANGES})


def test_stores_sqlite_keeps_two_independent_audits_in_one_file(tmp_path: Path) -> None:
    out = run_example("stores_sqlite.py", cwd=tmp_path)
    assert out.splitlines() == [
        "tables: billing_audit_log, billing_audit_log_summary, billing_lock, flamingock_audit_log, "
        "flamingock_audit_log_summary, flamingock_lock, invoices, users",
        "flamingock_audit_log: [('create-users', 'APPLIED', 'TX_AUDIT_STORE_SHARED')]",
        "billing_audit_log: [('create-invoices', 'APPLIED', 'TX_AUDIT_STORE_SHARED')]",
    ]
    database = tmp_path / "stores.db"
    assert audit(database, "billing_audit_log") == [("create-invoices", "APPLIED")]


def test_stores_mongodb_commits_the_change_with_its_audit_entry(tmp_path: Path, mongodb_server: Server) -> None:
    import pymongo

    database = f"docs_{uuid.uuid4().hex[:12]}"
    try:
        out = run_example(
            "stores_mongodb.py", cwd=tmp_path, env={"MONGODB_URI": mongodb_server.uri, "MONGODB_DATABASE": database}
        )
        assert out.splitlines() == [
            "SUCCESS ['seed-admin-user']",
            "collections: flamingockAuditLog, flamingockLock, users",
            "audit: seed-admin-user APPLIED TX_AUDIT_STORE_SHARED",
        ]
        with pymongo.MongoClient(mongodb_server.uri, serverSelectionTimeoutMS=5000) as client:
            assert [u["email"] for u in client[database].users.find()] == ["admin@example.com"]
    finally:
        with pymongo.MongoClient(mongodb_server.uri, serverSelectionTimeoutMS=5000) as client:
            client.drop_database(database)


def test_changes_mistakes_prints_what_the_docs_show(tmp_path: Path) -> None:
    out = run_example("changes_mistakes.py", cwd=EXAMPLES)
    titles = [line for line in out.splitlines() if line.startswith("== ")]
    assert titles == [
        "== a change that commits by itself",
        "== a forgotten await",
        "== an untouched skeleton, and a change module with the wrong name",
    ]
    page = (DOCS / "changes.md").read_text(encoding="utf-8")
    shown = [line for line in out.splitlines() if not line.startswith("== ")]
    assert shown and all(line in page for line in shown), [line for line in shown if line not in page]
    assert "MANUAL_INTERVENTION" in out and "UnawaitedCoroutineError" in out and "2 problems" in out


def test_backend_kit_passes_under_pytest() -> None:
    """The in-memory store's run of both suites: the transactional scenarios skip, saying why."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(EXAMPLES / "backend_kit.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert "failed" not in summary and "error" not in summary and " passed" in summary, summary
    assert "the in-memory store shares no transaction with any target" in done.stdout


@pytest.mark.parametrize("server", ["postgresql_server", "mysql_server"])
def test_stores_sql_applies_the_ddl_alone_and_the_orm_change_with_its_entry(
    tmp_path: Path, request: pytest.FixtureRequest, server: str
) -> None:
    from tests.stores.test_sql import _drop_tables, engine_url

    database: Server = request.getfixturevalue(server)
    prefix = f"docs_{uuid.uuid4().hex[:8]}_"
    try:
        out = run_example(
            "stores_sql.py", cwd=tmp_path, env={"DATABASE_URL": engine_url(database.uri), "TABLE_PREFIX": prefix}
        )
    finally:
        _drop_tables(database, prefix)
    assert out.splitlines() == [
        "SUCCESS ['create-users', 'seed-admin']",
        "users: ['admin@example.com']",
        "audit: create-users STARTED NON_TX",
        "audit: create-users APPLIED NON_TX",
        "audit: seed-admin APPLIED TX_AUDIT_STORE_SHARED",
    ]
