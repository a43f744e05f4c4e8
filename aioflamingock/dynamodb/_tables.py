"""The tables aioflamingock keeps in DynamoDB: their key schemas, and creating or checking them.

| table | partition key | sort key |
|---|---|---|
| audit (`flamingockAuditLog`) | `partitionKey` (S), one value for the table | `seq` (N), the order of the entries |
| lock (`flamingockLock`) | `key` (S), the service | |
| marker (`flamingockMarker`, on a target) | `changeId` (S) | |

Tables are created with on-demand billing (`PAY_PER_REQUEST`), and used once `ACTIVE`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio

from ..backend import ConfigurationError, StoreUnavailableError, check_identifier, library_logger
from ._errors import botocore_errors, error_code, request

__all__ = [
    "AUDIT_KEYS",
    "LOCK_KEYS",
    "MARKER_KEYS",
    "TABLE_READY_SECONDS",
    "TableSpec",
    "check_table_name",
    "describe",
    "ensure_table",
]

logger = library_logger(__name__)

TABLE_READY_SECONDS = 120.0
"""How long a table being created may take to become `ACTIVE`."""
_FIRST_POLL = 0.1
_MAX_POLL = 2.0

Key = tuple[str, str, str]
"""(attribute name, attribute type, key type)."""
AUDIT_KEYS: tuple[Key, ...] = (("partitionKey", "S", "HASH"), ("seq", "N", "RANGE"))
LOCK_KEYS: tuple[Key, ...] = (("key", "S", "HASH"),)
MARKER_KEYS: tuple[Key, ...] = (("changeId", "S", "HASH"),)


def check_table_name(kind: str, name: object) -> str:
    """DynamoDB's rule for table names is `[A-Za-z0-9._-]{3,255}`; ours keeps the 128-character limit."""
    check_identifier(kind, name)
    assert isinstance(name, str)
    if len(name) < 3:
        raise ConfigurationError([f"{kind} {name!r} must be at least 3 characters (DynamoDB's minimum)"])
    return name


@dataclass(frozen=True)
class TableSpec:
    """A table aioflamingock uses: its name, its role in a message, and its keys."""

    name: str
    role: str
    keys: tuple[Key, ...]

    def key_schema(self) -> list[dict[str, str]]:
        return [{"AttributeName": name, "KeyType": key_type} for name, _, key_type in self.keys]

    def create_arguments(self) -> dict[str, Any]:
        return {
            "TableName": self.name,
            "KeySchema": self.key_schema(),
            "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t, _ in self.keys],
            "BillingMode": "PAY_PER_REQUEST",
        }

    def describe_keys(self) -> str:
        return ", ".join(f"{n} ({t}, {'partition' if k == 'HASH' else 'sort'} key)" for n, t, k in self.keys)

    def cli_command(self) -> str:
        definitions = " ".join(f"AttributeName={n},AttributeType={t}" for n, t, _ in self.keys)
        schema = " ".join(f"AttributeName={n},KeyType={k}" for n, _, k in self.keys)
        return (
            f"aws dynamodb create-table --table-name {self.name} --attribute-definitions {definitions} "
            f"--key-schema {schema} --billing-mode PAY_PER_REQUEST"
        )

    def missing(self) -> str:
        return f"the {self.role} {self.name!r} does not exist"

    def fix(self, option: str, *, creates: bool = False) -> str:
        """How to create the table; `creates`: aioflamingock would create it when it opens."""
        command = f"create it with `{self.cli_command()}`"
        if creates:
            return f"any run creates it ({option}=True), or {command}"
        return f"{command}, or let aioflamingock create it ({option}=True)"

    def schema_problem(self, table: dict[str, Any]) -> str | None:
        """Why an existing table cannot serve as this one, or None."""
        found = {(k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", [])}
        types = {a["AttributeName"]: a["AttributeType"] for a in table.get("AttributeDefinitions", [])}
        if found == {(n, k) for n, _, k in self.keys} and all(types.get(n) == t for n, t, _ in self.keys):
            return None
        return (
            f"the {self.role} {self.name!r} exists with another key schema; it needs {self.describe_keys()}: "
            "choose another table name, or drop the table if it is not in use"
        )


async def describe(client: Any, name: str, retry_seconds: float) -> dict[str, Any] | None:
    """`DescribeTable`'s `Table`, or None if there is no such table."""
    try:
        response = await request(
            lambda: client.describe_table(TableName=name),
            f"describing table {name!r}",
            retry_seconds=retry_seconds,
            passthrough=frozenset({"ResourceNotFoundException"}),
        )
    except botocore_errors().ClientError:
        return None
    table: dict[str, Any] = response["Table"]
    return table


async def ensure_table(client: Any, spec: TableSpec, *, create: bool, option: str, retry_seconds: float) -> None:
    """Make sure `spec`'s table exists with its keys and is usable; create it if missing and allowed."""
    table = await describe(client, spec.name, retry_seconds)
    if table is None:
        if not create:
            raise ConfigurationError([f"{spec.missing()}: {spec.fix(option)}"])
        await _create(client, spec, retry_seconds)
        table = await describe(client, spec.name, retry_seconds)
        if table is None:
            raise StoreUnavailableError(f"the {spec.role} {spec.name!r} was created but DynamoDB does not show it")
    problem = spec.schema_problem(table)
    if problem is not None:
        raise ConfigurationError([problem])
    if table.get("TableStatus") == "CREATING":
        await _wait_active(client, spec, retry_seconds)


async def _create(client: Any, spec: TableSpec, retry_seconds: float) -> None:

    logger.info("creating the %s %r", spec.role, spec.name)
    try:
        await request(
            lambda: client.create_table(**spec.create_arguments()),
            f"creating table {spec.name!r}",
            retry_seconds=retry_seconds,
            passthrough=frozenset({"ResourceInUseException"}),
        )
    except botocore_errors().ClientError as exc:  # another instance is creating it at the same moment
        logger.debug("the %s %r is being created elsewhere: %s", spec.role, spec.name, error_code(exc))


async def _wait_active(client: Any, spec: TableSpec, retry_seconds: float) -> None:
    deadline = time.monotonic() + TABLE_READY_SECONDS
    pause = _FIRST_POLL
    while time.monotonic() < deadline:
        table = await describe(client, spec.name, retry_seconds)
        if table is not None and table.get("TableStatus") in {"ACTIVE", "UPDATING"}:
            return
        await anyio.sleep(pause)
        pause = min(pause * 1.5, _MAX_POLL)
    raise StoreUnavailableError(f"the {spec.role} {spec.name!r} was not ACTIVE after {TABLE_READY_SECONDS:g} s")
