"""Benchmarks of aioflamingock on Couchbase. Run by hand, never in CI:

    python benchmarks/couchbase.py [--repeat N]

Uses the cluster at $AIOFLAMINGOCK_COUCHBASE_URL (couchbase://USER:PASSWORD@HOST[:PORT]/BUCKET), else starts the
key-value test double (`tests/couchbase_kv.py`, one asyncio loop) in a child process. Every figure comes from one
server in one run. Each measurement uses collections of its own in scope `_default`, named under a prefix of this
run's and dropped once measured.

(a) A run with nothing pending, over 1,000 and 5,000 applied changes: the key-value operations it sends (counted by
    wrapping the SDK collections of the store's keyspaces, one per SDK call; collection-manager calls, which go to
    the management service over HTTP, are counted apart as `mgmt:`) and its wall time, each also as a ratio to one
    plain `get` measured the same way; the size of the audit's head document.
(b) Applying 200 trivial non-transactional changes: operations and time per change against the floor, the
    operations a correct protocol cannot do without (per entry: the lock's `get` beside a `lookup_in` of the head,
    a `mutate_in` of the head with CAS, the entry's write), sent with the bare collections. `floor` keeps no
    current state in the head (sequence number and holders only); `floor+states` also writes the change's newest
    entry into it, as the store does. Then 1,000 appends through the store, each a new change, and the same on
    both floors: the time per append over the first and the last 100, to show whether it grows with the audit.
(c) The lock: `try_acquire` + `release`, over an empty audit and over the audits of (a), since taking the lock
    claims the head.

Prints a table and writes the figures to benchmarks/results/couchbase-<time>.json.

The file's name is the SDK's package's (`couchbase`): `python benchmarks/couchbase.py` puts benchmarks/ first on
`sys.path`, where `import couchbase` would find this file. `main()` takes that folder off the path before anything
imports the SDK, which is why the SDK's modules are imported inside functions here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from _common import (
    AppliedRun,
    CallCounter,
    FloorRun,
    Runs,
    argument_parser,
    count_call,
    floor_times,
    fresh_runs,
    generate_changes,
    machine_facts,
    measure_engine,
    measure_floor,
    median_seconds,
    open_runs,
    package_version,
    print_machine,
    progress,
    rotated,
    stop_process,
    tally,
    timed,
    write_results,
)

import aioflamingock
from aioflamingock import AuditEntry, Change, Flamingock, NonTransactionalTargetSystem
from aioflamingock.couchbase import CouchbaseAuditStore, CouchbaseTargetSystem
from aioflamingock.couchbase._audit import HEAD_KEY, entry_key
from aioflamingock.couchbase._kv import Keyspace

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
URL_ENV = "AIOFLAMINGOCK_COUCHBASE_URL"
SCOPE = "_default"
NOOP_SIZES = (1_000, 5_000)
APPLIED_BY_ENGINE = 100  # larger audits are grown by copying these entries (see `seed_audit`)
APPLY_COUNT = 200
GROWTH_APPENDS = 1_000
GROWTH_WINDOW = 100
LOCK_ROUNDS = 20  # lock round trips per figure, at least
LOCK_KEY = "bench-lock"
FLOOR_OWNER = "bench"

# -- counting operations --------------------------------------------------------------------------------------------


class OpCounter(CallCounter):
    """Every call made through the wrapped SDK objects, one name per SDK call, and how long each took until its
    result."""

    def wrap(self, inner: Any, prefix: str = "") -> Any:
        return _Counted(inner, self, prefix)

    async def timed_call(self, name: str, operation: Awaitable[Any]) -> Any:
        self.sent.append(name)
        started = time.perf_counter()
        try:
            return await operation
        finally:
            self.seconds.append(time.perf_counter() - started)


class _Counted:
    """An SDK collection or collection manager whose every method call is counted, as `tests/stores/
    test_couchbase_protocol.py`'s `Counting` does, and timed."""

    def __init__(self, inner: Any, counter: OpCounter, prefix: str) -> None:
        self._inner = inner
        self._counter = counter
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def counted(*args: Any, **kwargs: Any) -> Awaitable[Any]:
            return self._counter.timed_call(self._prefix + name, attribute(*args, **kwargs))

        return counted


