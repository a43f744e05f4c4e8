"""`Flamingock.health()`: what a readiness probe needs, read once, with no lock and no write."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from ._errors import ClosedResourceError, ConfigurationError
from ._model import Health
from ._planning import issues, live_holder, read_plan
from ._redact import redact

if TYPE_CHECKING:
    from ._engine import Flamingock

__all__ = ["health"]


async def health(fl: Flamingock, timeout_seconds: float) -> Health:
    specs = fl.changes()
    try:
        with anyio.fail_after(timeout_seconds):
            async with fl._session():
                if await fl._applied_by_summary(specs):  # every declared change applied: one small read
                    return Health(True, [], [])
                rows = await read_plan(fl.audit_store, fl.target_systems, specs)
                holder = await live_holder(fl.audit_store, fl.service)
    except TimeoutError:
        return Health(False, error=f"the audit store did not answer within {timeout_seconds:g} s")
    except (ConfigurationError, ClosedResourceError):
        raise
    except Exception as exc:
        return Health(False, error=redact(f"{type(exc).__name__}: {exc}"))
    found = issues(rows, holder)
    stuck = {i.change_id for i in found}
    return Health(True, found, [row.spec.id for row in rows if row.pending and row.spec.id not in stuck])
