"""Real servers for the store tests, started once per session: whichever is available first.

MongoDB, in this order:
1. `AIOFLAMINGOCK_MONGODB_URI` — a replica set you run (transactions need one);
2. a MongoDB replica set in Docker, when `testcontainers` is installed and a Docker engine answers;
3. SecantusDB, a MongoDB-compatible server written in Python, in this process (installed with the `dev` extra).

DynamoDB, in this order:
1. `AIOFLAMINGOCK_DYNAMODB_ENDPOINT` — an endpoint you run (DynamoDB Local, or AWS itself with real credentials
   in the environment);
2. DynamoDB Local in Docker, when `testcontainers` is installed and a Docker engine answers;
3. moto's server, in a thread of this process (installed with the `dev` extra), answering one request at a time.
   `python -m tests.servers moto PORT` runs the same server as a process of its own, for the tests that stop it.

Couchbase, in this order:
1. `AIOFLAMINGOCK_COUCHBASE_URL` — a cluster you run, as `couchbase://USER:PASSWORD@HOST[:PORT]/BUCKET`;
2. Couchbase Server in Docker, when `testcontainers` is installed and a Docker engine answers;
3. `tests/couchbase_kv.py`, a key-value test double of Couchbase Server that the unmodified SDK connects to, in a
   thread of this process. It has no ACID transactions (nor query service): the tests of the transactional paths
   skip on it and run on the first two.

With `AIOFLAMINGOCK_REQUIRE_SERVERS=1` (CI) a missing server fails the tests instead of skipping them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import pytest

__all__ = [
    "COUCHBASE_URL_ENV",
    "DYNAMODB_CREDENTIALS",
    "DYNAMODB_ENDPOINT_ENV",
    "DYNAMODB_REGION",
    "MONGODB_URI_ENV",
    "NO_COUCHBASE",
    "NO_DYNAMODB",
    "REQUIRE_SERVERS_ENV",
    "CouchbaseServer",
    "Server",
    "dynamodb_client_options",
    "free_port",
    "serve",
    "start_couchbase",
    "start_couchbase_kv_process",
    "start_dynamodb",
    "start_mongodb",
    "start_moto_process",
    "unavailable",
    "wait_for_port",
]


class _Stoppable(Protocol):
    @property
    def stop(self) -> Callable[[], None]: ...


T = TypeVar("T", bound=_Stoppable)

MONGODB_URI_ENV = "AIOFLAMINGOCK_MONGODB_URI"
REQUIRE_SERVERS_ENV = "AIOFLAMINGOCK_REQUIRE_SERVERS"
MONGO_IMAGE = "mongo:7"
_STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class Server:
    uri: str
    stop: Callable[[], None]


def serve(driver: str, start: Callable[[], T | None], missing: str) -> Iterator[T]:
    """A session fixture's body: the server `start` finds (its `stop` called at the end), or a skip (a failure in
    CI) that says how to get one: `missing`, and whether the `driver` module is not even installed."""
    try:
        importlib.import_module(driver)
    except ImportError:
        unavailable(f'{driver} is not installed: pip install -e ".[dev]" ({missing})')
    server = start()
    if server is None:
        unavailable(missing)
    assert server is not None
    try:
        yield server
    finally:
        server.stop()


def unavailable(reason: str) -> None:
    """Skip the test, or fail it when the environment says servers are required."""
    if os.environ.get(REQUIRE_SERVERS_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_SERVERS_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def start_mongodb() -> Server | None:
    uri = os.environ.get(MONGODB_URI_ENV)
    if uri:
        return Server(uri, lambda: None)
    return _docker_mongodb() or _secantus()


def _docker_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _docker_mongodb() -> Server | None:
    try:
        from testcontainers.core.container import DockerContainer
    except ImportError:
        return None
    if not _docker_answers():
        return None
    container = (
        DockerContainer(MONGO_IMAGE)
        .with_command(
            "--replSet rs0 --bind_ip_all --setParameter enableTestCommands=1"  # fail points, for commit tests
        )
        .with_exposed_ports(27017)
    )
    container.start()
    try:
        # Discovery would look for the member by its name inside the container: talk to it directly.
        uri = (
            f"mongodb://{container.get_container_host_ip()}:{container.get_exposed_port(27017)}/?directConnection=true"
        )
        _initiate_replica_set(uri)
    except BaseException:
        container.stop()
        raise
    return Server(uri, container.stop)


def _initiate_replica_set(uri: str) -> None:
    from pymongo import MongoClient
    from pymongo.errors import PyMongoError

    with MongoClient(uri, serverSelectionTimeoutMS=int(_STARTUP_SECONDS * 1000)) as client:
        client.admin.command("replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": "localhost:27017"}]})
        deadline = time.monotonic() + _STARTUP_SECONDS
        while time.monotonic() < deadline:
            with contextlib.suppress(PyMongoError):
                if client.admin.command("hello").get("isWritablePrimary"):
                    return
            time.sleep(0.2)
    raise RuntimeError("the MongoDB replica set in Docker elected no primary")


def _secantus() -> Server | None:
    try:
        from secantus import SecantusDBServer
    except ImportError:
        return None
    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=":memory:")
    server.start()
    return Server(server.uri, lambda: _stop_secantus(server))


def _stop_process(popen: subprocess.Popen[bytes]) -> None:
    popen.terminate()
    try:
        popen.wait(10)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()


def _stop_secantus(server: Any) -> None:
    # `stop()` closes the listening socket, which does not wake the thread blocked in `accept()` on Linux:
    # it would wait out its 2 s join timeout. Shutting the socket down wakes it at once.
    listening = getattr(server, "_socket", None)
    if listening is not None:
        with contextlib.suppress(OSError):
            listening.shutdown(socket.SHUT_RDWR)
    server.stop()


NO_MONGODB = (
    f"no MongoDB server: set {MONGODB_URI_ENV} to a replica set's URI, install testcontainers with a Docker "
    'engine running, or install SecantusDB (pip install -e ".[dev]")'
)


# -- DynamoDB -------------------------------------------------------------------------------------------------------

DYNAMODB_ENDPOINT_ENV = "AIOFLAMINGOCK_DYNAMODB_ENDPOINT"
DYNAMODB_LOCAL_IMAGE = "amazon/dynamodb-local:2.5.4"
DYNAMODB_REGION = "us-east-1"
DYNAMODB_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
"""Dummy credentials: DynamoDB Local and moto accept any. With a real AWS endpoint, the environment's are used."""


