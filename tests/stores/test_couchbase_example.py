"""`examples/couchbase_quickstart.py` runs as users run it: as a script, in a fresh process, against a Couchbase
server of its own: the key-value test double in another process, so the example's fixed names meet no other test's
and its first run finds an empty bucket."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import (
    COUCHBASE_BUCKET,
    COUCHBASE_PASSWORD,
    COUCHBASE_USER,
    CouchbaseServer,
    start_couchbase_kv_process,
    unavailable,
)

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "examples" / "couchbase_quickstart.py"


@pytest.fixture
def server() -> Iterator[CouchbaseServer]:
    try:
        import acouchbase  # noqa: F401
    except ImportError:
        unavailable('the Couchbase SDK is not installed: pip install -e ".[dev]"')
    process, connection_string = start_couchbase_kv_process()
    try:
        yield CouchbaseServer(
            connection_string, COUCHBASE_USER, COUCHBASE_PASSWORD, COUCHBASE_BUCKET, False, process.kill
        )
    finally:
        process.terminate()
        process.wait(10)


def run_quickstart(server: CouchbaseServer) -> list[str]:
    env = {
        **os.environ,
        "COUCHBASE_URL": server.connection_string,
        "COUCHBASE_USERNAME": server.username,
        "COUCHBASE_PASSWORD": server.password,
        "COUCHBASE_BUCKET": server.bucket,
    }
    done = subprocess.run([sys.executable, str(QUICKSTART)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_quickstart_applies_both_changes_then_finds_nothing_to_do(server: CouchbaseServer) -> None:
    first = run_quickstart(server)
    assert first == [
        "applied: add-plans, rename-price-field",
        "plan::free = {'name': 'Free', 'monthlyPrice': 0}",
        "plan::pro = {'name': 'Pro', 'monthlyPrice': 12}",
    ]
    second = run_quickstart(server)
    assert second[0] == "applied: nothing, every change was already applied"
    assert second[1:] == first[1:]
