"""How changes are found and checked, without opening anything: a package plus a class passed explicitly, then a
package with mistakes in it.

    python examples/changes_discovery.py
"""

from __future__ import annotations

import os
from pathlib import Path

from myapp.search import SearchClient

from aioflamingock import (
    Change,
    ConfigurationError,
    Flamingock,
    NonTransactionalContext,
    NonTransactionalTargetSystem,
)
from aioflamingock.memory import InMemoryAuditStore
from aioflamingock.sqlite import SQLiteTargetSystem

HERE = Path(__file__).resolve().parent


class CreateSynonymsIndex(Change):
    """Passed explicitly, from a module not named `_<ORDER>_<name>.py`: it sets its own `order`."""

    id = "create-synonyms-index"
    author = "bob"
    target_system = "search"
    transactional = False
    order = "0005"

    async def execute(self, ctx: NonTransactionalContext) -> None:
        await ctx["client"].indices.create(index="synonyms")


def main() -> None:
    search = NonTransactionalTargetSystem("search", dependencies={"client": SearchClient(Path("search.json"))})
    # --8<-- [start:discovery]
    fl = Flamingock(
        audit_store=InMemoryAuditStore(),
        target_systems=[SQLiteTargetSystem("app-db", path=":memory:"), search],
        changes=["myapp.changes", CreateSynonymsIndex],  # packages, classes, or both
    )
    for spec in fl.changes():  # imports and checks every change, in order; opens nothing
        print(spec.order, spec.id, spec.class_name)
    # --8<-- [end:discovery]

    broken = Flamingock(audit_store=InMemoryAuditStore(), changes=["broken_changes"])
    try:
        broken.changes()
    except ConfigurationError as exc:
        print(f"{type(exc).__name__}: {str(exc).replace(f'{HERE}{os.sep}', '')}")  # paths relative to examples/


if __name__ == "__main__":
    main()
