from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aioflamingock.memory import InMemoryAuditStore
from aioflamingock.testing import AuditStoreConformance


class TestInMemoryAuditStore(AuditStoreConformance):
    supports_processes = False

    @pytest.fixture
    async def store(self) -> AsyncIterator[InMemoryAuditStore]:
        async with InMemoryAuditStore() as store:
            yield store