@functools.cache
def dynamodb_session() -> Any:
    """One aioboto3 session for every client of the tests: each new session loads botocore's service model again
    (about 85 ms a client)."""
    import aioboto3

    return aioboto3.Session()


def dynamodb_client_options(endpoint: str) -> dict[str, Any]:
    """What `session.client("dynamodb", ...)` needs to reach `endpoint`. The client makes one attempt per
    request (no retries of its own), so that the tests see aioflamingock's retries, and gives up quickly."""
    from aiobotocore.config import AioConfig

    credentials = {} if os.environ.get("AWS_ACCESS_KEY_ID") else DYNAMODB_CREDENTIALS
    config = AioConfig(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=5, read_timeout=20)
    return {"endpoint_url": endpoint, "region_name": DYNAMODB_REGION, "config": config, **credentials}


def start_dynamodb() -> Server | None:
    endpoint = os.environ.get(DYNAMODB_ENDPOINT_ENV)
    if endpoint:
        return Server(endpoint, lambda: None)
    return _docker_dynamodb() or _moto_process()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, timeout: float = _STARTUP_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _docker_dynamodb() -> Server | None:
    try:
        from testcontainers.core.container import DockerContainer
    except ImportError:
        return None
    if not _docker_answers():
        return None
    container = (
        DockerContainer(DYNAMODB_LOCAL_IMAGE)
        .with_command("-jar DynamoDBLocal.jar -inMemory -sharedDb")
        .with_exposed_ports(8000)
    )
    container.start()
    try:
        host, port = container.get_container_host_ip(), int(container.get_exposed_port(8000))
        wait_for_port(host, port)
    except BaseException:
        container.stop()
        raise
    return Server(f"http://{host}:{port}", container.stop)


class _OneAtATime:
    """moto's WSGI app, one request at a time. DynamoDB applies each conditional write and each transaction
    atomically; moto's server runs a thread per request over shared state with no lock, so two conditional writes
    could both see the condition hold."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


def _moto_server(port: int) -> Any:
    """A werkzeug server of moto's app on 127.0.0.1:`port` (0: any free port), logging nothing."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class Quiet(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:
            pass

    app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
    return make_server("127.0.0.1", port, app, threaded=True, request_handler=Quiet)


def _moto_process() -> Server | None:
    """moto in a process of its own: on a machine with two cores it answers while the tests run, instead of
    taking turns with them for the interpreter lock of the test process."""
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return None
    port = free_port()
    popen = start_moto_process(port)
    return Server(f"http://127.0.0.1:{port}", lambda: _stop_process(popen))


