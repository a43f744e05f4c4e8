"""The audit log as key-value documents: a head document and one document per entry.

| document | key | body |
|---|---|---|
| head | `flamingockAuditHead` | `seq`, `states`, `lastChangeId`, `holders` (below) |
| entry | `flamingockAudit::<seq>` | the entry, with Flamingock's field names, and its `seq` |

The head holds `seq` (entries so far), `states` (the newest entry of each change), `lastChangeId` and `holders`
(per lock key, the owner and token that last claimed the log). It is the commit point: an append is one replace
of the head with compare-and-swap (CAS), then the write of the entry's own document. So the current state of
every change is one `get`, whatever the size of the audit, and two appenders can never both take one sequence
number. A crash between the two writes leaves the entry in the head but not in the history; the next append writes
it again (an `insert`, ignored when it is there).

The head also fences: a new lock holder claims it (a CAS write of its owner and token) before it reads any state,
and an append lands only if the head still names its writer. See `CouchbaseAuditStore` for what that guarantees.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .._errors import LockLostError, StoreUnavailableError
from .._model import AuditEntry, Fence
from ._kv import Doc, Keyspace

__all__ = ["HEAD_KEY", "AuditLog", "Head", "entry_key"]

logger = logging.getLogger(__name__)

HEAD_KEY = "flamingockAuditHead"
_ENTRY_PREFIX = "flamingockAudit::"
_CAS_ATTEMPTS = 50
"""Replaces of the head lost to another writer before giving up: only appenders of other lock keys and a new
holder's claim ever compete for it."""
_READ_AHEAD = 64
"""Entry documents read at once by `history()`."""


def entry_key(seq: int) -> str:
    return f"{_ENTRY_PREFIX}{seq}"


def _document(entry: AuditEntry, seq: int) -> dict[str, Any]:
    return {**entry.to_document(), "seq": seq}


def _entry(document: dict[str, Any]) -> AuditEntry:
    return AuditEntry.from_document({k: v for k, v in document.items() if k != "seq"})


@dataclass
class Head:
    seq: int = 0
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_change_id: str | None = None
    holders: dict[str, dict[str, Any]] = field(default_factory=dict)
    cas: int | None = None

    @classmethod
    def read(cls, doc: Doc | None) -> Head:
        if doc is None:
            return cls()
        body = doc.body
        return cls(int(body["seq"]), dict(body["states"]), body.get("lastChangeId"), dict(body["holders"]), doc.cas)

    def body(self) -> dict[str, Any]:
        return {"seq": self.seq, "states": self.states, "lastChangeId": self.last_change_id, "holders": self.holders}

    def holder_token(self, key: str) -> int:
        return int(self.holders.get(key, {}).get("token", 0))

    def held_by(self, fence: Fence) -> bool:
        return self.holders.get(fence.key) == {"owner": fence.owner, "token": fence.token}

    def last_document(self) -> dict[str, Any] | None:
        return None if self.last_change_id is None else self.states.get(self.last_change_id)


class AuditLog:
    def __init__(self, keyspace: Keyspace) -> None:
        self.keyspace = keyspace

    async def head(self) -> Head:
        return Head.read(await self.keyspace.get(HEAD_KEY))

    async def _write(self, head: Head) -> bool:
        """The head written over the version read (or created): False if another writer came between."""
        if head.cas is None:
            return await self.keyspace.insert(HEAD_KEY, head.body()) is not None
        return await self.keyspace.replace(HEAD_KEY, head.body(), head.cas) is not None

    async def claim(self, fence: Fence) -> bool:
        """Name `fence` as the log's writer for its key. False if a newer holder already did."""
        for _ in range(_CAS_ATTEMPTS):
            head = await self.head()
            if head.holder_token(fence.key) > fence.token:
                return False
            head.holders[fence.key] = {"owner": fence.owner, "token": fence.token}
            if await self._write(head):
                return True
        raise StoreUnavailableError(f"could not claim the audit log: {_CAS_ATTEMPTS} writers came first")

    async def append(self, entry: AuditEntry, fence: Fence, check_lock: Callable[[], Awaitable[None]]) -> None:
        """The entry at the next sequence number, only if the head names `fence` and `check_lock()` passes."""
        for _ in range(_CAS_ATTEMPTS):
            head, _checked = await asyncio.gather(self.head(), check_lock())
            if not head.held_by(fence):
                what = f"{entry.state.value} of {entry.change_id!r} not recorded"
                raise LockLostError(f"{what}: the audit log was claimed by a newer holder of lock {fence.key!r}")
            previous = (head.seq, head.last_document())
            head, _ = self.next_head(head, entry)
            if await self._write(head):
                await self._write_entry(head, previous)
                return
        raise StoreUnavailableError(f"could not append to the audit log: {_CAS_ATTEMPTS} writers came first")

    async def _write_entry(self, head: Head, previous: tuple[int, dict[str, Any] | None]) -> None:
        seq, document = previous
        writes: list[Awaitable[object]] = [
            self.keyspace.upsert(entry_key(head.seq), head.states[head.last_change_id or ""])
        ]
        if document is not None:
            writes.append(self.keyspace.insert(entry_key(seq), document))  # fills in a crash's gap, else a no-op
        await asyncio.gather(*writes)

    def next_head(self, head: Head, entry: AuditEntry) -> tuple[Head, dict[str, Any]]:
        """The head with `entry` appended, and the entry's document (for a transaction's own writes)."""
        head.seq += 1
        document = _document(entry, head.seq)
        head.states[entry.change_id] = document
        head.last_change_id = entry.change_id
        return head, document

    async def current_states(self, change_ids: Iterable[str] | None = None) -> dict[str, AuditEntry]:
        wanted = None if change_ids is None else set(change_ids)
        states = (await self.head()).states
        return {k: _entry(v) for k, v in states.items() if wanted is None or k in wanted}

    async def history(self) -> AsyncIterator[AuditEntry]:
        head = await self.head()
        for first in range(1, head.seq + 1, _READ_AHEAD):
            seqs = range(first, min(first + _READ_AHEAD, head.seq + 1))
            docs = await asyncio.gather(*(self.keyspace.get(entry_key(seq)) for seq in seqs))
            for seq, doc in zip(seqs, docs, strict=True):
                document = doc.body if doc is not None else self._lost(head, seq)
                if document is not None:
                    yield _entry(document)

    @staticmethod
    def _lost(head: Head, seq: int) -> dict[str, Any] | None:
        """An entry whose document a crash kept from being written: the newest is still in the head."""
        last = head.last_document()
        if seq == head.seq and last is not None:
            return last
        logger.warning("audit entry %d is missing from the history: two appends in a row crashed", seq)
        return None
