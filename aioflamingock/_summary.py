"""A summary of the audit small enough to read at every start-up: how many change ids are applied, and an
order-independent digest of which. A run whose declared changes match it has nothing to do, whatever the size of
the history; a store that keeps one says so through `AuditStore.applied_summary()`."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ._model import AuditEntry, AuditState

__all__ = ["APPLIED_STATES", "AppliedSummary", "summarize", "summary_of"]

APPLIED_STATES = frozenset({AuditState.APPLIED, AuditState.MANUAL_MARKED_AS_APPLIED})
"""The current states a run skips whatever the change's recovery (the resolver's SKIP)."""


@dataclass(frozen=True, slots=True)
class AppliedSummary:
    """`count` change ids whose current state is in `APPLIED_STATES`; `digest`, the XOR of the 128-bit BLAKE2b of
    each of those ids (UTF-8), in hex: equal for equal sets, whatever the order."""

    count: int
    digest: str

    def covers_exactly(self, change_ids: Iterable[str]) -> bool:
        """Whether the applied ids are exactly `change_ids` (so a run of those has nothing pending)."""
        return summarize(change_ids) == self


def summarize(change_ids: Iterable[str]) -> AppliedSummary:
    """The summary of a set of applied ids (a repeated id counts once)."""
    ids = set(change_ids)
    digest = 0
    for change_id in ids:
        digest ^= int.from_bytes(hashlib.blake2b(change_id.encode(), digest_size=16).digest(), "big")
    return AppliedSummary(len(ids), f"{digest:032x}")


def summary_of(current: Mapping[str, AuditEntry]) -> AppliedSummary:
    """The summary of a store's current states (every change's newest entry, by id)."""
    return summarize(change_id for change_id, entry in current.items() if entry.state in APPLIED_STATES)
