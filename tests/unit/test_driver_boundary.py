"""What `aioflamingock.backend` gives every driver: one error table and one retry helper."""

from __future__ import annotations

import time

import pytest

from aioflamingock.backend import (
    ErrorRule,
    ErrorTable,
    StoreError,
    StoreUnavailableError,
    TransactionAbortedError,
    named,
    retrying,
)


class DriverError(Exception):
    pass


class Busy(DriverError):
    pass


class Refused(ConnectionRefusedError):
    pass


TABLE = ErrorTable(
    "Demo",
    lambda: (DriverError, ConnectionError),
    [
        ErrorRule(named("Busy"), TransactionAbortedError, "another writer"),
        ErrorRule(lambda exc: isinstance(exc, ConnectionError), StoreUnavailableError),
    ],
)


def test_the_first_matching_rule_decides_and_the_message_says_which_driver_failed_doing_what() -> None:
    busy = TABLE.translate(Busy("locked"), "writing the audit")
    assert type(busy) is TransactionAbortedError
    assert str(busy) == "Demo failed while writing the audit: Busy: locked (another writer)"
    assert type(TABLE.translate(Refused("no"), "opening")) is StoreUnavailableError
    other = TABLE.translate(DriverError("odd"), "reading")
    assert type(other) is StoreError and str(other) == "Demo failed while reading: DriverError: odd"


def test_the_boundary_translates_the_drivers_errors_redacted_and_lets_others_through() -> None:
    with pytest.raises(StoreUnavailableError) as caught, TABLE.boundary("connecting"):
        raise Refused("mongodb://app:s3cret@db.example:27017 refused")
    assert "s3cret" not in str(caught.value)
    assert isinstance(caught.value.__cause__, Refused)
    with pytest.raises(KeyError), TABLE.boundary("reading"):
        raise KeyError("not the driver's")


async def test_retrying_runs_again_while_transient_and_tells_of_each_failure() -> None:
    failures: list[Exception] = [Busy("1"), Busy("2")]
    told: list[Exception] = []

    async def operation() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    result = await retrying(operation, seconds=5, transient=lambda e: isinstance(e, Busy), again=told.append)
    assert (result, [str(e) for e in told]) == ("done", ["1", "2"])


async def test_retrying_stops_at_the_deadline_at_the_attempts_or_at_once_for_what_is_not_transient() -> None:
    calls = 0

    async def always_busy() -> None:
        nonlocal calls
        calls += 1
        raise Busy(str(calls))

    started = time.monotonic()
    with pytest.raises(Busy):
        await retrying(always_busy, seconds=0.3, transient=lambda e: True)
    assert 0.1 < time.monotonic() - started < 1.5 and calls > 1

    calls = 0
    with pytest.raises(Busy, match=r"^3$"):
        await retrying(always_busy, seconds=60, transient=lambda e: True, attempts=3)
    assert calls == 3

    calls = 0
    with pytest.raises(Busy, match=r"^1$"):
        await retrying(always_busy, seconds=60, transient=lambda e: False)
    assert calls == 1
