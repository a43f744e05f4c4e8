"""examples/observability.py, as the operations page shows it: doctor before the first run, JSON log lines with
the run's fields, one span per change inside the run's span, and health() after."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import aioflamingock

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "observability.py"
CHANGES = ["create-users", "seed-admin-user", "add-user-status", "create-users-index"]


def run(data_dir: Path) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != aioflamingock.DISABLE_ENV_VAR}
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(data_dir)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_observability_example_shows_doctor_logs_spans_and_health(tmp_path: Path) -> None:
    first = run(tmp_path)
    doctor = [line for line in first if line.startswith("doctor")]
    assert doctor and all(line.startswith("doctor ok ") for line in doctor), doctor

    logs = [json.loads(line) for line in first if line.startswith("{")]
    applying = [record for record in logs if record["message"].startswith("applying change")]
    assert [record["change_id"] for record in applying] == CHANGES
    assert len({record["execution_id"] for record in logs}) == 1, "every record names the same run"
    assert logs[-1]["status"] == "SUCCESS" and logs[-1]["service"] == "default"

    health = json.loads(next(line for line in first if line.startswith("health "))[len("health ") :])
    assert health == {"ready": True, "auditStoreReachable": True, "issues": [], "pending": [], "error": None}
    spans = [line.split()[1:] for line in first if line.startswith("span ")]
    assert spans == [*(["aioflamingock.change", c] for c in CHANGES), ["aioflamingock.run", "SUCCESS"]]

    second = run(tmp_path)
    assert "doctor ok  changes / issues: none need manual intervention; 0 pending" in second
    assert "doctor ok  lock / default: free" in second
    assert not [line for line in second if "applying change" in line]
    assert [line.split()[1:] for line in second if line.startswith("span ")] == [["aioflamingock.run", "NO_CHANGES"]]