def start_moto_process(port: int) -> subprocess.Popen[bytes]:
    """moto's server as a process of its own on `port`, answering once this returns: the fault tests stop it."""
    popen = subprocess.Popen(
        [sys.executable, "-m", "tests.servers", "moto", str(port)],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
    except BaseException:
        popen.kill()
        popen.wait()
        raise
    return popen


NO_DYNAMODB = (
    f"no DynamoDB endpoint: set {DYNAMODB_ENDPOINT_ENV} to one, install testcontainers with a Docker engine "
    'running, or install moto\'s server (pip install -e ".[dev]")'
)


# -- Couchbase ------------------------------------------------------------------------------------------------------

COUCHBASE_URL_ENV = "AIOFLAMINGOCK_COUCHBASE_URL"
COUCHBASE_IMAGE = "couchbase/server:community-7.6.2"
COUCHBASE_BUCKET = "flamingock"
COUCHBASE_USER = "Administrator"
COUCHBASE_PASSWORD = "password"
# Fixed host ports: the SDK connects to the ports the cluster advertises, which are the container's own.
_COUCHBASE_PORTS = (8091, 8092, 8093, 8094, 8095, 8096, 11210)


@dataclass(frozen=True)
class CouchbaseServer:
    connection_string: str
    username: str
    password: str
    bucket: str
    transactions: bool
    """Whether the server runs ACID transactions (a real Couchbase Server); the test double does not."""
    stop: Callable[[], None]


def start_couchbase() -> CouchbaseServer | None:
    url = os.environ.get(COUCHBASE_URL_ENV)
    if url:
        return _couchbase_from_url(url)
    return _docker_couchbase() or _couchbase_kv_thread()


def _couchbase_from_url(url: str) -> CouchbaseServer:
    from urllib.parse import unquote

    parts = urlsplit(url)
    bucket = parts.path.strip("/")
    if not (parts.username and parts.password and bucket):
        raise ValueError(f"{COUCHBASE_URL_ENV} must look like couchbase://USER:PASSWORD@HOST[:PORT]/BUCKET")
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    connection = f"{parts.scheme}://{host}"
    return CouchbaseServer(connection, unquote(parts.username), unquote(parts.password), bucket, True, lambda: None)


def _docker_couchbase() -> CouchbaseServer | None:
    try:
        from testcontainers.core.container import DockerContainer
    except ImportError:
        return None
    if not _docker_answers():
        return None
    container = DockerContainer(COUCHBASE_IMAGE)
    for port in _COUCHBASE_PORTS:
        container = container.with_bind_ports(port, port)
    container.start()
    try:
        host = container.get_container_host_ip()
        _initialize_couchbase(f"http://{host}:8091")
    except BaseException:
        container.stop()
        raise
    return CouchbaseServer(
        f"couchbase://{host}", COUCHBASE_USER, COUCHBASE_PASSWORD, COUCHBASE_BUCKET, True, container.stop
    )


def _initialize_couchbase(base: str) -> None:
    """A one-node cluster with the data, query and index services, and the tests' bucket, through the REST API."""
    import base64
    import urllib.error
    import urllib.parse
    import urllib.request

    def post(path: str, form: dict[str, str], auth: bool = True) -> None:
        request = urllib.request.Request(base + path, data=urllib.parse.urlencode(form).encode(), method="POST")
        if auth:
            token = base64.b64encode(f"{COUCHBASE_USER}:{COUCHBASE_PASSWORD}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        urllib.request.urlopen(request, timeout=30).close()

    deadline = time.monotonic() + _STARTUP_SECONDS * 3
    while True:
        try:
            urllib.request.urlopen(base + "/pools", timeout=5).close()
            break
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    post(
        "/clusterInit",
        {
            "hostname": "127.0.0.1",
            "services": "kv,n1ql,index",
            "memoryQuota": "512",
            "indexMemoryQuota": "256",
            "username": COUCHBASE_USER,
            "password": COUCHBASE_PASSWORD,
            "port": "SAME",
        },
        auth=False,
    )
    post("/pools/default/buckets", {"name": COUCHBASE_BUCKET, "ramQuota": "256", "bucketType": "couchbase"})
    time.sleep(5)  # the bucket warms up; the SDK waits for the rest when it opens it


def _couchbase_kv_thread() -> CouchbaseServer | None:
    from tests.couchbase_kv import CouchbaseKVServer

    server = CouchbaseKVServer(bucket=COUCHBASE_BUCKET, username=COUCHBASE_USER, password=COUCHBASE_PASSWORD)
    server.start_in_thread()
    return CouchbaseServer(
        server.connection_string, COUCHBASE_USER, COUCHBASE_PASSWORD, COUCHBASE_BUCKET, False, server.stop_thread
    )


def start_couchbase_kv_process() -> tuple[subprocess.Popen[str], str]:
    """The test double as a process of its own, for the tests that stop it; with its connection string."""
    popen = subprocess.Popen(
        [sys.executable, "-m", "tests.couchbase_kv", "--port", "0", "--bucket", COUCHBASE_BUCKET,
         "--username", COUCHBASE_USER, "--password", COUCHBASE_PASSWORD],
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert popen.stdout is not None
    line = popen.stdout.readline().split()
    popen.stdout.close()  # it prints nothing more
    if line[:1] != ["ready"]:
        popen.kill()
        popen.wait()
        raise RuntimeError(f"the Couchbase test double did not start: {line}")
    return popen, f"couchbase://127.0.0.1:{line[1]}"


NO_COUCHBASE = (
    f"no Couchbase server: set {COUCHBASE_URL_ENV} to couchbase://USER:PASSWORD@HOST/BUCKET, or install "
    "testcontainers with a Docker engine running; the key-value test double needs the SDK "
    '(pip install -e ".[dev]")'
)


if __name__ == "__main__":
    kind, port_text = sys.argv[1:]
    assert kind == "moto", "usage: python -m tests.servers moto PORT"
    _moto_server(int(port_text)).serve_forever()


class Proxy:
    """A TCP proxy to the endpoint on a port of its own. `stop()` closes it (new connections are refused) and cuts
    the open ones; `start()` listens again on the same port. The endpoint behind it, and its data, stay."""

    def __init__(self, endpoint: str) -> None:
        parts = urlsplit(endpoint)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._guard = threading.Lock()

    def start(self) -> None:
        assert self._listener is None
        self._listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                downstream, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                downstream.close()
                continue
            with self._guard:
                self._open |= {downstream, upstream}
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                self._cut(end)

    def _cut(self, end: socket.socket) -> None:
        with self._guard:
            self._open.discard(end)
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        end.close()

    def stop(self) -> None:
        if self._listener is not None:
            self._cut(self._listener)  # shutdown wakes the thread blocked in accept()
            self._listener = None
        with self._guard:
            open_now = list(self._open)
        for end in open_now:
            self._cut(end)


class Switch(Protocol):
    def stop(self) -> None: ...

    def start(self) -> None: ...


class SwitchedBacking:
    """For a protocol kit whose processes reach their server through `switch`: the outage scenarios stop and start
    it (a proxy, whose server keeps its data; or a server of the test's own, crashed and started again)."""

    switch: Switch | None = None

    async def stop_backing(self) -> None:
        assert self.switch is not None, "the outage_kit fixture sets the kit's switch"
        self.switch.stop()

    async def start_backing(self) -> None:
        assert self.switch is not None, "the outage_kit fixture sets the kit's switch"
        self.switch.start()


class OwnedSQLServer:
    """A PostgreSQL or MariaDB/MySQL server of a test's own, from this machine's binaries, on a port of its own:
    `stop()` crashes it (PostgreSQL: an immediate shutdown, no checkpoint; MariaDB: SIGKILL), `start()` starts it
    again on the same data, which it recovers from its log, as after a real crash. Root only (the servers run as
    their system users); `make()` gives None where the binaries are missing."""

    def __init__(self, dialect: str, directory: Path) -> None:
        self.dialect, self.directory, self.port = dialect, directory, free_port()
        self.data = directory / "data"
        self._process: subprocess.Popen[bytes] | None = None
        user = "postgres" if dialect == "postgresql" else "mysql"
        os.chown(directory, *_ids(user))
        if dialect == "postgresql":
            self._as_postgres(_pg_bin("initdb"), "-D", str(self.data), "-U", SQL_USER, "-A", "trust", "-N")
            self.uri = f"postgresql://{SQL_USER}:{SQL_PASSWORD}@127.0.0.1:{self.port}/postgres"
        else:
            installer = shutil.which("mariadb-install-db") or "mysql_install_db"
            subprocess.run(
                [installer, "--user=mysql", f"--datadir={self.data}", "--skip-test-db"],
                check=True,
                capture_output=True,
                timeout=120,
            )
            self.uri = f"mysql://{SQL_USER}:{SQL_PASSWORD}@127.0.0.1:{self.port}/{SQL_DATABASE}"
        self.start()
        if dialect == "mysql":
            _mysql_client("-S", str(directory / "sock"), "-e", f"CREATE DATABASE {SQL_DATABASE}")

    @classmethod
    def make(cls, dialect: str) -> OwnedSQLServer | None:
        import tempfile

        binary = _pg_bin("initdb") if dialect == "postgresql" else shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        if not _root() or not Path(binary).exists():
            return None
        directory = Path(tempfile.mkdtemp(prefix=f"aioflamingock-{dialect}-"))
        directory.chmod(0o755)
        return cls(dialect, directory)

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        if self.dialect == "postgresql":
            options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
            log = str(self.directory / "log")
            self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
            return
        self._process = subprocess.Popen(
            [
                shutil.which("mariadbd") or "/usr/sbin/mariadbd",
                "--no-defaults",
                "--user=mysql",
                f"--datadir={self.data}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.directory / 'sock'}",
                f"--pid-file={self.directory / 'pid'}",
                f"--log-error={self.directory / 'error.log'}",
                # Its own temporary files: started after a crash, MariaDB removes the `#sql*` files it finds in its
                # tmpdir, which in /tmp are the machine's other MariaDB's, in use
                f"--tmpdir={self.directory}",
                "--skip-grant-tables",  # any user and password: the test's own server, on 127.0.0.1
                "--innodb-buffer-pool-size=32M",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not _mysql_client("-S", str(self.directory / "sock"), "-e", "SELECT 1", check=False):
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError(f"MariaDB did not start: see {self.directory / 'error.log'}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.dialect == "postgresql":
            self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        elif self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else name


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def _mysql_client(*arguments: str, check: bool = True) -> bool:
    client = shutil.which("mariadb") or shutil.which("mysql") or "mysql"
    done = subprocess.run([client, "-uroot", *arguments], capture_output=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{client} failed: {done.stderr.decode(errors='replace')}")
    return done.returncode == 0


class RestartableSecantus:
    """A SecantusDB on disk in `directory`, stopped and started again on the same port with the same data."""

    def __init__(self, directory: Path) -> None:
        try:
            from secantus import SecantusDBServer
        except ImportError:
            unavailable('SecantusDB is not installed: pip install -e ".[dev]"')
        self._server_class = SecantusDBServer
        self.storage = str(directory / "secantus-data")
        self.server: Any = None
        self.port = 0
        self.restart()
        self.uri: str = self.server.uri

    def stop(self) -> None:
        if self.server is not None:
            _stop_secantus(self.server)
            self.server = None

    def restart(self) -> None:
        assert self.server is None
        self.server = self._server_class(host="127.0.0.1", port=self.port, storage_path=self.storage)
        self.server.start()
        self.port = self.server.address[1]


# -- PostgreSQL and MySQL/MariaDB ---------------------------------------------------------------------------------

POSTGRESQL_URL_ENV = "AIOFLAMINGOCK_POSTGRESQL_URL"
MYSQL_URL_ENV = "AIOFLAMINGOCK_MYSQL_URL"
SQL_USER = "flamingock"
SQL_PASSWORD = "flamingock-test-pw"
SQL_DATABASE = "flamingock_test"
NO_POSTGRESQL = (
    f"no PostgreSQL server: set {POSTGRESQL_URL_ENV} (postgresql://USER:PASSWORD@HOST:PORT/DATABASE), run with a "
    "Docker engine, or install PostgreSQL here (apt-get install -y postgresql) and run the tests as root"
)
NO_MYSQL = (
    f"no MySQL or MariaDB server: set {MYSQL_URL_ENV} (mysql://USER:PASSWORD@HOST:PORT/DATABASE), run with a Docker "
    "engine, or install MariaDB here (apt-get install -y mariadb-server) and run the tests as root"
)


def start_postgresql() -> Server | None:
    url = os.environ.get(POSTGRESQL_URL_ENV)
    if url:
        return Server(url, lambda: None)
    return _docker_sql("postgres:16", 5432, "postgresql") or _local_postgresql()


def start_mysql() -> Server | None:
    url = os.environ.get(MYSQL_URL_ENV)
    if url:
        return Server(url, lambda: None)
    return _docker_sql("mysql:8", 3306, "mysql") or _local_mysql()


def _docker_sql(image: str, port: int, scheme: str) -> Server | None:
    try:
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.waiting_utils import wait_for_logs
    except ImportError:
        return None
    if not _docker_answers():
        return None
    environment = (
        {"POSTGRES_USER": SQL_USER, "POSTGRES_PASSWORD": SQL_PASSWORD, "POSTGRES_DB": SQL_DATABASE}
        if scheme == "postgresql"
        else {"MYSQL_USER": SQL_USER, "MYSQL_PASSWORD": SQL_PASSWORD, "MYSQL_DATABASE": SQL_DATABASE}
        | {"MYSQL_RANDOM_ROOT_PASSWORD": "yes"}
    )
    container = DockerContainer(image).with_exposed_ports(port)
    for name, value in environment.items():
        container = container.with_env(name, value)
    container.start()
    ready = "database system is ready to accept connections" if scheme == "postgresql" else "port: 3306  MySQL"
    wait_for_logs(container, ready, timeout=120)
    host, mapped = container.get_container_host_ip(), container.get_exposed_port(port)
    url = f"{scheme}://{SQL_USER}:{SQL_PASSWORD}@{host}:{mapped}/{SQL_DATABASE}"
    return Server(url, container.stop)


def _root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@contextlib.contextmanager
def _one_at_a_time(name: str) -> Iterator[None]:
    """Across the processes of this machine (pytest-xdist's workers set up the same local server at once)."""
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / f"aioflamingock-{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _local_postgresql() -> Server | None:
    """A PostgreSQL cluster of this machine (Debian's `postgresql` package), started if it is not running, with a
    role and a database for the tests; root only (it acts as the `postgres` user)."""
    if shutil.which("pg_lsclusters") is None or not _root():
        return None
    with _one_at_a_time("postgresql"):
        clusters = [line.split() for line in _output(["pg_lsclusters", "--no-header"]).splitlines() if line.strip()]
        if not clusters:
            return None
        version, name, port, status = clusters[0][:4]
        if status != "online":
            subprocess.run(["pg_ctlcluster", version, name, "start"], check=True, capture_output=True, timeout=60)
        psql = ["runuser", "-u", "postgres", "--", "psql", "-p", port, "-v", "ON_ERROR_STOP=1", "-qAtc"]
        if _output([*psql, f"SELECT 1 FROM pg_roles WHERE rolname = '{SQL_USER}'"]).strip() != "1":
            _output([*psql, f"CREATE ROLE {SQL_USER} LOGIN PASSWORD '{SQL_PASSWORD}'"])
        # the FastAPI example's test makes a database of its own; doctor's test, a role without privileges
        _output([*psql, f"ALTER ROLE {SQL_USER} CREATEDB CREATEROLE"])
        if _output([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{SQL_DATABASE}'"]).strip() != "1":
            _output([*psql, f"CREATE DATABASE {SQL_DATABASE} OWNER {SQL_USER}"])
    return Server(f"postgresql://{SQL_USER}:{SQL_PASSWORD}@127.0.0.1:{port}/{SQL_DATABASE}", lambda: None)


def _local_mysql() -> Server | None:
    """A MariaDB (or MySQL) server of this machine, started if it is not running, with a user and a database for
    the tests; root only (it talks to the server over its socket as root)."""
    client = shutil.which("mariadb") or shutil.which("mysql")
    if client is None or not _root():
        return None
    statements = (
        f"CREATE DATABASE IF NOT EXISTS {SQL_DATABASE}; "
        f"CREATE USER IF NOT EXISTS '{SQL_USER}'@'127.0.0.1' IDENTIFIED BY '{SQL_PASSWORD}'; "
        f"GRANT ALL ON {SQL_DATABASE}.* TO '{SQL_USER}'@'127.0.0.1' WITH GRANT OPTION; "
        f"GRANT CREATE USER ON *.* TO '{SQL_USER}'@'127.0.0.1'"  # tests make users of their own, with less
    )
    with _one_at_a_time("mysql"):
        if subprocess.run([client, "-e", "SELECT 1"], capture_output=True, timeout=30).returncode != 0:
            service = "mariadb" if Path("/etc/init.d/mariadb").exists() else "mysql"
            subprocess.run(["service", service, "start"], capture_output=True, timeout=120)
        if subprocess.run([client, "-e", statements], capture_output=True, timeout=30).returncode != 0:
            return None
    return Server(f"mysql://{SQL_USER}:{SQL_PASSWORD}@127.0.0.1:3306/{SQL_DATABASE}", lambda: None)


def _output(command: list[str]) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout
