"""What another migration tool recorded as applied, read from its own table: the names to give
`Flamingock.adopt()` (mapped to change ids where they differ), which is what `aioflamingock import alembic|yoyo`
does. Read with a synchronous SQLAlchemy engine on the URL the tool itself is configured with, in a thread; nothing
is written. Needs the `sql` extra (SQLAlchemy), and the `alembic` extra for alembic."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from . import ConfigurationError, StoreError
from .backend import check_identifier, redact

__all__ = ["alembic_applied", "yoyo_applied"]

YOYO_TABLE = "_yoyo_migration"


def _rows(url: str, table: str, sql: str, tool: str) -> list[Any] | None:
    """The rows of `sql` on `url`; None when `table` does not exist (the tool never ran there)."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.exc import SQLAlchemyError

    try:
        engine = create_engine(url)
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise ConfigurationError([redact(f"{tool}: the database URL {url!r} cannot be used: {exc}")]) from None
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(table):
                return None
            return list(connection.execute(text(sql)).all())
    except SQLAlchemyError as exc:
        raise StoreError(redact(f"{tool}: reading {table!r} failed: {type(exc).__name__}: {exc}")) from None
    finally:
        engine.dispose()


def _alembic(config: str | os.PathLike[str], url: str | None) -> list[str]:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    path = Path(config)
    if not path.is_file():
        raise ConfigurationError([f"alembic: no configuration file {str(path)!r}"])
    settings = Config(str(path))
    url = url or settings.get_main_option("sqlalchemy.url")
    if not url:
        raise ConfigurationError([f"alembic: {str(path)!r} sets no sqlalchemy.url; give the database URL"])
    rows = _rows(url, "alembic_version", "SELECT version_num FROM alembic_version", "alembic")
    if not rows:
        return []
    heads = tuple(str(row[0]) for row in rows)
    try:
        newest_first = [
            revision.revision for revision in ScriptDirectory.from_config(settings).iterate_revisions(heads, "base")
        ]
    except CommandError as exc:
        raise ConfigurationError(
            [f"alembic: the database is at {', '.join(heads)}, which its scripts do not know: {exc}"]
        ) from None
    return newest_first[::-1]


async def alembic_applied(config: str | os.PathLike[str], *, url: str | None = None) -> list[str]:
    """The revisions alembic applied to the database, oldest first: those in `alembic_version` (the heads) and
    every revision before them in the scripts of `config` (the path of `alembic.ini`). `url`: the database's, when
    not the configuration's `sqlalchemy.url`. Empty when alembic never ran there. Needs the `alembic` extra."""
    return await asyncio.to_thread(_alembic, config, url)


def _yoyo(url: str, table: str) -> list[str]:
    check_identifier("yoyo table", table)
    sql = f"SELECT migration_id FROM {table} ORDER BY applied_at_utc, migration_id"
    return [str(row[0]) for row in _rows(url, table, sql, "yoyo") or []]


async def yoyo_applied(url: str, *, table: str = YOYO_TABLE) -> list[str]:
    """The migrations yoyo applied to the database at `url` (yoyo's own URL works: `sqlite:///app.db`,
    `postgresql://...`), oldest first, by their ids (the file names without `.py`/`.sql`). Empty when yoyo never
    ran there."""
    return await asyncio.to_thread(_yoyo, url, table)
