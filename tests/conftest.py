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


CPU_HEAVY = ("eight_processes", "many_processes", "paused_past_its_lease")
"""Tests that start many processes at once, or whose processes must keep renewing a lease while others run."""


@pytest.fixture(autouse=True)
def one_heavy_test_at_a_time(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under pytest-xdist (`python3 dev.py test` runs two workers), the tests that start many processes at once or
    pause a lock holder (`CPU_HEAVY`, and the `slow` ones of `tests/faults`) take a lock of this machine for their
    length: side by side on a small machine they would starve each other's lease renewals. Every other test runs
    beside them."""
    item = request.node
    in_faults = item.path.parent.name == "faults" and item.get_closest_marker("slow") is not None
    if not (in_faults or any(word in item.name for word in CPU_HEAVY)):
        yield
        return
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "aioflamingock-heavy-tests.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
