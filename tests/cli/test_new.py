"""`aioflamingock new`: the next change module, named and numbered like its neighbours, that the engine loads."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from aioflamingock._cli import EXIT_USAGE, next_order, snake_case

from .conftest import Cli, InProcess, cli_env

CHANGE = """
from aioflamingock import Change


class Existing(Change):
    id = "{id}"
    author = "tests"
    target_system = "{target}"

    async def execute(self, ctx):
        pass
"""


def package(root: Path, name: str = "shop_changes", **modules: str) -> Path:
    """A changes package with `modules` (stem -> target system)."""
    directory = root / name
    directory.mkdir()
    (directory / "__init__.py").write_text("")
    for stem, target in modules.items():
        (directory / f"{stem}.py").write_text(CHANGE.format(id=stem.split("_", 2)[2].replace("_", "-"), target=target))
    return directory


@pytest.fixture
def new() -> InProcess:
    return InProcess({})


@pytest.mark.parametrize(
    "name", ["add_user_status", "AddUserStatus", "add user status", "add-user-status", " Add User-Status "]
)
def test_names_are_snake_cased(name: str) -> None:
    assert snake_case(name) == "add_user_status"


def test_acronyms_and_digits_split_as_a_reader_would() -> None:
    assert snake_case("HTTPSRedirects") == "https_redirects"
    assert snake_case("v2 users") == "v2_users"


@pytest.mark.parametrize("name", ["1st_change", "../escape", "add.status", "", "añadir", "x" * 101])
def test_bad_names_are_refused(new: InProcess, tmp_path: Path, name: str) -> None:
    directory = package(tmp_path)
    refused = new("new", name, "--package", str(directory), code=EXIT_USAGE)
    assert "must start with a letter" in refused.stderr
    assert sorted(p.name for p in directory.iterdir()) == ["__init__.py"]


@pytest.mark.parametrize(
    ("orders", "expected"),
    [([], "0001"), (["0001", "0009"], "0010"), (["00099"], "00100"), (["0003", "0012", "0004"], "0013")],
)
def test_next_order_keeps_the_width(orders: list[str], expected: str) -> None:
    assert next_order(orders) == expected


def test_the_first_change_of_an_empty_package(new: InProcess, tmp_path: Path) -> None:
    directory = package(tmp_path)
    done = new("new", "Create Orders", "--package", str(directory), "--author", "alice")
    path = directory / "_0001_create_orders.py"
    assert f"created {path}" in done.stdout
    text = path.read_text()
    assert "class CreateOrders(Change):" in text
    assert 'id = "create-orders"' in text and 'author = "alice"' in text
    assert 'target_system = "TODO-target-system"' in text
    compile(text, str(path), "exec")


def test_the_next_change_follows_the_highest_and_reuses_its_target(
    new: InProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = package(tmp_path, _0001_first="old-db", _0009_second="shop-db", _0003_third="old-db")
    (directory / "_01_ignored.py").write_text("")  # not a change module name: no part in the numbering
    monkeypatch.syspath_prepend(str(tmp_path))  # `--package` as a dotted name, found from the current directory
    monkeypatch.chdir(tmp_path)
    new("new", "add_order_status", "--package", "shop_changes")
    text = (directory / "_0010_add_order_status.py").read_text()
    assert 'target_system = "shop-db"' in text


def test_it_never_overwrites_nor_reuses_a_name(new: InProcess, tmp_path: Path) -> None:
    directory = package(tmp_path, _0001_create_orders="shop-db", _9999_last="shop-db")
    before = {p.name: p.read_text() for p in directory.iterdir()}
    same = new("new", "CreateOrders", "--package", str(directory), "--order", "0002", code=EXIT_USAGE)
    assert "a change named 'create_orders' exists already" in same.stderr
    taken = new("new", "other", "--package", str(directory), "--order", "0001", code=EXIT_USAGE)
    assert "order 0001 is taken by" in taken.stderr
    full = new("new", "other", "--package", str(directory), code=EXIT_USAGE)
    assert "the order after '9999' would be '10000', which sorts before it; pass --order" in full.stderr
    short = new("new", "other", "--package", str(directory), "--order", "12", code=EXIT_USAGE)
    assert "at least 4 characters" in short.stderr
    assert {p.name: p.read_text() for p in directory.iterdir()} == before
    new("new", "other", "--package", str(directory), "--order", "5000")
    assert (directory / "_5000_other.py").exists()


def test_an_unknown_package_is_a_usage_error(new: InProcess, tmp_path: Path) -> None:
    refused = new("new", "x_y", "--package", "no_such_package_anywhere", code=EXIT_USAGE)
    assert "--package 'no_such_package_anywhere' is neither a directory nor an importable package" in refused.stderr


APP = """
from aioflamingock import Flamingock
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem


def build():
    db = SQLiteTargetSystem("shop-db", path="shop.db")
    return Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=["shop_changes"])
"""


def test_an_untouched_skeleton_is_refused_until_written(tmp_path: Path) -> None:
    """Through the real command, in a process: the module `new` writes is refused by plan, run and validate, before
    anything opens, naming the file; once its `execute` is written, it plans and runs."""
    package(tmp_path, _0001_create_orders="shop-db")
    (tmp_path / "shop_app.py").write_text(textwrap.dedent(APP))
    cli = Cli(tmp_path, cli_env())
    cli("new", "add order status", "--package", "shop_changes", "--author", "bob")
    for command in ("plan", "run", "validate"):
        refused = cli("--app", "shop_app:build", command, code=EXIT_USAGE)
        assert "_0002_add_order_status.py" in refused.stderr and "Edit it" in refused.stderr, refused.stderr
    assert not (tmp_path / "shop.db").exists()  # nothing was opened, so nothing was written
    module = tmp_path / "shop_changes" / "_0002_add_order_status.py"
    written = module.read_text().replace(
        'raise NotImplementedError("AddOrderStatus.execute: write the change")',
        'await ctx.connection.execute("CREATE TABLE order_status (name TEXT PRIMARY KEY)")',
    )
    module.write_text(written)
    plan = cli.json("--app", "shop_app:build", "plan")
    assert [(p["changeId"], p["action"]) for p in plan] == [("create-orders", "APPLY"), ("add-order-status", "APPLY")]
    cli("--app", "shop_app:build", "run")
    assert cli.json("--app", "shop_app:build", "plan")[1]["action"] == "SKIP"
