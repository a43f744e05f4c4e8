"""A target system of your own that hands its changes a typed context, instead of `ctx["name"]` lookups.

    python examples/changes_typed_context.py [DATA_DIR]     # default: a new temporary directory

The search service is the stand-in from `myapp.search`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from myapp.search import SearchClient

from aioflamingock import Change, Flamingock, NonTransactionalTargetSystem
from aioflamingock.memory import InMemoryAuditStore


# --8<-- [start:typed]
@dataclass(frozen=True)
class SearchContext:
    client: SearchClient


class SearchTarget(NonTransactionalTargetSystem):
    def __init__(self, id: str, *, client: SearchClient) -> None:
        super().__init__(id)
        self.client = client

    @asynccontextmanager
    async def context(self) -> AsyncIterator[SearchContext]:
        yield SearchContext(self.client)


class CreateSynonymsIndex(Change):
    id = "create-synonyms-index"
    author = "bob"
    target_system = "search"
    order = "0001"

    async def execute(self, ctx: SearchContext) -> None:
        await ctx.client.indices.create(index="synonyms", settings={"synonyms": ["user, account"]})
        # --8<-- [end:typed]


async def main(data_dir: Path) -> None:
    client = SearchClient(data_dir / "search.json")
    fl = Flamingock(
        audit_store=InMemoryAuditStore(),
        target_systems=[SearchTarget("search", client=client)],
        changes=[CreateSynonymsIndex],
    )
    report = await fl.run()
    print(report.status.value, report.applied)
    print("indices:", await client.read())


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))
