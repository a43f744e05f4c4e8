"""Apply the changes when a FastAPI (or Starlette) application starts.

```python
migrations = lifespan(fl)  # or lifespan(fl, background=True), lifespan(fl, lifespan=your_own_lifespan)
app = FastAPI(lifespan=migrations)
app.add_api_route("/ready", migrations.readiness)
```

Needs `pip install "aioflamingock[fastapi]"`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from . import Flamingock
from ._startup import Startup, StartupStatus

try:
    from starlette.requests import Request
    from starlette.responses import JSONResponse
except ImportError as exc:  # pragma: no cover - depends on what is installed
    raise ImportError('aioflamingock.fastapi needs FastAPI: pip install "aioflamingock[fastapi]"') from exc

__all__ = ["FlamingockLifespan", "StartupStatus", "UserLifespan", "lifespan"]

UserLifespan = Callable[[Any], AbstractAsyncContextManager[Any]]
"""An application's own lifespan: `(app) -> async context manager`, yielding `None` or a state mapping."""


class FlamingockLifespan(Startup):
    """A FastAPI/Starlette lifespan that applies the changes at start-up, then enters the application's own
    lifespan, if any, and passes on the state it yields. Made by `lifespan()`.

    `status`, `report` and `error` say how the run went; `readiness` is an endpoint for probes.
    """

    def __init__(self, fl: Flamingock, *, background: bool = False, lifespan: UserLifespan | None = None) -> None:
        super().__init__(fl, background=background)
        self._user_lifespan = lifespan

    @asynccontextmanager
    async def __call__(self, app: Any) -> AsyncIterator[Any]:
        async with self.running():
            if self._user_lifespan is None:
                yield None
                return
            async with self._user_lifespan(app) as state:
                yield state

    async def readiness(self, request: Request) -> JSONResponse:
        """Readiness endpoint: 200 `{"status": "ready"}` once every change is applied; before that 503
        `{"status": "applying"}`, after a failure 503 `{"status": "failed", "error": "..."}`."""
        code, body = self.readiness_body()
        return JSONResponse(body, status_code=code)


def lifespan(fl: Flamingock, *, background: bool = False, lifespan: UserLifespan | None = None) -> FlamingockLifespan:
    """A lifespan for `FastAPI(lifespan=...)` that runs `fl` when the application starts.

    - `background=False` (default): `await fl.run()` before the application serves. A failure stops the start-up
      with the change's error.
    - `background=True`: the run starts in a task and the application serves at once; `readiness` answers 503
      until the run is done. A failure is logged and keeps readiness at 503; at shutdown an unfinished run is
      cancelled.
    - `lifespan`: your own lifespan, entered after the changes are applied (in the background mode: at once).
      The state it yields reaches your handlers as `request.state`.
    """
    return FlamingockLifespan(fl, background=background, lifespan=lifespan)
