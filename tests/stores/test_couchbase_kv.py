"""The Couchbase key-value test double (tests/couchbase_kv.py), driven by the unmodified Couchbase Python SDK."""

from __future__ import annotations

import asyncio
import signal
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import couchbase.subdocument as SD
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
    DocumentNotJsonException,
    InvalidArgumentException,
    InvalidValueException,
    PathExistsException,
    PathInvalidException,
    PathMismatchException,
    PathNotFoundException,
    ScopeNotFoundException,
    UnAmbiguousTimeoutException,
    UnsupportedOperation,
)
from couchbase.options import (
    ClusterOptions,
    GetOptions,
    LookupInOptions,
    MutateInOptions,
    RemoveOptions,
    ReplaceOptions,
    UpsertOptions,
)
from couchbase.subdocument import StoreSemantics
from couchbase.transcoder import RawBinaryTranscoder, RawJSONTranscoder

from tests.couchbase_kv import HEADER, CouchbaseKVServer, Feature, Op, Status, StatusError, parse_path

ROOT = Path(__file__).resolve().parents[2]  # the repository: `tests` must be importable from there
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


STATE = {"seq": 3, "holders": ["a", "b"], "states": {"my.change-id": {"n": 1}}}


async def test_lookup_in_several_paths_and_a_missing_one(bucket: Any) -> None:
    docs = bucket.default_collection()
    stored = await docs.upsert("lock", STATE)
    specs = [SD.get("seq"), SD.get("holders"), SD.get("last"), SD.get("states.`my.change-id`.n"), SD.get_full()]
    found = await docs.lookup_in("lock", specs)
    assert found.cas == stored.cas
    assert found.content_as[int](0) == 3
    assert found.content_as[list](1) == ["a", "b"]
    assert [found.exists(i) for i in range(5)] == [True, True, False, True, True]
    with pytest.raises(PathNotFoundException):
        found.content_as[dict](2)
    assert found.content_as[int](3) == 1
    assert found.content_as[dict](4) == STATE

    single = await docs.lookup_in("lock", [SD.get("last")])  # a missing path is a result, not an error
    assert not single.exists(0)
    with pytest.raises(DocumentNotFoundException):
        await docs.lookup_in("absent", [SD.get("seq")])


async def test_lookup_in_exists_count_and_path_errors(bucket: Any) -> None:
    docs = bucket.default_collection()
    await docs.upsert("lock", STATE)
    specs = [SD.exists("seq"), SD.exists("last"), SD.count("holders"), SD.get("seq.n"), SD.get("holders[-1]")]
    found = await docs.lookup_in("lock", [*specs, SD.get("a..b")])
    assert [found.exists(i) for i in (0, 1, 2, 4)] == [True, False, True, True]
    assert found.content_as[int](2) == 2
    assert found.content_as[str](4) == "b"
    # Only a missing path makes exists() false; the SDK raises for the other path errors, even from exists().
    with pytest.raises(PathMismatchException):  # "seq" is a number, it has no member "n"
        found.exists(3)
    with pytest.raises(PathInvalidException):
        found.content_as[int](5)
    with pytest.raises(InvalidArgumentException):  # an empty path is get_full(), not get("")
        await docs.lookup_in("lock", [SD.get("")])


async def test_mutate_in_nested_and_backticked_paths(server: CouchbaseKVServer, bucket: Any) -> None:
    docs = bucket.default_collection()
    stored = await docs.upsert("lock", STATE)
    flags = server.bucket.docs[(0, b"lock")].flags
    result = await docs.mutate_in(
        "lock",
        [
            SD.upsert("states.`my.change-id`", {"n": 2}),  # one key with dots in it
            SD.upsert("states.`other.id`.since", 7, create_parents=True),
            SD.replace("seq", 4),
            SD.upsert("last", {"by": "me"}),
            SD.insert("`tick``s`", True),  # a doubled backtick is a literal one
            SD.remove("holders[0]"),
        ],
        MutateInOptions(cas=stored.cas),
    )
    got = await docs.get("lock")
    assert got.cas == result.cas != stored.cas
    assert result.mutation_token() is not None
    assert got.content_as[dict] == {
        "seq": 4,
        "holders": ["b"],
        "states": {"my.change-id": {"n": 2}, "other.id": {"since": 7}},
        "last": {"by": "me"},
        "tick`s": True,
    }
    doc = server.bucket.docs[(0, b"lock")]
    assert (doc.flags, doc.is_json) == (flags, True)  # still a JSON document with its flags
    with pytest.raises(PathExistsException):
        await docs.mutate_in("lock", [SD.insert("seq", 5)])
    with pytest.raises(PathNotFoundException):  # no parent "x" without create_parents
        await docs.mutate_in("lock", [SD.upsert("x.y", 1)])
    with pytest.raises(PathMismatchException):
        await docs.mutate_in("lock", [SD.upsert("seq.n", 1)])


