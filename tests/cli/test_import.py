"""`aioflamingock import alembic|yoyo`: what the real tool applied, from the tables it wrote itself, recorded as
applied under the change ids a mapping gives, dry-run first. Real CLI processes on the SQLite shop."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

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
