"""The audit log as key-value documents: a head document and one document per entry.

| document | key | body |
|---|---|---|
| head | `flamingockAuditHead` | `seq`, `states`, `last`, `holders`, `summary` (below) |
| entry | `flamingockAudit::<seq>` | the entry, with Flamingock's field names, and its `seq` |

The head holds `seq` (entries so far), `states` (the newest entry of each change), `last` (the newest entry of all),
`holders` (per lock key, the owner and token that last claimed the log) and `summary` (how many changes are
applied, a digest of which, and the `seq` it was computed at: a start-up reads only it and `seq`). It is the commit
point: an append is one sub-document write to the head with compare-and-swap (CAS) — `seq`, `states.<change id>`
and `last`, nothing else of it — then the write of the entry's own document. So the current state of every change
is one `get`, whatever the size of the audit; an append moves one entry's worth of bytes, whatever the size of the
head; and two appenders can never both take one sequence number. A crash between the two writes leaves the entry in
the head but not in the history; the next append writes it again (an `insert` of `last`, ignored when it is
there).

The head also fences: a new lock holder claims it (a CAS write of its owner and token) before it reads any state,
and an append lands only if the head still names its writer. See `CouchbaseAuditStore` for what that guarantees.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING, Any

from ..backend import (
    AppliedSummary,
    CorruptAuditError,
    Fence,
    LockLostError,
    StoreError,
    StoreUnavailableError,
    decode_entry,
    entry_fix,
    library_logger,
    skip_corrupt,
    summary_of,
)
from ._kv import Doc, Keyspace, path

if TYPE_CHECKING:
    from ..backend import AuditEntry

__all__ = ["HEAD_KEY", "AuditLog", "entry_key", "holder", "next_head"]

logger = library_logger(__name__)

HEAD_KEY = "flamingockAuditHead"
_ENTRY_PREFIX = "flamingockAudit::"
_CAS_ATTEMPTS = 50
"""Writes of the head lost to another writer before giving up: only appenders of other lock keys and a new
holder's claim ever compete for it."""
_READ_AHEAD = 64
"""Entry documents read at once by `history()`."""


def entry_key(seq: int) -> str:
    return f"{_ENTRY_PREFIX}{seq}"


def document(entry: AuditEntry, seq: int) -> dict[str, Any]:
    return {**entry.to_document(), "seq": seq}


def _entry(body: object, where: str) -> AuditEntry:
    fix = entry_fix(f"remove it, then the head's `summary`, which cannot see an edit by hand ({HEAD_KEY!r})")
    if not isinstance(body, dict):
        raise CorruptAuditError(where, "the entry", f"is {body!r:.60}, not a JSON object", fix)
    return decode_entry({k: v for k, v in body.items() if k != "seq"}, where=where, fix=fix)


def holder(fence: Fence) -> dict[str, Any]:
    return {"owner": fence.owner, "token": fence.token}


def new_head(fence: Fence) -> dict[str, Any]:
    return {"seq": 0, "states": {}, "last": None, "holders": {fence.key: holder(fence)}}


def next_head(head: dict[str, Any], entry: AuditEntry) -> dict[str, Any]:
    """The whole head with `entry` appended (for a transaction, which writes documents whole)."""
    seq = int(head["seq"]) + 1
    written = document(entry, seq)
    return {**head, "seq": seq, "states": {**head["states"], entry.change_id: written}, "last": written}


def _token(value: Any) -> int:
    return int(value["token"]) if isinstance(value, dict) else 0


