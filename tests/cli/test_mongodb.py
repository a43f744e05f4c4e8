"""The key commands against MongoDB (`apps/mongo_shop.py`, an async factory), each in a process of its own."""

from __future__ import annotations

from aioflamingock._cli import EXIT_MANUAL_INTERVENTION, EXIT_PENDING

from .conftest import STUCK, MongoShop, kill_mid_change

CHANGES = ["create-orders", STUCK, "add-order-status"]


def test_plan_run_audit_undo_doctor_health(mongo_shop: MongoShop) -> None:
    cli = mongo_shop.cli
    assert [(p["changeId"], p["action"]) for p in cli.json("plan")] == [(c, "APPLY") for c in CHANGES]
    assert cli.json("validate", code=EXIT_PENDING)["pending"] == CHANGES

    report = cli.json("run")
    assert [(c["changeId"], c["outcome"]) for c in report["changes"]] == [(c, "APPLIED") for c in CHANGES]
    assert mongo_shop.collection("orders") == [{"customer": "ada", "status": "new"}]

    history = cli.json("audit", "list", "--history")
    stored = mongo_shop.collection("flamingockAuditLog")
    assert [(e["changeId"], e["state"], e["executionId"]) for e in history] == [
        (e["changeId"], e["state"], e["executionId"]) for e in stored
    ]
    assert [e["state"] for e in history if e["changeId"] == STUCK] == ["STARTED", "APPLIED"]

    undone = cli.json("undo", "--to", "create-orders")
    assert [(c["changeId"], c["outcome"]) for c in undone["changes"]] == [
        ("add-order-status", "ROLLED_BACK"),
        (STUCK, "ROLLED_BACK"),
    ]
    assert mongo_shop.collection("orders") == [{"customer": "ada"}]
    assert not mongo_shop.settings_file.exists()
    current = {e["changeId"]: e["state"] for e in cli.json("audit", "list")}
    assert current == {"create-orders": "APPLIED", STUCK: "ROLLED_BACK", "add-order-status": "ROLLED_BACK"}

    doctor = cli("doctor")
    assert "✓ target system 'shop-db' · transactions" in doctor.stdout
    health = cli.json("health")
    assert health["ready"] is True and health["pending"] == [STUCK, "add-order-status"]


def test_issue_resolution_story(mongo_shop: MongoShop) -> None:
    """Killed in the non-transactional change; the operator finds it did not happen and says so; the next run
    applies it again and goes on."""
    cli = mongo_shop.cli
    pid = kill_mid_change(cli, mongo_shop.settings_file, mongo_shop.states)
    assert mongo_shop.states("create-orders") == ["APPLIED"]
    assert f"/{pid}/" in cli("unlock", "--force").stdout

    assert [(i["changeId"], i["state"]) for i in cli.json("issues", "list")] == [(STUCK, "STARTED")]
    stopped = cli("run", code=EXIT_MANUAL_INTERVENTION)
    assert f"change '{STUCK}' needs manual intervention" in stopped.stderr
    assert cli.json("health", code=1)["ready"] is False

    assert cli.json("fix", STUCK, "--as", "rolled-back")["state"] == "MANUAL_MARKED_AS_ROLLED_BACK"
    report = cli.json("run")
    assert [(c["changeId"], c["outcome"]) for c in report["changes"]] == [
        ("create-orders", "ALREADY_APPLIED"),
        (STUCK, "APPLIED"),
        ("add-order-status", "APPLIED"),
    ]
    assert mongo_shop.states(STUCK) == ["STARTED", "MANUAL_MARKED_AS_ROLLED_BACK", "STARTED", "APPLIED"]
    assert mongo_shop.settings_file.read_text().startswith("{")  # executed again, a plain file this time
    assert cli.json("issues", "list") == []
