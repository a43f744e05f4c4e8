"""Apply the changes when an aiohttp application starts.

```python
migrations = cleanup_ctx(fl)  # or cleanup_ctx(fl, background=True)
app.cleanup_ctx.append(migrations)  # before your own contexts: they start after the changes are applied
app.router.add_get("/ready", migrations.readiness)
```

Needs `pip install "aioflamingock[aiohttp]"`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from . import Flamingock
from ._startup import Startup, StartupStatus

try:
    from aiohttp import web
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError('aioflamingock.aiohttp needs aiohttp: pip install "aioflamingock[aiohttp]"') from exc

__all__ = ["FlamingockCleanupContext", "StartupStatus", "cleanup_ctx"]


class FlamingockCleanupContext(Startup):
    """An entry for `app.cleanup_ctx` that applies the changes at start-up. Made by `cleanup_ctx()`.

    `status`, `report` and `error` say how the run went; `readiness` is a handler for probes.
    """

    def __call__(self, app: web.Application) -> AbstractAsyncContextManager[None]:
        return self.running()

    async def readiness(self, request: web.Request) -> web.Response:
        """Readiness handler: 200 `{"status": "ready"}` once every change is applied; before that 503
        `{"status": "applying"}`, after a failure 503 `{"status": "failed", "error": "..."}`."""
        code, body = self.readiness_body()
        return web.json_response(body, status=code)


def cleanup_ctx(fl: Flamingock, *, background: bool = False) -> FlamingockCleanupContext:
    """An entry for `app.cleanup_ctx.append(...)` that runs `fl` when the application starts.

    - `background=False` (default): `await fl.run()` before the application serves. A failure stops the start-up
      with the change's error.
    - `background=True`: the run starts in a task and the application serves at once; `readiness` answers 503
      until the run is done. A failure is logged and keeps readiness at 503; at cleanup an unfinished run is
      cancelled.

    Contexts appended after this one start after the changes are applied (in the background mode: at once) and
    are cleaned up before an unfinished run is cancelled.
    """
    return FlamingockCleanupContext(fl, background=background)
