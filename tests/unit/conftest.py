from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

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


_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans the library records, collected in memory (the process-wide provider is set once)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):  # the global provider can be set only once
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()
