"""A summary of the audit small enough to read at every start-up: how many change ids are applied, and a digest
of which, independent of their order. A run whose declared changes match it has nothing to do, whatever the size of
the history; a store that keeps one says so through `AuditStore.applied_summary()`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._model import AuditState

if TYPE_CHECKING:
    from ._entry import AuditEntry

__all__ = ["APPLIED_STATES", "AppliedSummary", "summarize", "summary_of"]

APPLIED_STATES = frozenset({AuditState.APPLIED, AuditState.MANUAL_MARKED_AS_APPLIED})
"""The current states a run skips whatever the change's recovery (the resolver's SKIP)."""


@dataclass(frozen=True, slots=True)
class AppliedSummary:
    """`count` change ids whose current state is in `APPLIED_STATES`; `digest`, the 128-bit BLAKE2b, in hex, of those
    ids sorted and joined by newlines (UTF-8): equal for equal sets, whatever the order. (Declared ids hold no
    newline, so with the count no other set of ids can join to the same text.)"""

    count: int
    digest: str

    def covers_exactly(self, change_ids: Iterable[str]) -> bool:
        """Whether the applied ids are exactly `change_ids` (so a run of those has nothing pending)."""
        return summarize(change_ids) == self


def summarize(change_ids: Iterable[str]) -> AppliedSummary:
    """The summary of a set of applied ids (a repeated id counts once). About a microsecond an id, in C."""
    ids = sorted(set(change_ids))
    return AppliedSummary(len(ids), hashlib.blake2b("\n".join(ids).encode(), digest_size=16).hexdigest())


def summary_of(current: Mapping[str, AuditEntry]) -> AppliedSummary:
    """The summary of a store's current states (every change's newest entry, by id)."""
    return summarize(change_id for change_id, entry in current.items() if entry.state in APPLIED_STATES)