class _CountedBucket:
    """A bucket whose collection manager counts its calls (`mgmt:`, HTTP requests to the management service)."""

    def __init__(self, inner: Any, counter: OpCounter) -> None:
        self._inner = inner
        self._counter = counter

    def collections(self) -> Any:
        return self._counter.wrap(self._inner.collections(), "mgmt:")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class CountedTarget(CouchbaseTargetSystem):
    """The target the store is built on, with every keyspace's collection and the collection manager counted."""

    def __init__(self, id: str, *, cluster: Any, bucket: str, counter: OpCounter) -> None:
        super().__init__(id, cluster=cluster, bucket=bucket)
        self.counter = counter

    @property
    def bucket(self) -> Any:
        return _CountedBucket(super().bucket, self.counter)

    def keyspace(self, collection: str, *, scope: str | None = None) -> Keyspace:
        keyspace = super().keyspace(collection, scope=scope)
        keyspace.collection = self.counter.wrap(keyspace.collection)
        return keyspace


def kv_ops(names: list[str]) -> int:
    return sum(1 for name in names if not name.startswith("mgmt:"))


# -- the SDK, the server, the collections ---------------------------------------------------------------------------


def unshadow_sdk() -> None:
    """Take benchmarks/ off `sys.path` (this file would pass for the SDK's `couchbase` package), put the repository
    on it (for `tests.servers`)."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def sdk(module: str) -> Any:
    """A module imported once `unshadow_sdk()` has run: the SDK's, or `tests.servers`."""
    return importlib.import_module(module)


@dataclass(frozen=True)
class Server:
    connection_string: str
    username: str
    password: str
    bucket: str
    description: str


def server_from_url(url: str) -> Server:
    """`couchbase://USER:PASSWORD@HOST[:PORT]/BUCKET`, read by `tests/servers.py`."""
    try:
        cluster = sdk("tests.servers")._couchbase_from_url(url)
    except ValueError as error:
        raise SystemExit(str(error)) from None
    return Server(cluster.connection_string, cluster.username, cluster.password, cluster.bucket, URL_ENV)


@contextmanager
def couchbase_server() -> Iterator[Server]:
    """$AIOFLAMINGOCK_COUCHBASE_URL, else the test double in a child process (its own interpreter, so it does not
    share a GIL or an event loop with the benchmark), stopped at the end."""
    url = os.environ.get(URL_ENV)
    if url:
        yield server_from_url(url)
        return
    servers = sdk("tests.servers")
    process, connection = servers.start_couchbase_kv_process()
    description = "tests/couchbase_kv.py test double, child process, one asyncio loop, key-value only"
    try:
        yield Server(
            connection, servers.COUCHBASE_USER, servers.COUCHBASE_PASSWORD, servers.COUCHBASE_BUCKET, description
        )
    finally:
        stop_process(process)


async def connect(server: Server) -> Any:
    """An acouchbase cluster, as `tests/stores/conftest.py`'s `connect_couchbase` connects it (longer timeouts:
    the head document grows to megabytes)."""
    options = sdk("couchbase.options")
    timeouts = options.ClusterTimeoutOptions(kv_timeout=timedelta(seconds=30), connect_timeout=timedelta(seconds=30))
    authenticator = sdk("couchbase.auth").PasswordAuthenticator(server.username, server.password)
    cluster_options = options.ClusterOptions(authenticator, timeout_options=timeouts)
    return await sdk("acouchbase.cluster").Cluster.connect(server.connection_string, cluster_options)


@dataclass(frozen=True)
class Names:
    """A store's two collections."""

    audit: str
    lock: str


