"""`LockOptions`: a pydantic model, imported only when a run needs the lock or the user sets its options."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._errors import ConfigurationError
from ._model import (
    DEFAULT_ACQUIRE_TIMEOUT_SECONDS,
    DEFAULT_LEASE_SECONDS,
    DEFAULT_RETRY_INTERVAL_SECONDS,
    MAX_SECONDS,
    MIN_LEASE_SECONDS,
    first_lower,
)

__all__ = ["LockOptions"]


def _option_problem(owner: str, error: Any) -> str:
    """One pydantic error as a line that names the option, what it got and what it takes."""
    where = ".".join(str(part) for part in error.get("loc", ())) or "options"
    given = error.get("input")
    if error.get("type") == "extra_forbidden":
        return f"{owner}: {where} is not an option (options: {', '.join(LockOptions.model_fields)})"
    return f"{owner}: {where} {first_lower(error.get('msg', 'is invalid'))} (got {given!r})"


class LockOptions(BaseModel):
    """How the distributed lock behaves. Defaults as in Flamingock: a 60 s lease, give up after waiting 180 s,
    try again at least every second. A bad value raises `ConfigurationError` naming the option."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    lease_seconds: float = Field(default=DEFAULT_LEASE_SECONDS, ge=MIN_LEASE_SECONDS, le=MAX_SECONDS)
    """How long a lease lasts without renewal; renewed every `lease_seconds / 3`. From 0.5 s (a renewal needs
    time to reach the store) to a day (a lock nobody renews must end within a day)."""
    acquire_timeout_seconds: float = Field(default=DEFAULT_ACQUIRE_TIMEOUT_SECONDS, ge=0, le=MAX_SECONDS)
    """How long to wait for another instance to release the lock before giving up; at most a day."""
    retry_interval_seconds: float = Field(default=DEFAULT_RETRY_INTERVAL_SECONDS, gt=0, le=MAX_SECONDS)
    """The longest sleep between two attempts to acquire; at most a day."""

    def __init__(self, **options: Any) -> None:
        try:
            super().__init__(**options)
        except ValidationError as exc:
            raise ConfigurationError([_option_problem("LockOptions", error) for error in exc.errors()]) from None
