"""`aioflamingock import alembic|yoyo`: what the real tool applied, from the tables it wrote itself, recorded as
applied under the change ids a mapping gives, dry-run first. Real CLI processes on the SQLite shop."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aioflamingock._cli import EXIT_USAGE

from .conftest import SHOP_CHANGES, Shop

pytest.importorskip("alembic")
yoyo = pytest.importorskip("yoyo")

ENV_PY = """
from alembic import context
from sqlalchemy import create_engine

with create_engine(context.config.get_main_option("sqlalchemy.url")).connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
"""

REVISION = """
revision = "{revision}"
down_revision = {down!r}

from alembic import op


def upgrade():
    op.execute("CREATE TABLE {table} (id INTEGER PRIMARY KEY)")


def downgrade():
    op.execute("DROP TABLE {table}")
"""


def alembic_project(directory: Path, database: Path) -> Path:
    """Three revisions, r1 <- r2 <- r3; the database upgraded by alembic itself to r2."""
    from alembic import command
    from alembic.config import Config

    (directory / "versions").mkdir(parents=True)
    (directory / "env.py").write_text(ENV_PY)
    (directory / "script.py.mako").write_text("")
    for n, down in ((1, None), (2, "r1"), (3, "r2")):
        source = REVISION.format(revision=f"r{n}", down=down, table=f"legacy_{n}")
        (directory / "versions" / f"r{n}.py").write_text(source)
    ini = directory / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {directory}\nsqlalchemy.url = sqlite:///{database}\n")
    command.upgrade(Config(str(ini)), "r2")
    return ini


def mapping(path: Path, names: dict[str, str]) -> Path:
    path.write_text(json.dumps(names))
    return path


def test_alembic_revisions_become_applied_changes_after_a_dry_run(shop: Shop, tmp_path: Path) -> None:
    ini = alembic_project(tmp_path / "migrations", shop.database)
    names = mapping(tmp_path / "map.json", {"r1": "create-orders", "r2": "add-order-status"})
    args = ("import", "alembic", "--config", str(ini), "--map", str(names))

    dry = shop.cli.json(*args, "--dry-run")
    assert dry == {
        "dryRun": True,
        "changes": [{"changeId": "create-orders", "from": "r1"}, {"changeId": "add-order-status", "from": "r2"}],
    }
    assert shop.fast.json("audit", "list", "--history") == [], "a dry run writes nothing"

    done = shop.cli(*args)
    assert "✓ create-orders recorded as applied (alembic: r1)" in done.stdout
    entries = shop.fast.json("audit", "list", "--history")
    assert [(e["changeId"], e["state"], e["invokedMethod"]) for e in entries] == [
        ("create-orders", "MANUAL_MARKED_AS_APPLIED", "adopt"),
        ("add-order-status", "MANUAL_MARKED_AS_APPLIED", "adopt"),
    ]
    plan = {p["changeId"]: p["action"] for p in shop.fast.json("plan")}
    assert plan == {**dict.fromkeys(SHOP_CHANGES[:2], "SKIP"), **dict.fromkeys(SHOP_CHANGES[2:], "APPLY")}

    again = shop.cli(*args, code=EXIT_USAGE)
    assert "already have a history" in again.stderr


def test_a_migration_name_without_a_change_is_named_and_nothing_is_written(shop: Shop, tmp_path: Path) -> None:
    ini = alembic_project(tmp_path / "migrations", shop.database)
    refused = shop.cli("import", "alembic", "--config", str(ini), code=EXIT_USAGE)
    assert "'r1', 'r2' not declared change(s); map each to the change that did the same" in refused.stderr
    assert shop.fast.json("audit", "list", "--history") == []


def yoyo_apply(directory: Path, database: Path) -> None:
    """Two migrations, applied by yoyo itself."""
    from yoyo import get_backend, read_migrations

    directory.mkdir()
    for name, table in (("0001.legacy-users", "legacy_users"), ("0002.legacy-orders", "legacy_orders")):
        source = f'from yoyo import step\n\nsteps = [step("CREATE TABLE {table} (id INTEGER PRIMARY KEY)")]\n'
        (directory / f"{name}.py").write_text(textwrap.dedent(source))
    backend = get_backend(f"sqlite:///{database}")
    with backend.lock():
        backend.apply_migrations(backend.to_apply(read_migrations(str(directory))))


def test_yoyo_migrations_become_applied_changes(shop: Shop, tmp_path: Path) -> None:
    yoyo_apply(tmp_path / "migrations", shop.database)
    names = mapping(
        tmp_path / "map.json", {"0001.legacy-users": "create-orders", "0002.legacy-orders": "add-order-status"}
    )
    args = ("import", "yoyo", "--database", f"sqlite:///{shop.database}", "--map", str(names))
    assert [c["from"] for c in shop.cli.json(*args, "--dry-run")["changes"]] == [
        "0001.legacy-users",
        "0002.legacy-orders",
    ]
    assert [c["changeId"] for c in shop.cli.json(*args)["changes"]] == ["create-orders", "add-order-status"]
    plan = {p["changeId"]: p["action"] for p in shop.fast.json("plan")}
    assert plan["create-orders"] == plan["add-order-status"] == "SKIP"


def test_a_database_the_tool_never_ran_on_has_nothing_to_adopt(shop: Shop, tmp_path: Path) -> None:
    done = shop.cli("import", "yoyo", "--database", f"sqlite:///{tmp_path / 'empty.db'}")
    assert "yoyo recorded no migration in this database: nothing to adopt" in done.stdout


# -- MongoDB tools -------------------------------------------------------------------------------------------------


@pytest.fixture
def mongo_database(mongodb_server: Any) -> Iterator[str]:
    from pymongo import MongoClient

    name = f"tool_{uuid.uuid4().hex[:10]}"
    yield name
    with MongoClient(mongodb_server.uri) as client:
        client.drop_database(name)


def test_pymongo_migrate_migrations_become_applied_changes(
    shop: Shop, tmp_path: Path, mongodb_server: Any, mongo_database: str
) -> None:
    pytest.importorskip("pymongo_migrate")
    from pymongo import MongoClient
    from pymongo_migrate.migrations import Migration
    from pymongo_migrate.mongo_migrate import MongoMigrate

    class Legacy(Migration):
        def upgrade(self, db: Any) -> None:
            db.legacy.insert_one({"name": self.name})

        def downgrade(self, db: Any) -> None:
            db.legacy.delete_one({"name": self.name})

    with MongoClient(mongodb_server.uri) as client:
        tool = MongoMigrate(client, mongo_database, migrations_dir=str(tmp_path))
        tool.graph.add_migration(Legacy(name="0001_users", dependencies=[]))
        tool.graph.add_migration(Legacy(name="0002_orders", dependencies=["0001_users"]))
        tool.graph.add_migration(Legacy(name="0003_later", dependencies=["0002_orders"]))
        tool.migrate("0002_orders")  # the third one never ran
    names = mapping(tmp_path / "map.json", {"0001_users": "create-orders", "0002_orders": "add-order-status"})
    args = ("import", "pymongo-migrate", "--url", mongodb_server.uri, "--database", mongo_database, "--map", str(names))
    assert shop.cli.json(*args) == {
        "dryRun": False,
        "changes": [
            {"changeId": "create-orders", "from": "0001_users"},
            {"changeId": "add-order-status", "from": "0002_orders"},
        ],
    }


def test_mongodb_migrations_migrations_become_applied_changes(
    shop: Shop, tmp_path: Path, mongodb_server: Any, mongo_database: str
) -> None:
    pytest.importorskip("mongodb_migrations")
    from pymongo import uri_parser

    stamp = uuid.uuid4().int % 10**6  # module names of their own: the tool imports its files by name
    folder = tmp_path / "migrations"
    folder.mkdir()
    first, second = f"20260101{stamp:06d}", f"20260102{stamp:06d}"
    for moment in (first, second):
        (folder / f"{moment}_legacy.py").write_text(
            "from mongodb_migrations.base import BaseMigration\n\n\nclass Migration(BaseMigration):\n"
            "    def upgrade(self):\n        self.db.legacy.insert_one({'done': True})\n\n"
            "    def downgrade(self):\n        pass\n"
        )
    host, port = uri_parser.parse_uri(mongodb_server.uri)["nodelist"][0]
    settings = {"mongo_host": host, "mongo_port": port, "mongo_database": mongo_database}
    run_tool = (  # in a process of its own, as its command runs: it leaves its clients open
        "import sys\nfrom mongodb_migrations.cli import MigrationManager\n"
        "from mongodb_migrations.config import Configuration\n"
        f"sys.path.insert(0, {str(folder)!r})\n"
        f"MigrationManager(Configuration({{**{settings!r}, 'mongo_migrations_path': {str(folder)!r}}})).run()\n"
    )
    done = subprocess.run([sys.executable, "-c", run_tool], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    names = mapping(tmp_path / "map.json", {first: "create-orders", second: "add-order-status"})
    args = ("import", "mongodb-migrations", "--url", mongodb_server.uri, "--database", mongo_database)
    dry = shop.cli.json(*args, "--map", str(names), "--dry-run")
    assert [c["from"] for c in dry["changes"]] == [first, second]
    assert shop.fast.json("audit", "list", "--history") == []


BEANIE_MIGRATION = """
from beanie import free_fall_migration


