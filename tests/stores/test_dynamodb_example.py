"""`examples/worker_dynamodb.py` runs as users run it: as a script, in a fresh process, against a DynamoDB endpoint
of its own (moto's server in another process, so the example's fixed table names meet no other test's)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import DYNAMODB_CREDENTIALS, DYNAMODB_REGION, free_port, start_moto_process, unavailable

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "examples" / "worker_dynamodb.py"


@pytest.fixture
def endpoint() -> Iterator[str]:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        unavailable('moto\'s server is not installed: pip install -e ".[dev]"')
    port = free_port()
    server = start_moto_process(port)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


def run_worker(endpoint: str) -> str:
    env = {
        **os.environ,
        "DYNAMODB_ENDPOINT": endpoint,
        "AWS_DEFAULT_REGION": DYNAMODB_REGION,
        "AWS_ACCESS_KEY_ID": DYNAMODB_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": DYNAMODB_CREDENTIALS["aws_secret_access_key"],
    }
    done = subprocess.run([sys.executable, str(WORKER)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_worker_applies_its_changes_before_consuming_then_finds_nothing_to_do(endpoint: str) -> None:
    import boto3

    first = run_worker(endpoint).splitlines()
    applied = first.index("applied  create-orders-table, seed-order-statuses")
    assert all(line.startswith("queued") for line in first[:applied][-3:])
    assert first[applied + 1 :] == ["consumed book", "consumed lamp", "consumed desk"]
    assert "applied  nothing: every change was already applied" in run_worker(endpoint)

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=DYNAMODB_REGION, **DYNAMODB_CREDENTIALS)
    try:
        ids = {item["id"]["S"] for item in client.scan(TableName="orders")["Items"]}
        audit = client.query(
            TableName="flamingockAuditLog",
            KeyConditionExpression="partitionKey = :p",
            ExpressionAttributeValues={":p": {"S": "auditLog"}},
        )["Items"]
    finally:
        client.close()
    assert ids == {"status#received", "status#shipped", "order#book", "order#lamp", "order#desk"}
    entries = [item for item in audit if "changeId" in item]  # and the start-up summary, the partition's last item
    assert [(i["changeId"]["S"], i["state"]["S"], i["txStrategy"]["S"]) for i in entries] == [
        ("create-orders-table", "STARTED", "NON_TX"),
        ("create-orders-table", "APPLIED", "NON_TX"),
        ("seed-order-statuses", "APPLIED", "TX_AUDIT_STORE_SHARED"),
    ]
