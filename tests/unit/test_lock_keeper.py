"""The lock keeper on its own, against a scripted lock: each branch of acquiring and renewing — a holder that
goes away, a store that is busy, a renewal that fails once, one that reports the lock lost, one that never
answers — with what the body sees and what is released."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import anyio
import pytest

from aioflamingock import (
    Fence,
    Lock,
    LockAcquisitionTimeoutError,
    LockInfo,
    LockLease,
    LockLostError,
    LockOptions,
    Remedy,
    StoreUnavailableError,
)
from aioflamingock._lock import LockKeeper

LEASE = 0.6  # renewed every 0.2 s
OPTIONS = LockOptions(lease_seconds=LEASE, acquire_timeout_seconds=2, retry_interval_seconds=0.05)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


class ScriptedLock(Lock):
    """`acquires` and `renewals` say what each call does, in turn; the last step repeats."""

    def __init__(self, *, acquires: list[str] | None = None, renewals: list[str] | None = None) -> None:
        self.acquires, self.renewals = iter(acquires or ["ok"]), iter(renewals or ["ok"])
        self.last_acquire, self.last_renewal = "ok", "ok"
        self.calls: list[str] = []
        self.holder = LockInfo("default", "other/1/x", 7, NOW, NOW, 0.05)

    @staticmethod
    def _next(steps: Iterator[str], last: str) -> str:
        return next(steps, last)

    async def try_acquire(self, key: str, owner: str, lease_seconds: float) -> LockLease | None:
        self.last_acquire = step = self._next(self.acquires, self.last_acquire)
        self.calls.append(f"acquire:{step}")
        if step == "busy":
            raise StoreUnavailableError("the store is busy")
        if step == "held":
            return None
        return LockLease(key, owner, 1)

    async def renew(self, lease: LockLease, lease_seconds: float) -> LockLease:
        self.last_renewal = step = self._next(self.renewals, self.last_renewal)
        self.calls.append(f"renew:{step}")
        if step == "transient":
            raise StoreUnavailableError("the store did not answer")
        if step == "lost":
            raise LockLostError("lock 'default' is held by someone else")
        if step == "hang":
            await anyio.sleep_forever()
        return lease

    async def release(self, lease: LockLease) -> bool:
        self.calls.append("release")
        return True

    async def read(self, key: str) -> LockInfo | None:
        self.calls.append("read")
        return self.holder

    async def force_release(self, key: str) -> bool:
        return True


def keeper(lock: Lock, options: LockOptions = OPTIONS) -> LockKeeper:
    return LockKeeper(lock, key="default", owner="me/1/y", options=options)


class Body:
    """The work done under the lock: it takes `seconds`, and notes whether it finished or was cancelled."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.finished, self.cancelled = seconds, False, False

    async def __call__(self, fence: Fence) -> str:
        try:
            await anyio.sleep(self.seconds)
        except anyio.get_cancelled_exc_class():
            self.cancelled = True
            raise
        self.finished = True
        return "done"


async def test_a_renewal_that_fails_once_is_retried_and_the_work_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    lock = ScriptedLock(renewals=["transient", "ok"])
    body = Body(LEASE * 1.5)
    with caplog.at_level(logging.WARNING, logger="aioflamingock"):
        assert await keeper(lock).run_holding(body) == "done"
    assert body.finished and "renew:transient" in lock.calls and "renew:ok" in lock.calls
    assert lock.calls[-1] == "release"
    assert any("renewal failed, will retry" in r.getMessage() for r in caplog.records)


async def test_a_renewal_that_finds_the_lock_taken_cancels_the_work_and_releases_nothing() -> None:
    lock = ScriptedLock(renewals=["lost"])
    body = Body(30)
    with anyio.fail_after(10), pytest.raises(LockLostError, match="held by someone else"):
        await keeper(lock).run_holding(body)
    assert body.cancelled and not body.finished
    assert "release" not in lock.calls  # the record is not ours any more


async def test_a_renewal_that_never_answers_ends_the_work_when_the_lease_would_end() -> None:
    lock = ScriptedLock(renewals=["hang"])
    body = Body(30)
    with anyio.fail_after(10), pytest.raises(LockLostError, match="no renewal was confirmed before our lease ended"):
        await keeper(lock).run_holding(body)
    assert body.cancelled and "release" not in lock.calls


async def test_renewals_that_keep_failing_end_the_work_once_the_lease_is_over() -> None:
    lock = ScriptedLock(renewals=["transient"])
    body = Body(30)
    with anyio.fail_after(10), pytest.raises(LockLostError) as caught:
        await keeper(lock).run_holding(body)
    assert isinstance(caught.value.__cause__, StoreUnavailableError)
    assert body.cancelled and lock.calls.count("renew:transient") >= 2


async def test_acquire_waits_for_a_holder_and_a_busy_store_then_takes_the_lock() -> None:
    lock = ScriptedLock(acquires=["held", "busy", "held", "ok"])
    lease = await keeper(lock).acquire()
    assert lease.owner == "me/1/y"
    assert lock.calls == ["acquire:held", "read", "acquire:busy", "acquire:held", "read", "acquire:ok"]


async def test_acquire_gives_up_after_its_timeout_naming_the_holder_and_the_way_out() -> None:
    lock = ScriptedLock(acquires=["held"])
    options = LockOptions(lease_seconds=LEASE, acquire_timeout_seconds=0.3, retry_interval_seconds=0.05)
    with anyio.fail_after(10), pytest.raises(LockAcquisitionTimeoutError) as caught:
        await keeper(lock, options).acquire()
    assert "other/1/x" in str(caught.value) and caught.value.remedy == Remedy.force_unlock()


async def test_the_lease_check_before_an_unfenced_commit_refuses_once_the_lease_may_have_ended() -> None:
    lock = ScriptedLock()
    holder = keeper(lock)
    await holder.acquire()
    holder.check_lease()  # just acquired: fine
    await anyio.sleep(LEASE)  # no renewal ran meanwhile (nothing is holding the lock in a task group)
    with pytest.raises(LockLostError, match="not committing"):
        holder.check_lease()
