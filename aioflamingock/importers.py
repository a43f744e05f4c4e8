"""What another migration tool recorded as applied, read from its own table: the names to give
`Flamingock.adopt()` (mapped to change ids where they differ), which is what `aioflamingock import alembic|yoyo`
does, and `import pymongo-migrate|mongodb-migrations|beanie`. Read on the URL the tool itself is configured with, with a
synchronous client (SQLAlchemy's engine, PyMongo's `MongoClient`) in a thread; nothing is written. alembic and yoyo
need the `sql` extra (SQLAlchemy), alembic the `alembic` extra too; the MongoDB tools need the `mongodb` extra."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from . import ConfigurationError, StoreError
from .backend import check_identifier, redact

__all__ = [
    "alembic_applied",
    "beanie_applied",
    "mongodb_migrations_applied",
    "pymongo_migrate_applied",
    "yoyo_applied",
]

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


PYMONGO_MIGRATE_COLLECTION = "pymongo_migrate"
MONGODB_MIGRATIONS_COLLECTION = "database_migrations"


def _documents(url: str, database: str, collection: str, query: dict[str, Any], tool: str) -> list[dict[str, Any]]:
    from pymongo import MongoClient
    from pymongo.errors import ConfigurationError as UrlError
    from pymongo.errors import PyMongoError

    check_identifier(f"{tool} database", database)
    check_identifier(f"{tool} collection", collection)
    try:
        client: MongoClient[dict[str, Any]] = MongoClient(url, serverSelectionTimeoutMS=10_000)
    except (UrlError, ValueError) as exc:
        raise ConfigurationError([redact(f"{tool}: the URL {url!r} cannot be used: {exc}")]) from None
    try:
        return list(client[database][collection].find(query, {"_id": False}))
    except PyMongoError as exc:
        raise StoreError(
            redact(f"{tool}: reading {database}.{collection} failed: {type(exc).__name__}: {exc}")
        ) from None
    finally:
        client.close()


def _pymongo_migrate(url: str, database: str, collection: str) -> list[str]:
    found = _documents(url, database, collection, {"applied": {"$ne": None}}, "pymongo-migrate")
    found.sort(key=lambda document: (document["applied"], document["name"]))
    return [str(document["name"]) for document in found]


async def pymongo_migrate_applied(
    url: str, database: str, *, collection: str = PYMONGO_MIGRATE_COLLECTION
) -> list[str]:
    """The migrations pymongo-migrate applied to `database` (those its collection says are `applied`), oldest
    first, by name. Empty when it never ran there."""
    return await asyncio.to_thread(_pymongo_migrate, url, database, collection)


def _mongodb_migrations(url: str, database: str, collection: str) -> list[str]:
    found = _documents(url, database, collection, {}, "mongodb-migrations")
    return sorted(str(document["migration_datetime"]) for document in found)


async def mongodb_migrations_applied(
    url: str, database: str, *, collection: str = MONGODB_MIGRATIONS_COLLECTION
) -> list[str]:
    """The migrations mongodb-migrations applied to `database` (its metastore collection), oldest first, by their
    `migration_datetime` (the number its migration files start with). Empty when it never ran there."""
    return await asyncio.to_thread(_mongodb_migrations, url, database, collection)


BEANIE_COLLECTION = "migrations_log"


def _beanie(url: str, database: str, collection: str) -> list[str]:
    found = _documents(url, database, collection, {}, "beanie")
    current = [str(document["name"]) for document in found if document.get("is_current")]
    if not current:  # never migrated, or every migration rolled back
        return []
    # beanie runs its migration files in the order of their names, each forward run logging one; the current one
    # and every one logged before it in that order are applied (a later one logged and rolled back is not)
    names = sorted({str(document["name"]) for document in found if str(document["name"]) <= current[0]})
    return [name.removesuffix(".py") for name in names]


async def beanie_applied(url: str, database: str, *, collection: str = BEANIE_COLLECTION) -> list[str]:
    """The migrations beanie applied to `database`, oldest first, by the names of their files without `.py`: the
    current one in its `migrations_log` collection, and every one before it. Empty when it never ran there."""
    return await asyncio.to_thread(_beanie, url, database, collection)
