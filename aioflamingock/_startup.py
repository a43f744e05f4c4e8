"""The start-up run behind the web integrations: `Flamingock.run()` in the foreground or in a background task, and
the status a readiness probe reports. Knows no web framework."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from . import Flamingock, LockLostError, RunError, RunReport
from .backend import library_logger, redact

__all__ = ["Startup", "StartupStatus"]

logger = library_logger("aioflamingock.startup")


class StartupStatus(enum.StrEnum):
    """Where the start-up run is. Readiness answers 200 only when it is `READY`."""

    PENDING = "pending"
    """The application has not started yet."""
    APPLYING = "applying"
    """`Flamingock.run()` is under way: waiting for the lock or applying changes."""
    READY = "ready"
    """Every change is applied."""
    FAILED = "failed"
    """The run raised; `error` says why. Only a restart runs the changes again."""


_SERVER_LOGGERS = ("uvicorn.error", "hypercorn.error", "gunicorn.error")
"""Where ASGI servers log their own start-up ("Application startup complete."), configured by them by default."""
_NAMED_AT_MOST = 5


def summary_line(report: RunReport) -> str:
    """One line saying what the start-up run did: what ran and how long it took, or that nothing was pending."""
    applied = report.applied
    took = f"{report.duration_seconds:.3f} s"
    if not report.changes:
        return "aioflamingock: nothing to do: no change is declared, or the engine is disabled"
    if not applied:
        return f"aioflamingock: nothing pending ({len(report.changes)} change(s) applied already), checked in {took}"
    named = ", ".join(applied[:_NAMED_AT_MOST]) + (
        f" and {len(applied) - _NAMED_AT_MOST} more" if len(applied) > _NAMED_AT_MOST else ""
    )
    return f"aioflamingock: {len(applied)} change(s) applied in {took}: {named}"


def announce(line: str) -> None:
    """`line` at INFO on the library's logger and, when the application's logging would not show that (no handler
    of its own, or a level above INFO: an ASGI server's default configuration), on the server's logger beside its
    own start-up lines."""
    logger.info(line)
    if logger.hasHandlers() and logger.isEnabledFor(logging.INFO):
        return
    for name in _SERVER_LOGGERS:
        server = logging.getLogger(name)
        if server.hasHandlers() and server.isEnabledFor(logging.INFO):
            server.info(line)
            return


def _describe(error: BaseException) -> str:
    message = redact(str(error))
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


class Startup:
    """Runs a `Flamingock` when an application starts and remembers how it went.

    Blocking (`background=False`): the run completes before the application serves; its error propagates and
    stops the start-up. Background: the run is a task and the application serves at once; a failure is logged and
    keeps the status at `FAILED`; at shutdown an unfinished run is cancelled (the engine releases its lock).
    """

    def __init__(self, fl: Flamingock, *, background: bool = False) -> None:
        if not isinstance(fl, Flamingock):
            raise TypeError(f"expected a Flamingock, got {type(fl).__name__}: pass the engine itself, not `fl.run()`")
        self.flamingock = fl
        self.background = background
        self.status = StartupStatus.PENDING
        self.report: RunReport | None = None
        """The run's report: set when it succeeded, and when it failed with a `RunError` or `LockLostError`."""
        self.error: BaseException | None = None
        """Why the run failed, once `status` is `FAILED`."""
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """`True` once every change is applied."""
        return self.status is StartupStatus.READY

    def readiness_body(self) -> tuple[int, dict[str, str]]:
        """The HTTP status code and JSON body a readiness probe answers: 200 when ready, 503 otherwise."""
        body = {"status": self.status.value}
        if self.error is not None:
            body["error"] = _describe(self.error)
        return (200 if self.ready else 503), body

    async def _run(self) -> None:
        self.status, self.report, self.error = StartupStatus.APPLYING, None, None
        try:
            self.report = await self.flamingock.run()
        except BaseException as exc:  # cancellation too: a run stopped at shutdown did not finish
            self.status, self.error = StartupStatus.FAILED, exc
            if isinstance(exc, RunError | LockLostError):
                self.report = exc.report
            raise
        self.status = StartupStatus.READY
        announce(summary_line(self.report))

    async def _run_in_background(self) -> None:
        try:
            await self._run()
        except Exception as exc:  # the application keeps serving; readiness says "failed"
            logger.error(
                "aioflamingock: the changes were not applied, readiness answers 503 until a restart applies them: %s",
                _describe(exc),
                exc_info=exc,
            )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the changes (or start running them, in the background) on entry; on exit, cancel and await an
        unfinished background run."""
        if not self.background:
            await self._run()
            yield
            return
        self._task = asyncio.create_task(self._run_in_background(), name="aioflamingock start-up run")
        try:
            yield
        finally:
            await self._stop()

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        # `wait`, not `await task`: the task's cancellation is not ours to re-raise, while our own still is.
        await asyncio.wait([task])
