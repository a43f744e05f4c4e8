"""The store's collections: found, created or reported missing, through the bucket's collection manager (the
cluster's management service)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ..backend import ConfigurationError
from ._errors import kv, sdk_errors
from ._target import CouchbaseTargetSystem

__all__ = ["CollectionSpec", "ensure_collections", "missing_collections"]


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    role: str
    scope: str
    name: str

    def fix(self, bucket: str) -> str:
        return (
            f"couchbase-cli collection-manage -c <host> -u <user> -p <password> --bucket {bucket} "
            f"--create-collection {self.scope}.{self.name}"
        )


async def missing_collections(target: CouchbaseTargetSystem, specs: tuple[CollectionSpec, ...]) -> list[CollectionSpec]:
    scopes = await kv(
        f"listing the collections of bucket {target.bucket_name!r}", target.bucket.collections().get_all_scopes()
    )
    present = {(scope.name, collection.name) for scope in scopes for collection in scope.collections}
    return [spec for spec in specs if (spec.scope, spec.name) not in present]


async def ensure_collections(
    target: CouchbaseTargetSystem, specs: tuple[CollectionSpec, ...], *, create: bool, option: str
) -> None:
    """Create what is missing, or raise `ConfigurationError` naming the command that creates it."""
    missing = await missing_collections(target, specs)
    if missing and not create:
        raise ConfigurationError(
            [
                f"the {spec.role} collection {spec.scope}.{spec.name} does not exist in bucket {target.bucket_name!r} "
                f"({option}=False): create it with `{spec.fix(target.bucket_name)}`"
                for spec in missing
            ]
        )
    manager = target.bucket.collections()
    exists = sdk_errors().CollectionAlreadyExistsException
    for spec in missing:
        with contextlib.suppress(exists):  # another instance created it meanwhile
            await kv(
                f"creating collection {spec.scope}.{spec.name}",
                manager.create_collection(spec.scope, spec.name),
                expected=(exists,),
            )
