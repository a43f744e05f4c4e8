"""A lock holder paused (SIGSTOP) past its lease while another instance takes over, then resumed (SIGCONT)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing, suppress

import pytest

from .conftest import EXIT_LOCK_LOST, EXIT_OK, LEASE_SECONDS, SETTLE_SECONDS, START_TIMEOUT, Faults, wait_until

pytestmark = pytest.mark.slow


def test_paused_non_transactional_holder_records_nothing_after_the_takeover(faults: Faults) -> None:
    paused = faults.start(hang="nontx-1", nontx_recovery="retry")
    paused_run = faults.wait_ready(paused, "nontx-1")
    faults.pause_between_statements(paused)
    faults.wait_lease_expired()

    takeover = faults.run(nontx_recovery="retry")
    assert takeover.code == EXIT_OK, takeover
    assert faults.applied()["nontx-1"] == [takeover.execution_id]
    audit_after_takeover = faults.audit()

    faults.go("nontx-1")  # the paused change finishes as soon as it runs again, then tries to record APPLIED
    paused.cont()
    resumed = paused.wait()

    assert resumed.code == EXIT_LOCK_LOST, resumed
    assert resumed.error.startswith("LockLostError: "), resumed
    assert faults.audit() == audit_after_takeover, "the resumed process recorded something after the takeover"
    first_of_takeover = min(e.id for e in audit_after_takeover if e.execution_id == takeover.execution_id)
    assert all(e.id < first_of_takeover for e in audit_after_takeover if e.execution_id == paused_run)
    assert faults.effect_executions("nontx-1") == [paused_run, takeover.execution_id]
    assert faults.applied() == {
        "shared-1": [paused_run],  # applied before the pause
        "marker-1": [paused_run],
        "nontx-1": [takeover.execution_id],
    }
    assert faults.lock() is None


def test_paused_holder_inside_a_shared_transaction_blocks_the_takeover_and_exactly_one_run_commits(
    faults: Faults,
) -> None:
    """Paused inside BEGIN IMMEDIATE, the holder keeps SQLite's write lock on the audit database: its lease is
    over, but nobody can take the lock record (or write anything) until it resumes. Then whichever run commits,
    the change's rows and its single APPLIED entry come from the same run."""
    paused = faults.start(hang="shared-1")
    paused_run = faults.wait_ready(paused, "shared-1")
    paused.stop()
    faults.wait_lease_expired()

    other = faults.start()
    lock = faults.lock()
    faults.wait_started(other)
    with pytest.raises(AssertionError, match="timed out"):
        wait_until(lambda: not other.running(), SETTLE_SECONDS, "the other instance to finish (it cannot)")
    assert faults.lock() == lock and lock is not None and lock[0].endswith(paused_run)
    assert faults.audit() == []

    faults.go("shared-1")
    paused.cont()
    resumed, finished = paused.wait(), other.wait()

    assert finished.code == EXIT_OK, finished
    assert resumed.code in (EXIT_OK, EXIT_LOCK_LOST), resumed
    applied = faults.applied()
    assert all(len(executions) == 1 for executions in applied.values()), applied
    [committed_by] = applied["shared-1"]
    assert faults.rows(faults.audit_db, "shared-1") == [(committed_by, n) for n in range(3)]
    assert faults.effect_executions("shared-1")[-1] == committed_by
    assert faults.states("shared-1") == ["APPLIED"]
    if resumed.code == EXIT_OK:
        assert all(executions == [paused_run] for executions in applied.values()), "it ran to the end"


