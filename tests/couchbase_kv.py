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
- sub-document operations on the document body: lookup_in and mutate_in, which the SDK always sends as
  SUBDOC_MULTI_LOOKUP / SUBDOC_MULTI_MUTATION (even for one spec; the single-path opcodes answer UNKNOWN_COMMAND):
  get, exists, count, get_full; upsert, insert, replace, remove, array append/prepend/insert/add-unique, counters,
  whole-document replace("") / remove(""); the server's path syntax (a.b[0][-1], `key.with.dots`, create_parents),
  limits and per-path statuses, all-or-nothing mutations, mkdoc/add (StoreSemantics), CAS, expiry and
  preserve-expiry. A mutated document is stored compact (a real server splices the text and keeps the rest as it
  was: the same JSON, other whitespace);
- a minimal management HTTP endpoint (the `mgmt` port of the configuration) for the collection manager:
  list scopes, create/drop a scope, create/drop a collection (a collection's maxTTL is accepted and ignored).

What it does NOT cover: extended attributes (xattrs: a sub-document path with the xattr flag answers NOT_SUPPORTED,
as a server does on a connection that did not negotiate them, and the SDK raises UnsupportedOperation), and
therefore ACID transactions (their ATRs and staged documents live in xattrs), nor tombstones; the query, search,
analytics, eventing and views services, replicas and replica reads, durability (a durability level is accepted and
ignored: every write is applied to the one in-memory copy before the reply), persistence, DCP, TLS, locking
(get-and-lock/unlock), document counters (increment/decrement; sub-document counters work), append/prepend,
compression, rebalancing and any topology change. An operation it does not implement answers UNKNOWN_COMMAND, so
the SDK fails loudly instead of hanging.

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
import re
import secrets
import signal
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

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
    SUBDOC_MULTI_LOOKUP = 0xD0
    SUBDOC_MULTI_MUTATION = 0xD1
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
    SUBDOC_PATH_ENOENT = 0xC0
    SUBDOC_PATH_MISMATCH = 0xC1
    SUBDOC_PATH_EINVAL = 0xC2
    SUBDOC_PATH_E2BIG = 0xC3
    SUBDOC_DOC_E2DEEP = 0xC4
    SUBDOC_VALUE_CANTINSERT = 0xC5
    SUBDOC_DOC_NOT_JSON = 0xC6
    SUBDOC_NUM_ERANGE = 0xC7
    SUBDOC_DELTA_EINVAL = 0xC8
    SUBDOC_PATH_EEXISTS = 0xC9
    SUBDOC_VALUE_ETOODEEP = 0xCA
    SUBDOC_INVALID_COMBO = 0xCB
    SUBDOC_MULTI_PATH_FAILURE = 0xCC
    SUBDOC_XATTR_INVALID_FLAG_COMBO = 0xCE


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
    Status.SUBDOC_PATH_ENOENT: ("SUBDOC_PATH_ENOENT", "Subdoc: Path not found in document", ["subdoc", "item-only"]),
    Status.SUBDOC_PATH_MISMATCH: ("SUBDOC_PATH_MISMATCH", "Subdoc: Path mismatch", ["subdoc", "item-only"]),
    Status.SUBDOC_PATH_EINVAL: ("SUBDOC_PATH_EINVAL", "Subdoc: Invalid path", ["subdoc", "invalid-input"]),
    Status.SUBDOC_PATH_E2BIG: ("SUBDOC_PATH_E2BIG", "Subdoc: Path size exceeds limit", ["subdoc", "invalid-input"]),
    Status.SUBDOC_DOC_E2DEEP: ("SUBDOC_PATH_E2DEEP", "Subdoc: Document too deep", ["subdoc", "invalid-input"]),
    Status.SUBDOC_VALUE_CANTINSERT: ("SUBDOC_VALUE_CANTINSERT", "Subdoc: Invalid value", ["subdoc", "invalid-input"]),
    Status.SUBDOC_DOC_NOT_JSON: ("SUBDOC_DOC_NOTJSON", "Subdoc: Document not JSON", ["subdoc", "item-only"]),
    Status.SUBDOC_NUM_ERANGE: ("SUBDOC_NUM_ERANGE", "Subdoc: Number out of range", ["subdoc", "item-only"]),
    Status.SUBDOC_DELTA_EINVAL: ("SUBDOC_DELTA_EINVAL", "Subdoc: Invalid delta", ["subdoc", "item-only"]),
    Status.SUBDOC_PATH_EEXISTS: ("SUBDOC_PATH_EEXISTS", "Subdoc: Path already exists", ["subdoc", "item-only"]),
    Status.SUBDOC_VALUE_ETOODEEP: (
        "SUBDOC_VALUE_ETOODEEP",
        "Subdoc: Value too deep",
        ["subdoc", "invalid-input", "item-only"],
    ),
    Status.SUBDOC_INVALID_COMBO: ("SUBDOC_INVALID_COMBO", "Subdoc: Invalid combination", ["subdoc", "invalid-input"]),
    Status.SUBDOC_MULTI_PATH_FAILURE: (
        "SUBDOC_MULTI_PATH_FAILURE",
        "Subdoc: Some (or all) commands failed",
        ["subdoc", "special-handling"],
    ),
    Status.SUBDOC_XATTR_INVALID_FLAG_COMBO: (
        "SUBDOC_XATTR_INVALID_FLAG_COMBO",
        "Subdoc: Invalid flag combination",
        ["subdoc", "invalid-input"],
    ),
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
        load_json(value)
    except (ValueError, RecursionError):
        return False
    return True


@dataclass(frozen=True)
class Number:
    """A JSON number as written: sub-document operations keep it verbatim (no float rounding, no 1e400 -> inf)."""

    text: str


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")  # Python's json module would accept NaN and Infinity


def load_json(text: bytes) -> Any:
    # Integers are exact as Python ints; only a number with a fraction or an exponent needs its text kept.
    return json.loads(text.decode(), parse_float=Number, parse_constant=_not_json)


def dump_json(value: Any) -> str:
    # Compact: the real server splices the new text into the old one, so the rest of the document keeps its
    # whitespace there; here a mutated document is written back compact. The same JSON either way. The C encoder
    # does it unless a kept number or a lone surrogate needs the careful path below: documents grow to megabytes.
    try:
        dumped = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_refuse)
        dumped.encode()
    except (TypeError, UnicodeEncodeError):
        return _dump_carefully(value)
    return dumped


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def _dump_carefully(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(f"{_dump_string(k)}:{_dump_carefully(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump_carefully(v) for v in value) + "]"
    if isinstance(value, Number):
        return value.text
    if isinstance(value, str):
        return _dump_string(value)
    return json.dumps(value)  # true, false, null


def _dump_string(text: str) -> str:
    dumped = json.dumps(text, ensure_ascii=False)
    try:
        dumped.encode()
    except UnicodeEncodeError:  # a lone surrogate, from a \ud800 escape: only its escaped form is valid UTF-8
        return json.dumps(text)
    return dumped


def too_deep(value: Any, levels: int) -> bool:
    """Whether `value` needs more than `levels` levels of nesting (a scalar or an empty container needs one)."""
    if levels <= 0:
        return True
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return any(too_deep(child, levels - 1) for child in children)


# --- sub-document operations: the parts of kv_engine's subdoc executor and of subjson that the SDK reaches ---


class SubdocOp(enum.IntEnum):
    """Operation codes of the specs inside SUBDOC_MULTI_LOOKUP / SUBDOC_MULTI_MUTATION."""

    GET_DOC = 0x00  # the whole-document operations reuse the GET, SET and DELETE opcodes, with an empty path
    SET_DOC = 0x01
    DELETE_DOC = 0x04
    GET = 0xC5
    EXISTS = 0xC6
    DICT_ADD = 0xC7
    DICT_UPSERT = 0xC8
    DELETE = 0xC9
    REPLACE = 0xCA
    ARRAY_PUSH_LAST = 0xCB
    ARRAY_PUSH_FIRST = 0xCC
    ARRAY_INSERT = 0xCD
    ARRAY_ADD_UNIQUE = 0xCE
    COUNTER = 0xCF
    GET_COUNT = 0xD2


PATH_MKDIR_P = 0x01  # path flags: create the missing parents,
PATH_XATTR = 0x04  # the path is in the extended attributes, not the body,
PATH_EXPAND_MACROS = 0x10  # expand ${Mutation.CAS} and the like (in xattrs only)
DOC_MKDOC = 0x01  # document flags: create the document if it is missing (StoreSemantics.UPSERT),
DOC_ADD = 0x02  # create it and fail if it exists (StoreSemantics.INSERT),
DOC_ACCESS_DELETED = 0x04  # also reach deleted documents (there are no tombstones here, so nothing more to reach)
KNOWN_DOC_FLAGS = DOC_MKDOC | DOC_ADD | DOC_ACCESS_DELETED  # create-as-deleted, revive, replica read: refused

SUBDOC_MAX_SPECS = 16
SUBDOC_MAX_PATH = 1024  # bytes
SUBDOC_MAX_COMPONENTS = 32  # of a parsed path, counting its implicit root: 31 written ones (subjson's limit)
SUBDOC_MAX_DEPTH = 32  # levels of a document the parser descends, the top-level object or array being the first
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
JSON_WHITESPACE = b" \t\n\r"
DELTA = re.compile(rb"-?[1-9][0-9]*")  # a counter delta: an int64, no sign but "-", no leading zero, not zero
INTEGER = re.compile(r"-?[0-9]+")
ARRAY_INDEX = re.compile(r"-1|[0-9]*")  # "[]" is index 0 to the server's parser
JSON_ESCAPES = frozenset('"\\/bfnrt')  # the escapes a path may use; \u is refused

LOOKUP_SPEC = struct.Struct(">BBH")  # opcode, path flags, path length
MUTATION_SPEC = struct.Struct(">BBHI")  # opcode, path flags, path length, value length
LOOKUP_RESULT = struct.Struct(">HI")  # status, value length (then the value), for every spec
MUTATION_RESULT = struct.Struct(">BHI")  # spec index, status, value length: only for specs with a value (counters)
MUTATION_FAILURE = struct.Struct(">BH")  # index and status of the first spec that failed

SubdocPath = list[str | int]  # dictionary keys and array indexes (-1 is the last element)


@dataclass(frozen=True)
class SpecTraits:
    """What the server's validator accepts for one spec opcode (kv_engine's subdocument_traits.h)."""

    mutator: bool
    path_flags: int
    doc_flags: int  # the document flags the spec accepts in its command
    has_value: bool
    empty_path: bool  # may the path be empty, meaning the whole body
    whole_doc: bool = False  # operates on the whole body, so the path must be empty


_STORE_FLAGS = PATH_MKDIR_P | PATH_XATTR | PATH_EXPAND_MACROS
_CREATING = DOC_MKDOC | DOC_ADD | DOC_ACCESS_DELETED
_LOOKUP = SpecTraits(False, PATH_XATTR, DOC_ACCESS_DELETED, has_value=False, empty_path=False)
_STORE = SpecTraits(True, _STORE_FLAGS, _CREATING, has_value=True, empty_path=False)
_PUSH = SpecTraits(True, _STORE_FLAGS, _CREATING, has_value=True, empty_path=True)
_AT_PATH = SpecTraits(True, PATH_XATTR | PATH_EXPAND_MACROS, DOC_ACCESS_DELETED | DOC_ADD, True, empty_path=False)
SPEC_TRAITS: dict[int, SpecTraits] = {
    SubdocOp.GET_DOC: SpecTraits(False, 0, DOC_ACCESS_DELETED, False, empty_path=True, whole_doc=True),
    SubdocOp.SET_DOC: SpecTraits(True, 0, DOC_MKDOC | DOC_ADD, True, empty_path=True, whole_doc=True),
    SubdocOp.DELETE_DOC: SpecTraits(True, 0, DOC_ACCESS_DELETED, False, empty_path=True, whole_doc=True),
    SubdocOp.GET: _LOOKUP,
    SubdocOp.EXISTS: _LOOKUP,
    SubdocOp.GET_COUNT: SpecTraits(False, PATH_XATTR, DOC_ACCESS_DELETED, has_value=False, empty_path=True),
    SubdocOp.DICT_ADD: _STORE,
    SubdocOp.DICT_UPSERT: _STORE,
    SubdocOp.DELETE: SpecTraits(True, PATH_XATTR, DOC_ACCESS_DELETED, has_value=False, empty_path=False),
    SubdocOp.REPLACE: _AT_PATH,  # neither replace nor insert accepts mkdoc: there would be nothing to act on
    SubdocOp.ARRAY_PUSH_LAST: _PUSH,
    SubdocOp.ARRAY_PUSH_FIRST: _PUSH,
    SubdocOp.ARRAY_INSERT: _AT_PATH,
    SubdocOp.ARRAY_ADD_UNIQUE: SpecTraits(True, PATH_MKDIR_P | PATH_XATTR, _CREATING, True, empty_path=True),
    SubdocOp.COUNTER: SpecTraits(True, PATH_MKDIR_P | PATH_XATTR, _CREATING, True, empty_path=False),
}
ARRAY_OPS = frozenset({SubdocOp.ARRAY_PUSH_LAST, SubdocOp.ARRAY_PUSH_FIRST, SubdocOp.ARRAY_ADD_UNIQUE})


@dataclass(frozen=True)
class Spec:
    opcode: int
    flags: int
    path: bytes
    value: bytes


@dataclass(frozen=True)
class SubdocExtras:
    doc_flags: int
    expiry: int  # of the mutated document: as sent, and 0 (never) when absent, as for any other write
    user_flags: int | None  # newer clients may set the document flags along with a mutation


class Body:
    """The document body a multi-path command works on, spec after spec. Parsed once and written back once, however
    many specs the command has: a head document of megabytes is then parsed once per command, not once per spec."""

    def __init__(self, value: bytes, is_json: bool, deleted: bool = False) -> None:
        self._value = value
        self.is_json = is_json
        self.deleted = deleted
        self._root: Any = None
        self._parsed = False
        self._changed = False

    @property
    def value(self) -> bytes:
        if self._changed:
            self._value = dump_json(self._root).encode()
            self._changed = False
        return self._value

    @value.setter
    def value(self, value: bytes) -> None:
        self._value, self._parsed, self._changed = value, False, False

    def tree(self) -> Any:
        """The body parsed for a path operation: subjson parses an object or an array, and only so deep."""
        if self._parsed:
            return self._root
        try:
            root = load_json(self._value)
        except RecursionError:
            raise StatusError(Status.SUBDOC_DOC_E2DEEP) from None
        except ValueError:
            raise StatusError(Status.SUBDOC_DOC_NOT_JSON) from None
        if not isinstance(root, dict | list):
            raise StatusError(Status.SUBDOC_DOC_NOT_JSON)
        if too_deep(root, SUBDOC_MAX_DEPTH):
            raise StatusError(Status.SUBDOC_DOC_E2DEEP)
        self._root, self._parsed = root, True
        return root

    def update(self, root: Any) -> None:
        self._root, self._parsed, self._changed = root, True, True


def parse_subdoc_extras(request: Request, *, mutation: bool) -> SubdocExtras:
    """The extras of a multi-path command: [expiry (4) [user flags (4)]] [document flags (1)]."""
    extras = request.extras
    if request.datatype or len(extras) not in ((0, 1, 4, 5, 8, 9) if mutation else (0, 1)):
        raise StatusError(Status.EINVAL)  # the specs are raw bytes, whatever they hold
    doc_flags = extras[-1] if len(extras) % 4 == 1 else 0
    expiry = struct.unpack_from(">I", extras)[0] if len(extras) >= 4 else 0
    user_flags = struct.unpack_from(">I", extras, 4)[0] if len(extras) >= 8 else None
    if doc_flags & ~KNOWN_DOC_FLAGS or (doc_flags & DOC_ADD and (request.cas or doc_flags & DOC_MKDOC)):
        raise StatusError(Status.EINVAL)  # "add" means a new document: no CAS, and not "mkdoc" too
    return SubdocExtras(doc_flags, expiry, user_flags)


def parse_specs(value: bytes, doc_flags: int, *, mutation: bool) -> list[Spec]:
    """The specs of a multi-path command, checked as the server checks them all before it runs any."""
    header = MUTATION_SPEC if mutation else LOOKUP_SPEC
    specs: list[Spec] = []
    offset = 0
    while offset < len(value) and len(specs) < SUBDOC_MAX_SPECS:
        if specs and specs[-1].opcode == SubdocOp.DELETE_DOC:
            raise StatusError(Status.SUBDOC_INVALID_COMBO)  # deleting the document must be the only spec
        if offset + header.size > len(value):
            raise StatusError(Status.EINVAL)
        opcode, flags, path_length, *value_length = header.unpack_from(value, offset)
        start = offset + header.size
        offset = start + path_length + sum(value_length)
        if offset > len(value):
            raise StatusError(Status.EINVAL)
        spec = Spec(opcode, flags, value[start : start + path_length], value[start + path_length : offset])
        check_spec(spec, doc_flags, mutation=mutation)
        if specs and spec.opcode == SubdocOp.DELETE_DOC:
            raise StatusError(Status.SUBDOC_INVALID_COMBO)
        specs.append(spec)
    if not specs or offset < len(value):
        raise StatusError(Status.SUBDOC_INVALID_COMBO)  # no spec at all, or more than 16
    return specs


def check_spec(spec: Spec, doc_flags: int, *, mutation: bool) -> None:
    traits = SPEC_TRAITS.get(spec.opcode)
    if traits is None or traits.mutator != mutation:
        raise StatusError(Status.SUBDOC_INVALID_COMBO)  # unknown, or a lookup among mutations or the reverse
    if spec.flags & ~traits.path_flags or doc_flags & ~traits.doc_flags:
        raise StatusError(Status.EINVAL)
    if len(spec.path) > SUBDOC_MAX_PATH or (traits.whole_doc and spec.path):
        raise StatusError(Status.EINVAL)
    if spec.flags & PATH_XATTR:
        # What a server answers a connection that did not negotiate xattrs (HELLO): this one never agrees to them,
        # so no xattrs here, and no transactions, whose records and staged documents live in xattrs.
        raise StatusError(Status.NOT_SUPPORTED)
    if spec.flags & PATH_EXPAND_MACROS:
        raise StatusError(Status.SUBDOC_XATTR_INVALID_FLAG_COMBO)  # macros expand in xattrs only
    if not spec.path and not traits.empty_path:
        raise StatusError(Status.EINVAL)
    if bool(spec.value) != traits.has_value:
        raise StatusError(Status.EINVAL)


def new_document(specs: list[Spec]) -> Body:
    """What mkdoc/add start from when the document is missing: the first spec with a path decides its type."""
    for spec in specs:
        path = spec.path.lstrip()
        if path[:1] == b"[" or (not path and spec.opcode in ARRAY_OPS):
            return Body(b"[]", is_json=True)
        if path:
            return Body(b"{}", is_json=True)
    return Body(b"", is_json=False)  # whole-document operations only: SET_DOC provides the body


# --- paths, as subjson parses them: a.b[0].`key.with.dots`[-1] ---


def parse_path(raw: bytes) -> SubdocPath:
    try:
        path = raw.decode()
    except UnicodeDecodeError:
        raise StatusError(Status.SUBDOC_PATH_EINVAL) from None
    components: SubdocPath = []
    position = 0
    while position < len(path):
        if path[position] == "[":
            position = _parse_index(path, position, components)
        else:
            position = _parse_key(path, position, components)
    return components


def _parse_index(path: str, start: int, components: SubdocPath) -> int:
    end = path.find("]", start)
    text = path[start + 1 : end]
    if end < 0 or not ARRAY_INDEX.fullmatch(text) or int(text or "0") >= 2**64:
        raise StatusError(Status.SUBDOC_PATH_EINVAL)
    _add_component(components, int(text or "0"))
    position = end + 1
    if position < len(path) and path[position] != "[":  # an index ends the path, or is followed by "." or "["
        if path[position] != ".":
            raise StatusError(Status.SUBDOC_PATH_EINVAL)
        position += 1
    return position


def _parse_key(path: str, start: int, components: SubdocPath) -> int:
    """Parse the dictionary key at `start`, up to "." (consumed) or "[" (not); backticks quote a key."""
    quoted = escaped = False
    backticks = 0
    for position in range(start, len(path)):
        char = path[position]
        if escaped:  # a JSON escape, as the key is written in the document
            if char not in JSON_ESCAPES:
                raise StatusError(Status.SUBDOC_PATH_EINVAL)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"' or ord(char) < 0x1F:
            raise StatusError(Status.SUBDOC_PATH_EINVAL)
        if char == "`":
            backticks += 1
            quoted = not quoted
        if quoted:
            continue
        if char == "]":
            raise StatusError(Status.SUBDOC_PATH_EINVAL)
        if char in ".[":
            _add_key(components, path[start:position], backticks)
            return position + 1 if char == "." else position
    if quoted or escaped:
        raise StatusError(Status.SUBDOC_PATH_EINVAL)
    _add_key(components, path[start:], backticks)
    return len(path)


def _add_key(components: SubdocPath, key: str, backticks: int) -> None:
    if len(key) > 1 and key[0] == key[-1] == "`":
        key, backticks = key[1:-1], backticks - 2
    _add_component(components, key)
    if not key:
        raise StatusError(Status.SUBDOC_PATH_EINVAL)  # "a..b", ".a", "``"
    if backticks:  # `` is a literal backtick; a lone one only quotes
        key = re.sub("``?", lambda quote: quote[0][1:], key)
    components[-1] = json.loads(f'"{key}"', strict=False)  # the escapes are checked already


def _add_component(components: SubdocPath, component: str | int) -> None:
    if len(components) + 1 >= SUBDOC_MAX_COMPONENTS:
        raise StatusError(Status.SUBDOC_PATH_E2BIG)
    components.append(component)


def resolve(root: Any, path: SubdocPath) -> tuple[list[Any], list[str | int]]:
    """The values along `path` as far as it exists (the root first), and the keys that reach them (-1 resolved).

    A key into an array, an index into an object or a step into a scalar is a PATH_MISMATCH, as soon as the walk
    gets there; the path is complete when there is one key per component.
    """
    nodes: list[Any] = [root]
    keys: list[str | int] = []
    for component in path:
        node = nodes[-1]
        if isinstance(node, dict) and isinstance(component, str):
            if component not in node:
                break
            keys.append(component)
        elif isinstance(node, list) and isinstance(component, int):
            index = len(node) - 1 if component == -1 else component
            if not 0 <= index < len(node):
                break
            keys.append(index)
        else:
            raise StatusError(Status.SUBDOC_PATH_MISMATCH)
        nodes.append(node[keys[-1]])
    return nodes, keys


def _found(root: Any, path: SubdocPath) -> Any:
    nodes, keys = resolve(root, path)
    if len(keys) < len(path):
        raise StatusError(Status.SUBDOC_PATH_ENOENT)
    return nodes[-1]


def _create(node: Any, missing: SubdocPath, leaf: Any, *, mkdir: bool) -> None:
    """Store `leaf` at the `missing` components below `node`, the deepest container of the path that exists.

    Without mkdir_p only the last component may be missing; with it the others become objects. An array element
    is never created that way (there is no telling what would fill the elements before it).
    """
    if (len(missing) > 1 and not mkdir) or not all(isinstance(component, str) for component in missing):
        raise StatusError(Status.SUBDOC_PATH_ENOENT)
    for component in missing[:-1]:
        node[component] = {}
        node = node[component]
    node[missing[-1]] = leaf


def parse_values(value: bytes, levels: int, *, single: bool = False, primitive: bool = False) -> list[Any]:
    """The JSON value of a spec; array operations take several, comma-separated. `levels`: how deep one may be."""
    if not value.strip(JSON_WHITESPACE):
        raise StatusError(Status.SUBDOC_VALUE_CANTINSERT)  # else " " would insert an empty element into [1, ]
    try:
        items: list[Any] = load_json(b"[" + value + b"]")
    except RecursionError:
        raise StatusError(Status.SUBDOC_VALUE_ETOODEEP) from None
    except ValueError:
        raise StatusError(Status.SUBDOC_VALUE_CANTINSERT) from None
    if (single and len(items) != 1) or (primitive and any(isinstance(item, dict | list) for item in items)):
        raise StatusError(Status.SUBDOC_VALUE_CANTINSERT)
    if any(too_deep(item, levels) for item in items):
        raise StatusError(Status.SUBDOC_VALUE_ETOODEEP)  # the document would get deeper than the parser goes
    return items


def _new_key_levels(path: SubdocPath) -> int:
    return SUBDOC_MAX_DEPTH - len(path)  # a value stored at the path itself


def _element_levels(path: SubdocPath) -> int:
    return SUBDOC_MAX_DEPTH - len(path) - 1  # an element of the array at the path


# --- the operations of the specs; a failure raises StatusError before anything changes ---


def _get(root: Any, path: SubdocPath) -> bytes:
    return dump_json(_found(root, path)).encode()


def _exists(root: Any, path: SubdocPath) -> bytes:
    _found(root, path)
    return b""


def _get_count(root: Any, path: SubdocPath) -> bytes:
    value = _found(root, path)
    if not isinstance(value, dict | list):
        raise StatusError(Status.SUBDOC_PATH_MISMATCH)
    return str(len(value)).encode()


def _store(op: SubdocOp, body: Body, path: SubdocPath, value: bytes, mkdir: bool) -> None:
    """DICT_ADD, DICT_UPSERT and REPLACE."""
    if not path:
        raise StatusError(Status.SUBDOC_VALUE_CANTINSERT)  # the root can't be replaced: it would not be JSON
    (item,) = parse_values(value, _new_key_levels(path), single=True)
    root = body.tree()
    nodes, keys = resolve(root, path)
    if op != SubdocOp.REPLACE and isinstance(path[-1], int):
        raise StatusError(Status.SUBDOC_PATH_EINVAL)  # the dictionary operations need a key, replace takes both
    if len(keys) == len(path):
        if op == SubdocOp.DICT_ADD:
            raise StatusError(Status.SUBDOC_PATH_EEXISTS)
        nodes[-2][keys[-1]] = item
    elif op == SubdocOp.REPLACE:
        raise StatusError(Status.SUBDOC_PATH_ENOENT)
    else:
        _create(nodes[-1], path[len(keys) :], item, mkdir=mkdir)
    body.update(root)


def _delete(body: Body, path: SubdocPath, _value: bytes, _mkdir: bool) -> None:
    if not path:
        raise StatusError(Status.SUBDOC_VALUE_CANTINSERT)
    root = body.tree()
    nodes, keys = resolve(root, path)
    if len(keys) < len(path):
        raise StatusError(Status.SUBDOC_PATH_ENOENT)
    del nodes[-2][keys[-1]]
    body.update(root)


def _array_at(root: Any, path: SubdocPath, items: list[Any], mkdir: bool) -> list[Any] | None:
    """The array at `path`; or None once `items` make a new array there, which takes mkdir_p (even for a key)."""
    nodes, keys = resolve(root, path)
    if len(keys) == len(path):
        if not isinstance(nodes[-1], list):
            raise StatusError(Status.SUBDOC_PATH_MISMATCH)
        return nodes[-1]
    if not mkdir:
        raise StatusError(Status.SUBDOC_PATH_ENOENT)
    _create(nodes[-1], path[len(keys) :], items, mkdir=True)
    return None


def _push(first: bool, body: Body, path: SubdocPath, value: bytes, mkdir: bool) -> None:
    """ARRAY_PUSH_LAST and ARRAY_PUSH_FIRST; an empty path is the document itself."""
    items = parse_values(value, _element_levels(path))
    root = body.tree()
    array = _array_at(root, path, items, mkdir)
    if array is not None:
        position = 0 if first else len(array)
        array[position:position] = items
    body.update(root)


def _array_insert(body: Body, path: SubdocPath, value: bytes, _mkdir: bool) -> None:
    """Insert before the element at path[-1]; or append, when it is the index just past the end."""
    items = parse_values(value, _new_key_levels(path))
    if not path or not isinstance(path[-1], int) or path[-1] < 0:
        raise StatusError(Status.SUBDOC_PATH_EINVAL)
    root = body.tree()
    nodes, keys = resolve(root, path)
    if len(keys) == len(path):
        nodes[-2][keys[-1] : keys[-1]] = items
    elif len(keys) == len(path) - 1 and path[-1] == len(nodes[-1]):
        nodes[-1].extend(items)
    else:
        raise StatusError(Status.SUBDOC_PATH_ENOENT)
    body.update(root)


def _add_unique(body: Body, path: SubdocPath, value: bytes, mkdir: bool) -> None:
    (item,) = parse_values(value, _element_levels(path), single=True, primitive=True)
    root = body.tree()
    array = _array_at(root, path, [item], mkdir)
    if array is not None:
        for element in array:  # in order: the first container or the first equal element decides
            if isinstance(element, dict | list):
                raise StatusError(Status.SUBDOC_PATH_MISMATCH)  # uniqueness is defined among scalars only
            if dump_json(element) == dump_json(item):
                raise StatusError(Status.SUBDOC_PATH_EEXISTS)
        array.append(item)
    body.update(root)


def _counter(body: Body, path: SubdocPath, value: bytes, mkdir: bool) -> bytes:
    """Add a delta to the integer at the path, or store the delta there; the result is the new number."""
    if not DELTA.fullmatch(value) or not INT64_MIN <= int(value) <= INT64_MAX:
        raise StatusError(Status.SUBDOC_DELTA_EINVAL)
    root = body.tree()
    nodes, keys = resolve(root, path)
    if len(keys) == len(path):
        result = _added(nodes[-1], int(value))
        nodes[-2][keys[-1]] = result
    else:
        if (not mkdir and len(keys) < len(path) - 1) or not isinstance(nodes[-1], dict):
            raise StatusError(Status.SUBDOC_PATH_ENOENT)
        if isinstance(path[-1], int):
            raise StatusError(Status.SUBDOC_PATH_EINVAL)
        result = Number(value.decode())
        _create(nodes[-1], path[len(keys) :], result, mkdir=True)
    body.update(root)
    return result.text.encode()


def _added(current: Any, delta: int) -> Number:
    if isinstance(current, int) and not isinstance(current, bool):
        number = current  # integers are read as Python ints, exact
    elif isinstance(current, Number) and INTEGER.fullmatch(current.text):
        number = int(current.text)
    else:
        raise StatusError(Status.SUBDOC_PATH_MISMATCH)  # not a number, or a float / exponent
    if not INT64_MIN <= number <= INT64_MAX:
        raise StatusError(Status.SUBDOC_NUM_ERANGE)
    if not INT64_MIN <= number + delta <= INT64_MAX:
        raise StatusError(Status.SUBDOC_VALUE_CANTINSERT)  # how the server reports subjson's DELTA_OVERFLOW
    return Number(str(number + delta))


LOOKUPS: dict[int, Callable[[Any, SubdocPath], bytes]] = {
    SubdocOp.GET: _get,
    SubdocOp.EXISTS: _exists,
    SubdocOp.GET_COUNT: _get_count,
}
MUTATIONS: dict[int, Callable[[Body, SubdocPath, bytes, bool], bytes | None]] = {
    SubdocOp.DICT_ADD: partial(_store, SubdocOp.DICT_ADD),
    SubdocOp.DICT_UPSERT: partial(_store, SubdocOp.DICT_UPSERT),
    SubdocOp.DELETE: _delete,
    SubdocOp.REPLACE: partial(_store, SubdocOp.REPLACE),
    SubdocOp.ARRAY_PUSH_LAST: partial(_push, False),
    SubdocOp.ARRAY_PUSH_FIRST: partial(_push, True),
    SubdocOp.ARRAY_INSERT: _array_insert,
    SubdocOp.ARRAY_ADD_UNIQUE: _add_unique,
    SubdocOp.COUNTER: _counter,
}


def lookup_one(spec: Spec, body: Body) -> tuple[Status, bytes]:
    """The status and the value of one lookup spec: a failing spec does not stop the others."""
    try:
        if spec.opcode == SubdocOp.GET_DOC:
            if not body.value:
                raise StatusError(Status.SUBDOC_PATH_ENOENT)
            return Status.SUCCESS, body.value  # JSON or not
        if not body.is_json:
            raise StatusError(Status.SUBDOC_DOC_NOT_JSON)
        path = parse_path(spec.path)
        return Status.SUCCESS, LOOKUPS[spec.opcode](body.tree(), path)
    except StatusError as failure:
        return failure.status, b""


def mutate_one(spec: Spec, body: Body, mkdir: bool) -> bytes:
    """Apply one mutation spec to `body` and return its value (a counter's); StatusError when it fails."""
    if spec.opcode == SubdocOp.SET_DOC:
        body.value, body.is_json = spec.value, is_json(spec.value)
        return b""
    if spec.opcode == SubdocOp.DELETE_DOC:
        body.value, body.is_json, body.deleted = b"", False, True
        return b""
    if not body.is_json:
        raise StatusError(Status.SUBDOC_DOC_NOT_JSON)
    mkdir = mkdir or bool(spec.flags & PATH_MKDIR_P)
    return MUTATIONS[spec.opcode](body, parse_path(spec.path), spec.value, mkdir) or b""


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

    def find(self, cid: int, key: bytes) -> Doc | None:
        try:
            return self.lookup(cid, key)
        except StatusError:
            return None

    def write(self, cid: int, key: bytes, vbucket: int, value: bytes, options: WriteOptions) -> Mutation:
        current = self.find(cid, key)
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
            Op.SUBDOC_MULTI_LOOKUP: self.op_lookup_in,
            Op.SUBDOC_MULTI_MUTATION: self.op_mutate_in,
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

    # --- sub-document operations (lookup_in, mutate_in) ---

    def op_lookup_in(self, request: Request) -> Reply:
        bucket, cid, key = self._target(request)
        extras = parse_subdoc_extras(request, mutation=False)
        specs = parse_specs(request.value, extras.doc_flags, mutation=False)
        doc = bucket.lookup(cid, key)
        if request.cas and request.cas != doc.cas:
            raise StatusError(Status.KEY_EEXISTS)
        body = Body(doc.value, doc.is_json)
        results = [lookup_one(spec, body) for spec in specs]
        value = b"".join(LOOKUP_RESULT.pack(status, len(result)) + result for status, result in results)
        failed = any(status != Status.SUCCESS for status, _ in results)
        return Reply(Status.SUBDOC_MULTI_PATH_FAILURE if failed else Status.SUCCESS, value=value, cas=doc.cas)

    def op_mutate_in(self, request: Request) -> Reply:
        """All the specs apply, one after the other, to one copy of the body; the first failure discards it."""
        bucket, cid, key = self._target(request)
        extras = parse_subdoc_extras(request, mutation=True)
        preserve_ttl = self._frames(request)
        specs = parse_specs(request.value, extras.doc_flags, mutation=True)
        current = bucket.find(cid, key)
        body = self._body_to_mutate(current, specs, extras.doc_flags, request.cas)
        creating = bool(extras.doc_flags & (DOC_MKDOC | DOC_ADD))  # which implies mkdir_p on every spec
        results: list[bytes] = []
        for index, spec in enumerate(specs):
            try:
                results.append(mutate_one(spec, body, creating))
            except StatusError as failure:
                return Reply(Status.SUBDOC_MULTI_PATH_FAILURE, value=MUTATION_FAILURE.pack(index, failure.status))
        if body.deleted:
            assert current is not None  # a whole-document delete accepts neither mkdoc nor add
            mutation = bucket.remove(cid, key, request.vbucket, current.cas)
        else:
            flags = current.flags if current is not None else 0  # the document keeps its flags...
            if extras.user_flags is not None:
                flags = extras.user_flags  # ...unless the request sets them
            mode, cas = (Op.SET, current.cas) if current is not None else (Op.ADD, 0)
            options = WriteOptions(mode, flags, extras.expiry, cas, preserve_ttl)
            mutation = bucket.write(cid, key, request.vbucket, body.value, options)
        reply = self._mutation_reply(mutation)
        reply.value = b"".join(
            MUTATION_RESULT.pack(index, Status.SUCCESS, len(result)) + result
            for index, result in enumerate(results)
            if result
        )
        return reply

    @staticmethod
    def _body_to_mutate(current: Doc | None, specs: list[Spec], doc_flags: int, cas: int) -> Body:
        if current is None:
            if not doc_flags & (DOC_MKDOC | DOC_ADD):
                raise StatusError(Status.KEY_ENOENT)
            return new_document(specs)
        if doc_flags & DOC_ADD or (cas and cas != current.cas):
            raise StatusError(Status.KEY_EEXISTS)  # the SDK tells "exists" from "CAS mismatch" by the CAS it sent
        return Body(current.value, current.is_json)

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
