from __future__ import annotations

import pytest

from aioflamingock import NonTransactionalTargetSystem

from ._support import SpyStore, target_with


@pytest.fixture
def calls() -> list[str]:
    """What the changes on `target` executed, in order."""
    return []


@pytest.fixture
def target(calls: list[str]) -> NonTransactionalTargetSystem:
    return target_with(calls)


@pytest.fixture
def store() -> SpyStore:
    return SpyStore()