def test_paused_holder_in_the_marker_path_cannot_commit_after_the_takeover(faults: Faults) -> None:
    """The target's transaction is not fenced by the audit store (another database). Paused inside it past its
    lease, the holder must not commit when it wakes: the other instance has found no marker and runs the change
    again, so a late commit would apply it twice (as it did before the lease check in front of that commit)."""
    paused = faults.start(hang="marker-1")
    paused_run = faults.wait_ready(paused, "marker-1")
    faults.pause_between_statements(paused)
    faults.wait_lease_expired()

    other = faults.start()
    # It takes the lock, records STARTED, and then waits for the app database's write lock, held by the paused one.
    wait_until(lambda: len(faults.audit("marker-1")) == 2, START_TIMEOUT, "the other instance to start marker-1")
    with closing(sqlite3.connect(faults.audit_db, timeout=10, isolation_level=None)) as busy:
        # The audit database is busy when the paused process resumes, so its renewal cannot tell it at once that
        # the lock is gone: whether it commits must not depend on how fast it learns that.
        busy.execute("BEGIN IMMEDIATE")
        faults.go("marker-1")
        paused.cont()
        with suppress(AssertionError):
            wait_until(lambda: faults.rows(faults.app_db, "marker-1") != [], 1.0, "a commit of marker-1")
        busy.execute("ROLLBACK")
    resumed, finished = paused.wait(), other.wait()

    assert resumed.code == EXIT_LOCK_LOST, resumed
    assert finished.code == EXIT_OK, finished
    [applied] = [e for e in faults.audit("marker-1") if e.state == "APPLIED"]
    # Either the paused run's commit is refused, or the other run sees its marker and records it as recovered.
    committed_by = applied.metadata.get("recoveredFromExecutionId", applied.execution_id)
    assert committed_by in (paused_run, finished.execution_id)
    assert faults.rows(faults.app_db, "marker-1") == [(committed_by, n) for n in range(3)], "committed twice"
    assert faults.markers() == []


def test_holder_paused_between_the_marker_commit_and_applied_is_recovered_and_fenced(faults: Faults) -> None:
    """The change committed (rows and marker in the app database) but APPLIED is not written yet when the holder
    freezes: the audit database is busy, then the process is stopped. The next instance must record APPLIED from
    the marker without running the change again, and the holder, once resumed, must record nothing."""
    paused = faults.start(hang="marker-1")
    paused_run = faults.wait_ready(paused, "marker-1")
    with closing(sqlite3.connect(faults.audit_db, timeout=10, isolation_level=None)) as busy:
        busy.execute("BEGIN IMMEDIATE")
        faults.go("marker-1")
        wait_until(lambda: faults.markers() != [], LEASE_SECONDS / 2, "the change's transaction to commit")
        paused.stop()  # now waiting to write APPLIED
        busy.execute("ROLLBACK")
    faults.wait_lease_expired()

    takeover = faults.run()
    assert takeover.code == EXIT_OK, takeover
    audit_after_takeover = faults.audit()
    paused.cont()
    resumed = paused.wait()

    assert resumed.code == EXIT_LOCK_LOST, resumed
    assert faults.audit() == audit_after_takeover, "the resumed process recorded something after the takeover"
    *_, applied = faults.audit("marker-1")
    assert (applied.state, applied.execution_id) == ("APPLIED", takeover.execution_id)
    assert applied.metadata == {"recoveredFromExecutionId": paused_run}
    assert faults.effect_executions("marker-1") == [paused_run], "the committed change ran again"
    assert faults.rows(faults.app_db, "marker-1") == [(paused_run, n) for n in range(3)]
    assert faults.markers() == []


STALLED_PROCESSES = 8


def test_shared_changes_that_stall_the_event_loop_for_less_than_the_lease_commit(
    make_faults: Callable[[], Faults],
) -> None:
    """Each shared-transaction change blocks the event loop for 0.3 s: longer than a renewal interval (0.2 s),
    shorter than the lease (0.6 s), so the lease never ends and every run must succeed. When the loop wakes, the
    overdue renewal and the change's commit run on the same connection at the same moment; that used to make
    about one process in two fail with 'cannot commit transaction - SQL statements in progress'."""
    sets = [make_faults() for _ in range(STALLED_PROCESSES)]
    apps = [f.start(copies=2, block=0.3, lease=0.6) for f in sets]
    for app, exited in zip(apps, [app.wait() for app in apps], strict=True):
        assert exited.code == EXIT_OK, f"process {app.pid}: {exited.error}"
    for f in sets:
        assert set(f.applied()) == {"shared-1", "marker-1", "nontx-1", "shared-2", "marker-2", "nontx-2"}
        assert f.effects() == dict.fromkeys(f.applied(), 1)
