"""Server fixtures of the store tests: one server per session, a fresh database per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

import pytest

from tests.servers import NO_MONGODB, Server, start_mongodb, unavailable

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient


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


@pytest.fixture
def mongodb_uri(mongodb_server: Server) -> str:
    return mongodb_server.uri


@pytest.fixture
def mongodb_database(mongodb_uri: str) -> Iterator[str]:
    """A database name no other test uses; dropped afterwards."""
    from pymongo import MongoClient

    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    with MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(name)


@pytest.fixture
async def mongodb_client(mongodb_uri: str) -> AsyncIterator[AsyncMongoClient[dict[str, object]]]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        yield client
    finally:
        await client.close()