class AuditLog:
    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace

    async def holder_token(self, key: str) -> int:
        """The token of the last claim under `key`; 0 if none."""
        found = await self.keyspace.lookup(HEAD_KEY, [path("holders", key)])
        return 0 if found is None else _token(found.values[0])

    async def claim(self, fence: Fence) -> bool:
        """Name `fence` as the log's writer for its key. False if a newer holder already did."""
        for _ in range(_CAS_ATTEMPTS):
            found = await self.keyspace.lookup(HEAD_KEY, [path("holders", fence.key)])
            if found is None:
                if await self.keyspace.insert(HEAD_KEY, new_head(fence)) is not None:
                    return True
                continue
            if _token(found.values[0]) > fence.token:
                return False
            if await self.keyspace.mutate(HEAD_KEY, {path("holders", fence.key): holder(fence)}, found.cas):
                return True
        raise StoreUnavailableError(f"could not claim the audit log: {_CAS_ATTEMPTS} writers came first")

    async def append(self, entry: AuditEntry, fence: Fence, check_lock: Callable[[], Awaitable[None]]) -> None:
        """The entry at the next sequence number, only if the head names `fence` and `check_lock()` passes."""
        what = f"{entry.state.value} of {entry.change_id!r} not recorded"
        for _ in range(_CAS_ATTEMPTS):
            paths = ["seq", path("holders", fence.key), "last"]
            found, _checked = await asyncio.gather(self.keyspace.lookup(HEAD_KEY, paths), check_lock())
            if found is None or found.values[1] != holder(fence):
                raise LockLostError(f"{what}: the audit log was claimed by a newer holder of lock {fence.key!r}")
            seq, last = int(found.values[0]) + 1, found.values[2]
            written = document(entry, seq)
            changes = {"seq": seq, path("states", entry.change_id): written, "last": written}
            if await self.keyspace.mutate(HEAD_KEY, changes, found.cas) is not None:
                await self._write_entries(written, last)
                return
        raise StoreUnavailableError(f"could not append to the audit log: {_CAS_ATTEMPTS} writers came first")

    async def _write_entries(self, written: dict[str, Any], previous: dict[str, Any] | None) -> None:
        writes: list[Awaitable[object]] = [self.keyspace.upsert(entry_key(written["seq"]), written)]
        if previous is not None:
            writes.append(self.keyspace.insert(entry_key(previous["seq"]), previous))  # fills in a crash's gap
        await asyncio.gather(*writes)

    async def current_states(
        self, change_ids: Iterable[str] | None = None, *, head: Doc | None = None
    ) -> dict[str, AuditEntry]:
        wanted = None if change_ids is None else set(change_ids)
        doc = head if head is not None else await self.keyspace.get(HEAD_KEY)
        states = {} if doc is None else doc.body.get("states")
        if not isinstance(states, dict):
            raise StoreError(f"{HEAD_KEY!r} in {self.keyspace} has no states: was it written by something else?")
        return {
            k: _entry(v, f"Couchbase document {HEAD_KEY!r} in {self.keyspace}, states.{k}")
            for k, v in states.items()
            if wanted is None or k in wanted
        }

    async def applied_summary(self) -> AppliedSummary | None:
        """One sub-document lookup of the head: `seq` and `summary`. The summary holds when it was computed at the
        head's `seq`: every append, by any instance or version of this library, moves it."""
        found = await self.keyspace.lookup(HEAD_KEY, ["seq", "summary"])
        if found is None or not isinstance(found.values[1], dict):
            return None
        seq, summary = found.values[0], found.values[1]
        applied, digest = summary.get("applied"), summary.get("digest")
        if summary.get("seq") != seq or not isinstance(applied, int) or not isinstance(digest, str):
            return None
        return AppliedSummary(applied, digest)

    async def refresh_summary(self) -> None:
        """The head read whole, its states summarized, the summary written with compare-and-swap: it lands only if
        nothing was appended (or claimed) since the read."""
        doc = await self.keyspace.get(HEAD_KEY)
        if doc is None:
            return
        summary = summary_of(await self.current_states(head=doc))
        written = {"seq": doc.body.get("seq"), "applied": summary.count, "digest": summary.digest}
        await self.keyspace.mutate(HEAD_KEY, {"summary": written}, doc.cas)

    async def history(self) -> AsyncIterator[AuditEntry]:
        found = await self.keyspace.lookup(HEAD_KEY, ["seq", "last"])
        if found is None:
            return
        count, last = int(found.values[0]), found.values[1]
        for first in range(1, count + 1, _READ_AHEAD):
            seqs = range(first, min(first + _READ_AHEAD, count + 1))
            docs = await asyncio.gather(*(self.keyspace.get(entry_key(seq)) for seq in seqs))
            for seq, doc in zip(seqs, docs, strict=True):
                body = doc.body if doc is not None else self._lost(seq, count, last)
                if body is not None:
                    where = f"Couchbase document {entry_key(seq)!r} in {self.keyspace}"
                    entry = skip_corrupt(partial(_entry, body, where))
                    if entry is not None:
                        yield entry

    @staticmethod
    def _lost(seq: int, count: int, last: dict[str, Any] | None) -> dict[str, Any] | None:
        """An entry whose document a crash kept from being written: the newest is still in the head."""
        if seq == count and last is not None:
            return last
        logger.warning("audit entry %d is missing from the history: two appends in a row crashed", seq)
        return None
