"""Fixtures every test directory shares: one MongoDB and one Couchbase server per session (see `tests/servers.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import (
    NO_COUCHBASE,
    NO_MONGODB,
    CouchbaseServer,
    Server,
    serve,
    start_couchbase,
    start_mongodb,
)


@pytest.fixture(scope="session")
def mongodb_server() -> Iterator[Server]:
    yield from serve("pymongo", start_mongodb, NO_MONGODB)


@pytest.fixture(scope="session")
def couchbase_server() -> Iterator[CouchbaseServer]:
    yield from serve("acouchbase", start_couchbase, NO_COUCHBASE)
