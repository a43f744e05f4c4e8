"""What a backend uses at its driver's boundary: one table that translates the driver's exceptions into ours, and
one way to try again while a failure is transient (growing pauses, a deadline)."""

from __future__ import annotations

import importlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import TypeVar

import anyio

from ._errors import StoreError
from ._redact import redact

__all__ = ["Backoff", "ErrorRule", "ErrorTable", "import_driver", "named", "retrying"]

T = TypeVar("T")


def import_driver(module: str, *, backend: str, driver: str) -> ModuleType:
    """`module` of a backend's driver, imported when first needed (importing a backend imports no driver), or an
    `ImportError` that says which extra installs it: `pip install "aioflamingock[<backend>]"`."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f'aioflamingock.{backend} needs {driver}: pip install "aioflamingock[{backend}]"') from exc


def named(*names: str) -> Callable[[BaseException], bool]:
    """Matches an exception whose class, or one of its bases, has one of `names`: for drivers whose exception
    classes are imported lazily, or only known by name."""
    wanted = frozenset(names)
    return lambda exc: any(cls.__name__ in wanted for cls in type(exc).__mro__)


@dataclass(frozen=True)
class ErrorRule:
    """One row of a driver's error table: an exception `matches`, and becomes `raised_as`, with `note` said after
    the driver's message."""

    matches: Callable[[BaseException], bool]
    raised_as: type[StoreError]
    note: str | None = None


class ErrorTable:
    """A driver's exceptions, translated at one boundary. The first rule that matches decides; anything else the
    driver raises is a `StoreError`. Every message says which driver failed while doing what, and is redacted (a
    driver's message can quote the address and credentials it was given).

    ```python
    ERRORS = ErrorTable("SQLite", lambda: (sqlite3.Error,), [ErrorRule(is_busy, StoreUnavailableError)])
    with ERRORS.boundary("reading the audit"):
        ...
    ```
    """

    def __init__(
        self,
        driver: str,
        handles: Callable[[], tuple[type[BaseException], ...]],
        rules: Sequence[ErrorRule],
    ) -> None:
        self.driver = driver
        self.handles = handles
        """The driver's exception classes (a function: drivers are imported lazily)."""
        self.rules = tuple(rules)

    def translate(self, exc: BaseException, what: str) -> StoreError:
        """Our exception for `exc`; the caller raises it `from exc`."""
        message = f"{self.driver} failed while {what}: {type(exc).__name__}: {exc}"
        for rule in self.rules:
            if rule.matches(exc):
                return rule.raised_as(redact(f"{message} ({rule.note})" if rule.note else message))
        return StoreError(redact(message))

    @contextmanager
    def boundary(self, what: str) -> Iterator[None]:
        """Translate what the driver raises inside the block; anything else passes through."""
        try:
            yield
        except self.handles() as exc:
            raise self.translate(exc, what) from exc


class Backoff:
    """Growing, jittered pauses until a deadline: `first` seconds, doubling up to `most`."""

    def __init__(self, seconds: float, *, first: float = 0.05, most: float = 1.0) -> None:
        self._deadline = time.monotonic() + seconds
        self._pause = first
        self._most = most

    async def wait(self) -> bool:
        """Sleep before the next attempt; False (without sleeping) when the deadline would be passed."""
        pause = random.uniform(self._pause / 2, self._pause)
        if time.monotonic() + pause > self._deadline:
            return False
        await anyio.sleep(pause)
        self._pause = min(self._pause * 2, self._most)
        return True


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    seconds: float,
    transient: Callable[[Exception], bool],
    again: Callable[[Exception], None] | None = None,
    attempts: int | None = None,
) -> T:
    """`await operation()`, again while it fails with an exception `transient` accepts, with growing pauses, for up
    to `seconds` (and at most `attempts` times, if given); then that exception is raised. `again(exc)` is told of
    each failure that is tried again (to log it)."""
    backoff = Backoff(seconds)
    tried = 0
    while True:
        tried += 1
        try:
            return await operation()
        except Exception as exc:
            if not transient(exc) or tried == attempts or not await backoff.wait():
                raise
            if again is not None:
                again(exc)