async def test_mutate_in_cas_mismatch_missing_document_and_store_semantics(bucket: Any) -> None:
    docs = bucket.default_collection()
    stored = await docs.upsert("lock", STATE)
    await docs.mutate_in("lock", [SD.replace("seq", 4)])
    with pytest.raises(CasMismatchException):
        await docs.mutate_in("lock", [SD.replace("seq", 5)], MutateInOptions(cas=stored.cas))
    with pytest.raises(DocumentNotFoundException):
        await docs.mutate_in("absent", [SD.upsert("seq", 1)])
    with pytest.raises(DocumentExistsException):
        await docs.mutate_in("lock", [SD.upsert("seq", 1)], MutateInOptions(store_semantics=StoreSemantics.INSERT))

    # mkdoc / add create the document, and imply create_parents
    upsert, insert = (MutateInOptions(store_semantics=s) for s in (StoreSemantics.UPSERT, StoreSemantics.INSERT))
    await docs.mutate_in("made", [SD.upsert("a.b", 1), SD.array_append("list", "x")], upsert)
    await docs.mutate_in("added", [SD.increment("n.count", 2)], insert)
    assert (await docs.get("made")).content_as[dict] == {"a": {"b": 1}, "list": ["x"]}
    assert (await docs.get("added")).content_as[dict] == {"n": {"count": 2}}
    assert (await docs.get("lock")).content_as[dict]["seq"] == 4


async def test_a_failing_spec_changes_nothing(bucket: Any) -> None:
    docs = bucket.default_collection()
    stored = await docs.upsert("lock", STATE)
    with pytest.raises(PathNotFoundException):
        await docs.mutate_in("lock", [SD.replace("seq", 4), SD.upsert("last", 1), SD.replace("absent", 1)])
    with pytest.raises(InvalidValueException):  # int64 overflow, in the second spec
        await docs.mutate_in("lock", [SD.remove("holders"), SD.increment("seq", 2**63 - 1)])
    got = await docs.get("lock")
    assert (got.cas, got.content_as[dict]) == (stored.cas, STATE)
    with pytest.raises(PathExistsException):  # all-or-nothing when the document would be created too
        await docs.mutate_in(
            "new", [SD.upsert("a", 1), SD.insert("a", 2)], MutateInOptions(store_semantics=StoreSemantics.UPSERT)
        )
    with pytest.raises(DocumentNotFoundException):
        await docs.get("new")


async def test_mutate_in_counters_and_arrays(bucket: Any) -> None:
    docs = bucket.default_collection()
    await docs.upsert("doc", {"n": 10, "list": [1, 2]})
    result = await docs.mutate_in(
        "doc",
        [
            SD.increment("n", 5),
            SD.decrement("m", 3, create_parents=True),
            SD.array_append("list", 3, 4),
            SD.array_prepend("list", 0),
            SD.array_insert("list[2]", "x"),
            SD.array_addunique("tags", "t", create_parents=True),
        ],
    )
    assert (result.content_as[int](0), result.content_as[int](1)) == (15, -3)
    assert (await docs.get("doc")).content_as[dict] == {"n": 15, "list": [0, 1, "x", 2, 3, 4], "m": -3, "tags": ["t"]}
    with pytest.raises(PathExistsException):
        await docs.mutate_in("doc", [SD.array_addunique("tags", "t")])
    with pytest.raises(PathMismatchException):
        await docs.mutate_in("doc", [SD.increment("tags", 1)])


