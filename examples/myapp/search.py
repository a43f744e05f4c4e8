"""A stand-in for a search service's client, with an Elasticsearch-like `indices.create/delete`.

Its state is kept in a JSON file, so that, like a real service's, it outlives the process that changed it.
`available=False` makes every call fail as if the service could not be reached.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio


class IndexExistsError(Exception):
    pass


class Indices:
    def __init__(self, client: SearchClient) -> None:
        self._client = client

    async def create(self, *, index: str, settings: dict[str, Any] | None = None) -> None:
        state = await self._client.read()
        if index in state:
            raise IndexExistsError(f"index {index!r} already exists")
        state[index] = settings or {}
        await self._client.write(state)

    async def delete(self, *, index: str, ignore_unavailable: bool = False) -> None:
        state = await self._client.read()
        if index not in state and not ignore_unavailable:
            raise KeyError(f"no index {index!r}")
        state.pop(index, None)
        await self._client.write(state)


class SearchClient:
    def __init__(self, path: Path, *, available: bool = True) -> None:
        self.path = anyio.Path(path)
        self.available = available
        self.indices = Indices(self)

    async def read(self) -> dict[str, Any]:
        self._check()
        if not await self.path.exists():
            return {}
        result: dict[str, Any] = json.loads(await self.path.read_text())
        return result

    async def write(self, state: dict[str, Any]) -> None:
        self._check()
        await self.path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")

    def _check(self) -> None:
        if not self.available:
            raise ConnectionError(f"search service unreachable (state file {self.path.name})")
