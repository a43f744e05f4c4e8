"""The Couchbase key-value test double (tests/couchbase_kv.py), driven by the unmodified Couchbase Python SDK."""

from __future__ import annotations

import asyncio
import signal
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from acouchbase.cluster import Cluster
from couchbase.auth import PasswordAuthenticator
from couchbase.durability import DurabilityLevel, ServerDurability
from couchbase.exceptions import (
    AuthenticationException,
    BucketNotFoundException,
    CasMismatchException,
    CollectionAlreadyExistsException,
    DocumentExistsException,
    DocumentNotFoundException,
    ScopeNotFoundException,
    UnAmbiguousTimeoutException,
)
from couchbase.options import ClusterOptions, GetOptions, RemoveOptions, ReplaceOptions, UpsertOptions

from tests.couchbase_kv import HEADER, CouchbaseKVServer, Feature, Op, Status

ROOT = Path(__file__).resolve().parents[1]
USER, PASSWORD = "Administrator", "password"


@pytest.fixture
def server() -> Iterator[CouchbaseKVServer]:
    kv = CouchbaseKVServer(collections=["app.items"])
    kv.start_in_thread()
    yield kv
    kv.stop_thread()


async def connect(server: CouchbaseKVServer, password: str = PASSWORD) -> Any:
    return await Cluster.connect(server.connection_string, ClusterOptions(PasswordAuthenticator(USER, password)))


@pytest.fixture
async def bucket(server: CouchbaseKVServer) -> AsyncIterator[Any]:
    cluster = await connect(server)
    opened = cluster.bucket("default")
    await opened.on_connect()
    yield opened
    await cluster.close()


@pytest.mark.parametrize("scope, collection", [("_default", "_default"), ("app", "items")])
async def test_crud_with_cas(bucket: Any, scope: str, collection: str) -> None:
    docs = bucket.scope(scope).collection(collection)

    inserted = await docs.insert("k", {"n": 1})
    assert inserted.mutation_token() is not None
    got = await docs.get("k")
    assert got.content_as[dict] == {"n": 1}
    assert got.cas == inserted.cas
    with pytest.raises(DocumentExistsException):
        await docs.insert("k", {"n": 2})

    upserted = await docs.upsert("k", {"n": 2})
    assert upserted.cas != inserted.cas
    with pytest.raises(CasMismatchException):
        await docs.replace("k", {"n": 3}, ReplaceOptions(cas=inserted.cas))
    replaced = await docs.replace("k", {"n": 3}, ReplaceOptions(cas=upserted.cas))
    assert (await docs.get("k")).content_as[dict] == {"n": 3}

    with pytest.raises(CasMismatchException):
        await docs.remove("k", RemoveOptions(cas=upserted.cas))
    await docs.remove("k", RemoveOptions(cas=replaced.cas))
    for missing in (docs.get("k"), docs.replace("k", {}), docs.remove("k")):
        with pytest.raises(DocumentNotFoundException):
            await missing


async def test_exists_touch_expiry_and_durability(bucket: Any) -> None:
    docs = bucket.scope("app").collection("items")
    await docs.upsert("d", "text", UpsertOptions(durability=ServerDurability(DurabilityLevel.MAJORITY)))
    assert (await docs.exists("d")).exists
    assert not (await docs.exists("absent")).exists
    assert (await docs.get("d")).content_as[str] == "text"

    await docs.upsert("t", {"x": 1}, UpsertOptions(expiry=timedelta(seconds=1)))
    await docs.touch("d", timedelta(seconds=1))
    assert (await docs.get_and_touch("t", timedelta(seconds=100))).content_as[dict] == {"x": 1}
    await docs.upsert("t", {"x": 2}, UpsertOptions(preserve_expiry=True))
    await asyncio.sleep(1.1)
    with pytest.raises(DocumentNotFoundException):
        await docs.get("d")  # its one second is up
    assert (await docs.get("t")).content_as[dict] == {"x": 2}  # still on the 100 s it was touched to


async def test_wrong_password_is_an_authentication_error(server: CouchbaseKVServer) -> None:
    with pytest.raises(AuthenticationException):
        await connect(server, password="wrong")


async def test_unknown_bucket(server: CouchbaseKVServer) -> None:
    cluster = await connect(server)
    try:
        with pytest.raises(BucketNotFoundException):
            await cluster.bucket("nope").on_connect()
    finally:
        await cluster.close()