class Forward:
    @free_fall_migration(document_models=[])
    async def nothing(self, session):
        pass


class Backward:
    @free_fall_migration(document_models=[])
    async def nothing(self, session):
        pass
"""


def test_beanie_migrations_become_applied_changes(
    shop: Shop, tmp_path: Path, mongodb_server: Any, mongo_database: str
) -> None:
    pytest.importorskip("beanie")
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name in ("20260101_users", "20260102_orders", "20260103_later"):
        (folder / f"{name}.py").write_text(BEANIE_MIGRATION)
    run_tool = (  # beanie's own runner, forward two of three, in a process of its own as its command runs
        "import asyncio\nfrom beanie.executors.migrate import MigrationSettings, run_migrate\n"
        f"asyncio.run(run_migrate(MigrationSettings(connection_uri={mongodb_server.uri!r}, "
        f"database_name={mongo_database!r}, path={str(folder)!r}, distance=2)))\n"
    )
    done = subprocess.run([sys.executable, "-c", run_tool], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    names = mapping(tmp_path / "map.json", {"20260101_users": "create-orders", "20260102_orders": "add-order-status"})
    args = ("import", "beanie", "--url", mongodb_server.uri, "--database", mongo_database, "--map", str(names))
    assert [(c["changeId"], c["from"]) for c in shop.cli.json(*args)["changes"]] == [
        ("create-orders", "20260101_users"),
        ("add-order-status", "20260102_orders"),
    ]
