"""The public surface: exactly these names, private modules with `__all__`, lazy drivers, Flamingock's field names."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import aioflamingock
from aioflamingock import AuditEntry, AuditState, Recovery, TxStrategy
from aioflamingock.testing import make_entry

PACKAGE_DIR = Path(aioflamingock.__file__).parent

EXPECTED_PUBLIC_NAMES = {
    # DESIGN section 6
    "Flamingock",
    "Change",
    "Recovery",
    "Remedy",
    "RemedyAction",
    "LockOptions",
    "RunReport",
    "RunStatus",
    "ChangeResult",
    "AuditEntry",
    "AuditState",
    "NonTransactionalTargetSystem",
    "FlamingockError",
    "Health",
    # engine, changes, events
    "DISABLE_ENV_VAR",
    "NonIdempotentRetryWarning",
    "ChangeSpec",
    "ChangeIssue",
    "ChangeOutcome",
    "PlannedAction",
    "PlannedChange",
    "Event",
    "EventKind",
    "Listener",
    "NonTransactionalContext",
    # interfaces and lock records, for writing stores and targets
    "AuditStore",
    "Lock",
    "TargetSystem",
    "Transaction",
    "TransactionalTargetSystem",
    "Fence",
    "LockInfo",
    "LockLease",
    "Marker",
    "TxStrategy",
    # errors
    "ChangeFailedError",
    "ChangeLoadError",
    "ChangeMisuseError",
    "ClosedResourceError",
    "ConfigurationError",
    "CorruptAuditError",
    "DoctorCheck",
    "LockAcquisitionTimeoutError",
    "LockError",
    "LockLostError",
    "ManualInterventionRequiredError",
    "PendingChangesError",
    "RollbackFailedError",
    "RunError",
    "StoreError",
    "StoreUnavailableError",
    "TransactionAbortedError",
    "TransactionBypassedError",
    "TransactionOutcomeUnknownError",
    "UnawaitedCoroutineError",
}

DRIVERS = [
    *("aiosqlite", "sqlite3", "pymongo", "motor", "boto3", "aioboto3", "botocore", "couchbase", "acouchbase"),
    *("sqlalchemy", "asyncpg", "psycopg", "aiomysql", "pymysql", "asyncmy"),
]
FRAMEWORKS = ["fastapi", "starlette", "aiohttp"]  # only aioflamingock.fastapi and aioflamingock.aiohttp import them

FLAMINGOCK_FIELDS = [
    "executionId",
    "stageId",
    "changeId",
    "author",
    "createdAt",
    "state",
    "type",
    "invokedClass",
    "invokedMethod",
    "sourceFile",
    "metadata",
    "executionMillis",
    "executionHostname",
    "errorTrace",
    "systemChange",
    "txStrategy",
    "targetSystemId",
    "changeOrder",
    "recoveryStrategy",
    "transactionFlag",
]


def test_all_lists_exactly_the_public_names() -> None:
    assert set(aioflamingock.__all__) == EXPECTED_PUBLIC_NAMES
    assert len(aioflamingock.__all__) == len(set(aioflamingock.__all__)), "no name listed twice"


@pytest.mark.parametrize("name", sorted(EXPECTED_PUBLIC_NAMES))
def test_every_public_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from aioflamingock import {name}", namespace)
    assert namespace[name] is getattr(aioflamingock, name)


def test_every_error_derives_from_the_root() -> None:
    errors = [getattr(aioflamingock, n) for n in EXPECTED_PUBLIC_NAMES if n.endswith("Error")]
    assert all(issubclass(e, aioflamingock.FlamingockError) for e in errors)


@pytest.mark.parametrize(
    ("module", "names"),
    [
        ("aioflamingock.memory", {"InMemoryAuditStore", "InMemoryLock"}),
        ("aioflamingock.sqlite", {"SQLiteAuditStore", "SQLiteContext", "SQLiteTargetSystem", "SQLiteTransaction"}),
        (
            "aioflamingock.testing",
            {
                "AuditStoreConformance",
                "BackendProtocol",
                "Instance",
                "ManualClock",
                "ProtocolKit",
                "assert_no_overlap",
                "make_entry",
                "simulated_aborts",
            },
        ),
        ("aioflamingock.sql", {"AlembicUpgrade", "SQLAuditStore", "SQLContext", "SQLTargetSystem", "SQLTransaction"}),
        (
            "aioflamingock.importers",
            {
                "alembic_applied",
                "beanie_applied",
                "mongodb_migrations_applied",
                "pymongo_migrate_applied",
                "yoyo_applied",
            },
        ),
        (
            "aioflamingock.dynamodb",
            {
                "DynamoDBAuditStore",
                "DynamoDBContext",
                "DynamoDBTargetSystem",
                "DynamoDBTransaction",
                "DynamoDBTransactionBuilder",
            },
        ),
    ],
)
def test_backend_packages_export_their_names(module: str, names: set[str]) -> None:
    imported = importlib.import_module(module)
    assert set(imported.__all__) == names
    assert all(hasattr(imported, name) for name in names)


def _private_modules() -> list[Path]:
    modules = [*PACKAGE_DIR.glob("_*.py"), *PACKAGE_DIR.glob("*/_*.py")]
    # Runnable scripts (`python -m ...`) have no API to list.
    return sorted(p for p in modules if p.name != "__init__.py" and "__main__" not in p.read_text())


@pytest.mark.parametrize("path", _private_modules(), ids=lambda p: p.relative_to(PACKAGE_DIR).as_posix())
def test_every_private_module_has_all(path: Path) -> None:
    tree = ast.parse(path.read_text())
    targets = [
        t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)
    ]
    assert "__all__" in targets


def test_the_private_modules_include_the_core() -> None:
    names = {p.name for p in _private_modules()}
    assert {"_engine.py", "_resolver.py", "_apply.py", "_change.py", "_discovery.py", "_model.py"} <= names


def test_importing_the_package_imports_no_database_driver() -> None:
    code = (
        "import sys, aioflamingock, aioflamingock.memory\n"
        f"print(','.join(sorted(m for m in {DRIVERS + FRAMEWORKS!r} if m in sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == ""


def test_audit_documents_use_flamingocks_field_names() -> None:
    document = make_entry("c1").to_document()
    assert list(document) == FLAMINGOCK_FIELDS


def test_audit_document_values_are_plain_json() -> None:
    entry = make_entry("c1", AuditState.FAILED)
    document = entry.to_document()
    assert document["state"] == "FAILED"
    assert document["txStrategy"] == TxStrategy.TX_AUDIT_STORE_SYNC.value
    assert document["recoveryStrategy"] == Recovery.ALWAYS_RETRY.value
    assert document["createdAt"].startswith("2026-01-02T03:04:05.678")
    assert AuditEntry.from_document(document) == entry