@dataclass
class Bench:
    """The cluster, the bucket, the counter, and every collection this run names (prefixed, dropped at the end)."""

    cluster: Any
    bucket_name: str
    counter: OpCounter
    prefix: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:6]}")
    named: list[str] = field(default_factory=list)
    _bucket: Any = None

    def names(self, name: str) -> Names:
        """The store's collection names for one measurement, prefixed."""
        names = Names(f"{self.prefix}{name}audit", f"{self.prefix}{name}lock")
        self.named += [names.audit, names.lock]
        return names

    async def bucket(self) -> Any:
        if self._bucket is None:
            bucket = self.cluster.bucket(self.bucket_name)
            await bucket.on_connect()
            self._bucket = bucket
        return self._bucket

    async def bare(self, collection: str, *, create: bool = False) -> Any:
        """The SDK collection itself, not the store's; created first when asked."""
        bucket = await self.bucket()
        if create:
            await bucket.collections().create_collection(SCOPE, collection)
            self.named.append(collection)
        return bucket.scope(SCOPE).collection(collection)

    async def drop_all(self) -> None:
        manager = (await self.bucket()).collections()
        for name in self.named:
            with contextlib.suppress(Exception):  # never created: nothing to drop
                await manager.drop_collection(SCOPE, name)
        self.named.clear()

    def target(self) -> CountedTarget:
        return CountedTarget("audit", cluster=self.cluster, bucket=self.bucket_name, counter=self.counter)

    def store(self, names: Names) -> CouchbaseAuditStore:
        return CouchbaseAuditStore.from_target(self.target(), audit_collection=names.audit, lock_collection=names.lock)

    def engine(self, names: Names, changes: list[type[Change]]) -> Flamingock:
        """The store's target (Couchbase) and the changes' own (`external`, non-transactional)."""
        store = self.store(names)
        external = NonTransactionalTargetSystem("external", dependencies={"calls": []})
        return Flamingock(audit_store=store, target_systems=[store.target, external], changes=changes)


def make_changes(count: int) -> list[type[Change]]:
    return generate_changes(count, "external", count_call, transactional=False)


async def body_of(collection: Any, key: str) -> tuple[dict[str, Any], int]:
    result = await collection.get(key)
    body: dict[str, Any] = result.content_as[dict]
    return body, int(result.cas)


async def document_bytes(collection: Any, key: str) -> int:
    """The document's size as stored: its JSON bytes, not decoded."""
    raw = sdk("couchbase.options").GetOptions(transcoder=sdk("couchbase.transcoder").RawJSONTranscoder())
    return len((await collection.get(key, raw)).value)


async def gather_chunked(calls: list[Callable[[], Awaitable[Any]]], size: int = 256) -> None:
    for start in range(0, len(calls), size):
        await asyncio.gather(*(call() for call in calls[start : start + size]))


# -- (a) nothing pending --------------------------------------------------------------------------------------------


def copy_entry(template: dict[str, Any], i: int, seq: int) -> dict[str, Any]:
    """The template's document for change `i` at `seq`: a new change id, class and order."""
    source = template["invokedClass"].replace(template["changeId"][1:], f"{i:05d}")
    return {**template, "changeId": f"c{i:05d}", "invokedClass": source, "changeOrder": f"{i:05d}", "seq": seq}


async def seed_audit(bench: Bench, audit: str, count: int) -> None:
    """Grow the audit to `count` APPLIED changes by copying the documents the engine wrote for its first change
    (STARTED, APPLIED), with new change ids, classes and sequence numbers: the head and the entry documents the
    store would write, in one head `replace` and one `upsert` per entry instead of one append each."""
    collection = await bench.bare(audit)
    head, cas = await body_of(collection, HEAD_KEY)
    started_doc, _ = await body_of(collection, entry_key(1))
    applied_doc = head["states"]["c00000"]
    entries: dict[str, dict[str, Any]] = {}
    for i in range(len(head["states"]), count):
        for template in (started_doc, applied_doc):
            head["seq"] += 1
            entries[entry_key(head["seq"])] = copy_entry(template, i, head["seq"])
        head["states"][f"c{i:05d}"] = entries[entry_key(head["seq"])]
        head["last"] = entries[entry_key(head["seq"])]
    await collection.replace(HEAD_KEY, head, cas=cas)
    await gather_chunked([functools.partial(collection.upsert, k, d) for k, d in entries.items()])


