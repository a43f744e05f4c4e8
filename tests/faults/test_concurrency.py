"""Instances of a service started while another is in the middle of a run, on the same SQLite files (eight at once:
the protocol kit's real-process scenarios, `tests/stores/test_sqlite.py`)."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import pytest

from .conftest import EXIT_OK, SETTLE_SECONDS, Faults, wait_until

pytestmark = pytest.mark.slow


def test_an_instance_started_during_a_non_transactional_change_waits_for_it(faults: Faults) -> None:
    """The STARTED entry of a run in progress is not a crashed run's: the newcomer judges it under the lock."""
    first = faults.start(hang="nontx-1")  # recovery MANUAL_INTERVENTION, the default
    faults.wait_ready(first, "nontx-1")
    second = faults.start()
    faults.wait_started(second)
    with pytest.raises(AssertionError, match="timed out"):  # it reads the audit, sees STARTED, waits for the lock
        wait_until(lambda: not second.running(), SETTLE_SECONDS, "the second instance to stop early (it must not)")

    faults.go("nontx-1")

    assert first.wait().code == EXIT_OK
    assert second.wait().code == EXIT_OK
    assert faults.effects()["nontx-1"] == 1
    assert faults.states("nontx-1") == ["STARTED", "APPLIED"]


def test_a_new_target_database_opened_by_one_instance_stays_open_to_the_others(faults: Faults) -> None:
    """First deployment: the first instance creates the app database and then works on the audit database
    (shared-1). The others must be able to open the app database meanwhile, and wait for the lock. (An
    unfinished `PRAGMA journal_mode = WAL` used to keep a brand-new file locked until the next statement.)"""
    first = faults.start(hang="shared-1")
    faults.wait_ready(first, "shared-1")
    with closing(sqlite3.connect(faults.app_db, timeout=1)) as reader:
        assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    second = faults.start(busy_timeout=1)
    faults.wait_started(second)

    faults.go("shared-1")

    assert first.wait().code == EXIT_OK
    assert second.wait().code == EXIT_OK
    assert faults.effects() == {"shared-1": 1, "marker-1": 1, "nontx-1": 1}