async def test_mutate_in_expiry_numbers_and_whole_documents(server: CouchbaseKVServer, bucket: Any) -> None:
    docs = bucket.default_collection()
    await docs.upsert("doc", '{"price": 1.10, "big": 123456789012345678901234567890}', transcoder=RawJSONTranscoder())
    await docs.mutate_in("doc", [SD.upsert("n", 1)], MutateInOptions(expiry=timedelta(seconds=100)))
    assert server.bucket.docs[(0, b"doc")].expiry > time.time() + 90
    await docs.mutate_in("doc", [SD.upsert("n", 2)], MutateInOptions(preserve_expiry=True))
    assert server.bucket.docs[(0, b"doc")].expiry > time.time() + 90
    await docs.mutate_in("doc", [SD.upsert("n", 3)])  # like any write without an expiry: none any more
    doc = server.bucket.docs[(0, b"doc")]
    assert (doc.expiry, doc.value) == (0, b'{"price":1.10,"big":123456789012345678901234567890,"n":3}')

    await docs.mutate_in("doc", [SD.replace("", {"whole": 1})])  # replace("") sets the whole body
    assert (await docs.get("doc")).content_as[dict] == {"whole": 1}
    await docs.mutate_in("doc", [SD.remove("")])  # and remove("") deletes the document
    with pytest.raises(DocumentNotFoundException):
        await docs.get("doc")

    await docs.upsert("raw", b"\x00\x01", transcoder=RawBinaryTranscoder())
    found = await docs.lookup_in("raw", [SD.get("a"), SD.get_full()])
    assert found.exists(1)  # the whole body, JSON or not
    with pytest.raises(DocumentNotJsonException):
        found.exists(0)
    with pytest.raises(DocumentNotJsonException):
        await docs.mutate_in("raw", [SD.upsert("a", 1)])


async def test_xattr_paths_fail_at_once(bucket: Any) -> None:
    # Out of scope, and so refused as by a server to a connection without the xattr feature: the SDK raises.
    docs = bucket.default_collection()
    await docs.upsert("doc", {"a": 1})
    started = time.monotonic()
    with pytest.raises(UnsupportedOperation):
        await docs.lookup_in("doc", [SD.get("txn", xattr=True)], LookupInOptions(timeout=timedelta(seconds=5)))
    with pytest.raises(UnsupportedOperation):
        await docs.mutate_in("doc", [SD.upsert("txn", 1, xattr=True)], MutateInOptions(timeout=timedelta(seconds=5)))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "path, components",
    [
        ("", []),
        ("a.b[0].c", ["a", "b", 0, "c"]),
        ("states.`my.change-id`", ["states", "my.change-id"]),
        ("`a``b`.c", ["a`b", "c"]),
        ("a`.`b", ["a.b"]),
        ("list[-1][2]", ["list", -1, 2]),
        ("[0].a.", [0, "a"]),
        ('q\\"uote', ['q"uote']),
    ],
)
def test_paths_parse_like_the_server(path: str, components: list[str | int]) -> None:
    assert parse_path(path.encode()) == components


@pytest.mark.parametrize(
    "path, status",
    [
        ("a..b", Status.SUBDOC_PATH_EINVAL),
        (".a", Status.SUBDOC_PATH_EINVAL),
        ("a[0]b", Status.SUBDOC_PATH_EINVAL),
        ("a[-2]", Status.SUBDOC_PATH_EINVAL),
        ("a[x]", Status.SUBDOC_PATH_EINVAL),
        ("`a", Status.SUBDOC_PATH_EINVAL),
        ("a]", Status.SUBDOC_PATH_EINVAL),
        ('a"b', Status.SUBDOC_PATH_EINVAL),
        ("a\\u0041", Status.SUBDOC_PATH_EINVAL),
        (".".join("k" * 31), None),
        (".".join("k" * 32), Status.SUBDOC_PATH_E2BIG),
    ],
)
def test_path_errors(path: str, status: Status | None) -> None:
    if status is None:
        assert len(parse_path(path.encode())) == 31
        return
    with pytest.raises(StatusError) as failure:
        parse_path(path.encode())
    assert failure.value.status == status


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


def lookup_spec(opcode: int, path: bytes) -> bytes:
    return struct.pack(">BBH", opcode, 0, len(path)) + path


def mutation_spec(opcode: int, path: bytes, value: bytes = b"", flags: int = 0) -> bytes:
    return struct.pack(">BBHI", opcode, flags, len(path), len(value)) + path + value


