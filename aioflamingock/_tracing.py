"""OpenTelemetry spans around a run and each change, when `opentelemetry-api` is installed (extra `otel`).

Without it every span is a no-op; with it but no SDK configured, OpenTelemetry's own no-op tracer is used.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["span"]

_TRACER_NAME = "aioflamingock"


def _tracer() -> Any:
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    return trace.get_tracer(_TRACER_NAME)


@contextmanager
def span(name: str, attributes: Mapping[str, str | int | float | bool]) -> Iterator[Span | None]:
    """A span that records an escaping exception and marks itself as an error; `None` without OpenTelemetry."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, attributes=dict(attributes)) as current:
        yield current


def fail(current: Span | None, error: BaseException) -> None:
    """Mark `current` as failed with `error`, for failures reported by value rather than raised."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    current.record_exception(error)
    current.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
