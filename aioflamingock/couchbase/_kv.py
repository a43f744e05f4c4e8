"""Key-value operations on one collection, with the outcomes of a conditional write as values instead of errors.

| call | SDK operation | when the condition fails |
|---|---|---|
| `get(key)` | get | `None`: no such document |
| `insert(key, body)` | insert | `None`: the document exists |
| `replace(key, body, cas)` | replace with CAS | `None`: changed since read (CAS mismatch) or gone |
| `remove(key, cas)` | remove with CAS | `False`: changed since read or gone |
| `upsert(key, body)` | upsert | never |
| `lookup(key, paths)` | lookup_in | `None`: no such document (a missing path reads as `None`) |
| `mutate(key, changes, cas)` | mutate_in with CAS, an `upsert` per path | `None`: changed since read, or gone |

`lookup` and `mutate` are sub-document operations: they move the named paths, not the whole document.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ..backend import StoreError
from ._errors import kv, sdk_errors

__all__ = ["Doc", "Keyspace", "Paths", "path"]


@dataclass(frozen=True, slots=True)
class Doc:
    """A document as read: its JSON body and its CAS, the version a conditional write names."""

    key: str
    body: dict[str, Any]
    cas: int


def path(*parts: str) -> str:
    """A sub-document path whose parts are dictionary keys; each is quoted, so a `.` in a change id is no nesting."""
    return ".".join(f"`{part}`" for part in parts)


@dataclass(frozen=True, slots=True)
class Paths:
    """The values of the paths a lookup asked for, in order, and the document's CAS."""

    values: list[Any]
    cas: int


class Keyspace:
    """`bucket.scope.collection` reached through an acouchbase collection."""

    def __init__(self, collection: Any, *, bucket: str, scope: str, name: str) -> None:
        self.collection = collection
        self.bucket = bucket
        self.scope = scope
        self.name = name

    def __str__(self) -> str:
        return f"{self.bucket}.{self.scope}.{self.name}"

    async def get(self, key: str) -> Doc | None:
        errors = sdk_errors()
        try:
            result = await kv(f"reading {key!r} in {self}", self.collection.get(key), expected=_not_found())
        except errors.DocumentNotFoundException:
            return None
        body = result.content_as[dict]
        if not isinstance(body, dict):
            raise StoreError(f"{key!r} in {self} is not a JSON object: was it written by something else?")
        return Doc(key, body, int(result.cas))

    async def insert(self, key: str, body: dict[str, Any]) -> int | None:
        errors = sdk_errors()
        try:
            result = await kv(
                f"inserting {key!r} in {self}",
                self.collection.insert(key, body),
                expected=(errors.DocumentExistsException,),
            )
        except errors.DocumentExistsException:
            return None
        return int(result.cas)

    async def replace(self, key: str, body: dict[str, Any], cas: int) -> int | None:
        errors = sdk_errors()
        expected = (errors.CasMismatchException, errors.DocumentNotFoundException, errors.DocumentExistsException)
        try:
            result = await kv(
                f"replacing {key!r} in {self}", self.collection.replace(key, body, cas=cas), expected=expected
            )
        except expected:
            return None
        return int(result.cas)

    async def remove(self, key: str, cas: int = 0) -> bool:
        errors = sdk_errors()
        expected = (errors.CasMismatchException, errors.DocumentNotFoundException, errors.DocumentExistsException)
        try:
            await kv(f"removing {key!r} from {self}", self.collection.remove(key, cas=cas), expected=expected)
        except expected:
            return False
        return True

    async def upsert(self, key: str, body: dict[str, Any]) -> int:
        result = await kv(f"writing {key!r} in {self}", self.collection.upsert(key, body))
        return int(result.cas)

    async def lookup(self, key: str, paths: list[str]) -> Paths | None:
        sd = _subdocument()
        errors = sdk_errors()
        what = f"reading {', '.join(paths)} of {key!r} in {self}"
        try:
            result = await kv(what, self.collection.lookup_in(key, [sd.get(p) for p in paths]), expected=_not_found())
        except errors.DocumentNotFoundException:
            return None
        values = [result.content_as[_as_is](i) if result.exists(i) else None for i in range(len(paths))]
        return Paths(values, int(result.cas))

    async def mutate(self, key: str, changes: dict[str, Any], cas: int) -> int | None:
        sd = _subdocument()
        errors = sdk_errors()
        expected = (errors.CasMismatchException, errors.DocumentNotFoundException, errors.DocumentExistsException)
        specs = [sd.upsert(p, value, create_parents=True) for p, value in changes.items()]
        what = f"writing {', '.join(changes)} of {key!r} in {self}"
        try:
            result = await kv(what, self.collection.mutate_in(key, specs, cas=cas), expected=expected)
        except expected:
            return None
        return int(result.cas)


def _subdocument() -> Any:
    return importlib.import_module("couchbase.subdocument")


def _as_is(value: Any) -> Any:
    """`content_as[...]` casts by calling the type: this keeps the decoded JSON value as it is."""
    return value


def _not_found() -> tuple[type[BaseException], ...]:
    return (sdk_errors().DocumentNotFoundException,)
