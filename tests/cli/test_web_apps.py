"""`--app` pointed at what a web service already has: a FastAPI app or its lifespan, an aiohttp application or a
function returning one. Each is a real CLI process, on the examples' own services."""

from __future__ import annotations

from pathlib import Path

import pytest

from aioflamingock._cli import EXIT_USAGE

from .conftest import SHOP_CHANGES, Cli, cli_env

pytest.importorskip("fastapi")
pytest.importorskip("aiohttp")

ORDERS = ["create-orders", "add-order-status"]  # examples/orders_changes, the FastAPI example's


@pytest.mark.parametrize("attribute", ["app", "migrations"])
def test_a_fastapi_app_or_its_lifespan_is_an_app_the_cli_takes(tmp_path: Path, attribute: str) -> None:
    cli = Cli(tmp_path, cli_env(APP_DB=str(tmp_path / "app.db")))
    ref = f"fastapi_sqlite:{attribute}"
    assert [p["changeId"] for p in cli.json("--app", ref, "plan")] == ORDERS
    assert cli.json("--app", ref, "run")["status"] == "SUCCESS"
    assert cli.json("--app", ref, "run")["status"] == "NO_CHANGES"


@pytest.mark.parametrize("attribute", ["app", "make_app"])
def test_an_aiohttp_application_or_its_factory_is_an_app_the_cli_takes(tmp_path: Path, attribute: str) -> None:
    cli = Cli(tmp_path, cli_env(SHOP_DB=str(tmp_path / "shop.db")))
    planned = cli.json("--app", f"aiohttp_shop:{attribute}", "plan")
    assert [p["changeId"] for p in planned] == SHOP_CHANGES


def test_an_application_aioflamingock_was_not_given_to_says_what_to_do(tmp_path: Path) -> None:
    cli = Cli(tmp_path, cli_env(SHOP_DB=str(tmp_path / "shop.db")))
    refused = cli("--app", "aiohttp_shop:unmigrated", "plan", code=EXIT_USAGE)
    assert (
        "is a web application (Application) that aioflamingock's lifespan or cleanup context was not given to"
        in refused.stderr
    )
    assert "aioflamingock.aiohttp.cleanup_ctx(fl)" in refused.stderr