async def test_unknown_collection_times_out_and_unknown_scope_fails(bucket: Any) -> None:
    # The SDK keeps asking for the id of an unknown collection (every 500 ms) until its timeout, like with a real
    # server; an unknown scope fails at once.
    with pytest.raises(UnAmbiguousTimeoutException):
        await bucket.scope("app").collection("nope").get("k", GetOptions(timeout=timedelta(milliseconds=600)))
    with pytest.raises(ScopeNotFoundException):
        await bucket.scope("nope").collection("nope").get("k")


async def test_racing_inserts_have_one_winner(server: CouchbaseKVServer, bucket: Any) -> None:
    other = await connect(server)
    try:
        rival = other.bucket("default")
        await rival.on_connect()
        mine, theirs = bucket.default_collection(), rival.default_collection()
        keys = [f"race-{i}" for i in range(20)]
        results = await asyncio.gather(
            *(c.insert(key, {"by": who}) for key in keys for c, who in ((mine, "me"), (theirs, "them"))),
            return_exceptions=True,
        )
        for index, key in enumerate(keys):
            pair = results[2 * index : 2 * index + 2]
            assert sum(isinstance(r, DocumentExistsException) for r in pair) == 1, pair
            winner = "me" if not isinstance(pair[0], Exception) else "them"
            assert (await mine.get(key)).content_as[dict] == {"by": winner}
    finally:
        await other.close()


async def test_collection_manager(server: CouchbaseKVServer, bucket: Any) -> None:
    manager = bucket.collections()
    scopes = {s.name: sorted(c.name for c in s.collections) for s in await manager.get_all_scopes()}
    assert scopes == {"_default": ["_default"], "app": ["items"]}
    uid = server.bucket.manifest_uid

    await manager.create_collection("app", "more")
    assert server.bucket.manifest_uid == uid + 1
    with pytest.raises(CollectionAlreadyExistsException):
        await manager.create_collection("app", "more")
    with pytest.raises(ScopeNotFoundException):
        await manager.create_collection("nope", "more")
    await bucket.scope("app").collection("more").upsert("k", 1)
    assert (await bucket.scope("app").collection("more").get("k")).content_as[int] == 1
    names = {s.name: sorted(c.name for c in s.collections) for s in await manager.get_all_scopes()}
    assert names["app"] == ["items", "more"]


async def test_start_and_stop_inside_the_running_loop() -> None:
    kv = CouchbaseKVServer(bucket="b", username="u", password="p")
    await kv.start()
    try:
        cluster = await Cluster.connect(kv.connection_string, ClusterOptions(PasswordAuthenticator("u", "p")))
        opened = cluster.bucket("b")
        await opened.on_connect()
        await opened.default_collection().upsert("k", [1, 2])
        assert (await opened.default_collection().get("k")).content_as[list] == [1, 2]
        await cluster.close()
    finally:
        await kv.stop()


async def test_unknown_opcodes_and_pipelined_requests_over_the_wire(server: CouchbaseKVServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    features = struct.pack(">2H", Feature.XERROR, 0x0A)  # 0x0a: snappy, which this server declines

    def request(opcode: int, opaque: int, value: bytes = b"") -> bytes:
        return HEADER.pack(0x80, opcode, 0, 0, 0, 0, len(value), opaque, 0) + value

    writer.write(request(Op.HELLO, 1, features) + request(0x83, 2) + request(Op.GET, 3) + request(Op.NOOP, 4))
    replies = []
    for _ in range(4):
        header = await reader.readexactly(HEADER.size)
        fields = HEADER.unpack(header)
        replies.append((fields[7], fields[5], await reader.readexactly(fields[6])))
    writer.close()
    await writer.wait_closed()
    assert replies == [
        (1, Status.SUCCESS, struct.pack(">H", Feature.XERROR)),
        (2, Status.UNKNOWN_COMMAND, b""),  # GET_REPLICA: not implemented, and says so
        (3, Status.EACCESS, b""),  # not authenticated yet
        (4, Status.SUCCESS, b""),
    ]


def test_runs_as_a_process_until_sigterm() -> None:
    command = [sys.executable, "-m", "tests.couchbase_kv", "--port", "0", "--bucket", "b"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        word, kv_port, mgmt_port = process.stdout.readline().split()
        assert word == "ready"
        assert int(kv_port) > 0
        assert int(mgmt_port) > 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""
    finally:
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
