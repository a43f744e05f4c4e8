"""Server fixtures of the store tests: one server per session, a fresh database (MongoDB), a fresh table-name
prefix (DynamoDB) or fresh collection names (Couchbase) per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.servers import (
    DYNAMODB_REGION,
    NO_DYNAMODB,
    CouchbaseServer,
    Server,
    dynamodb_client_options,
    dynamodb_session,
    serve,
    start_dynamodb,
)

if TYPE_CHECKING:
    from pymongo import AsyncMongoClient


@pytest.fixture
def mongodb_uri(mongodb_server: Server) -> str:
    return mongodb_server.uri


def _fresh_database(uri: str) -> Iterator[str]:
    """A database name no other test uses; dropped afterwards."""
    from pymongo import MongoClient

    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    with MongoClient(uri, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(name)


@pytest.fixture
def mongodb_database(mongodb_uri: str) -> Iterator[str]:
    yield from _fresh_database(mongodb_uri)


@pytest.fixture
def mongodb_other_database(mongodb_uri: str) -> Iterator[str]:
    """A second fresh database: a target there cannot share the transactions of a store in `mongodb_database`."""
    yield from _fresh_database(mongodb_uri)


@pytest.fixture
async def mongodb_client(mongodb_uri: str) -> AsyncIterator[AsyncMongoClient[dict[str, object]]]:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongodb_uri, serverSelectionTimeoutMS=5000)
    try:
        yield client
    finally:
        await client.close()


# -- DynamoDB -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dynamodb_server() -> Iterator[Server]:
    yield from serve("aioboto3", start_dynamodb, NO_DYNAMODB)


@pytest.fixture
def dynamodb_endpoint(dynamodb_server: Server) -> str:
    return dynamodb_server.uri


@pytest.fixture
def dynamodb_prefix(dynamodb_endpoint: str) -> Iterator[str]:
    """A table-name prefix no other test uses; the tables named with it are deleted afterwards."""
    import boto3

    prefix = f"t{uuid.uuid4().hex[:12]}-"
    yield prefix
    options = dynamodb_client_options(dynamodb_endpoint)
    options.pop("config")
    client = boto3.client("dynamodb", **options)
    try:
        for page in client.get_paginator("list_tables").paginate():
            for name in page["TableNames"]:
                if name.startswith(prefix):
                    client.delete_table(TableName=name)
    finally:
        client.close()


@pytest.fixture
async def dynamodb_client(dynamodb_endpoint: str) -> AsyncIterator[Any]:
    """An aioboto3 DynamoDB client with dummy credentials, in the region the tests use."""

    async with dynamodb_session().client("dynamodb", **dynamodb_client_options(dynamodb_endpoint)) as client:
        assert client.meta.region_name == DYNAMODB_REGION
        yield client


# -- Couchbase ------------------------------------------------------------------------------------------------------


async def connect_couchbase(server: CouchbaseServer) -> Any:
    """An acouchbase cluster connected to `server`, with timeouts short enough for tests."""
    from datetime import timedelta

    from acouchbase.cluster import Cluster
    from couchbase.auth import PasswordAuthenticator
    from couchbase.options import ClusterOptions, ClusterTimeoutOptions

    timeouts = ClusterTimeoutOptions(kv_timeout=timedelta(seconds=5), connect_timeout=timedelta(seconds=10))
    options = ClusterOptions(PasswordAuthenticator(server.username, server.password), timeout_options=timeouts)
    return await Cluster.connect(server.connection_string, options)


@pytest.fixture
async def couchbase_cluster(couchbase_server: CouchbaseServer) -> AsyncIterator[Any]:
    cluster = await connect_couchbase(couchbase_server)
    try:
        yield cluster
    finally:
        await cluster.close()


@pytest.fixture
async def couchbase_collections(
    couchbase_server: CouchbaseServer, couchbase_cluster: Any
) -> AsyncIterator[dict[str, str]]:
    """Audit and lock collection names no other test uses; dropped afterwards."""
    suffix = uuid.uuid4().hex[:12]
    names = {"audit_collection": f"audit{suffix}", "lock_collection": f"lock{suffix}"}
    yield names
    bucket = couchbase_cluster.bucket(couchbase_server.bucket)
    manager = bucket.collections()
    for name in names.values():
        with contextlib.suppress(Exception):  # never created by the test, or not droppable: nothing to clean
            await manager.drop_collection("_default", name)