def engine_figures(runs: Runs, get_seconds: float) -> dict[str, Any]:
    seconds = runs.seconds_median
    return {
        "kv_ops": kv_ops(runs.window.sent),
        "op_names": tally(runs.window.sent),
        "seconds_median": seconds,
        "call_seconds_median": runs.call_seconds_median,
        "x_get": seconds / get_seconds,
    }


async def unit_get(bench: Bench, audit: str, repeat: int) -> tuple[int, float]:
    """The unit: one plain `get` of a small document (the first entry) on the bare collection, counted and timed
    through the same wrapper."""
    collection = bench.counter.wrap(await bench.bare(audit))
    with bench.counter.counting() as window:
        await collection.get(entry_key(1))
    return len(window.sent), await median_seconds(lambda: collection.get(entry_key(1)), max(repeat, 20))


async def head_read(bench: Bench, audit: str, repeat: int) -> float:
    """The store's read alone: the head fetched and decoded by the SDK, nothing else."""
    collection = await bench.bare(audit)
    return await median_seconds(lambda: body_of(collection, HEAD_KEY), max(repeat, 5))


async def noop_run(bench: Bench, count: int, repeat: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(a)'s figures over `count` applied changes, and the template entry (APPLIED) for (b)."""
    names = bench.names(f"noop{count}")
    changes = make_changes(count)
    by_engine = min(count, APPLIED_BY_ENGINE)
    setup, report = await timed(bench.engine(names, changes[:by_engine]).run)
    assert len(report.applied) == by_engine, report
    audit = names.audit
    seed_seconds, _ = await timed(lambda: seed_audit(bench, audit, count))
    # A fresh engine opens the store by listing the collections.
    fresh = await fresh_runs(lambda: bench.engine(names, changes), bench.counter, count, repeat)
    kept = await open_runs(bench.engine(names, changes), bench.counter, repeat)
    get_ops, get_seconds = await unit_get(bench, audit, repeat)
    collection = await bench.bare(audit)
    head, _ = await body_of(collection, HEAD_KEY)
    assert head["seq"] == 2 * count and len(head["states"]) == count, (head["seq"], len(head["states"]))
    async with bench.store(names) as store:
        # The store's read: the head fetched and decoded, then every state decoded into an `AuditEntry`.
        store_read = await median_seconds(store.current_states, max(repeat, 5))
        lock = await lock_round_trips(bench, store, repeat)
    figures = {
        "changes": count,
        "audit_entries": head["seq"],
        "head_bytes": await document_bytes(collection, HEAD_KEY),
        "entry_bytes": await document_bytes(collection, entry_key(2)),
        "setup_apply_seconds": setup,
        "setup_applied_by_engine": by_engine,
        "setup_seed_seconds": seed_seconds,
        "get_ops": get_ops,
        "get_seconds_median": get_seconds,
        "head_read_seconds_median": await head_read(bench, audit, repeat),
        "store_read_seconds_median": store_read,
        "runs": repeat,
        "fresh_engine": engine_figures(fresh, get_seconds),
        "open_engine": engine_figures(kept, get_seconds),
        "lock": lock,
    }
    return figures, head["states"]["c00000"]


# -- (b) applying ---------------------------------------------------------------------------------------------------


def windows_ms(durations: list[float], window: int) -> list[float]:
    return [statistics.mean(durations[i : i + window]) * 1000 for i in range(0, len(durations), window)]


async def engine_run(bench: Bench, name: str, count: int) -> AppliedRun:
    names = bench.names(name)
    changes = make_changes(count)
    await bench.engine(names, changes).plan()  # the store creates its collections: that belongs to no change
    return await measure_engine(bench.engine(names, changes), bench.counter, count)


class Floor:
    """The operations a correct protocol cannot do without, per audit entry, on the bare collections: the lock's
    `get` (owner, token, time left) beside a `lookup_in` of the head (the sequence number, still ours?), a
    `mutate_in` of the head with its CAS (the commit point: the next sequence number and, with `states`, the
    change's newest entry), the entry's `upsert`. Without `states` the head holds only the sequence number and the
    holders: what an audit that kept no current state would write."""

    def __init__(self, audit: Any, lock: Any, template: dict[str, Any], *, states: bool) -> None:
        self.audit = audit
        self.lock = lock
        self.template = template
        self.states = states
        self.holder = {"owner": FLOOR_OWNER, "token": 1}

    async def create(self) -> None:
        expires = int((time.time() + 3600) * 1000)
        lock = {"key": LOCK_KEY, "owner": FLOOR_OWNER, "status": "LOCKED", "expiresAt": expires, "fencingToken": 1}
        await self.lock.insert(LOCK_KEY, lock)
        head: dict[str, Any] = {"seq": 0, "holders": {LOCK_KEY: self.holder}}
        if self.states:
            head.update(states={}, last=None)
        await self.audit.insert(HEAD_KEY, head)

    async def record(self, i: int, state: str) -> None:
        sd = importlib.import_module("couchbase.subdocument")
        lock, head = await asyncio.gather(
            self.lock.get(LOCK_KEY), self.audit.lookup_in(HEAD_KEY, [sd.get("seq"), sd.get(f"holders.`{LOCK_KEY}`")])
        )
        lock_body = lock.content_as[dict]
        held = lock_body["owner"] == FLOOR_OWNER and lock_body["fencingToken"] == 1
        assert held and lock_body["expiresAt"] > time.time() * 1000 and head.content_as[dict](1) == self.holder
        seq = head.content_as[int](0) + 1
        document = {**copy_entry(self.template, i, seq), "state": state}
        specs = [sd.upsert("seq", seq)]
        if self.states:
            specs += [sd.upsert(f"states.`{document['changeId']}`", document), sd.upsert("last", document)]
        await self.audit.mutate_in(HEAD_KEY, specs, cas=head.cas)
        await self.audit.upsert(entry_key(seq), document)

    async def one(self, i: int) -> None:
        """One change: STARTED, then APPLIED."""
        await self.record(i, "STARTED")
        await self.record(i, "APPLIED")


async def floor_of(bench: Bench, name: str, template: dict[str, Any], *, states: bool) -> Floor:
    audit = await bench.bare(f"{bench.prefix}{name}audit", create=True)
    lock = await bench.bare(f"{bench.prefix}{name}lock", create=True)
    floor = Floor(bench.counter.wrap(audit), bench.counter.wrap(lock), template, states=states)
    await floor.create()
    return floor


async def floor_run(bench: Bench, name: str, count: int, template: dict[str, Any], *, states: bool) -> FloorRun:
    floor = await floor_of(bench, name, template, states=states)
    return await measure_floor(floor.one, bench.counter, count)


def floor_figures(floors: list[FloorRun], count: int) -> dict[str, Any]:
    return {
        "ops_per_change": floors[-1].per_change,
        "op_names_per_change": floors[-1].names_per_change,
        **floor_times(floors, count),
    }


async def apply_run(bench: Bench, repeat: int, template: dict[str, Any]) -> dict[str, Any]:
    """`repeat` runs of the engine and of both floors, in turn and in rotating order so that a busier moment hits
    each; every collection dropped after each round, so that the server's size stays the same."""
    count = APPLY_COUNT
    runs: list[AppliedRun] = []
    floors: dict[str, list[FloorRun]] = {"floor": [], "floor+states": []}
    for attempt in range(repeat):
        for kind in rotated(("engine", "floor", "floor+states"), attempt):
            name = f"apply{attempt}{kind.replace('+', '')}"
            if kind == "engine":
                runs.append(await engine_run(bench, name, count))
            else:
                floors[kind].append(await floor_run(bench, name, count, template, states=kind == "floor+states"))
        await bench.drop_all()
    seconds = statistics.median(r.seconds for r in runs)
    return {
        "changes": count,
        "seconds_median": seconds,
        "ms_per_change": seconds / count * 1000,
        "ms_in_change": statistics.median(r.change_seconds for r in runs) / count * 1000,
        "call_seconds_median": statistics.median(r.call_seconds for r in runs),
        "ms_per_change_first_quarter": statistics.median(r.quarters_ms[0] for r in runs),
        "ms_per_change_last_quarter": statistics.median(r.quarters_ms[1] for r in runs),
        "ops_per_change": statistics.median(r.per_change for r in runs),
        "ops_per_change_range": runs[-1].per_change_range,
        "op_names_per_change": runs[-1].names_per_change,
        "run_constant_ops": runs[-1].run_constant,
        "seconds_each": [r.seconds for r in runs],
        "floor": floor_figures(floors["floor"], count),
        "floor_states": floor_figures(floors["floor+states"], count),
    }


# -- (b) appends as the audit grows ---------------------------------------------------------------------------------


async def store_appends(bench: Bench, name: str, template: dict[str, Any], count: int) -> tuple[list[float], int]:
    """`count` appends through the store under a held lease, each an APPLIED entry of a new change."""
    names = bench.names(name)
    entries = [AuditEntry.from_document(copy_entry(template, i, 0)) for i in range(count)]
    durations: list[float] = []
    async with bench.store(names) as store:
        lease = await store.lock.try_acquire(LOCK_KEY, FLOOR_OWNER, 3600)
        assert lease is not None
        for entry in entries:
            seconds, _ = await timed(functools.partial(store.append, entry, fence=lease.fence))
            durations.append(seconds)
        await store.lock.release(lease)
    return durations, await document_bytes(await bench.bare(names.audit), HEAD_KEY)


async def floor_appends(
    bench: Bench, name: str, template: dict[str, Any], count: int, *, states: bool
) -> tuple[list[float], int]:
    floor = await floor_of(bench, name, template, states=states)
    durations = [(await timed(functools.partial(floor.record, i, "APPLIED")))[0] for i in range(count)]
    return durations, await document_bytes(await bench.bare(f"{bench.prefix}{name}audit"), HEAD_KEY)


async def growth_run(bench: Bench, repeat: int, template: dict[str, Any]) -> list[dict[str, Any]]:
    count, window = GROWTH_APPENDS, GROWTH_WINDOW
    kinds = ("store", "floor+states", "floor")
    curves: dict[str, list[list[float]]] = {kind: [] for kind in kinds}
    head_bytes: dict[str, int] = {}
    for attempt in range(repeat):
        for kind in rotated(kinds, attempt):
            name = f"grow{attempt}{kind.replace('+', '')}"
            if kind == "store":
                durations, head_bytes[kind] = await store_appends(bench, name, template, count)
            else:
                durations, head_bytes[kind] = await floor_appends(
                    bench, name, template, count, states=kind == "floor+states"
                )
            curves[kind].append(windows_ms(durations, window))
        await bench.drop_all()
    rows = []
    for kind in kinds:
        curve = [statistics.median(values) for values in zip(*curves[kind], strict=True)]
        rows.append(
            {
                "kind": kind,
                "appends": count,
                "window": window,
                "ms_per_append_by_window": curve,
                "ms_per_append_first": curve[0],
                "ms_per_append_last": curve[-1],
                "head_bytes_at_end": head_bytes[kind],
            }
        )
    return rows


# -- (c) the lock ---------------------------------------------------------------------------------------------------


async def lock_round_trips(bench: Bench, store: CouchbaseAuditStore, repeat: int) -> dict[str, Any]:
    """`try_acquire` then `release`, each counted and timed, over the store's audit as it is."""
    acquires: list[float] = []
    releases: list[float] = []
    owner = f"bench-{uuid.uuid4().hex[:6]}"
    for _ in range(max(repeat, LOCK_ROUNDS)):
        with bench.counter.counting() as acquire:
            seconds, lease = await timed(lambda: store.lock.try_acquire(LOCK_KEY, owner, 60))
        assert lease is not None
        acquires.append(seconds)
        with bench.counter.counting() as release:
            seconds, released = await timed(functools.partial(store.lock.release, lease))
        assert released
        releases.append(seconds)
    total = [a + r for a, r in zip(acquires, releases, strict=True)]
    return {
        "rounds": len(total),
        "round_trip_ms_median": statistics.median(total) * 1000,
        "acquire_ms_median": statistics.median(acquires) * 1000,
        "release_ms_median": statistics.median(releases) * 1000,
        "acquire_ops": tally(acquire.sent),
        "release_ops": tally(release.sent),
        "kv_ops": kv_ops(acquire.sent) + kv_ops(release.sent),
    }


async def lock_run(bench: Bench, repeat: int) -> dict[str, Any]:
    """The lock over an empty audit (the head holds the holders only)."""
    async with bench.store(bench.names("lockempty")) as store:
        figures = await lock_round_trips(bench, store, repeat)
    await bench.drop_all()
    return {"changes": 0, **figures}


# -- machine, report ------------------------------------------------------------------------------------------------


def machine(server: Server) -> dict[str, Any]:
    return {
        **machine_facts(),
        "couchbase": package_version("couchbase"),
        "server": server.description,
        "aioflamingock": aioflamingock.__version__,
    }


def print_noop(results: dict[str, Any]) -> None:
    print("(a) run() with nothing pending")
    print("get: one small document; head read: the head, JSON decoded; store read: `current_states()`, the head")
    print("decoded into entries; x get: wall time / get")
    print(f"{'applied changes':>16} | {'engine':<10} | {'kv ops':>6} | {'mgmt':>4} | {'wall time':>10} | {'x get':>7}")
    for row in results["noop"]:
        for name in ("open", "fresh"):
            r = row[f"{name}_engine"]
            mgmt = sum(n for op, n in r["op_names"].items() if op.startswith("mgmt:"))
            ms = r["seconds_median"] * 1000
            print(
                f"{row['changes']:>16,} | {name:<10} | {r['kv_ops']:>6} | {mgmt:>4} | {ms:>7.1f} ms | "
                f"{r['x_get']:>7.1f}"
            )
        get_ms, head_ms = row["get_seconds_median"] * 1000, row["head_read_seconds_median"] * 1000
        print(f"{'':>16} | {'get':<10} | {row['get_ops']:>6} | {'':>4} | {get_ms:>7.2f} ms |")
        print(f"{'':>16} | {'head read':<10} | {1:>6} | {'':>4} | {head_ms:>7.1f} ms |")
        print(
            f"{'':>16} | {'store read':<10} | {1:>6} | {'':>4} | {row['store_read_seconds_median'] * 1000:>7.1f} ms |"
        )
        print(f"{'':>16} | head document: {row['head_bytes']:,} bytes ({row['entry_bytes']:,} per entry document)")


def print_apply(results: dict[str, Any]) -> None:
    row = results["apply"]
    floor, states = row["floor"], row["floor_states"]
    print(f"\n(b) applying {row['changes']} trivial non-transactional changes")
    print(f"{'':<13} | {'per change':>10} | {'x floor':>7} | {'kv ops':>6} | {'first/last quarter':>18}")
    for name, r in (("engine", row), ("floor", floor), ("floor+states", states)):
        ratio = "" if r is row else f"{row['ms_per_change'] / r['ms_per_change']:.2f}"
        quarters = f"{r['ms_per_change_first_quarter']:.2f}/{r['ms_per_change_last_quarter']:.2f} ms"
        print(f"{name:<13} | {r['ms_per_change']:>7.2f} ms | {ratio:>7} | {r['ops_per_change']:>6.2f} | {quarters:>18}")
    print(f"engine: in the changes themselves {row['ms_in_change']:.2f} ms per change; x floor: engine / floor")
    print(f"engine, per change: {row['op_names_per_change']}")
    print(f"engine, per run besides the changes: {row['run_constant_ops']}")
    window = results["growth"][0]["window"]
    print(f"\n(b) {results['growth'][0]['appends']:,} appends, each a new change: ms per append by {window}")
    print(f"{'':<13} | {'first':>8} | {'last':>8} | {'last/first':>10} | {'head at end':>14}")
    for g in results["growth"]:
        first, last = g["ms_per_append_first"], g["ms_per_append_last"]
        print(
            f"{g['kind']:<13} | {first:>5.2f} ms | {last:>5.2f} ms | {last / first:>10.1f} | "
            f"{g['head_bytes_at_end']:>8,} bytes"
        )


def print_lock(results: dict[str, Any]) -> None:
    print("\n(c) lock: try_acquire + release")
    print(f"{'applied changes':>16} | {'round trip':>10} | {'acquire':>9} | {'release':>9} | {'kv ops':>6}")
    rows = [results["lock"], *({"changes": r["changes"], **r["lock"]} for r in results["noop"])]
    for r in rows:
        print(
            f"{r['changes']:>16,} | {r['round_trip_ms_median']:>7.2f} ms | {r['acquire_ms_median']:>6.2f} ms | "
            f"{r['release_ms_median']:>6.2f} ms | {r['kv_ops']:>6}"
        )
    print(f"acquire: {results['lock']['acquire_ops']}; release: {results['lock']['release_ops']}")


def print_tables(results: dict[str, Any]) -> None:
    info = results["machine"]
    print_machine(info)
    print(f"Python {info['python']}, couchbase (acouchbase) {info['couchbase']}; {info['server']}\n")
    print_noop(results)
    print_apply(results)
    print_lock(results)


async def measure(bench: Bench, repeat: int) -> dict[str, Any]:
    noop = []
    template: dict[str, Any] = {}
    for count in NOOP_SIZES:
        with progress(f"(a) {count:,} changes"):
            figures, template = await noop_run(bench, count, repeat)
            noop.append(figures)
            await bench.drop_all()  # a smaller server for what follows
    results: dict[str, Any] = {"noop": noop}
    with progress("(b) apply"):
        results["apply"] = await apply_run(bench, repeat, template)
    with progress("(b) growth"):
        results["growth"] = await growth_run(bench, repeat, template)
    with progress("(c) lock"):
        results["lock"] = await lock_run(bench, repeat)
    return results


@asynccontextmanager
async def bench_on(server: Server) -> AsyncIterator[Bench]:
    cluster = await connect(server)
    bench = Bench(cluster, server.bucket, OpCounter())
    try:
        yield bench
    finally:
        with contextlib.suppress(Exception):
            await bench.drop_all()
        await cluster.close()


async def main(repeat: int) -> None:
    unshadow_sdk()
    with couchbase_server() as server:
        info = machine(server)
        async with bench_on(server) as bench:
            figures = await measure(bench, repeat)
    results = {"machine": info, "repeat": repeat, **figures}
    print_tables(results)
    write_results(results, "couchbase")


if __name__ == "__main__":
    asyncio.run(main(argument_parser(__doc__).parse_args().repeat))
