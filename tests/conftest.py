"""Fixtures every test directory shares: one MongoDB, PostgreSQL, MySQL/MariaDB and Couchbase server per session (see
`tests/servers.py`)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import (
    NO_COUCHBASE,
    NO_MONGODB,
    NO_MYSQL,
    NO_POSTGRESQL,
    CouchbaseServer,
    Server,
    serve,
    start_couchbase,
    start_mongodb,
    start_mysql,
    start_postgresql,
)


@pytest.fixture(scope="session")
def mongodb_server() -> Iterator[Server]:
    yield from serve("pymongo", start_mongodb, NO_MONGODB)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[Server]:
    yield from serve("sqlalchemy", start_postgresql, NO_POSTGRESQL)


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[Server]:
    yield from serve("sqlalchemy", start_mysql, NO_MYSQL)


@pytest.fixture(scope="session")
def couchbase_server() -> Iterator[CouchbaseServer]:
    yield from serve("acouchbase", start_couchbase, NO_COUCHBASE)


PROCESS_HEAVY = ("ProcessScenarios.", "AuditStoreConformance.test_many_processes")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`python3 dev.py test` runs two workers, `--dist loadgroup`), the tests that start many
    processes or wait out real leases run on one worker, one after another: side by side on a small machine they
    would starve each other's lease renewals. The other worker takes everything else."""
    for item in items:
        qualname = getattr(getattr(item, "function", None), "__qualname__", "")
        if item.get_closest_marker("slow") or qualname.startswith(PROCESS_HEAVY):
            item.add_marker(pytest.mark.xdist_group("processes"))


WritePackage = Callable[[dict[str, str]], str]
GENERATED_PREFIXES = ("changes_", "single_")


@pytest.fixture
def package_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on `sys.path` for packages of change modules written by a test; they are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith(GENERATED_PREFIXES)]:
        del sys.modules[name]


@pytest.fixture
def write_package(package_root: Path) -> WritePackage:
    """Write a package of modules (`{"_0001_a.py": source}`) under a fresh name; return that name."""

    def write(files: dict[str, str]) -> str:
        name = f"changes_{uuid.uuid4().hex[:12]}"
        folder = package_root / name
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        for filename, source in files.items():
            (folder / filename).write_text(source)
        return name

    return write