async def test_multi_path_commands_over_the_wire(server: CouchbaseKVServer) -> None:
    # The response bodies, and the checks of a whole command that the SDK never gets wrong but a server makes.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    opaque = 0

    async def call(opcode: int, key: bytes = b"", value: bytes = b"", extras: bytes = b"") -> tuple[int, bytes]:
        nonlocal opaque
        opaque += 1
        body = extras + key + value
        writer.write(HEADER.pack(0x80, opcode, len(key), len(extras), 0, 0, len(body), opaque, 0) + body)
        fields = HEADER.unpack(await reader.readexactly(HEADER.size))
        return fields[5], (await reader.readexactly(fields[6]))[fields[3] :]  # status, value (after the extras)

    try:
        assert await call(Op.SASL_AUTH, b"PLAIN", b"\0" + USER.encode() + b"\0" + PASSWORD.encode()) == (0, b"")
        assert await call(Op.SELECT_BUCKET, b"default") == (0, b"")
        assert (await call(Op.SET, b"doc", b'{"a":[1,2],"n":1}', extras=bytes(8)))[0] == Status.SUCCESS

        # lookup: a status and a value for every spec; mutation: the index and status of the first failure only
        two = lookup_spec(0xC5, b"a[-1]") + lookup_spec(0xC6, b"b")
        failed = Status.SUBDOC_MULTI_PATH_FAILURE
        assert await call(Op.SUBDOC_MULTI_LOOKUP, b"doc", two) == (failed, b"\0\0\0\0\0\x012" + b"\0\xc0\0\0\0\0")
        add_twice = mutation_spec(0xCF, b"n", b"1") + mutation_spec(0xC7, b"a", b"1")
        assert await call(Op.SUBDOC_MULTI_MUTATION, b"doc", add_twice) == (failed, b"\x01\0\xc9")
        counted = mutation_spec(0xC8, b"x", b"1") + mutation_spec(0xCF, b"n", b"1")  # n was not incremented above
        assert await call(Op.SUBDOC_MULTI_MUTATION, b"doc", counted) == (0, b"\x01\0\0\0\0\0\x012")

        upsert = mutation_spec(0xC8, b"x", b"1")
        macros_without_xattr = Status.SUBDOC_XATTR_INVALID_FLAG_COMBO
        refused = [
            (Op.SUBDOC_MULTI_LOOKUP, lookup_spec(0xC5, b"a") * 17, b"", Status.SUBDOC_INVALID_COMBO),
            (Op.SUBDOC_MULTI_LOOKUP, b"", b"", Status.SUBDOC_INVALID_COMBO),
            (Op.SUBDOC_MULTI_LOOKUP, lookup_spec(0xC8, b"a"), b"", Status.SUBDOC_INVALID_COMBO),
            (Op.SUBDOC_MULTI_MUTATION, mutation_spec(0x04, b"") + upsert, b"", Status.SUBDOC_INVALID_COMBO),
            (Op.SUBDOC_MULTI_LOOKUP, lookup_spec(0xC5, b""), b"", Status.EINVAL),  # get needs a path
            (Op.SUBDOC_MULTI_LOOKUP, lookup_spec(0xC5, b"ab")[:-1], b"", Status.EINVAL),  # truncated
            (Op.SUBDOC_MULTI_MUTATION, mutation_spec(0xCA, b"a", b"1"), b"\x01", Status.EINVAL),  # mkdoc + replace
            (Op.SUBDOC_MULTI_MUTATION, upsert, b"\x03", Status.EINVAL),  # mkdoc + add
            (Op.SUBDOC_MULTI_MUTATION, mutation_spec(0xC8, b"x", b"1", 0x10), b"", macros_without_xattr),
            (0xC5, b"a", struct.pack(">HB", 1, 0), Status.UNKNOWN_COMMAND),  # single-path: not sent by the SDK
        ]
        for opcode, value, extras, status in refused:
            assert await call(opcode, b"doc", value, extras) == (status, b""), (opcode, value, extras)
        assert (await call(Op.GET, b"doc"))[1] == b'{"a":[1,2],"n":2,"x":1}'
    finally:
        writer.close()
        await writer.wait_closed()


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
