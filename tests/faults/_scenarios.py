"""The fault scenarios every backend goes through, written once against the harness interface of `Processes`
(`conftest.py`): each backend's test module calls them with its own harness, then checks what only it has.

A harness starts the app processes of its backend and reads back what they left: `audit()`, `lock()`, `markers()`,
`store_rows(change_id)` (the rows of the shared-transaction path, in the store's own database) and
`target_rows(change_id)` (the rows of the marker path, in the other database). `kinds` says which of the three
changes of `_harness.py` its apps declare.
"""

from __future__ import annotations

from .conftest import EXIT_MANUAL_INTERVENTION, EXIT_OK, Exited, Processes

THREE_ROWS = [0, 1, 2]
PROCESSES = 8
COPIES = 2


def nontx_crash_needs_a_human(h: Processes) -> str:
    """SIGKILL inside a non-transactional change under MANUAL_INTERVENTION: the next run refuses, writing nothing,
    and names the fix. Returns the crashed execution id."""
    victim = h.start(hang="nontx-1")
    crashed = h.wait_ready(victim, "nontx-1")
    victim.kill()
    h.after_kill()
    assert h.states("nontx-1") == ["STARTED"]
    assert h.lock() is not None, "the dead process's lease should still be in the store"
    audit_before = h.audit()

    refused = h.run()

    assert refused.code == EXIT_MANUAL_INTERVENTION, refused
    assert refused.error.startswith("ManualInterventionRequiredError: change 'nontx-1' ")
    assert refused.error.endswith("then record what happened: fix('nontx-1', 'applied' or 'rolled-back')")
    assert h.audit() == audit_before, "a refused run wrote to the audit"
    assert h.effect_executions("nontx-1") == [crashed]
    return crashed


def nontx_crash_is_retried(h: Processes) -> Exited:
    """The same crash under ALWAYS_RETRY: the next run waits for the dead lease, runs the change again, records it."""
    victim = h.start(hang="nontx-1", nontx_recovery="retry")
    crashed = h.wait_ready(victim, "nontx-1")
    victim.kill()
    h.after_kill()
    assert h.lock() is not None

    rerun = h.run(nontx_recovery="retry")  # waits for the dead process's lease to end

    assert rerun.code == EXIT_OK, rerun
    assert h.effects() == {**{f"{kind}-1": 1 for kind in h.kinds}, "nontx-1": 2}
    assert h.effect_executions("nontx-1") == [crashed, rerun.execution_id]
    assert h.states("nontx-1") == ["STARTED", "STARTED", "APPLIED"]
    assert h.applied()["nontx-1"] == [rerun.execution_id]
    assert h.lock() is None, "the run released the lock"
    return rerun


def marker_crash_before_commit(h: Processes) -> Exited:
    """SIGKILL inside a marker-path change, before its transaction commits: no marker, no rows; the next run applies
    it again without a human."""
    victim = h.start(hang="marker-1")
    crashed = h.wait_ready(victim, "marker-1")
    victim.kill()
    h.after_kill()
    [started] = h.audit("marker-1")
    assert (started.state, started.tx_strategy, started.execution_id) == ("STARTED", "TX_AUDIT_STORE_SYNC", crashed)
    assert h.markers() == []
    assert h.target_rows("marker-1") == []

    rerun = h.run()  # recovery MANUAL_INTERVENTION: the missing marker settles it, not a human

    assert rerun.code == EXIT_OK, rerun
    assert h.effect_executions("marker-1") == [crashed, rerun.execution_id]
    assert h.target_rows("marker-1") == [(rerun.execution_id, n) for n in THREE_ROWS]
    assert h.states("marker-1") == ["STARTED", "STARTED", "APPLIED"]
    assert h.applied()["marker-1"] == [rerun.execution_id]
    assert h.markers() == []
    return rerun


def shared_crash_leaves_nothing(h: Processes) -> Exited:
    """SIGKILL inside a shared-transaction change: nothing recorded, no rows; the next run applies it once."""
    victim = h.start(hang="shared-1")
    crashed = h.wait_ready(victim, "shared-1")
    victim.kill()
    h.after_kill()
    assert h.audit() == [], "nothing is recorded before the shared transaction commits"
    assert h.store_rows("shared-1") == []
    assert h.lock() is not None, "the dead process's lease should still be in the store"

    rerun = h.run()

    assert rerun.code == EXIT_OK, rerun
    assert h.effect_executions("shared-1") == [crashed, rerun.execution_id]
    assert h.store_rows("shared-1") == [(rerun.execution_id, n) for n in THREE_ROWS]
    assert h.states("shared-1") == ["APPLIED"]
    assert h.applied() == {f"{kind}-1": [rerun.execution_id] for kind in h.kinds}
    assert h.lock() is None, "the run released the lock"
    return rerun


def eight_processes_apply_every_change_once(h: Processes, *, timeout: float = 60.0) -> None:
    """Eight instances started at once: every change runs exactly once, its rows are its one run's."""
    # A small delay per change keeps the lock held across renewals while the others poll for it. Recovery is
    # MANUAL_INTERVENTION: the STARTED entries the others see while the first applies must not stop them.
    apps = [h.start(copies=COPIES, delay=0.1) for _ in range(PROCESSES)]
    exits = [app.wait(timeout) for app in apps]

    assert [e.code for e in exits] == [EXIT_OK] * PROCESSES, exits
    changes = [f"{kind}-{i}" for i in range(1, COPIES + 1) for kind in h.kinds]
    assert h.effects() == dict.fromkeys(changes, 1), "some execute ran more or less than once"
    applied = h.applied()
    assert sorted(applied) == sorted(changes)
    assert all(len(executions) == 1 for executions in applied.values()), applied
    assert not [e for e in h.audit() if e.state not in ("STARTED", "APPLIED")]
    for change_id, [by] in applied.items():
        if change_id.startswith("shared-"):
            assert h.store_rows(change_id) == [(by, n) for n in THREE_ROWS]
        if change_id.startswith("marker-"):
            assert h.target_rows(change_id) == [(by, n) for n in THREE_ROWS]
    assert h.markers() == []
    assert h.lock() is None


def committed_marker_is_recorded(h: Processes, crashed: str) -> Exited:
    """After a process was killed between its marker-path commit and its APPLIED entry (each backend parks it
    there its own way): the change is committed, with its marker; the next run records APPLIED without running it
    again, and deletes the marker."""
    assert h.markers() == [("marker-1", crashed)]
    assert h.target_rows("marker-1") == [(crashed, n) for n in THREE_ROWS]
    assert h.states("marker-1") == ["STARTED"]

    rerun = h.run()

    assert rerun.code == EXIT_OK, rerun
    assert h.effect_executions("marker-1") == [crashed], "the committed change ran again"
    assert h.target_rows("marker-1") == [(crashed, n) for n in THREE_ROWS]
    *_, applied = h.audit("marker-1")
    assert (applied.state, applied.execution_id) == ("APPLIED", rerun.execution_id)
    assert applied.metadata == {"recoveredFromExecutionId": crashed}
    assert h.states("marker-1") == ["STARTED", "APPLIED"]
    assert h.markers() == [], "the marker is deleted once APPLIED is recorded"
    assert h.effects() == {f"{kind}-1": 1 for kind in h.kinds}
    return rerun
