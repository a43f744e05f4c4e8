"""Fixtures every test directory shares: one MongoDB and one Couchbase server per session (see `tests/servers.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import (
    NO_COUCHBASE,
    NO_MONGODB,
    CouchbaseServer,
    Server,
    start_couchbase,
    start_mongodb,
    unavailable,
)


@pytest.fixture(scope="session")
def mongodb_server() -> Iterator[Server]:
    try:
        import pymongo  # noqa: F401
    except ImportError:
        unavailable(f'PyMongo is not installed: pip install -e ".[dev]" ({NO_MONGODB})')
    server = start_mongodb()
    if server is None:
        unavailable(NO_MONGODB)
    assert server is not None
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def couchbase_server() -> Iterator[CouchbaseServer]:
    try:
        import acouchbase  # noqa: F401
    except ImportError:
        unavailable(f'the Couchbase SDK is not installed: pip install -e ".[dev]" ({NO_COUCHBASE})')
    server = start_couchbase()
    if server is None:
        unavailable(NO_COUCHBASE)
    assert server is not None
    try:
        yield server
    finally:
        server.stop()
