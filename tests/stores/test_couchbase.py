"""The conformance suite on Couchbase (the key-value test double unless told otherwise), and the driver's imports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from aioflamingock import AuditStore
from aioflamingock.couchbase import CouchbaseAuditStore, CouchbaseTargetSystem
from aioflamingock.testing import AuditStoreConformance
from tests.servers import CouchbaseServer

from ._owning import OwningStore
from .conftest import connect_couchbase


class ClusterOwningStore(OwningStore):
    def __init__(self, server: CouchbaseServer, audit_collection: str, lock_collection: str) -> None:
        super().__init__()
        self._server = server
        self._names = {"audit_collection": audit_collection, "lock_collection": lock_collection}

    async def connect(self, stack: AsyncExitStack) -> AuditStore:
        cluster = await connect_couchbase(self._server)
        stack.push_async_callback(cluster.close)
        target = CouchbaseTargetSystem("db", cluster=cluster, bucket=self._server.bucket)
        return await stack.enter_async_context(CouchbaseAuditStore.from_target(target, **self._names))


def open_store(
    connection_string: str, username: str, password: str, bucket: str, audit: str, lock: str
) -> ClusterOwningStore:
    """Used by the multi-process race: the same collections, from another process, with a cluster of its own."""
    server = CouchbaseServer(connection_string, username, password, bucket, False, lambda: None)
    return ClusterOwningStore(server, audit, lock)


class TestCouchbaseAuditStore(AuditStoreConformance):
    @pytest.fixture
    async def store(
        self, couchbase_server: CouchbaseServer, couchbase_cluster: Any, couchbase_collections: dict[str, str]
    ) -> AsyncIterator[CouchbaseAuditStore]:
        server = couchbase_server
        self._args = [
            server.connection_string,
            server.username,
            server.password,
            server.bucket,
            couchbase_collections["audit_collection"],
            couchbase_collections["lock_collection"],
        ]
        target = CouchbaseTargetSystem("db", cluster=couchbase_cluster, bucket=server.bucket)
        async with CouchbaseAuditStore.from_target(target, **couchbase_collections) as store:
            yield store

    def process_factory(self) -> tuple[str, list[str]]:
        return "tests.stores.test_couchbase:open_store", self._args


def test_without_the_sdk_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['acouchbase'] = None; sys.modules['acouchbase.cluster'] = None\n"
        "from aioflamingock.couchbase import CouchbaseTargetSystem\n"
        "try:\n"
        "    CouchbaseTargetSystem('db', cluster=object(), bucket='b')\n"
        "except ImportError as exc:\n"
        "    sys.exit(str(exc))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert 'pip install "aioflamingock[couchbase]"' in done.stderr


def test_importing_the_backend_imports_no_driver() -> None:
    drivers = ["couchbase", "acouchbase"]
    code = f"import sys, aioflamingock.couchbase\nprint(','.join(m for m in {drivers!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == ""


async def test_a_store_used_before_it_is_opened_says_so_like_every_store(
    couchbase_server: Any, couchbase_cluster: Any, couchbase_collections: dict[str, str]
) -> None:
    from aioflamingock import ClosedResourceError
    from aioflamingock.couchbase import CouchbaseAuditStore, CouchbaseTargetSystem

    target = CouchbaseTargetSystem("app", cluster=couchbase_cluster, bucket=couchbase_server.bucket)
    store = CouchbaseAuditStore.from_target(target, **couchbase_collections)
    with pytest.raises(ClosedResourceError, match="is not open"):
        await store.lock.read("default")
    with pytest.raises(ClosedResourceError, match="is not open"):
        target.bucket  # noqa: B018
