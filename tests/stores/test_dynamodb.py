"""The conformance suite on a DynamoDB endpoint (moto's server unless told otherwise), and the driver's imports."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from aioflamingock import AuditStore
from aioflamingock.dynamodb import DynamoDBAuditStore, DynamoDBTargetSystem
from aioflamingock.testing import AuditStoreConformance
from tests.servers import dynamodb_client_options

from ._owning import OwningStore


def tables(prefix: str) -> dict[str, str]:
    return {"audit_table": f"{prefix}audit", "lock_table": f"{prefix}lock"}


class ClientOwningStore(OwningStore):
    def __init__(self, endpoint: str, prefix: str) -> None:
        super().__init__()
        self._endpoint = endpoint
        self._prefix = prefix

    async def connect(self, stack: AsyncExitStack) -> AuditStore:
        import aioboto3

        client_context = aioboto3.Session().client("dynamodb", **dynamodb_client_options(self._endpoint))
        client = await stack.enter_async_context(client_context)
        target = DynamoDBTargetSystem("db", client=client)
        return await stack.enter_async_context(DynamoDBAuditStore.from_target(target, **tables(self._prefix)))


def open_store(endpoint: str, prefix: str) -> ClientOwningStore:
    """Used by the multi-process race: the same tables, from another process, with a client of its own."""
    return ClientOwningStore(endpoint, prefix)


class TestDynamoDBAuditStore(AuditStoreConformance):
    @pytest.fixture
    async def store(
        self, dynamodb_endpoint: str, dynamodb_prefix: str, dynamodb_client: Any
    ) -> AsyncIterator[DynamoDBAuditStore]:
        self._args = [dynamodb_endpoint, dynamodb_prefix]
        target = DynamoDBTargetSystem("db", client=dynamodb_client)
        async with DynamoDBAuditStore.from_target(target, **tables(dynamodb_prefix)) as store:
            yield store

    def process_factory(self) -> tuple[str, list[str]]:
        return "tests.stores.test_dynamodb:open_store", self._args


def test_without_aioboto3_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['aiobotocore'] = None; sys.modules['aiobotocore.client'] = None\n"
        "from aioflamingock.dynamodb import DynamoDBTargetSystem\n"
        "try:\n"
        "    DynamoDBTargetSystem('db', client=object())\n"
        "except ImportError as exc:\n"
        "    sys.exit(str(exc))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert 'pip install "aioflamingock[dynamodb]"' in done.stderr


def test_importing_the_backend_imports_no_driver() -> None:
    drivers = ["boto3", "aioboto3", "botocore", "aiobotocore", "aiohttp"]
    code = f"import sys, aioflamingock.dynamodb\nprint(','.join(m for m in {drivers!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == ""
