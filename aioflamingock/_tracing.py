"""OpenTelemetry spans around a run and each change, when `opentelemetry-api` is installed (extra `otel`).

Without it every span is a no-op; with it but no SDK configured, OpenTelemetry's own no-op tracer is used.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any

from ._redact import redact, redacted_traceback

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["span"]

_TRACER_NAME = "aioflamingock"


def _trace() -> Any:
    """OpenTelemetry's `trace` module when the application has imported it, else None: no tracer provider can be
    set without importing it (`opentelemetry-instrument` imports it before the application starts), and importing
    it here would cost every start-up 5 ms for spans nobody records."""
    return sys.modules.get("opentelemetry.trace")


def _tracer() -> Any:
    """The library's tracer; None without OpenTelemetry, or while no tracer provider is set (every span would be a
    no-op, which still costs a tenth of a change's time on SQLite)."""
    trace = _trace()
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return _provider_tracer(provider)


@cache
def _provider_tracer(provider: Any) -> Any:
    return provider.get_tracer(_TRACER_NAME)


@contextmanager
def span(name: str, attributes: Mapping[str, str | int | float | bool]) -> Iterator[Span | None]:
    """A span that records an escaping exception, redacted, and marks itself as an error; `None` without
    OpenTelemetry. (OpenTelemetry's own recording would copy the exception's text and traceback as they are.)"""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(
        name, attributes=dict(attributes), record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as error:
            fail(current, error)
            raise


def fail(current: Span | None, error: BaseException) -> None:
    """Mark `current` as failed with `error`, redacted: for failures reported by value and for raised ones."""
    if current is None:
        return
    from opentelemetry.trace import Status, StatusCode

    message = redact(f"{type(error).__name__}: {error}")
    current.add_event(
        "exception",
        {
            "exception.type": f"{type(error).__module__}.{type(error).__qualname__}",
            "exception.message": redact(str(error)),
            "exception.stacktrace": redacted_traceback(error),
            "exception.escaped": False,
        },
    )
    current.set_status(Status(StatusCode.ERROR, message))
