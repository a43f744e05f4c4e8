"""A process SIGKILLed in the middle of a change, on each of the three paths, and the run after it."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from .conftest import EXIT_MANUAL_INTERVENTION, EXIT_OK, LEASE_SECONDS, Faults, wait_until

pytestmark = pytest.mark.slow

THREE_ROWS = [0, 1, 2]


def test_non_transactional_crash_needs_a_human_under_manual_intervention(faults: Faults) -> None:
    victim = faults.start(hang="nontx-1")
    crashed = faults.wait_ready(victim, "nontx-1")
    victim.kill()
    assert faults.states("nontx-1") == ["STARTED"]
    audit_before = faults.audit()

    refused = faults.run()

    assert refused.code == EXIT_MANUAL_INTERVENTION, refused
    assert refused.error.startswith("ManualInterventionRequiredError: change 'nontx-1' ")
    assert "aioflamingock fix nontx-1 --as applied|rolled-back" in refused.error
    assert faults.audit() == audit_before, "a refused run wrote to the audit"
    assert faults.effects()["nontx-1"] == 1
    assert faults.effect_executions("nontx-1") == [crashed]


def test_non_transactional_crash_is_retried_under_always_retry(faults: Faults) -> None:
    victim = faults.start(hang="nontx-1", nontx_recovery="retry")
    faults.wait_ready(victim, "nontx-1")
    victim.kill()
    assert faults.lock() is not None, "the dead process's lease should still be in the store"

    rerun = faults.run(nontx_recovery="retry")  # waits for the dead process's lease to end

    assert rerun.code == EXIT_OK, rerun
    assert faults.effects() == {"shared-1": 1, "marker-1": 1, "nontx-1": 2}
    assert faults.states("nontx-1") == ["STARTED", "STARTED", "APPLIED"]
    assert faults.applied()["nontx-1"] == [rerun.execution_id]
    assert faults.lock() is None, "the run released the lock"


def test_shared_transaction_crash_leaves_nothing_and_the_next_run_applies_once(faults: Faults) -> None:
    victim = faults.start(hang="shared-1")
    crashed = faults.wait_ready(victim, "shared-1")
    victim.kill()
    assert faults.audit() == [], "nothing is recorded before the shared transaction commits"
    assert faults.rows(faults.audit_db, "shared-1") == []
    assert faults.lock() is not None

    rerun = faults.run()

    assert rerun.code == EXIT_OK, rerun
    assert faults.effect_executions("shared-1") == [crashed, rerun.execution_id]
    rows = faults.rows(faults.audit_db, "shared-1")
    assert rows == [(rerun.execution_id, n) for n in THREE_ROWS]
    assert faults.states("shared-1") == ["APPLIED"]
    assert faults.applied() == {c: [rerun.execution_id] for c in ("shared-1", "marker-1", "nontx-1")}


def test_marker_crash_before_commit_is_applied_again_without_a_human(faults: Faults) -> None:
    victim = faults.start(hang="marker-1")
    crashed = faults.wait_ready(victim, "marker-1")
    victim.kill()
    [started] = faults.audit("marker-1")
    assert (started.state, started.tx_strategy, started.execution_id) == ("STARTED", "TX_AUDIT_STORE_SYNC", crashed)
    assert faults.markers() == []
    assert faults.rows(faults.app_db, "marker-1") == []

    rerun = faults.run()  # recovery MANUAL_INTERVENTION: the missing marker settles it, not a human

    assert rerun.code == EXIT_OK, rerun
    assert faults.effect_executions("marker-1") == [crashed, rerun.execution_id]
    assert faults.rows(faults.app_db, "marker-1") == [(rerun.execution_id, n) for n in THREE_ROWS]
    assert faults.states("marker-1") == ["STARTED", "STARTED", "APPLIED"]
    assert faults.applied()["marker-1"] == [rerun.execution_id]
    assert faults.markers() == []


def test_marker_crash_after_commit_is_recorded_without_running_again(faults: Faults) -> None:
    """The state between the target's commit and APPLIED, reached for real: the test holds the audit database's
    write lock, so the process commits the change (rows and marker, in the app database) and then blocks writing
    APPLIED; it is killed there. Its lock renewals block too, but the lease outlives the few milliseconds needed."""
    victim = faults.start(hang="marker-1")
    crashed = faults.wait_ready(victim, "marker-1")
    with closing(sqlite3.connect(faults.audit_db, timeout=10, isolation_level=None)) as blocker:
        blocker.execute("BEGIN IMMEDIATE")
        faults.go("marker-1")
        wait_until(lambda: faults.markers() != [], LEASE_SECONDS / 2, "the change's transaction to commit")
        victim.kill()
        blocker.execute("ROLLBACK")
    assert faults.markers() == [("marker-1", crashed)]
    assert faults.rows(faults.app_db, "marker-1") == [(crashed, n) for n in THREE_ROWS]
    assert faults.states("marker-1") == ["STARTED"]

    rerun = faults.run()

    assert rerun.code == EXIT_OK, rerun
    assert faults.effect_executions("marker-1") == [crashed], "the committed change ran again"
    assert faults.rows(faults.app_db, "marker-1") == [(crashed, n) for n in THREE_ROWS]
    *_, applied = faults.audit("marker-1")
    assert (applied.state, applied.execution_id) == ("APPLIED", rerun.execution_id)
    assert applied.metadata == {"recoveredFromExecutionId": crashed}
    assert faults.states("marker-1") == ["STARTED", "APPLIED"]
    assert faults.markers() == [], "the marker is deleted once APPLIED is recorded"
    assert faults.effects() == {"shared-1": 1, "marker-1": 1, "nontx-1": 1}
