"""Run and change events, delivered to listeners (async callables) the user passes to `Flamingock`."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ._model import ChangeResult, RunReport
from ._redact import library_logger

__all__ = ["Event", "EventKind", "Listener", "notify"]

logger = library_logger(__name__)


class EventKind(enum.StrEnum):
    """What an `Event` reports."""

    RUN_STARTED = "RUN_STARTED"
    """A run began."""
    CHANGE_STARTED = "CHANGE_STARTED"
    """A change is about to be applied or recovered."""
    CHANGE_FINISHED = "CHANGE_FINISHED"
    """A change was applied, recovered or failed; `result` says which."""
    RUN_FINISHED = "RUN_FINISHED"
    """A run that started has ended, successfully or with any error; `report` says how."""


@dataclass(frozen=True, slots=True)
class Event:
    """What a listener receives."""

    kind: EventKind
    execution_id: str
    change_id: str | None = None
    result: ChangeResult | None = None
    """For CHANGE_FINISHED."""
    report: RunReport | None = None
    """For RUN_FINISHED."""


class Listener(Protocol):
    """`async def listener(event: Event) -> None`. A listener that raises is logged and does not stop the run."""

    async def __call__(self, event: Event, /) -> None: ...


async def notify(listeners: Sequence[Listener], event: Event) -> None:
    for listener in listeners:
        try:
            await listener(event)
        except Exception:  # a listener (metrics, logging) must not decide whether a migration runs
            logger.exception("listener %r failed on %s", listener, event.kind.value)
