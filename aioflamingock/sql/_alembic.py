from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

from ..backend import Change, ConfigurationError, import_driver

if TYPE_CHECKING:
    from ._target import SQLContext

__all__ = ["AlembicUpgrade"]


class AlembicUpgrade(Change):
    """A ready change: `alembic upgrade` to `revision` on the change's connection, so that it runs once across every
    instance (under the lock), is recorded in the audit, and fails like any other change.

    Subclass it with the usual `id`, `order`, `author` and `target_system` (a `SQLTargetSystem`), and set `config`
    (the path of `alembic.ini`) and `revision`. The project's `env.py` must run its migrations on the connection it
    is handed in `config.attributes["connection"]` when there is one (alembic's recipe for sharing a connection).

    On PostgreSQL the upgrade runs in the engine's transaction: the revisions and the `APPLIED` entry commit
    together, or none of them. On MySQL/MariaDB, whose DDL commits at once, set `transactional = False` (alembic
    then commits revision by revision, recording each in `alembic_version`) and, since alembic resumes where it
    stopped, `recovery = Recovery.ALWAYS_RETRY` with an `idempotency` note.

    A change runs once: `revision = "head"` brings the database to the head of the day it first runs, and later
    revisions need another change (one per release that adds revisions, `revision` naming its target, reads best).
    For a rollback, define `rollback` and call `await self.downgrade(ctx, "<revision>")`.
    """

    config: ClassVar[str | os.PathLike[str]] = "alembic.ini"
    revision: ClassVar[str] = "head"
    attributes: ClassVar[dict[str, Any]] = {}
    """More `config.attributes` for `env.py`."""

    async def execute(self, ctx: SQLContext) -> None:
        await self._alembic(ctx, "upgrade", self.revision)

    async def downgrade(self, ctx: SQLContext, revision: str) -> None:
        """`alembic downgrade revision` on the change's connection: for a `rollback`."""
        await self._alembic(ctx, "downgrade", revision)

    async def _alembic(self, ctx: SQLContext, command: str, revision: str) -> None:
        commands = import_driver("alembic.command", backend="alembic", driver="alembic")
        config_module = import_driver("alembic.config", backend="alembic", driver="alembic")
        path = os.fspath(self.config)

        def run(connection: Any) -> None:  # alembic is synchronous: SQLAlchemy runs this on the event loop's greenlet
            if not os.path.exists(path):
                raise ConfigurationError([f"{type(self).__qualname__}.config: {path!r} does not exist"])
            config = config_module.Config(path)
            config.attributes.update(self.attributes)
            config.attributes["connection"] = connection
            getattr(commands, command)(config, revision)

        await ctx.connection.run_sync(run)
