"""A key-value test double for Couchbase Server, which the unmodified Couchbase Python SDK connects to.

`CouchbaseKVServer` speaks the memcached binary protocol with the Couchbase extensions that the SDK
(acouchbase / couchbase, the C++ couchbase-cxx-client underneath) needs to bootstrap and run key-value
operations against one bucket on one node, all in memory, in one asyncio loop:

- HELLO feature negotiation, the error map, SASL authentication with SCRAM-SHA512/256/1 (and PLAIN), a password
  that is really checked, SELECT_BUCKET, the cluster-level (GCCCP) and the bucket configuration;
- collections: the manifest, collection ids, LEB128 collection-id prefixes on keys;
- get, upsert, insert, replace, remove (all with CAS checks), exists (GET_META and OBSERVE), touch, get-and-touch,
  document flags and expiry (a document whose time is up is dropped when a request next reaches it), mutation
  tokens;
- a minimal management HTTP endpoint (the `mgmt` port of the configuration) for the collection manager:
  list scopes, create/drop a scope, create/drop a collection (a collection's maxTTL is accepted and ignored).

What it does NOT cover: ACID transactions (no xattrs, no sub-document operations, so no ATRs), the query, search,
analytics, eventing and views services, replicas and replica reads, durability (a durability level is accepted and
ignored: every write is applied to the one in-memory copy before the reply), persistence, DCP, TLS, locking
(get-and-lock/unlock), counters, append/prepend, compression, rebalancing and any topology change. An operation it
does not implement answers UNKNOWN_COMMAND, so the SDK fails loudly instead of hanging.

In the same process: `server.start_in_thread()` (its own loop in a daemon thread) or `await server.start()`, then
connect with `server.connection_string`. As a process of its own: `python -m tests.couchbase_kv --port P`, which
prints `ready <kv-port> <mgmt-port>` once it listens and stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import enum
import hashlib
import hmac
import json
import logging
import secrets
import signal
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field

__all__ = ["CouchbaseKVServer"]

log = logging.getLogger(__name__)

MAGIC_REQUEST = 0x80
MAGIC_ALT_REQUEST = 0x08  # request with framing extras (durability, preserve TTL)
MAGIC_RESPONSE = 0x81
HEADER = struct.Struct(">BBHBBHIIQ")  # magic, opcode, keylen, extlen, datatype, vbucket/status, bodylen, opaque, cas
MAX_BODY = 21 * 1024 * 1024  # the real server's item limit is 20 MiB; anything larger is a broken stream

DATATYPE_JSON = 0x01
DATATYPE_SNAPPY = 0x02
DATATYPE_XATTR = 0x04

NUM_VBUCKETS = 1024  # what a Linux server has; the client hashes keys over however many the config lists
RELATIVE_EXPIRY_LIMIT = 30 * 24 * 3600  # memcached rule: larger expiry values are absolute Unix times
SCRAM_ITERATIONS = 4096
FIRST_USER_ID = 8  # ids 1-7 are reserved for system scopes/collections on a real server


class Op(enum.IntEnum):
    GET = 0x00
    SET = 0x01
    ADD = 0x02
    REPLACE = 0x03
    DELETE = 0x04
    NOOP = 0x0A
    TOUCH = 0x1C
    GAT = 0x1D
    HELLO = 0x1F
    SASL_LIST_MECHS = 0x20
    SASL_AUTH = 0x21
    SASL_STEP = 0x22
    SELECT_BUCKET = 0x89
    OBSERVE = 0x92
    GET_META = 0xA0
    GET_CLUSTER_CONFIG = 0xB5
    GET_COLLECTIONS_MANIFEST = 0xBA
    GET_COLLECTION_ID = 0xBB
    GET_ERROR_MAP = 0xFE


class Status(enum.IntEnum):
    SUCCESS = 0x00
    KEY_ENOENT = 0x01
    KEY_EEXISTS = 0x02
    E2BIG = 0x03
    EINVAL = 0x04
    NO_BUCKET = 0x08
    AUTH_ERROR = 0x20
    AUTH_CONTINUE = 0x21
    EACCESS = 0x24
    UNKNOWN_FRAME_INFO = 0x80
    UNKNOWN_COMMAND = 0x81
    NOT_SUPPORTED = 0x83
    UNKNOWN_COLLECTION = 0x88
    UNKNOWN_SCOPE = 0x8C
    DURABILITY_INVALID_LEVEL = 0xA0


class Feature(enum.IntEnum):
    TCP_NODELAY = 0x03
    MUTATION_SEQNO = 0x04
    XERROR = 0x07
    SELECT_BUCKET = 0x08
    JSON = 0x0B
    ALT_REQUEST = 0x10
    SYNC_REPLICATION = 0x11
    COLLECTIONS = 0x12
    PRESERVE_TTL = 0x14


# Every feature here is implemented; the SDK also asks for xattr, duplex, snappy, tracing, unordered execution...
# and must get "no" for those, or it would rely on behaviour this server does not have.
SUPPORTED_FEATURES = frozenset(Feature)


class FrameId(enum.IntEnum):
    BARRIER = 0
    DURABILITY = 1
    PRESERVE_TTL = 5


# name, description and error-map attributes of every status this server sends (GET_ERROR_MAP)
ERRORS: dict[Status, tuple[str, str, list[str]]] = {
    Status.SUCCESS: ("SUCCESS", "Success", ["success"]),
    Status.KEY_ENOENT: ("KEY_ENOENT", "Not Found", ["item-only"]),
    Status.KEY_EEXISTS: ("KEY_EEXISTS", "key already exists, or CAS mismatch", ["item-only"]),
    Status.E2BIG: ("E2BIG", "Value too big", ["invalid-input"]),
    Status.EINVAL: ("EINVAL", "Invalid packet", ["internal", "invalid-input"]),
    Status.NO_BUCKET: ("NO_BUCKET", "Not connected to a bucket", ["conn-state-invalidated"]),
    Status.AUTH_ERROR: ("AUTH_ERROR", "Auth failure", ["auth"]),
    Status.AUTH_CONTINUE: ("AUTH_CONTINUE", "Continue authentication", ["auth", "support"]),
    Status.EACCESS: ("EACCESS", "No access", ["support", "auth"]),
    Status.UNKNOWN_FRAME_INFO: ("UNKNOWN_FRAME_INFO", "Unknown frame info", ["support"]),
    Status.UNKNOWN_COMMAND: ("UNKNOWN_COMMAND", "Unknown command", ["support"]),
    Status.NOT_SUPPORTED: ("NOT_SUPPORTED", "Not supported", ["support"]),
    Status.UNKNOWN_COLLECTION: ("UNKNOWN_COLLECTION", "Unknown Collection", ["fetch-config", "item-only"]),
    Status.UNKNOWN_SCOPE: ("UNKNOWN_SCOPE", "Unknown Scope", ["fetch-config", "item-only"]),
    Status.DURABILITY_INVALID_LEVEL: ("DURABILITY_INVALID_LEVEL", "Invalid durability level", ["invalid-input"]),
}

SCRAM_HASHES = {"SCRAM-SHA512": "sha512", "SCRAM-SHA256": "sha256", "SCRAM-SHA1": "sha1"}
SASL_MECHANISMS = (*SCRAM_HASHES, "PLAIN")

BUCKET_CAPABILITIES = [
    "collections",
    "durableWrite",
    "tombstonedUserXAttrs",
    "couchapi",
    "cbhello",
    "touch",
    "cccp",
    "xattr",
    "nodesExt",
    "preserve_expiry",
]


class AlreadyExistsError(Exception):
    """A scope or collection of that name exists already."""


class StatusError(Exception):
    """A request fails with this status (and an optional JSON error body)."""

    def __init__(self, status: Status, body: dict[str, object] | None = None) -> None:
        super().__init__(status.name)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Request:
    magic: int
    opcode: int
    datatype: int
    vbucket: int
    opaque: int
    cas: int
    framing: bytes
    extras: bytes
    key: bytes
    value: bytes


@dataclass
class Reply:
    status: Status = Status.SUCCESS
    extras: bytes = b""
    value: bytes = b""
    cas: int = 0
    datatype: int = 0


@dataclass
class Doc:
    value: bytes
    flags: int
    is_json: bool
    cas: int
    expiry: float  # absolute Unix time, 0 = never
    seqno: int


@dataclass
class Scope:
    name: str
    uid: int
    collections: dict[str, int] = field(default_factory=dict)  # name -> collection id


@dataclass(frozen=True)
class Mutation:
    cas: int
    vbucket: int
    seqno: int


@dataclass(frozen=True)
class WriteOptions:
    mode: Op  # SET, ADD or REPLACE
    flags: int
    expiry: int  # as sent: relative seconds, absolute Unix time, or 0
    cas: int
    preserve_ttl: bool


def leb128_decode(data: bytes) -> tuple[int, int]:
    """(value, bytes used) of the unsigned LEB128 number that `data` starts with: the collection id of a key."""
    value = 0
    for index, byte in enumerate(data[:5]):
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, index + 1
    raise StatusError(Status.EINVAL)


def absolute_expiry(expiry: int) -> float:
    if expiry == 0:
        return 0.0
    if expiry <= RELATIVE_EXPIRY_LIMIT:
        return time.time() + expiry
    return float(expiry)


def is_json(value: bytes) -> bool:
    # The real server inspects every value and sets the JSON datatype itself, whatever the client claims.
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


class Bucket:
    """The documents and the collections manifest of the one bucket, shared by every connection."""

    def __init__(self, name: str, collections: Iterable[str]) -> None:
        self.name = name
        self.uuid = secrets.token_hex(16)
        self.vbucket_uuid = secrets.randbits(63)
        self.scopes: dict[str, Scope] = {"_default": Scope("_default", 0, {"_default": 0})}
        self.manifest_uid = 0
        self._next_id = FIRST_USER_ID
        self.docs: dict[tuple[int, bytes], Doc] = {}
        self._seqnos = [0] * NUM_VBUCKETS
        self._last_cas = 0
        for path in collections:
            scope, _, collection = path.partition(".")
            if not scope or not collection:
                raise ValueError(f"expected scope.collection, got {path!r}")
            if scope not in self.scopes:
                self.create_scope(scope)
            self.create_collection(scope, collection)

    # --- collections ---

    def create_scope(self, name: str) -> int:
        if name in self.scopes:
            raise AlreadyExistsError(name)
        self.scopes[name] = Scope(name, self._take_id())
        return self._bump_manifest()

    def drop_scope(self, name: str) -> int:
        scope = self.scopes.pop(name)
        for cid in scope.collections.values():
            self._drop_documents(cid)
        return self._bump_manifest()

    def create_collection(self, scope: str, name: str) -> int:
        collections = self.scopes[scope].collections
        if name in collections:
            raise AlreadyExistsError(name)
        collections[name] = self._take_id()
        return self._bump_manifest()

    def drop_collection(self, scope: str, name: str) -> int:
        self._drop_documents(self.scopes[scope].collections.pop(name))
        return self._bump_manifest()

    def collection_id(self, path: str) -> int:
        scope_name, _, collection = path.partition(".")
        scope = self.scopes.get(scope_name or "_default")
        if scope is None:
            raise StatusError(Status.UNKNOWN_SCOPE, self.manifest_error())
        cid = scope.collections.get(collection or "_default")
        if cid is None:
            raise StatusError(Status.UNKNOWN_COLLECTION, self.manifest_error())
        return cid

    def check_collection(self, cid: int) -> None:
        if not any(cid in scope.collections.values() for scope in self.scopes.values()):
            raise StatusError(Status.UNKNOWN_COLLECTION, self.manifest_error())

    def manifest_error(self) -> dict[str, object]:
        # what the real server puts in the body of UNKNOWN_COLLECTION / UNKNOWN_SCOPE
        return {"manifest_uid": f"{self.manifest_uid:x}"}

    def manifest(self) -> dict[str, object]:
        return {
            "uid": f"{self.manifest_uid:x}",
            "scopes": [
                {
                    "name": scope.name,
                    "uid": f"{scope.uid:x}",
                    "collections": [
                        {"name": n, "uid": f"{cid:x}", "maxTTL": 0} for n, cid in scope.collections.items()
                    ],
                }
                for scope in self.scopes.values()
            ],
        }

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _bump_manifest(self) -> int:
        self.manifest_uid += 1
        return self.manifest_uid

    def _drop_documents(self, cid: int) -> None:
        for key in [key for key in self.docs if key[0] == cid]:
            del self.docs[key]

    # --- documents (each call runs to completion on the loop, so each is atomic) ---

    def lookup(self, cid: int, key: bytes) -> Doc:
        doc = self.docs.get((cid, key))
        if doc is not None and doc.expiry and time.time() >= doc.expiry:
            del self.docs[(cid, key)]  # lazy expiry: gone the first time anyone looks after its time
            doc = None
        if doc is None:
            raise StatusError(Status.KEY_ENOENT)
        return doc

    def write(self, cid: int, key: bytes, vbucket: int, value: bytes, options: WriteOptions) -> Mutation:
        current = self._current(cid, key)
        self._check_write(current, options)
        expiry = absolute_expiry(options.expiry)
        if options.preserve_ttl and current is not None:
            expiry = current.expiry
        mutation = self._mutate(vbucket)
        self.docs[(cid, key)] = Doc(value, options.flags, is_json(value), mutation.cas, expiry, mutation.seqno)
        return mutation

    def remove(self, cid: int, key: bytes, vbucket: int, cas: int) -> Mutation:
        doc = self.lookup(cid, key)
        if cas and cas != doc.cas:
            raise StatusError(Status.KEY_EEXISTS)
        del self.docs[(cid, key)]
        return self._mutate(vbucket)

    def touch(self, cid: int, key: bytes, vbucket: int, expiry: int) -> Doc:
        doc = self.lookup(cid, key)
        mutation = self._mutate(vbucket)
        doc.expiry, doc.cas, doc.seqno = absolute_expiry(expiry), mutation.cas, mutation.seqno
        return doc

    def _current(self, cid: int, key: bytes) -> Doc | None:
        try:
            return self.lookup(cid, key)
        except StatusError:
            return None

    @staticmethod
    def _check_write(current: Doc | None, options: WriteOptions) -> None:
        if options.mode == Op.ADD:
            if current is not None:
                raise StatusError(Status.KEY_EEXISTS)
            return
        if current is None:
            if options.mode == Op.REPLACE or options.cas:
                raise StatusError(Status.KEY_ENOENT)
            return
        if options.cas and options.cas != current.cas:
            raise StatusError(Status.KEY_EEXISTS)

    def _mutate(self, vbucket: int) -> Mutation:
        # CAS: unique and increasing, near the wall clock in nanoseconds like the real server's hybrid clock
        self._last_cas = max(self._last_cas + 1, time.time_ns())
        vbucket %= NUM_VBUCKETS
        self._seqnos[vbucket] += 1
        return Mutation(self._last_cas, vbucket, self._seqnos[vbucket])


@dataclass
class ScramExchange:
    hash_name: str
    client_first_bare: str
    server_first: str
    nonce: str
    salted_password: bytes | None  # None for an unknown user: the exchange goes on and fails at the proof


class Credentials:
    """The one user, with its SCRAM salt, and the server side of SASL."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self._salt = secrets.token_bytes(16)
        self._salted: dict[str, bytes] = {}

    def salted_password(self, hash_name: str) -> bytes:
        if hash_name not in self._salted:
            password = self.password.encode()
            self._salted[hash_name] = hashlib.pbkdf2_hmac(hash_name, password, self._salt, SCRAM_ITERATIONS)
        return self._salted[hash_name]

    def check_plain(self, message: bytes) -> bool:
        _authzid, _, rest = message.partition(b"\0")
        user, _, password = rest.partition(b"\0")
        return hmac.compare_digest(user, self.username.encode()) & hmac.compare_digest(password, self.password.encode())

    def scram_start(self, mechanism: str, message: str) -> ScramExchange:
        gs2_flag, _authzid, bare = [*message.split(",", 2), "", ""][:3]
        attributes = _scram_attributes(bare)
        if gs2_flag not in ("n", "y") or "n" not in attributes or "r" not in attributes:
            raise StatusError(Status.AUTH_ERROR)
        user = attributes["n"].replace("=2C", ",").replace("=3D", "=")
        hash_name = SCRAM_HASHES[mechanism]
        nonce = attributes["r"] + secrets.token_hex(12)
        salt = base64.b64encode(self._salt).decode()
        server_first = f"r={nonce},s={salt},i={SCRAM_ITERATIONS}"
        salted = self.salted_password(hash_name) if user == self.username else None
        return ScramExchange(hash_name, bare, server_first, nonce, salted)

    @staticmethod
    def scram_finish(exchange: ScramExchange, message: str) -> str:
        """The server-final message for a correct proof; AUTH_ERROR for anything else."""
        without_proof, _, proof_text = message.rpartition(",p=")
        attributes = _scram_attributes(without_proof)
        if exchange.salted_password is None or attributes.get("r") != exchange.nonce:
            raise StatusError(Status.AUTH_ERROR)
        digest = exchange.hash_name
        auth_message = f"{exchange.client_first_bare},{exchange.server_first},{without_proof}".encode()
        client_key = hmac.digest(exchange.salted_password, b"Client Key", digest)
        stored_key = hashlib.new(digest, client_key).digest()
        signature = hmac.digest(stored_key, auth_message, digest)
        try:
            proof = base64.b64decode(proof_text, validate=True)
        except ValueError as exc:
            raise StatusError(Status.AUTH_ERROR) from exc
        if len(proof) != len(signature):
            raise StatusError(Status.AUTH_ERROR)
        recovered_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        if not hmac.compare_digest(hashlib.new(digest, recovered_key).digest(), stored_key):
            raise StatusError(Status.AUTH_ERROR)
        server_key = hmac.digest(exchange.salted_password, b"Server Key", digest)
        return "v=" + base64.b64encode(hmac.digest(server_key, auth_message, digest)).decode()


