"""What a human can do about a problem, as data: the engine says what, on which change, with which resolutions;
each surface words it its own way (the command line as a command, a readiness endpoint as JSON, exceptions and
log records in the library's words, which name the Python call)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["Remedy", "RemedyAction"]

RESOLUTIONS = ("applied", "rolled-back")


class RemedyAction(enum.StrEnum):
    """What a `Remedy` asks for."""

    FIX = "fix"
    """Check the data, then record what happened to `change_id`: `Flamingock.fix(change_id, resolution)` with one
    of `resolutions`."""
    FORCE_UNLOCK = "force-unlock"
    """If the lock's holder is gone (never while it runs), free the lock: `Flamingock.force_unlock()`."""


@dataclass(frozen=True, slots=True)
class Remedy:
    """What to do about a problem. `str()` gives the library's words; `to_dict()` the JSON a readiness endpoint
    or `--json` shows; the command line words it as a command."""

    action: RemedyAction
    change_id: str | None = None
    resolutions: tuple[str, ...] = ()

    @classmethod
    def fix(cls, change_id: str) -> Remedy:
        return cls(RemedyAction.FIX, change_id, RESOLUTIONS)

    @classmethod
    def force_unlock(cls) -> Remedy:
        return cls(RemedyAction.FORCE_UNLOCK)

    def __str__(self) -> str:
        if self.action is RemedyAction.FIX:
            choices = " or ".join(repr(r) for r in self.resolutions)
            return f"check the data, then record what happened: fix({self.change_id!r}, {choices})"
        return "if its holder is gone, free the lock: force_unlock()"

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action.value, "changeId": self.change_id, "resolutions": list(self.resolutions)}
