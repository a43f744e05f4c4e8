"""Bad changes and bad options: a clear error naming what to fix, raised before the lock is asked for or anything
is written."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from aioflamingock import (
    Change,
    ConfigurationError,
    Flamingock,
    LockOptions,
    NonIdempotentRetryWarning,
    NonTransactionalTargetSystem,
    Recovery,
    RunStatus,
)
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteContext, SQLiteTargetSystem

from ._support import TARGET, SpyStore, history, target_with

THIS_FILE = Path(__file__).name
MISSING = object()


async def _record(self: Change, ctx: Any) -> None:
    ctx["calls"].append(self.id)


def _sync(self: Change, ctx: Any) -> None:
    ctx["calls"].append(self.id)


def change_class(name: str = "Bad", **attributes: Any) -> type[Change]:
    """A change class defined in this module; `MISSING` leaves an attribute out."""
    namespace: dict[str, Any] = {
        "id": name.lower(),
        "order": f"order-{name.lower()}",
        "author": "tester",
        "target_system": TARGET,
        "transactional": False,
        "execute": _record,
    }
    namespace.update(attributes)
    return type(name, (Change,), {k: v for k, v in namespace.items() if v is not MISSING})


GOOD = change_class("Good", id="good", order="0001")


async def assert_rejected(fl: Flamingock, store: SpyStore, calls: list[str], *fragments: str) -> ConfigurationError:
    """`run()` raises ConfigurationError whose message contains every fragment; no lock, no write, nothing ran."""
    with pytest.raises(ConfigurationError) as caught:
        await fl.run()
    for fragment in fragments:
        assert fragment in str(caught.value)
    assert store.lock_attempts == []
    assert await history(store) == []
    assert calls == []
    return caught.value


def engine(store: SpyStore, target: NonTransactionalTargetSystem, *changes: type[Change]) -> Flamingock:
    return Flamingock(audit_store=store, target_systems=[target], changes=[GOOD, *changes])


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        pytest.param({"execute": _sync}, "Bad.execute must be `async def execute(self, ctx)`", id="sync-execute"),
        pytest.param({"execute": MISSING}, "Bad.execute is not defined", id="no-execute"),
        pytest.param({"rollback": _sync}, "Bad.rollback must be `async def rollback(self, ctx)`", id="sync-rollback"),
        pytest.param(
            {"id": "add user!"}, "Bad.id 'add user!' must be 1-128 characters of [A-Za-z0-9._-]", id="id-characters"
        ),
        pytest.param({"id": "x" * 129}, "must be 1-128 characters", id="id-too-long"),
        pytest.param({"id": ""}, "Bad.id '' must be 1-128 characters", id="id-empty"),
        pytest.param({"id": MISSING}, "Bad.id is missing", id="id-missing"),
        pytest.param({"recovery": "SOMETIMES"}, "Bad.recovery 'SOMETIMES' is not one of", id="unknown-recovery"),
        pytest.param({"author": MISSING}, "Bad.author is missing", id="author-missing"),
        pytest.param({"author": "  "}, "Bad.author is missing or empty", id="author-blank"),
        pytest.param({"target_system": MISSING}, "Bad.target_system is missing", id="target-missing"),
        pytest.param({"order": MISSING}, "Bad.order is not set", id="no-order-outside-a-change-module"),
        pytest.param({"order": "00 1"}, "Bad.order '00 1' must be", id="order-characters"),
        pytest.param({"transactional": "yes"}, "Bad.transactional must be True or False", id="transactional-not-bool"),
    ],
)
async def test_an_invalid_change_class_is_rejected_naming_file_and_field(
    store: SpyStore,
    target: NonTransactionalTargetSystem,
    calls: list[str],
    attributes: dict[str, Any],
    expected: str,
) -> None:
    fl = engine(store, target, change_class("Bad", **attributes))
    error = await assert_rejected(fl, store, calls, expected)
    assert error.problems == [str(error)]
    assert THIS_FILE in str(error)


async def test_an_id_of_128_characters_is_accepted(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    longest = "x" * 128
    report = await engine(store, target, change_class("Long", id=longest)).run()
    assert report.applied == ["good", longest]


async def test_recovery_may_be_given_as_a_string(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, change_class("Retry", recovery="ALWAYS_RETRY", idempotency="appending is harmless"))
    assert fl.changes()[1].recovery is Recovery.ALWAYS_RETRY


async def test_duplicate_ids_are_rejected(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, change_class("First", id="same"), change_class("Second", id="same"))
    await assert_rejected(fl, store, calls, "Second.id 'same' is also the id of First", THIS_FILE)


async def test_duplicate_orders_are_rejected(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, change_class("First", order="0005"), change_class("Second", order="0005"))
    await assert_rejected(fl, store, calls, "Second.order '0005' is also the order of First", THIS_FILE)


async def test_the_same_class_listed_twice_is_one_change(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    report = await engine(store, target, GOOD).run()
    assert report.applied == ["good"]
    assert calls == ["good"]


async def test_an_unknown_target_system_is_rejected_naming_file_and_field(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, change_class("Elsewhere", target_system="nowhere"))
    await assert_rejected(
        fl, store, calls, THIS_FILE, "Elsewhere.target_system 'nowhere' is not a configured target system", "app"
    )


async def test_every_problem_is_reported_at_once(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, change_class("NoAuthor", author=MISSING), change_class("SyncRun", execute=_sync))
    error = await assert_rejected(fl, store, calls, "2 problems")
    assert len(error.problems) == 2
    assert "NoAuthor.author" in error.problems[0]
    assert "SyncRun.execute" in error.problems[1]


async def test_a_source_that_is_neither_a_package_nor_a_change_is_rejected(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = Flamingock(audit_store=store, target_systems=[target], changes=[GOOD, 42])  # type: ignore[list-item]
    await assert_rejected(fl, store, calls, "changes: 42 is neither a package name nor a Change subclass")


async def test_plan_rejects_bad_changes_too(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    with pytest.raises(ConfigurationError):
        await engine(store, target, change_class(execute=_sync)).plan()
    assert store.lock_attempts == []


# -- ALWAYS_RETRY on a non-transactional change ----------------------------------------------------------------


async def test_non_transactional_always_retry_without_idempotency_note_warns(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = engine(store, target, change_class("Retry", recovery=Recovery.ALWAYS_RETRY))
    with pytest.warns(NonIdempotentRetryWarning, match=r"Retry is non-transactional with ALWAYS_RETRY") as caught:
        report = await fl.run()
    assert THIS_FILE in str(caught[0].message)
    assert report.applied == ["good", "retry"], "the warning does not stop the run"


async def test_a_transactional_change_on_a_non_transactional_target_is_warned_too(
    store: SpyStore, target: NonTransactionalTargetSystem
) -> None:
    fl = engine(store, target, change_class("Retry", recovery=Recovery.ALWAYS_RETRY, transactional=True))
    with pytest.warns(NonIdempotentRetryWarning):
        await fl.plan()


async def test_an_idempotency_note_silences_the_warning(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    retry = change_class("Retry", recovery=Recovery.ALWAYS_RETRY, idempotency="creating a topic twice is a no-op")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = await engine(store, target, retry).run()
    assert report.applied == ["good", "retry"]


class TransactionalRetry(Change):
    id = "tx-retry"
    order = "0001"
    author = "tester"
    target_system = "db"
    recovery = Recovery.ALWAYS_RETRY

    async def execute(self, ctx: SQLiteContext) -> None:
        await ctx.connection.execute("CREATE TABLE t (n INTEGER)")


async def test_a_transactional_change_with_always_retry_is_not_warned(tmp_path: Path) -> None:
    db = SQLiteTargetSystem("db", path=str(tmp_path / "db.sqlite"))
    fl = Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=[TransactionalRetry])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = await fl.run()
    assert report.applied == ["tx-retry"]


# -- engine options ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["", "my service", "a/b", "x" * 129])
def test_an_invalid_service_name_is_rejected(store: SpyStore, service: str) -> None:
    with pytest.raises(ConfigurationError, match="service"):
        Flamingock(audit_store=store, service=service)


def test_two_target_systems_with_one_id_are_rejected(store: SpyStore) -> None:
    with pytest.raises(ConfigurationError, match="two target systems have the id 'app'"):
        Flamingock(audit_store=store, target_systems=[target_with([]), target_with([])])


@pytest.mark.parametrize("target_id", ["", "has space", "x" * 129])
def test_an_invalid_target_system_id_is_rejected(target_id: str) -> None:
    with pytest.raises(ConfigurationError, match="target system id"):
        NonTransactionalTargetSystem(target_id)


def test_a_target_system_must_be_a_target_system(store: SpyStore) -> None:
    with pytest.raises(ConfigurationError, match="is not a TargetSystem"):
        Flamingock(audit_store=store, target_systems=[object()])  # type: ignore[list-item]


def test_the_audit_store_must_be_an_audit_store() -> None:
    with pytest.raises(ConfigurationError, match="audit_store must be an AuditStore"):
        Flamingock(audit_store=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        pytest.param({"lease_seconds": 0}, "lease_seconds", id="lease-zero"),
        pytest.param({"lease_seconds": -1}, "lease_seconds", id="lease-negative"),
        pytest.param({"acquire_timeout_seconds": -1}, "acquire_timeout_seconds", id="timeout-negative"),
        pytest.param({"retry_interval_seconds": 0}, "retry_interval_seconds", id="retry-zero"),
        pytest.param({"lease_seconds": float("inf")}, "lease_seconds", id="lease-infinite"),
        pytest.param({"lease_seconds": float("nan")}, "lease_seconds", id="lease-nan"),
        pytest.param({"lease_seconds": 1e12}, "lease_seconds", id="lease-over-a-day"),
        pytest.param({"lease_seconds": 1e-9}, "lease_seconds", id="lease-too-short-to-renew"),
        pytest.param({"acquire_timeout_seconds": float("inf")}, "acquire_timeout_seconds", id="timeout-infinite"),
        pytest.param({"retry_interval_seconds": "soon"}, "retry_interval_seconds", id="retry-not-a-number"),
        pytest.param({"lease": 60}, "lease", id="unknown-option"),
    ],
)
def test_invalid_lock_options_are_a_configuration_error_naming_the_option(
    options: dict[str, float], field: str
) -> None:
    with pytest.raises(ConfigurationError, match=field) as caught:
        LockOptions(**options)
    assert repr(next(iter(options.values()))) in str(caught.value) or "not an option" in str(caught.value)


def test_lock_options_may_be_a_dict_and_anything_else_is_refused(store: SpyStore) -> None:
    fl = Flamingock(audit_store=store, lock={"lease_seconds": 30})  # type: ignore[arg-type]
    assert fl.lock_options.lease_seconds == 30
    with pytest.raises(ConfigurationError, match="lease_seconds"):
        Flamingock(audit_store=store, lock={"lease_seconds": float("inf")})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="lock must be a LockOptions"):
        Flamingock(audit_store=store, lock=60)  # type: ignore[arg-type]


def test_metadata_that_cannot_be_recorded_is_refused_before_anything_runs(store: SpyStore) -> None:
    with pytest.raises(ConfigurationError, match=r"metadata\['owner'\] cannot be recorded"):
        Flamingock(audit_store=store, metadata={"owner": object()})
    with pytest.raises(ConfigurationError, match="string keys"):
        Flamingock(audit_store=store, metadata={1: "x"})  # type: ignore[dict-item]


def test_lock_defaults_are_flamingocks() -> None:
    options = LockOptions()
    assert (options.lease_seconds, options.acquire_timeout_seconds, options.retry_interval_seconds) == (60, 180, 1)


async def test_a_package_name_that_does_not_import_is_rejected(
    store: SpyStore, target: NonTransactionalTargetSystem, calls: list[str]
) -> None:
    fl = Flamingock(audit_store=store, target_systems=[target], changes=["no_such_package_for_aioflamingock"])
    await assert_rejected(fl, store, calls, "no_such_package_for_aioflamingock", "failed to import")


async def test_nothing_is_rejected_when_there_is_nothing_to_run(store: SpyStore) -> None:
    report = await Flamingock(audit_store=store).run()
    assert report.status is RunStatus.NO_CHANGES
    assert store.lock_attempts == []
