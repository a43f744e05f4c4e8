"""A process SIGKILLed in the middle of a change, on each of the three paths, and the run after it."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from . import _scenarios as scenarios
from .conftest import LEASE_SECONDS, Faults, wait_until

pytestmark = pytest.mark.slow


def test_non_transactional_crash_needs_a_human_under_manual_intervention(faults: Faults) -> None:
    scenarios.nontx_crash_needs_a_human(faults)


def test_non_transactional_crash_is_retried_under_always_retry(faults: Faults) -> None:
    scenarios.nontx_crash_is_retried(faults)


def test_shared_transaction_crash_leaves_nothing_and_the_next_run_applies_once(faults: Faults) -> None:
    scenarios.shared_crash_leaves_nothing(faults)


def test_marker_crash_before_commit_is_applied_again_without_a_human(faults: Faults) -> None:
    scenarios.marker_crash_before_commit(faults)


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
    scenarios.committed_marker_is_recorded(faults, crashed)
