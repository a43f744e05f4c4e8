"""Holding the distributed lock: acquire with polling, renew in the background, cancel the work when it is lost."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio

from ._errors import LockAcquisitionTimeoutError, LockLostError, StoreUnavailableError
from ._interfaces import Lock
from ._model import Fence, LockInfo, LockLease
from ._redact import library_logger, redact
from ._remedy import Remedy

if TYPE_CHECKING:
    from ._options import LockOptions

__all__ = ["LockKeeper"]

logger = library_logger(__name__)

T = TypeVar("T")

_MIN_SLEEP = 0.01
_COMMIT_MARGIN_SECONDS = 1.0


class LockKeeper:
    """Runs a body of work while holding the lock `key` as `owner`.

    The lease is renewed every `lease / 3`. Renewal that finds the record gone or taken, or that cannot reach the
    store before our lease would end, cancels the body and makes `run_holding` raise `LockLostError`. Release
    is shielded from cancellation and happens on every exit.
    """

    def __init__(self, lock: Lock, *, key: str, owner: str, options: LockOptions) -> None:
        self._lock = lock
        self._key = key
        self._owner = owner
        self._options = options
        self._lease: LockLease | None = None
        self._valid_until = 0.0
        self._lost: BaseException | None = None

    async def acquire(self) -> LockLease:
        """Take the lock, waiting for another holder's lease to end, up to `acquire_timeout_seconds`."""
        deadline = time.monotonic() + self._options.acquire_timeout_seconds
        while True:
            sent = time.monotonic()
            lease, holder = await self._attempt()
            if lease is not None:
                self._lease, self._valid_until = lease, sent + self._options.lease_seconds
                return lease
            left = deadline - time.monotonic()
            if left <= 0:
                remedy = None if holder is None else Remedy.force_unlock()
                raise LockAcquisitionTimeoutError(self._timeout_message(holder), remedy=remedy)
            wait = min(self._options.retry_interval_seconds, left)
            if holder is not None:
                wait = min(wait, max(holder.remaining_seconds, 0.0))
            await anyio.sleep(max(wait, _MIN_SLEEP))

    async def _attempt(self) -> tuple[LockLease | None, LockInfo | None]:
        try:
            lease = await self._lock.try_acquire(self._key, self._owner, self._options.lease_seconds)
            if lease is not None:
                return lease, None
            return None, await self._lock.read(self._key)
        except StoreUnavailableError as exc:  # the store being busy or away is a reason to wait, not to give up
            logger.warning("lock %r: attempt to acquire failed, will retry: %s", self._key, redact(str(exc)))
            return None, None

    def _timeout_message(self, holder: LockInfo | None) -> str:
        seconds = self._options.acquire_timeout_seconds
        if holder is None:
            return f"could not acquire lock {self._key!r} within {seconds:g}s"
        return (
            f"could not acquire lock {self._key!r} within {seconds:g}s: held by {holder.owner!r} "
            f"(lease ends in {holder.remaining_seconds:.1f}s): wait for its lease to end"
        )

    def check_lease(self) -> None:
        """Raise `LockLostError` unless our lease is known to last a little longer.

        Called just before an unfenced commit (the marker path), so that a process that was paused or starved
        past its lease never commits: the renewal task may not have run yet to notice."""
        margin = min(_COMMIT_MARGIN_SECONDS, self._options.lease_seconds / 10)
        if self._lost is not None or time.monotonic() >= self._valid_until - margin:
            raise LockLostError(f"lock {self._key!r}: our lease may have ended; not committing")

    async def run_holding(self, body: Callable[[Fence], Awaitable[T]]) -> T:
        """Acquire, run `body(fence)` while renewing, release. Raises `LockLostError` if the lease was lost."""
        lease = await self.acquire()
        logger.debug("lock %r acquired by %s (token %d)", self._key, self._owner, lease.token)
        outcome: list[T] = []
        error: Exception | None = None
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._renew_forever, tg.cancel_scope)
                try:
                    outcome.append(await body(lease.fence))
                except Exception as exc:
                    error = exc
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._release()
        if self._lost is not None:
            lost = LockLostError(f"lost lock {self._key!r}: {self._lost}; the run stopped and recorded nothing more")
            raise lost from error if error is not None else self._lost
        if error is not None:
            raise error
        return outcome[0]

    async def _renew_forever(self, scope: anyio.CancelScope) -> None:
        interval = self._options.lease_seconds / 3
        while True:
            await anyio.sleep(max(min(interval, self._valid_until - time.monotonic()), _MIN_SLEEP))
            problem = await self._renew_once()
            if problem is not None:
                self._lost = problem
                logger.error("lock %r lost; cancelling the running change: %s", self._key, redact(str(problem)))
                scope.cancel()
                return

    async def _renew_once(self) -> BaseException | None:
        """Renew; return why the lock must be taken as lost, or None."""
        assert self._lease is not None
        sent = time.monotonic()
        with anyio.move_on_after(max(self._valid_until - sent, _MIN_SLEEP)):
            try:
                self._lease = await self._lock.renew(self._lease, self._options.lease_seconds)
            except LockLostError as exc:
                return exc
            except Exception as exc:  # transient: retry until our lease would have ended
                logger.warning("lock %r: renewal failed, will retry: %s", self._key, redact(str(exc)))
                if time.monotonic() >= self._valid_until:
                    return exc
                return None
            self._valid_until = sent + self._options.lease_seconds
            return None
        return TimeoutError(
            "no renewal was confirmed before our lease ended (what is known: no answer came in time; the store may "
            "be slow or unreachable, or this process may have been paused past its lease)"
        )

    async def _release(self) -> None:
        if self._lease is None or self._lost is not None:
            return
        try:
            if not await self._lock.release(self._lease):
                logger.warning("lock %r was no longer ours at release", self._key)
        except Exception as exc:  # the lease will expire by itself; don't hide the run's own outcome
            logger.warning("lock %r: release failed (it expires by itself): %s", self._key, redact(str(exc)))
        self._lease = None