def _scram_attributes(text: str) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if sep and len(name) == 1:
            attributes[name] = value
    return attributes


class KVConnection:
    """One client connection: its negotiated features, authentication, selected bucket, and the opcode table."""

    def __init__(self, server: CouchbaseKVServer) -> None:
        self.server = server
        self.features: set[int] = set()
        self.authenticated = False
        self.bucket: Bucket | None = None
        self.scram: ScramExchange | None = None
        self.handlers: dict[int, Callable[[Request], Reply]] = {
            Op.GET: self.op_get,
            Op.SET: self.op_write,
            Op.ADD: self.op_write,
            Op.REPLACE: self.op_write,
            Op.DELETE: self.op_delete,
            Op.NOOP: lambda _req: Reply(),
            Op.TOUCH: self.op_touch,
            Op.GAT: self.op_touch,
            Op.HELLO: self.op_hello,
            Op.SASL_LIST_MECHS: lambda _req: Reply(value=" ".join(SASL_MECHANISMS).encode()),
            Op.SASL_AUTH: self.op_sasl_auth,
            Op.SASL_STEP: self.op_sasl_step,
            Op.SELECT_BUCKET: self.op_select_bucket,
            Op.OBSERVE: self.op_observe,
            Op.GET_META: self.op_get_meta,
            Op.GET_CLUSTER_CONFIG: self.op_get_cluster_config,
            Op.GET_COLLECTIONS_MANIFEST: self.op_get_collections_manifest,
            Op.GET_COLLECTION_ID: self.op_get_collection_id,
            Op.GET_ERROR_MAP: self.op_get_error_map,
        }

    def handle(self, request: Request) -> bytes:
        handler = self.handlers.get(request.opcode)
        if handler is None:
            reply = Reply(Status.UNKNOWN_COMMAND)
        else:
            try:
                reply = handler(request)
            except StatusError as error:
                reply = self._error_reply(error)
        log.debug("opcode=0x%02x opaque=%d status=0x%02x", request.opcode, request.opaque, reply.status)
        body_length = len(reply.extras) + len(reply.value)
        header = HEADER.pack(
            MAGIC_RESPONSE,
            request.opcode,
            0,
            len(reply.extras),
            reply.datatype,
            reply.status,
            body_length,
            request.opaque,
            reply.cas,
        )
        return header + reply.extras + reply.value

    def _error_reply(self, error: StatusError) -> Reply:
        if error.body is None:
            return Reply(error.status)
        datatype = DATATYPE_JSON if Feature.JSON in self.features else 0
        return Reply(error.status, value=json.dumps(error.body).encode(), datatype=datatype)

    # --- handshake ---

    def op_hello(self, request: Request) -> Reply:
        wanted = struct.unpack(f">{len(request.value) // 2}H", request.value[: len(request.value) // 2 * 2])
        agreed = [code for code in dict.fromkeys(wanted) if code in SUPPORTED_FEATURES]
        self.features = set(agreed)
        return Reply(value=struct.pack(f">{len(agreed)}H", *agreed))

    def op_sasl_auth(self, request: Request) -> Reply:
        mechanism = request.key.decode(errors="replace")
        self.authenticated, self.scram = False, None
        if mechanism == "PLAIN":
            if not self.server.credentials.check_plain(request.value):
                raise StatusError(Status.AUTH_ERROR)
            self.authenticated = True
            return Reply()
        if mechanism not in SCRAM_HASHES:
            raise StatusError(Status.AUTH_ERROR)
        self.scram = self.server.credentials.scram_start(mechanism, request.value.decode(errors="replace"))
        return Reply(Status.AUTH_CONTINUE, value=self.scram.server_first.encode())

    def op_sasl_step(self, request: Request) -> Reply:
        exchange, self.scram = self.scram, None
        if exchange is None:
            raise StatusError(Status.AUTH_ERROR)
        final = self.server.credentials.scram_finish(exchange, request.value.decode(errors="replace"))
        self.authenticated = True
        return Reply(value=final.encode())

    def op_get_error_map(self, _request: Request) -> Reply:
        errors = {f"{code:x}": {"name": n, "desc": d, "attrs": a} for code, (n, d, a) in ERRORS.items()}
        return self._json_reply({"version": 2, "revision": 1, "errors": errors})

    def op_select_bucket(self, request: Request) -> Reply:
        self._require_auth()
        if request.key.decode(errors="replace") != self.server.bucket.name:
            # a real server answers "no access" for a bucket that does not exist, so as not to reveal which do
            raise StatusError(Status.EACCESS)
        self.bucket = self.server.bucket
        return Reply()

    def op_get_cluster_config(self, _request: Request) -> Reply:
        self._require_auth()
        return self._json_reply(self.server.cluster_config(with_bucket=self.bucket is not None))

    def op_get_collections_manifest(self, _request: Request) -> Reply:
        return self._json_reply(self._require_bucket().manifest())

    def op_get_collection_id(self, request: Request) -> Reply:
        bucket = self._require_bucket()
        path = (request.value or request.key).decode(errors="replace")  # newer clients send it as the value
        cid = bucket.collection_id(path)
        return Reply(extras=struct.pack(">QI", bucket.manifest_uid, cid))

    # --- documents ---

    def op_get(self, request: Request) -> Reply:
        bucket, cid, key = self._target(request)
        return self._doc_reply(bucket.lookup(cid, key))

    def op_write(self, request: Request) -> Reply:
        bucket, cid, key = self._target(request)
        if len(request.extras) != 8:
            raise StatusError(Status.EINVAL)
        flags, expiry = struct.unpack(">II", request.extras)
        preserve_ttl = self._frames(request)
        if request.datatype & (DATATYPE_SNAPPY | DATATYPE_XATTR):
            raise StatusError(Status.EINVAL)  # neither was negotiated
        options = WriteOptions(Op(request.opcode), flags, expiry, request.cas, preserve_ttl)
        return self._mutation_reply(bucket.write(cid, key, request.vbucket, request.value, options))

    def op_delete(self, request: Request) -> Reply:
        bucket, cid, key = self._target(request)
        self._frames(request)
        return self._mutation_reply(bucket.remove(cid, key, request.vbucket, request.cas))

    def op_touch(self, request: Request) -> Reply:
        bucket, cid, key = self._target(request)
        if len(request.extras) != 4:
            raise StatusError(Status.EINVAL)
        (expiry,) = struct.unpack(">I", request.extras)
        doc = bucket.touch(cid, key, request.vbucket, expiry)
        return self._doc_reply(doc) if request.opcode == Op.GAT else Reply(cas=doc.cas)

    def op_get_meta(self, request: Request) -> Reply:
        bucket, cid, key = self._target(request)
        doc = bucket.lookup(cid, key)
        extras = struct.pack(">IIIQ", 0, doc.flags, int(doc.expiry), doc.seqno)
        if request.extras[:1] == b"\x02":  # format version 2 adds the datatype
            extras += bytes([DATATYPE_JSON if doc.is_json else 0])
        return Reply(extras=extras, cas=doc.cas)

    def op_observe(self, request: Request) -> Reply:
        bucket = self._require_bucket()
        out, offset, body = [], 0, request.value
        while offset + 4 <= len(body):
            vbucket, length = struct.unpack_from(">HH", body, offset)
            full_key = body[offset + 4 : offset + 4 + length]
            offset += 4 + length
            cid, key = self._split_key(full_key)
            try:
                state, cas = 0x01, bucket.lookup(cid, key).cas  # 0x01: found and persisted
            except StatusError:
                state, cas = 0x80, 0  # 0x80: not found
            out.append(struct.pack(">HH", vbucket, len(full_key)) + full_key + struct.pack(">BQ", state, cas))
        return Reply(value=b"".join(out))

    # --- helpers ---

    def _require_auth(self) -> None:
        if not self.authenticated:
            raise StatusError(Status.EACCESS)

    def _require_bucket(self) -> Bucket:
        self._require_auth()
        if self.bucket is None:
            raise StatusError(Status.NO_BUCKET)
        return self.bucket

    def _split_key(self, full_key: bytes) -> tuple[int, bytes]:
        if Feature.COLLECTIONS not in self.features:
            return 0, full_key
        cid, used = leb128_decode(full_key)
        return cid, full_key[used:]

    def _target(self, request: Request) -> tuple[Bucket, int, bytes]:
        bucket = self._require_bucket()
        cid, key = self._split_key(request.key)
        if not key:
            raise StatusError(Status.EINVAL)
        bucket.check_collection(cid)
        return bucket, cid, key

    @staticmethod
    def _frames(request: Request) -> bool:
        """Check the framing extras of a mutation; True when it asks to preserve the document's TTL."""
        preserve_ttl, data, offset = False, request.framing, 0
        while offset < len(data):
            frame_id, length = data[offset] >> 4, data[offset] & 0x0F
            offset += 1
            if frame_id == 15 or length == 15:
                raise StatusError(Status.UNKNOWN_FRAME_INFO)  # escaped ids/lengths: none that we know
            payload = data[offset : offset + length]
            offset += length
            if frame_id == FrameId.DURABILITY:
                # one node, one in-memory copy: any valid level is met as soon as the write is applied
                if not payload or payload[0] not in (1, 2, 3):
                    raise StatusError(Status.DURABILITY_INVALID_LEVEL)
            elif frame_id == FrameId.PRESERVE_TTL:
                preserve_ttl = True
            elif frame_id != FrameId.BARRIER:
                raise StatusError(Status.UNKNOWN_FRAME_INFO)
        return preserve_ttl

    def _doc_reply(self, doc: Doc) -> Reply:
        datatype = DATATYPE_JSON if doc.is_json and Feature.JSON in self.features else 0
        return Reply(extras=struct.pack(">I", doc.flags), value=doc.value, cas=doc.cas, datatype=datatype)

    def _mutation_reply(self, mutation: Mutation) -> Reply:
        if Feature.MUTATION_SEQNO not in self.features:
            return Reply(cas=mutation.cas)
        assert self.bucket is not None
        return Reply(extras=struct.pack(">QQ", self.bucket.vbucket_uuid, mutation.seqno), cas=mutation.cas)

    def _json_reply(self, payload: dict[str, object]) -> Reply:
        datatype = DATATYPE_JSON if Feature.JSON in self.features else 0
        return Reply(value=json.dumps(payload).encode(), datatype=datatype)


def parse_request(header: bytes, body: bytes) -> Request:
    magic, opcode, key_length, extras_length, datatype, vbucket, _, opaque, cas = HEADER.unpack(header)
    framing_length = 0
    if magic == MAGIC_ALT_REQUEST:
        framing_length, key_length = key_length >> 8, key_length & 0xFF
    start = framing_length + extras_length
    return Request(
        magic=magic,
        opcode=opcode,
        datatype=datatype,
        vbucket=vbucket,
        opaque=opaque,
        cas=cas,
        framing=body[:framing_length],
        extras=body[framing_length:start],
        key=body[start : start + key_length],
        value=body[start + key_length :],
    )


class CouchbaseKVServer:
    """An in-memory, single-node, single-bucket Couchbase Server for key-value tests (see the module docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        mgmt_port: int = 0,
        bucket: str = "default",
        username: str = "Administrator",
        password: str = "password",
        collections: Iterable[str] = (),
    ) -> None:
        """`collections` lists the collections that exist from the start, as "scope.collection"."""
        self.host = host
        self.port = port
        self.mgmt_port = mgmt_port
        self.bucket = Bucket(bucket, collections)
        self.credentials = Credentials(username, password)
        self._servers: list[asyncio.Server] = []
        self._connections: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def connection_string(self) -> str:
        # couchbase-cxx-client takes the port of couchbase://host:port as the KV (memcached) port to bootstrap from
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        if ":" in host:
            host = f"[{host}]"  # an IPv6 address
        return f"couchbase://{host}:{self.port}"

    # --- lifecycle inside a running loop ---

    async def start(self) -> None:
        kv = await asyncio.start_server(self._serve_kv, self.host, self.port)
        mgmt = await asyncio.start_server(self._serve_http, self.host, self.mgmt_port)
        self._servers = [kv, mgmt]
        self.port = kv.sockets[0].getsockname()[1]
        self.mgmt_port = mgmt.sockets[0].getsockname()[1]
        log.debug("listening: kv=%d mgmt=%d", self.port, self.mgmt_port)

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for writer in list(self._connections):
            writer.transport.abort()  # stopping drops the clients still connected, like a killed server
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers = []

    # --- lifecycle from synchronous code: a loop of its own in a daemon thread ---

    def start_in_thread(self) -> int:
        """Start serving from a daemon thread; returns the KV port (the management port is `mgmt_port`)."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start())
            except BaseException as exc:
                failure.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="couchbase-kv-server", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            loop.close()
            raise failure[0]
        return self.port

    def stop_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    # --- the configuration the SDK bootstraps from ---

    def cluster_config(self, *, with_bucket: bool) -> dict[str, object]:
        """The bucket configuration, or the cluster-level one (GCCCP) for a connection with no bucket selected."""
        rev = 1 + self.bucket.manifest_uid  # a new manifest is a new configuration, as on a real cluster
        config: dict[str, object] = {
            "rev": rev,
            "revEpoch": 1,
            "nodesExt": [
                {"services": {"kv": self.port, "mgmt": self.mgmt_port}, "thisNode": True, "hostname": "$HOST"}
            ],
            "clusterCapabilitiesVer": [1, 0],
            "clusterCapabilities": {},
        }
        if with_bucket:
            config.update(self._bucket_config())
        return config

    def _bucket_config(self) -> dict[str, object]:
        bucket = self.bucket
        return {
            "name": bucket.name,
            "uuid": bucket.uuid,
            "bucketType": "membase",
            "nodes": [
                {
                    "couchApiBase": f"http://$HOST:{self.mgmt_port}/{bucket.name}",
                    "hostname": f"$HOST:{self.mgmt_port}",
                    "ports": {"direct": self.port},
                }
            ],
            "nodeLocator": "vbucket",
            "collectionsManifestUid": f"{bucket.manifest_uid:x}",
            "ddocs": {"uri": f"/pools/default/buckets/{bucket.name}/ddocs"},
            "bucketCapabilitiesVer": "",
            "bucketCapabilities": BUCKET_CAPABILITIES,
            "vBucketServerMap": {
                "hashAlgorithm": "CRC",
                "numReplicas": 0,
                "serverList": [f"$HOST:{self.port}"],
                "vBucketMap": [[0]] * NUM_VBUCKETS,
            },
        }

    # --- KV connections ---

    async def _serve_kv(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await self._track(writer, self._kv_loop(reader, writer, KVConnection(self)))

    async def _kv_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: KVConnection) -> None:
        # Requests are answered one after another, in order; the client pipelines many and matches by opaque.
        while True:
            header = await reader.readexactly(HEADER.size)
            magic, body_length = header[0], HEADER.unpack(header)[6]
            if magic not in (MAGIC_REQUEST, MAGIC_ALT_REQUEST) or body_length > MAX_BODY:
                log.warning("closing a connection that sent magic=0x%02x bodylen=%d", magic, body_length)
                return
            body = await reader.readexactly(body_length)
            writer.write(conn.handle(parse_request(header, body)))
            await writer.drain()  # returns at once unless the client stopped reading

    async def _track(self, writer: asyncio.StreamWriter, work: Coroutine[object, object, None]) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(writer)
        self._tasks.add(task)
        try:
            await work
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass  # the peer went away, or the server stops
        except ValueError as exc:
            log.warning("closing a connection that sent a malformed request: %s", exc)
        finally:
            self._connections.discard(writer)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # --- management HTTP ---

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._track(writer, self._http_loop(reader, writer))

    async def _http_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return
            method, target, _version = request_line.decode("latin-1").split(" ", 2)
            headers = await _read_headers(reader)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            status, payload = self._http_route(method, target, headers, body)
            writer.write(_http_response(status, payload))
            await writer.drain()
            if headers.get("connection", "").lower() == "close":
                return

    def _http_route(self, method: str, target: str, headers: dict[str, str], body: bytes) -> tuple[int, object]:
        if not self._http_authorized(headers.get("authorization", "")):
            return 401, "Unauthorized"
        parts = [urllib.parse.unquote(p) for p in urllib.parse.urlsplit(target).path.strip("/").split("/")]
        if parts[:3] != ["pools", "default", "buckets"] or len(parts) < 5 or parts[4] != "scopes":
            return 404, "Not found."
        if parts[3] != self.bucket.name:
            return 404, "Requested resource not found."
        form = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        return self._collections_api(method, parts[5:], form)

    def _collections_api(self, method: str, path: list[str], form: dict[str, str]) -> tuple[int, object]:
        """The ns_server collections REST API, below /pools/default/buckets/<bucket>/scopes."""
        bucket = self.bucket
        if method == "GET" and not path:
            return 200, bucket.manifest()
        name = form.get("name", "")
        if method == "POST" and not path:
            return self._http_create(lambda: bucket.create_scope(name), name, f'Scope with name "{name}"')
        scope = path[0] if path else ""
        if scope not in bucket.scopes:
            return 404, {"errors": {"_": f'Scope with name "{scope}" is not found'}}
        if method == "DELETE" and len(path) == 1:
            if scope == "_default":
                return 400, {"errors": {"_": "Deleting _default scope is not allowed"}}
            return 200, {"uid": f"{bucket.drop_scope(scope):x}"}
        if method == "POST" and path[1:] == ["collections"]:
            what = f'Collection with name "{name}" in scope "{scope}"'
            return self._http_create(lambda: bucket.create_collection(scope, name), name, what)
        if method == "DELETE" and len(path) == 3 and path[1] == "collections":
            if path[2] not in bucket.scopes[scope].collections:
                return 404, {"errors": {"_": f'Collection with name "{path[2]}" in scope "{scope}" is not found'}}
            return 200, {"uid": f"{bucket.drop_collection(scope, path[2]):x}"}
        return 404, "Not found."

    @staticmethod
    def _http_create(create: Callable[[], int], name: str, what: str) -> tuple[int, object]:
        # The SDK recognises the errors by these ns_server messages ("... already exists").
        if not name or name.startswith("_"):
            return 400, {"errors": {"name": "Name is invalid"}}
        try:
            uid = create()
        except AlreadyExistsError:
            return 400, {"errors": {"_": f"{what} already exists"}}
        return 200, {"uid": f"{uid:x}"}

    def _http_authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            return False
        credentials = self.credentials
        return hmac.compare_digest(user, credentials.username) & hmac.compare_digest(password, credentials.password)


async def _read_headers(reader: asyncio.StreamReader) -> dict[str, str]:
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return headers


HTTP_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Object Not Found"}


def _http_response(status: int, payload: object) -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status} {HTTP_REASONS[status]}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def _main(args: argparse.Namespace) -> None:
    server = CouchbaseKVServer(
        host=args.host,
        port=args.port,
        mgmt_port=args.mgmt_port,
        bucket=args.bucket,
        username=args.username,
        password=args.password,
        collections=args.collection,
    )
    await server.start()
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    print(f"ready {server.port} {server.mgmt_port}", flush=True)  # noqa: T201  # the parent process waits for this
    await stopped.wait()
    await server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A key-value test double for Couchbase Server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="KV (memcached protocol) port; 0 picks a free one")
    parser.add_argument("--mgmt-port", type=int, default=0, help="management HTTP port; 0 picks a free one")
    parser.add_argument("--bucket", default="default")
    parser.add_argument("--username", default="Administrator")
    parser.add_argument("--password", default="password")
    parser.add_argument("--collection", action="append", default=[], help="scope.collection to create; repeatable")
    asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
