"""No `author`, and `execute` is not `async def`."""

from __future__ import annotations

from typing import Any

from aioflamingock import Change


class B(Change):
    id = "b"
    target_system = "app-db"

    def execute(self, ctx: Any) -> None:  # type: ignore[override]
        pass
