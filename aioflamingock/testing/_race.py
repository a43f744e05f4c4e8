"""A worker process for the multi-process lock race of the conformance suite.

`python -m aioflamingock.testing._race module:factory KEY NAME ROUNDS [factory args...]`: open the store the
factory returns, then ROUNDS times: take the lock, append STARTED and APPLIED entries for NAME, release.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import uuid

from .. import AuditState, AuditStore
from ._suite import make_entry

__all__: list[str] = []


async def _main(factory: str, key: str, name: str, rounds: int, args: list[str]) -> None:
    module, _, attr = factory.partition(":")
    store: AuditStore = getattr(importlib.import_module(module), attr)(*args)
    owner = f"{name}-{uuid.uuid4().hex[:8]}"
    async with store:
        for _ in range(rounds):
            lease = None
            while lease is None:
                try:
                    lease = await store.lock.try_acquire(key, owner, 30)
                except Exception:  # busy under contention: try again
                    lease = None
                if lease is None:
                    await asyncio.sleep(0.05)
            await store.append(make_entry(name, AuditState.STARTED), fence=lease.fence)
            await asyncio.sleep(0.01)
            await store.append(make_entry(name, AuditState.APPLIED), fence=lease.fence)
            assert await store.lock.release(lease)


if __name__ == "__main__":
    f, k, n, r, *rest = sys.argv[1:]
    asyncio.run(_main(f, k, n, int(r), rest))
