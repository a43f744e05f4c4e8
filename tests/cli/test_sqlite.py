"""Every command against the documented SQLite app (`examples/cli_app.py`): the stories in fresh processes, the
details of each command in this one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aioflamingock import DISABLE_ENV_VAR
from aioflamingock._cli import EXIT_MANUAL_INTERVENTION, EXIT_PENDING, EXIT_USAGE

from .conftest import SHOP_CHANGES, STUCK, Cli, InProcess, Shop, kill_mid_change


def test_plan_run_validate_agree_on_what_is_pending(shop: Shop) -> None:
    plan = shop.cli.json("plan")
    assert [(p["changeId"], p["action"]) for p in plan] == [(c, "APPLY") for c in SHOP_CHANGES]
    assert shop.cli.json("validate", code=EXIT_PENDING) == {"upToDate": False, "pending": SHOP_CHANGES}
    assert all(shop.states(c) == [] for c in SHOP_CHANGES)  # reading wrote no entry

    run = shop.cli("run", "--json")
    report = run.json()
    assert report["status"] == "SUCCESS"
    assert [(c["changeId"], c["outcome"]) for c in report["changes"]] == [(c, "APPLIED") for c in SHOP_CHANGES]
    for change_id in SHOP_CHANGES:  # the progress display, on stderr, fed by the engine's events
        assert f"✓ {change_id} APPLIED" in run.stderr
    assert shop.query("SELECT name FROM sqlite_master WHERE name = 'orders_by_status'") == [("orders_by_status",)]
    assert shop.settings_file.exists()

    assert shop.cli.json("validate") == {"upToDate": True, "pending": []}
    again = shop.cli("run")
    assert "Nothing pending: all 4 change(s) are applied." in again.stdout
    assert "✓" not in again.stderr  # nothing was applied, so no progress line


def test_human_output_is_tables_on_stdout_and_progress_on_stderr(shop: Shop) -> None:
    plan = shop.fast("plan")
    for change_id in SHOP_CHANGES:
        assert change_id in plan.stdout
    assert "4 change(s), 4 not applied" in plan.stdout
    run = shop.fast("run")
    assert "SUCCESS: 4 applied" in run.stdout
    assert "APPLIED" in run.stdout and "✓" not in run.stdout
    assert all(f"✓ {change_id} APPLIED" in run.stderr for change_id in SHOP_CHANGES)
    audit = shop.fast("audit", "list")
    assert "TX_AUDIT_STORE_SHARED" in audit.stdout and "NON_TX" in audit.stdout
    assert all(change_id in audit.stdout for change_id in SHOP_CHANGES)
    assert "up to date" in shop.fast("validate").stdout
    assert "4 change(s), 0 not applied" in shop.fast("plan").stdout
    disabled = InProcess({**shop.fast.env, DISABLE_ENV_VAR: "1"})("run")
    assert f"the engine is disabled ({DISABLE_ENV_VAR})" in disabled.stdout


def test_audit_list_current_state_history_and_since(shop: Shop) -> None:
    shop.fast("run")
    middle = datetime.now(UTC)
    undone = shop.fast.json("undo", "--to", "add-order-status")
    assert [(c["changeId"], c["outcome"]) for c in undone["changes"]] == [
        ("index-orders-by-status", "ROLLED_BACK"),
        ("configure-order-search", "ROLLED_BACK"),
    ]

    current = shop.fast.json("audit", "list")
    assert [(e["changeId"], e["state"]) for e in current] == [
        ("create-orders", "APPLIED"),
        ("add-order-status", "APPLIED"),
        ("configure-order-search", "ROLLED_BACK"),
        ("index-orders-by-status", "ROLLED_BACK"),
    ]
    history = shop.fast.json("audit", "list", "--history")
    rows = shop.query("SELECT change_id, state, execution_id FROM flamingock_audit_log ORDER BY id")
    assert [(e["changeId"], e["state"], e["executionId"]) for e in history] == rows
    assert len(history) == 7  # STARTED + APPLIED for the non-transactional change, one ROLLED_BACK each
    assert set(history[0]) >= {"executionId", "changeId", "createdAt", "state", "txStrategy", "targetSystemId"}
    created = [datetime.fromisoformat(e["createdAt"]) for e in history]
    assert created == sorted(created)

    since = shop.fast.json("audit", "list", "--history", "--since", middle.isoformat())
    assert [(e["changeId"], e["state"]) for e in since] == [
        ("index-orders-by-status", "ROLLED_BACK"),
        ("configure-order-search", "ROLLED_BACK"),
    ]
    naive_future = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert shop.fast.json("audit", "list", "--since", naive_future) == []
    bad = shop.fast("audit", "list", "--since", "yesterday", code=EXIT_USAGE)
    assert "--since 'yesterday' is not an ISO 8601" in bad.stderr


def test_undo_rolls_back_newest_first_and_run_applies_again(shop: Shop) -> None:
    shop.fast("run")
    undo = shop.fast("undo", "--to", "create-orders")
    assert "3 rolled back" in undo.stdout
    assert shop.query("SELECT name FROM pragma_table_info('orders') WHERE name = 'status'") == []
    assert not shop.settings_file.exists()  # the non-transactional rollback ran
    plan = {p["changeId"]: p["action"] for p in shop.fast.json("plan")}
    assert plan == {"create-orders": "SKIP", **dict.fromkeys(SHOP_CHANGES[1:], "APPLY")}
    assert "Nothing to undo" in shop.fast("undo", "--to", "index-orders-by-status").stdout
    unknown = shop.fast("undo", "--to", "no-such-change", code=EXIT_USAGE)
    assert "'no-such-change' is not a declared change" in unknown.stderr
    assert shop.fast.json("run")["status"] == "SUCCESS"
    assert shop.settings_file.exists()


def test_piped_output_is_never_cut_to_80_columns(shop: Shop) -> None:
    shop.fast("run")
    piped = Cli(shop.cli.cwd, {k: v for k, v in shop.cli.env.items() if k != "COLUMNS"})  # as `| grep`, `> file`
    listed = piped("audit", "list", "--history").stdout
    assert "…" not in listed
    assert max(len(line) for line in listed.splitlines()) > 80
    rows = [line for line in listed.splitlines() if "index-orders-by-status" in line]
    assert rows and all("TX_AUDIT_STORE_SHARED" in row for row in rows)


def test_run_writes_a_line_per_change_on_stderr_and_nothing_else(shop: Shop) -> None:
    done = shop.cli("run")  # stderr piped, as in a CI log or a container's
    lines = done.stderr.splitlines()
    assert [line.rsplit(" in ", 1)[0] for line in lines] == [f"✓ {change_id} APPLIED" for change_id in SHOP_CHANGES]
    assert not done.stderr.endswith("\n\n"), "no blank line left behind"


def test_baseline_adopts_a_database_already_in_shape(shop: Shop) -> None:
    marked = shop.cli.json("baseline", "--to", "add-order-status")
    assert [(e["changeId"], e["state"]) for e in marked] == [
        ("create-orders", "MANUAL_MARKED_AS_APPLIED"),
        ("add-order-status", "MANUAL_MARKED_AS_APPLIED"),
    ]
    assert shop.query("SELECT name FROM sqlite_master WHERE name = 'orders'") == [], "nothing ran"
    again = shop.cli("baseline", "--to", "add-order-status", code=EXIT_USAGE)
    assert "already have a history: create-orders (MANUAL_MARKED_AS_APPLIED)" in again.stderr
    plan = {p["changeId"]: p["action"] for p in shop.fast.json("plan")}
    assert plan == {**dict.fromkeys(SHOP_CHANGES[:2], "SKIP"), **dict.fromkeys(SHOP_CHANGES[2:], "APPLY")}


def test_audit_export_then_import_moves_the_history_to_another_database(shop: Shop, tmp_path: Path) -> None:
    shop.fast("run")
    shop.fast("undo", "--to", "add-order-status")
    export = tmp_path / "audit.jsonl"
    shop.cli("audit", "export", "--output", str(export))
    lines = export.read_text().splitlines()
    history = shop.fast.json("audit", "list", "--history")
    assert [json.loads(line) for line in lines] == history
    assert shop.cli("audit", "export").stdout.splitlines() == lines  # to stdout, the same
    failed = shop.cli("--app", "cli_app:no_such_factory", "audit", "export", "--output", str(export), code=EXIT_USAGE)
    assert "no attribute 'no_such_factory'" in failed.stderr
    assert export.read_text().splitlines() == lines, "a failed export leaves the backup already there as it was"
    assert not (tmp_path / "audit.jsonl.partial").exists()

    moved = Cli(shop.cli.cwd, {**shop.cli.env, "SHOP_DB": str(tmp_path / "moved.db")})
    assert moved.json("audit", "import", str(export)) == {"imported": len(lines)}
    assert moved.json("audit", "list", "--history") == history
    assert moved.json("plan") == shop.fast.json("plan")
    refused = moved("audit", "import", str(export), code=EXIT_USAGE)
    assert "already holds entries" in refused.stderr

    broken = tmp_path / "broken.jsonl"
    broken.write_text(lines[0] + "\n" + '{"changeId": "x"}\n')
    elsewhere = Cli(shop.cli.cwd, {**shop.cli.env, "SHOP_DB": str(tmp_path / "other.db")})
    bad = elsewhere("audit", "import", str(broken), code=EXIT_USAGE)
    assert f"{broken}:2: not an audit entry" in bad.stderr
    assert not (tmp_path / "other.db").exists(), "every line is checked before the store is opened"


def test_undo_to_base_rolls_back_every_change(shop: Shop) -> None:
    shop.fast("run")
    undone = shop.cli.json("undo", "--to", "base")  # a process of its own, as a user runs it
    assert [c["changeId"] for c in undone["changes"]] == SHOP_CHANGES[::-1]
    assert {c["outcome"] for c in undone["changes"]} == {"ROLLED_BACK"}
    assert {p["action"] for p in shop.fast.json("plan")} == {"APPLY"}


def test_issue_resolution_story(shop: Shop) -> None:
    """The 3 a.m. story of docs/cli.md: a run killed in the middle of a non-transactional change. Each step an
    operator takes runs in a process of its own; the checks around them (`shop.fast`) in this one."""
    shop.cli("run")
    shop.cli("undo", "--to", "add-order-status")
    pid = kill_mid_change(shop.cli, shop.settings_file, shop.states)
    assert shop.states(STUCK)[-1] == "STARTED"

    # The dead run's lease has not ended: its change is not listed yet, and the note says why.
    listed = shop.cli("issues", "list")
    assert f"no process {pid} runs on this host" in listed.stderr
    assert "no change needs manual intervention" in listed.stdout
    held = shop.fast("issues", "get", STUCK, code=1)
    assert "belongs to the run that holds the lock" in held.stderr and "unlock --force" in held.stderr
    refused = shop.cli("unlock", code=EXIT_USAGE)
    assert f"/{pid}/" in refused.stdout and "without --force" in refused.stderr
    owner_execution = refused.stdout.split(f"/{pid}/")[1].split()[0]
    assert "freed" in shop.cli("unlock", "--force").stdout
    assert "is free" in shop.fast("unlock").stdout

    issues = shop.cli.json("issues", "list")
    assert issues == [
        {
            "changeId": STUCK,
            "state": "STARTED",
            "reason": issues[0]["reason"],
            "fix": f"aioflamingock fix {STUCK} --as applied|rolled-back",
            "remedy": {"action": "fix", "changeId": STUCK, "resolutions": ["applied", "rolled-back"]},
        }
    ]
    detail = shop.cli.json("issues", "get", STUCK)
    assert [e["state"] for e in detail["entries"]] == shop.states(STUCK)
    assert detail["entries"][-1]["executionId"] == owner_execution  # the killed run's own entry
    human = shop.fast("issues", "get", STUCK)
    assert owner_execution in human.stdout and "Check the target system" in human.stdout

    run = shop.cli("run", code=EXIT_MANUAL_INTERVENTION)
    assert f"error: ManualInterventionRequiredError: change '{STUCK}' needs manual intervention" in run.stderr
    assert "Traceback" not in run.stderr
    assert shop.cli.json("validate", code=EXIT_PENDING)["pending"] == [STUCK, "index-orders-by-status"]
    plan = {p["changeId"]: p["action"] for p in shop.fast.json("plan")}
    assert plan[STUCK] == "MANUAL_INTERVENTION" and plan["index-orders-by-status"] == "BLOCKED"
    assert shop.fast.json("health", code=1)["issues"][0]["changeId"] == STUCK
    doctor = shop.fast.json("doctor", code=1)
    assert [c["fix"] for c in doctor["checks"] if not c["ok"]] == [issues[0]["fix"]]

    fixed = shop.cli.json("fix", STUCK, "--as", "applied")
    assert (fixed["changeId"], fixed["state"], fixed["invokedMethod"]) == (STUCK, "MANUAL_MARKED_AS_APPLIED", "fix")
    report = shop.cli.json("run")
    outcomes = {c["changeId"]: c["outcome"] for c in report["changes"]}
    assert outcomes[STUCK] == "ALREADY_APPLIED" and outcomes["index-orders-by-status"] == "APPLIED"
    assert not shop.settings_file.exists()  # marked applied: not executed again
    assert shop.fast.json("issues", "list") == []
    shop.fast("health")
    assert "everything a run needs is in place" in shop.fast("doctor").stdout


def test_fix_as_rolled_back_makes_the_next_run_apply_it_again(shop: Shop) -> None:
    kill_mid_change(shop.cli, shop.settings_file, shop.states)
    shop.fast("unlock", "--force")
    issue = shop.fast("issues", "list")
    assert STUCK in issue.stdout and "aioflamingock fix ID --as" in issue.stdout
    given = shop.fast("--app", "cli_app:build_flamingock", "issues", "list")  # suggestions repeat --app
    assert "aioflamingock --app cli_app:build_flamingock fix ID --as" in given.stdout
    assert f"{STUCK} recorded as MANUAL_MARKED_AS_ROLLED_BACK" in shop.fast("fix", STUCK, "--as", "rolled-back").stdout
    shop.fast("run")
    assert shop.states(STUCK) == ["STARTED", "MANUAL_MARKED_AS_ROLLED_BACK", "STARTED", "APPLIED"]
    assert shop.settings_file.read_text().startswith("{")  # executed again, a plain file this time


def test_issues_get_and_fix_name_what_is_wrong(shop: Shop) -> None:
    shop.fast("run")
    fine = shop.fast("issues", "get", "create-orders", code=1)
    assert "error: change 'create-orders' needs no manual intervention (its state: APPLIED)" in fine.stderr
    unknown = shop.fast("issues", "get", "nope", code=EXIT_USAGE)
    assert "'nope' is neither declared nor in the audit" in unknown.stderr
    bad = shop.fast("fix", STUCK, "--as", "done", code=EXIT_USAGE)
    assert "'done' is not one of" in bad.stderr
    undeclared = shop.fast("fix", "nope", "--as", "applied", code=EXIT_USAGE)
    assert "change 'nope' is neither declared nor in the audit" in undeclared.stderr
