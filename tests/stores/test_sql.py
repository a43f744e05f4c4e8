"""PostgreSQL (asyncpg and psycopg) and MariaDB/MySQL (aiomysql) through SQLAlchemy's asyncio engine: the conformance
suite, the protocol kit's scenarios, and what is the backend's own. Each test has its own table prefix."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from aioflamingock import (
    AuditState,
    AuditStore,
    Change,
    ChangeFailedError,
    ChangeMisuseError,
    ChangeOutcome,
    ConfigurationError,
    Flamingock,
    RunStatus,
    StoreError,
    TransactionOutcomeUnknownError,
)
from aioflamingock.sql import AlembicUpgrade, SQLAuditStore, SQLContext, SQLTargetSystem
from aioflamingock.testing import AuditStoreConformance, BackendProtocol, Instance, ProtocolKit, simulated_aborts
from tests.servers import OwnedSQLServer, Proxy, Server, SwitchedBacking, free_port

from ._owning import OwningStore

DRIVERS = {"postgresql": "postgresql+asyncpg", "mysql": "mysql+aiomysql"}
"""The driver of each server's URL when it names none."""
SYNC_DRIVERS = {"postgresql": "postgresql+psycopg", "mysql": "mysql+pymysql"}
SECOND_DRIVERS = ("postgresql+psycopg",)


def engine_url(url: str) -> str:
    """`url` (postgresql://..., mysql://..., or with a driver already) with a driver for SQLAlchemy's asyncio."""
    scheme, _, rest = url.partition("://")
    return url if "+" in scheme else f"{DRIVERS[scheme]}://{rest}"


def engine(url: str) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(engine_url(url), pool_size=3, max_overflow=5)


def engine_as(server: Server, user: str, password: str) -> Any:
    """An engine on `server` that logs in as another role."""
    from sqlalchemy.engine import make_url

    url = make_url(engine_url(server.uri)).set(username=user, password=password)
    return engine(url.render_as_string(hide_password=False))


def tables(prefix: str) -> dict[str, str]:
    return {"audit_table": f"{prefix}audit", "lock_table": f"{prefix}lock"}


@pytest.fixture(params=["postgresql+asyncpg", "postgresql+psycopg", "mysql+aiomysql"])
def sql_server(request: pytest.FixtureRequest) -> Server:
    """The server of the dialect, with the driver of the parameter in its URL."""
    dialect = request.param.partition("+")[0]
    server: Server = request.getfixturevalue(f"{dialect}_server")
    return Server(f"{request.param}://{server.uri.partition('://')[2]}", server.stop)


@pytest.fixture
def sql_prefix(sql_server: Server) -> Iterator[str]:
    """A table-name prefix no other test uses; the tables named with it are dropped afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    yield prefix
    _drop_tables(sql_server, prefix)


class EngineOwningStore(OwningStore):
    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        self._url, self._prefix = url, prefix

    async def connect(self, stack: AsyncExitStack) -> AuditStore:
        made = engine(self._url)
        stack.push_async_callback(made.dispose)
        target = SQLTargetSystem("db", engine=made, marker_table=f"{self._prefix}marker")
        return await stack.enter_async_context(SQLAuditStore.from_target(target, **tables(self._prefix)))


def open_store(url: str, prefix: str) -> EngineOwningStore:
    """Used by the multi-process race: the same tables, from another process, with an engine of its own."""
    return EngineOwningStore(url, prefix)


class TestSQLAuditStore(AuditStoreConformance):
    @pytest.fixture
    async def store(self, sql_server: Server, sql_prefix: str) -> AsyncIterator[AuditStore]:
        self._args = [sql_server.uri, sql_prefix]
        # the race is the server's locking between processes: once per server, with its first driver
        self.supports_processes = not sql_server.uri.startswith(SECOND_DRIVERS)
        async with EngineOwningStore(sql_server.uri, sql_prefix) as store:
            yield store

    def process_factory(self) -> tuple[str, list[str]]:
        return "tests.stores.test_sql:open_store", self._args


class SQLKit(SwitchedBacking, ProtocolKit):
    """`app` and its store on one engine, `other` on a second engine of the same database (the marker path); new
    engines per instance. Effects are rows of a table of the test's own."""

    def __init__(self, url: str, prefix: str, child_url: str = "") -> None:
        super().__init__()
        self.url, self.prefix, self.child_url = url, prefix, child_url or url
        self.effects = f"{prefix}effects"
        self.mysql = url.startswith("mysql")
        self._counter: Any = None

    def process_kit(self) -> tuple[str, list[str]]:
        if self.url.startswith(SECOND_DRIVERS):
            raise NotImplementedError(
                "the real-process scenarios run once per server, with its first driver (asyncpg for PostgreSQL): "
                "what they prove is the server's locking, which no driver changes"
            )
        return "tests.stores.test_sql:SQLKit", [self.child_url, self.prefix]

    def _engine(self) -> Any:
        made = engine(self.url)
        self.exit_stack.push_async_callback(made.dispose)
        return made

    async def instance(self) -> Instance:
        if self._counter is None:
            from sqlalchemy import text
            from sqlalchemy.ext.asyncio import create_async_engine

            self._counter = create_async_engine(engine_url(self.url), pool_pre_ping=True)  # the test's own reads,
            self.exit_stack.push_async_callback(self._counter.dispose)  # also after its server restarted
            async with self._counter.begin() as connection:
                await connection.execute(
                    text(f"CREATE TABLE IF NOT EXISTS {self.effects} (k VARCHAR(255) PRIMARY KEY, n INTEGER NOT NULL)")
                )
        marker = f"{self.prefix}marker"
        app = SQLTargetSystem("app", engine=self._engine(), marker_table=marker)
        other = SQLTargetSystem("other", engine=self._engine(), marker_table=marker)
        return Instance(SQLAuditStore.from_target(app, **tables(self.prefix)), app, other)

    def store_without_creating(self, instance: Instance) -> SQLAuditStore:
        return SQLAuditStore.from_target(instance.app, **tables(self.prefix), create_tables=False)  # type: ignore[arg-type]

    async def write(self, ctx: SQLContext, key: str, amount: int = 1) -> None:
        from sqlalchemy import text

        upsert = (
            f"INSERT INTO {self.effects} (k, n) VALUES (:k, :n) ON DUPLICATE KEY UPDATE n = n + VALUES(n)"
            if self.mysql
            else f"INSERT INTO {self.effects} AS e (k, n) VALUES (:k, :n) ON CONFLICT (k) DO UPDATE SET n = e.n + :n"
        )
        await ctx.connection.execute(text(upsert), {"k": key, "n": amount})

    async def count(self, key: str) -> int:
        from sqlalchemy import text

        async with self._counter.connect() as connection:
            found = await connection.execute(text(f"SELECT n FROM {self.effects} WHERE k = :k"), {"k": key})
            return int(found.scalar() or 0)

    def lose_commit_answers(self, target: Any, times: int) -> Any:
        raise NotImplementedError(
            "a SQL server cannot say what became of a commit whose connection broke: the run ends with "
            "TransactionOutcomeUnknownError (tested on its own) and the next run reads the truth"
        )

    def abort_commits(self, target: Any, times: int) -> Any:
        return simulated_aborts(target, times)  # the database cannot be made to abort one on demand


class TestSQLProtocol(BackendProtocol):
    @pytest.fixture
    async def kit(self, sql_server: Server, sql_prefix: str) -> AsyncIterator[ProtocolKit]:
        kit = SQLKit(sql_server.uri, sql_prefix)
        yield kit
        await kit.aclose()

    @pytest.fixture
    async def outage_kit(
        self, sql_server: Server, sql_prefix: str, owned_servers: dict[str, OwnedSQLServer | None]
    ) -> AsyncIterator[ProtocolKit]:
        """A server of the test module's own, which the test crashes and starts again (it recovers its data from
        its log); where this machine cannot make one (not root, no server binaries), the processes reach the
        fixture's server through a TCP proxy, which the test stops (connections refused, the open ones cut) and
        starts again."""
        from sqlalchemy.engine import make_url

        url = make_url(sql_server.uri)
        dialect = url.get_backend_name()
        if dialect not in owned_servers:
            owned_servers[dialect] = OwnedSQLServer.make(dialect)
        owned = owned_servers[dialect]
        if owned is not None:
            own_url = make_url(owned.uri).set(drivername=url.drivername).render_as_string(hide_password=False)
            kit = SQLKit(own_url, sql_prefix)
            kit.switch = owned
            yield kit
            await kit.aclose()
            return
        proxy = Proxy(f"http://{url.host}:{url.port}")
        proxy.start()
        kit = SQLKit(sql_server.uri, sql_prefix, url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
        kit.switch = proxy
        yield kit
        await kit.aclose()
        proxy.stop()


@pytest.fixture(scope="module")
def owned_servers() -> Iterator[dict[str, OwnedSQLServer | None]]:
    """The servers of this module's own, by dialect, made on first use (None: this machine cannot)."""
    made: dict[str, OwnedSQLServer | None] = {}
    yield made
    for server in made.values():
        if server is not None:
            server.close()


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
async def test_a_service_whose_server_restarted_runs_again_on_the_same_engine(
    dialect: str, owned_servers: dict[str, OwnedSQLServer | None]
) -> None:
    """A long-lived process (a worker) runs its changes, its server crashes and comes back, and it runs again with
    the engine it had, whose pooled connections are all broken: the run succeeds at once."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    if dialect not in owned_servers:
        owned_servers[dialect] = OwnedSQLServer.make(dialect)
    owned = owned_servers[dialect]
    if owned is None:
        pytest.skip(f"needs a {dialect} server of the test's own: run the tests as root where it is installed")
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    url = make_url(owned.uri).set(drivername=DRIVERS[dialect]).render_as_string(hide_password=False)
    made = create_async_engine(url, pool_size=4)

    def inserting(number: int) -> type[Change]:
        async def execute(self: Change, ctx: SQLContext) -> None:
            await ctx.connection.execute(text(f"INSERT INTO {prefix}items (k) VALUES (:k)"), {"k": number})

        attributes = {"id": f"item-{number}", "order": f"{number:04d}", "author": "tests", "target_system": "db"}
        return type(f"Item{number}", (Change,), {**attributes, "execute": execute})

    try:
        async with made.begin() as connection:
            await connection.execute(text(f"CREATE TABLE {prefix}items (k INTEGER PRIMARY KEY)"))
        target = SQLTargetSystem("db", engine=made, marker_table=f"{prefix}marker")
        store = SQLAuditStore.from_target(target, **tables(prefix))
        first = await Flamingock(audit_store=store, target_systems=[target], changes=[inserting(1)]).run()
        async with made.connect() as a, made.connect() as b, made.connect() as c:  # the application's own work
            for connection in (a, b, c):
                await connection.execute(text("SELECT 1"))
        assert made.sync_engine.pool.checkedin() == 3

        owned.stop()
        owned.start()
        fl = Flamingock(audit_store=store, target_systems=[target], changes=[inserting(1), inserting(2)])
        second = await fl.run()

        assert [c.outcome for c in first.changes] == [ChangeOutcome.APPLIED]
        assert [c.outcome for c in second.changes] == [ChangeOutcome.ALREADY_APPLIED, ChangeOutcome.APPLIED]
        assert [(e.change_id, e.state) async for e in fl.history()] == [
            ("item-1", AuditState.APPLIED),
            ("item-2", AuditState.APPLIED),
        ]
    finally:
        await made.dispose()


# -- what is the backend's own ---------------------------------------------------------------------------------------


def test_importing_the_backend_imports_no_driver() -> None:
    drivers = ["sqlalchemy", "asyncpg", "psycopg", "aiomysql", "pymysql"]
    code = f"import sys, aioflamingock.sql\nprint(','.join(m for m in {drivers!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == ""


def test_without_sqlalchemy_the_error_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['sqlalchemy'] = None; sys.modules['sqlalchemy.ext.asyncio'] = None\n"
        "from aioflamingock.sql import SQLTargetSystem\n"
        "try:\n"
        "    SQLTargetSystem('db', engine=object())\n"
        "except ImportError as exc:\n"
        "    sys.exit(str(exc))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert 'pip install "aioflamingock[sql]"' in done.stderr


def test_what_is_not_an_async_postgresql_or_mysql_engine_is_refused_before_anything_runs() -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.ext.asyncio import create_async_engine

    with pytest.raises(ConfigurationError, match=r"must be an sqlalchemy\.ext\.asyncio\.AsyncEngine"):
        SQLTargetSystem("db", engine=create_engine("sqlite://"))
    with pytest.raises(ConfigurationError, match=r"dialect 'sqlite' is not supported.*aioflamingock\.sqlite"):
        SQLTargetSystem("db", engine=create_async_engine("sqlite+aiosqlite://"))


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"audit_table": "audit; DROP TABLE users"}, "audit_table 'audit; DROP TABLE users' must match"),
        ({"lock_table": "lock-table"}, "lock_table 'lock-table' must match"),
        ({"schema": "public.x"}, "schema 'public.x' must match"),
        ({"audit_table": "same", "lock_table": "same"}, "same"),
    ],
)
def test_bad_table_names_are_refused_before_any_sql_is_built(options: dict[str, str], fragment: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    target = SQLTargetSystem("db", engine=create_async_engine("postgresql+asyncpg://u:p@localhost/db"))
    with pytest.raises(ConfigurationError, match=re.escape(fragment)):
        SQLAuditStore.from_target(target, **options)


async def test_a_password_in_the_engine_url_reaches_no_error_and_no_doctor_check() -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    made = create_async_engine(f"postgresql+asyncpg://app:s3cretPW@127.0.0.1:{free_port()}/db")
    try:
        target = SQLTargetSystem("db", engine=made)
        fl = Flamingock(audit_store=SQLAuditStore.from_target(target), target_systems=[target], changes=[])
        checks = await fl.doctor(timeout_seconds=10)
        with pytest.raises(StoreError) as caught:
            await fl.run()
    finally:
        await made.dispose()
    assert {(c.subject, c.check) for c in checks if not c.ok} >= {("audit store", "reachable")}
    assert all("s3cretPW" not in f"{c.detail} {c.fix}" for c in checks)
    assert "s3cretPW" not in str(caught.value) and "127.0.0.1" in str(caught.value)


CHANGES = {
    "_0001_create_orders.py": """
from aioflamingock import Change
from sqlalchemy import text


class CreateOrders(Change):
    id = "create-orders"
    order = "0001"
    author = "tests"
    target_system = "db"

    async def execute(self, ctx):
        await ctx.connection.execute(text("CREATE TABLE {prefix}orders (id INTEGER PRIMARY KEY)"))
        await ctx.connection.execute(text("INSERT INTO {prefix}orders (id) VALUES (1)"))
        if {fail}:
            raise RuntimeError("after the DDL")
""",
}


async def _run_create_orders(sql_server: Server, prefix: str, write_package: Any, *, fail: bool) -> Any:
    from sqlalchemy import text

    package = write_package({n: s.format(prefix=prefix, fail=fail) for n, s in CHANGES.items()})
    made = engine(sql_server.uri)
    try:
        target = SQLTargetSystem("db", engine=made, marker_table=f"{prefix}marker")
        fl = Flamingock(
            audit_store=SQLAuditStore.from_target(target, **tables(prefix)), target_systems=[target], changes=package
        )
        try:
            await fl.run()
            error = None
        except ChangeFailedError as exc:
            error = exc
        history = [e.state for e in [e async for e in fl.history()]]
        async with made.connect() as connection:
            exists = await connection.run_sync(lambda sync: inspect(sync).has_table(f"{prefix}orders"))
            rows = (await connection.execute(text(f"SELECT COUNT(*) FROM {prefix}orders"))).scalar() if exists else 0
    finally:
        await made.dispose()
    return error, history, exists, rows


async def test_mysql_refuses_ddl_in_a_transactional_change_before_it_commits_anything(
    mysql_server: Server, write_package: Any
) -> None:
    """MySQL would commit the open transaction with the CREATE TABLE: the statement is refused before it reaches
    the server, the change fails, nothing of it is committed, and the error says to make it non-transactional."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    try:
        error, history, exists, _ = await _run_create_orders(mysql_server, prefix, write_package, fail=False)
    finally:
        _drop_tables(mysql_server, prefix)
    assert error is not None and isinstance(error.__cause__, ChangeMisuseError), error
    assert "MySQL commits CREATE statements at once" in str(error.__cause__)
    assert "transactional = False" in str(error.__cause__)
    assert history == [AuditState.FAILED] and not exists


async def test_the_guard_holds_only_the_changes_own_connection_and_leaves_with_the_run(mysql_server: Server) -> None:
    """While a transactional change runs on MySQL, the application's own DDL, in its own transaction on another
    connection of the same engine, runs; after the run, no listener of the library is left on the engine."""
    import asyncio

    from sqlalchemy import text

    prefix = f"t{uuid.uuid4().hex[:10]}_"
    inside, done = asyncio.Event(), asyncio.Event()

    class WaitsForTheApp(Change):
        id = "waits-for-the-app"
        order = "0001"
        author = "tests"
        target_system = "db"

        async def execute(self, ctx: SQLContext) -> None:
            await ctx.connection.execute(text("SELECT 1"))
            inside.set()
            await done.wait()

    made = engine(mysql_server.uri)

    async def application() -> None:
        await inside.wait()
        try:
            async with made.begin() as connection:
                await connection.execute(text(f"CREATE TABLE {prefix}app (id INTEGER PRIMARY KEY)"))
        finally:
            done.set()

    try:
        target = SQLTargetSystem("db", engine=made, marker_table=f"{prefix}marker")
        fl = Flamingock(
            audit_store=SQLAuditStore.from_target(target, **tables(prefix)),
            target_systems=[target],
            changes=[WaitsForTheApp],
        )
        report, _ = await asyncio.gather(fl.run(), application())
        assert [c.outcome for c in report.changes] == [ChangeOutcome.APPLIED]
        assert not made.sync_engine.dispatch.before_cursor_execute
        async with made.begin() as connection:
            await connection.execute(text(f"DROP TABLE {prefix}app"))
    finally:
        await made.dispose()
        _drop_tables(mysql_server, prefix)


async def test_postgresql_ddl_commits_with_the_change_or_not_at_all(
    postgresql_server: Server, write_package: Any
) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    try:
        error, history, exists, _ = await _run_create_orders(postgresql_server, prefix, write_package, fail=True)
        assert error is not None and history == [AuditState.FAILED] and not exists, "the DDL outlived its rollback"
        prefix2 = f"t{uuid.uuid4().hex[:10]}_"
        error, history, exists, rows = await _run_create_orders(postgresql_server, prefix2, write_package, fail=False)
        assert (error, history, exists, rows) == (None, [AuditState.APPLIED], True, 1)
    finally:
        _drop_tables(postgresql_server, prefix)
        _drop_tables(postgresql_server, prefix2)


def _sync_engine(server: Server) -> Any:
    """A synchronous engine on `server`, for what the tests read and clean up behind the library's back."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url = make_url(server.uri)
    return create_engine(url.set(drivername=SYNC_DRIVERS[url.get_backend_name()]))


def _drop_tables(server: Server, prefix: str) -> None:
    from sqlalchemy import text

    cleaner = _sync_engine(server)
    try:
        with cleaner.begin() as connection:
            for name in inspect(connection).get_table_names():
                if name.startswith(prefix):
                    connection.execute(text(f"DROP TABLE {name}"))
            if cleaner.dialect.name == "postgresql":  # the summary's trigger function outlives its table
                functions = connection.execute(
                    text("SELECT proname FROM pg_proc WHERE proname LIKE :p"), {"p": f"{prefix}%"}
                )
                for (function,) in functions.all():
                    connection.execute(text(f"DROP FUNCTION IF EXISTS {function}()"))
    finally:
        cleaner.dispose()


@pytest.mark.parametrize("path", ["shared", "marker"])
async def test_a_commit_whose_answer_is_lost_ends_the_run_unknown_and_the_next_run_reads_the_truth(
    postgresql_server: Server, sql_prefix_pg: str, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection breaks once the server has committed: the run cannot know, says so
    (TransactionOutcomeUnknownError), and records nothing false; the next run finds the change applied (shared path:
    its APPLIED entry committed with it) or recovers it from its marker, and never runs it twice."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.ext.asyncio import AsyncConnection

    kit = SQLKit(postgresql_server.uri, sql_prefix_pg)
    try:
        instance = await kit.instance()
        executions: list[str] = []

        class Counted(Change):
            id = f"{path}-1"
            order = "0001"
            author = "tests"
            target_system = "app" if path == "shared" else "other"

            async def execute(self, ctx: SQLContext) -> None:
                executions.append(self.id)
                await kit.write(ctx, self.id)

        real = AsyncConnection.commit
        lost = [1]

        async def commit_then_lose_the_answer(self: AsyncConnection) -> None:
            await real(self)
            if lost[0] and self.info.get("lose"):
                lost[0] = 0
                raise OperationalError(
                    "COMMIT", {}, ConnectionResetError("connection reset"), connection_invalidated=True
                )

        async def begin_marked(self: AsyncConnection) -> Any:
            self.info["lose"] = True
            return await real_begin(self)

        real_begin = AsyncConnection.begin
        monkeypatch.setattr(AsyncConnection, "commit", commit_then_lose_the_answer)
        target = instance.app if path == "shared" else instance.other
        assert target is not None
        original_transaction = target.transaction

        @asynccontextmanager
        async def marked() -> AsyncIterator[Any]:
            monkeypatch.setattr(AsyncConnection, "begin", begin_marked)
            try:
                async with original_transaction() as tx:
                    yield tx
            finally:
                monkeypatch.setattr(AsyncConnection, "begin", real_begin)

        target.transaction = marked  # type: ignore[method-assign]
        fl = Flamingock(audit_store=instance.store, target_systems=instance.targets(), changes=[Counted])
        with pytest.raises((TransactionOutcomeUnknownError, ChangeFailedError)) as caught:
            await fl.run()
        unknown = caught.value if isinstance(caught.value, TransactionOutcomeUnknownError) else caught.value.__cause__
        assert isinstance(unknown, TransactionOutcomeUnknownError), caught.value
        assert "outcome is unknown" in str(unknown)
        del target.transaction
        states = [e.state for e in [e async for e in fl.history()]]
        assert states == ([AuditState.APPLIED] if path == "shared" else [AuditState.STARTED])

        report = await Flamingock(
            audit_store=instance.store, target_systems=instance.targets(), changes=[Counted]
        ).run()

        assert executions == [f"{path}-1"], "the committed change ran again"
        assert await kit.count(f"{path}-1") == 1
        expected = ChangeOutcome.ALREADY_APPLIED if path == "shared" else ChangeOutcome.RECOVERED
        assert [c.outcome for c in report.changes] == [expected]
        assert [e.state for e in [e async for e in fl.history()]][-1] is AuditState.APPLIED
    finally:
        await kit.aclose()


@pytest.fixture
def sql_prefix_pg(postgresql_server: Server) -> Iterator[str]:
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    yield prefix
    _drop_tables(postgresql_server, prefix)


# -- alembic under the lock -------------------------------------------------------------------------------------------

ALEMBIC_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sql_alembic.py"


@pytest.mark.slow
def test_alembic_upgrades_once_when_three_instances_start_together(postgresql_server: Server) -> None:
    """examples/sql_alembic.py started three times at once: alembic alone would race; here one instance runs the
    upgrade under the lock (revision 0002 seeds one row: a second run would add another), the others find it
    applied, and the audit records it once."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    env = {**os.environ, "DATABASE_URL": engine_url(postgresql_server.uri), "TABLE_PREFIX": prefix}
    try:
        started = [
            subprocess.Popen(
                [sys.executable, str(ALEMBIC_EXAMPLE)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [process.communicate(timeout=120) for process in started]
        assert [process.returncode for process in started] == [0, 0, 0], outputs
        applied = sorted(out.splitlines()[0].partition(" ")[2] for out, _ in outputs)
        assert applied == sorted(["[]", "[]", "['alembic-0002']"]), outputs  # the others waited, then found it applied
        assert all(out.splitlines()[1] == "alembic: 0002 items: ['first']" for out, _ in outputs), outputs
        audit = _query(postgresql_server, f"SELECT change_id, state FROM {prefix}flamingock_audit_log ORDER BY id")
        assert audit == [("alembic-0002", "APPLIED")]
    finally:
        _drop_tables(postgresql_server, prefix)


async def test_an_alembic_revision_that_fails_rolls_back_with_the_change_on_postgresql(
    postgresql_server: Server, sql_prefix_pg: str, tmp_path: Path
) -> None:
    """Revision 0001 commits nothing if 0002 fails: on PostgreSQL the upgrade is one transaction with its entry."""
    import shutil

    project = tmp_path / "alembic_project"
    shutil.copytree(ALEMBIC_EXAMPLE.with_name("alembic_project"), project)
    broken = project / "versions" / "r0002_seed_items.py"
    broken.write_text(broken.read_text().replace('op.bulk_insert(items, [{"id": 1, "name": "first"}])', "1 / 0"))
    prefix = sql_prefix_pg

    class Upgrade(AlembicUpgrade):
        id = "alembic-0002"
        order = "0001"
        author = "tests"
        target_system = "db"
        config = project / "alembic.ini"
        revision = "0002"
        attributes = {"prefix": prefix, "version_table": f"{prefix}alembic_version"}

    made = engine(postgresql_server.uri)
    try:
        target = SQLTargetSystem("db", engine=made, marker_table=f"{prefix}marker")
        fl = Flamingock(
            audit_store=SQLAuditStore.from_target(target, **tables(prefix)), target_systems=[target], changes=[Upgrade]
        )
        with pytest.raises(ChangeFailedError) as caught:
            await fl.run()
        assert isinstance(caught.value.__cause__, ZeroDivisionError)
        assert [e.state async for e in fl.history()] == [AuditState.FAILED]
        async with made.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        assert f"{prefix}items" not in names and f"{prefix}alembic_version" not in names
    finally:
        await made.dispose()


def _query(server: Server, sql: str) -> list[tuple[Any, ...]]:
    from sqlalchemy import text

    reader = _sync_engine(server)
    try:
        with reader.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    finally:
        reader.dispose()


async def test_a_password_in_a_failing_changes_message_reaches_no_audit_entry_and_no_log_record(
    postgresql_server: Server, sql_prefix_pg: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A change fails quoting the engine's URL with its password, as a driver's message can: the FAILED entry's
    error trace and every log record carry it redacted."""
    from sqlalchemy.engine import make_url

    secret = make_url(engine_url(postgresql_server.uri)).password
    assert secret

    class Quoting(Change):
        id = "quoting"
        order = "0001"
        author = "tests"
        target_system = "db"

        async def execute(self, ctx: SQLContext) -> None:
            raise RuntimeError(f"could not reach {engine_url(postgresql_server.uri)}")

    made = engine(postgresql_server.uri)
    try:
        target = SQLTargetSystem("db", engine=made, marker_table=f"{sql_prefix_pg}marker")
        store = SQLAuditStore.from_target(target, **tables(sql_prefix_pg))
        fl = Flamingock(audit_store=store, target_systems=[target], changes=[Quoting])
        with pytest.raises(ChangeFailedError) as caught:
            await fl.run()
        [failed] = [e async for e in fl.history()]
    finally:
        await made.dispose()
    assert failed.state is AuditState.FAILED and failed.error_trace
    assert "could not reach postgresql" in failed.error_trace and secret not in failed.error_trace
    assert secret not in str(caught.value)
    assert caplog.records and all(secret not in record.getMessage() for record in caplog.records)


@pytest.fixture(params=["postgresql", "mysql"])
def dialect_server(request: pytest.FixtureRequest) -> Iterator[tuple[Server, str]]:
    """Each server once, with its first driver, and a table-name prefix no other test uses (tables dropped after)."""
    server: Server = request.getfixturevalue(f"{request.param}_server")
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    yield server, prefix
    _drop_tables(server, prefix)


Grant = Callable[[str, str], Awaitable[None]]


@asynccontextmanager
async def another_login(server: Server, owner: Any) -> AsyncIterator[tuple[Any, Grant]]:
    """An engine on `server` logged in as a user of its own who may only connect, and `grant(privileges, table)`,
    made by the test's user (`owner`). Skips where the test's user may not create users; dropped afterwards."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    name, password = f"u_{uuid.uuid4().hex[:8]}", "another-secret-pw"
    mysql = make_url(server.uri).get_backend_name() == "mysql"
    who = f"'{name}'@'%'" if mysql else name
    create = (
        f"CREATE USER {who} IDENTIFIED BY '{password}'" if mysql else f"CREATE ROLE {name} LOGIN PASSWORD '{password}'"
    )
    async with owner.connect() as connection:
        try:
            await connection.execute(text(create))
            await connection.commit()
        except DBAPIError:
            pytest.skip(
                "the test's user may not create users (PostgreSQL: CREATEROLE; MySQL: CREATE USER, GRANT OPTION)"
            )
    granted: list[str] = []

    async def grant(privileges: str, table: str) -> None:
        async with owner.connect() as connection:
            await connection.execute(text(f"GRANT {privileges} ON {table} TO {who}"))
            await connection.commit()
        granted.append(table)

    limited = engine_as(server, name, password)
    try:
        yield limited, grant
    finally:
        await limited.dispose()
        async with owner.connect() as connection:
            for table in [] if mysql else granted:
                await connection.execute(text(f"REVOKE ALL ON {table} FROM {who}"))
            await connection.execute(text(f"DROP {'USER' if mysql else 'ROLE'} {who}"))
            await connection.commit()


async def test_doctor_names_the_privileges_a_user_lacks(dialect_server: tuple[Server, str]) -> None:
    """A user who may read one table of the application's and nothing of ours (MySQL lets no one without a
    privilege in a database connect to it): doctor says it may not create the tables; once they exist (made by
    another user) and it may only read the audit, doctor says what it still needs; granted that, it may."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    server, prefix = dialect_server
    owner = engine(server.uri)
    async with owner.connect() as connection:
        await connection.execute(text(f"CREATE TABLE {prefix}items (k VARCHAR(40) PRIMARY KEY)"))
        await connection.commit()
    try:
        async with another_login(server, owner) as (limited, grant):
            await grant("SELECT", f"{prefix}items")
            target = SQLTargetSystem("db", engine=limited, marker_table=f"{prefix}marker")
            store = SQLAuditStore.from_target(target, **tables(prefix))
            before = {c.check: c for c in await store.doctor()}
            where = f"database {make_url(server.uri).database}" if "mysql" in server.uri else "schema public"
            assert not before["privileges"].ok and f"may not create tables in {where}" in before["privileges"].detail

            owners = SQLTargetSystem("db", engine=owner, marker_table=f"{prefix}marker")
            async with SQLAuditStore.from_target(owners, **tables(prefix)):  # the tables, made by their owner
                pass
            hidden = {c.check: c for c in await store.doctor()}
            if "mysql" in server.uri:  # MySQL hides a table on which the user holds nothing
                assert not hidden["tables"].ok and "holds no privilege on it" in hidden["tables"].detail
            else:
                assert hidden["tables"].ok
            await grant("SELECT", f"{prefix}audit")
            await grant("SELECT", f"{prefix}lock")
            after = {c.check: c for c in await store.doctor()}
            assert after["tables"].ok
            assert not after["privileges"].ok
            lacking = f"may not read and insert into {prefix}audit; nor read and write {prefix}lock"
            assert lacking in after["privileges"].detail
            assert "another-secret-pw" not in str(after)

            await grant("INSERT", f"{prefix}audit")
            await grant("INSERT, UPDATE, DELETE", f"{prefix}lock")
            granted = {c.check: c for c in await store.doctor()}
            assert granted["privileges"].ok, granted["privileges"]
    finally:
        await owner.dispose()


async def test_a_user_who_may_not_create_the_marker_table_still_runs_shared_changes(
    dialect_server: tuple[Server, str],
) -> None:
    """The tables were made by an administrator; the service's user may only use them. A shared-path change needs no
    marker and is applied; a marker-path change fails, saying which statement creates the marker table."""
    from sqlalchemy import text

    server, prefix = dialect_server
    owner = engine(server.uri)
    async with owner.connect() as connection:
        await connection.execute(text(f"CREATE TABLE {prefix}items (k VARCHAR(40) PRIMARY KEY)"))
        await connection.commit()
    owners = SQLTargetSystem("db", engine=owner, marker_table=f"{prefix}marker")
    async with SQLAuditStore.from_target(owners, **tables(prefix)):  # the administrator's tables
        pass

    def inserting(change_id: str, target: str) -> type[Change]:
        async def execute(self: Change, ctx: SQLContext) -> None:
            await ctx.connection.execute(text(f"INSERT INTO {prefix}items (k) VALUES (:k)"), {"k": change_id})

        attributes = {"id": change_id, "order": change_id[-4:], "author": "tests", "target_system": target}
        return type(change_id.replace("-", "_"), (Change,), {**attributes, "execute": execute})

    try:
        async with another_login(server, owner) as (limited, grant):
            grants = {f"{prefix}audit": "SELECT, INSERT", f"{prefix}lock": "ALL", f"{prefix}items": "ALL"}
            for table, privileges in grants.items():
                await grant(privileges, table)
            app = SQLTargetSystem("app", engine=limited, marker_table=f"{prefix}marker")
            other = SQLTargetSystem("other", engine=limited, marker_table=f"{prefix}marker")
            store = SQLAuditStore.from_target(app, **tables(prefix), create_tables=False)
            changes = [inserting("shared-0001", "app"), inserting("marker-0002", "other")]
            fl = Flamingock(audit_store=store, target_systems=[app, other], changes=changes)
            with pytest.raises(ChangeFailedError) as caught:
                await fl.run()
            assert isinstance(caught.value.__cause__, ConfigurationError)
            assert f"CREATE TABLE IF NOT EXISTS {prefix}marker" in str(caught.value.__cause__)
            assert [(e.change_id, e.state) async for e in fl.history()] == [
                ("shared-0001", AuditState.APPLIED),
                ("marker-0002", AuditState.STARTED),
                ("marker-0002", AuditState.FAILED),
            ]
            assert _query(server, f"SELECT k FROM {prefix}items") == [("shared-0001",)]
    finally:
        await owner.dispose()


async def test_a_run_with_nothing_pending_reads_the_summary_and_sees_an_entry_deleted_by_hand(
    dialect_server: tuple[Server, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a run, the next one reads the summary and nothing else; an entry deleted by hand (the trigger drops the
    summary) or written by a tool that keeps none (the newest id moves) sends the run back to every state."""
    from sqlalchemy import text

    server, prefix = dialect_server

    def inserting(number: int) -> type[Change]:
        async def execute(self: Change, ctx: SQLContext) -> None:
            await ctx.connection.execute(text("SELECT 1"))

        attributes = {"id": f"s-{number}", "order": f"{number:04d}", "author": "tests", "target_system": "db"}
        return type(f"S{number}", (Change,), {**attributes, "execute": execute})

    made, by_hand = engine(server.uri), _sync_engine(server)

    def fl(count: int) -> Flamingock:
        target = SQLTargetSystem("db", engine=made, marker_table=f"{prefix}marker")
        store = SQLAuditStore.from_target(target, **tables(prefix))
        return Flamingock(audit_store=store, target_systems=[target], changes=[inserting(n) for n in range(count)])

    async def every_state(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a run with nothing pending read every change's state")

    try:
        assert len((await fl(3).run()).applied) == 3
        probe = fl(3)
        async with probe:
            if await probe.audit_store.applied_summary() is None:
                pytest.skip("this server did not let the test's user create triggers (MySQL with binary logging)")
        with monkeypatch.context() as patched:
            patched.setattr(SQLAuditStore, "current_states", every_state)
            assert (await fl(3).run()).status is RunStatus.NO_CHANGES

        with by_hand.begin() as connection:  # a human deletes s-1's entry
            connection.execute(text(f"DELETE FROM {prefix}audit WHERE change_id = 's-1'"))
        assert (await fl(3).run()).applied == ["s-1"]
        await fl(3).run()  # the summary is written again

        with by_hand.begin() as connection:  # a writer that keeps no summary: s-2 rolled back
            connection.execute(
                text(
                    f"INSERT INTO {prefix}audit (execution_id, stage_id, change_id, created_at, state, type, "
                    "metadata, execution_millis, system_change, tx_strategy, recovery_strategy, transaction_flag) "
                    "VALUES ('x', 'default', 's-2', '2026-12-02T00:00:00Z', 'ROLLED_BACK', 'EXECUTION', '{}', 0, "
                    "FALSE, 'NON_TX', 'ALWAYS_RETRY', FALSE)"
                )
            )
        assert (await fl(3).run()).applied == ["s-2"]
    finally:
        await made.dispose()
        by_hand.dispose()


async def test_a_store_that_cannot_look_for_its_summary_opens_and_runs_without_it(
    dialect_server: tuple[Server, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary is a shortcut: when looking for it fails (a server error on information_schema, say), the store
    opens all the same and the run reads every state."""
    from sqlalchemy import text

    server, prefix = dialect_server

    class One(Change):
        id = "one"
        order = "0001"
        author = "tests"
        target_system = "db"

        async def execute(self, ctx: SQLContext) -> None:
            await ctx.connection.execute(text("SELECT 1"))

    async def fails(self: SQLAuditStore) -> list[str]:
        raise StoreError("SQL failed while looking for the audit's summary: the server's temporary file is gone")

    monkeypatch.setattr(SQLAuditStore, "_summary_missing", fails)
    made = engine(server.uri)
    try:
        target = SQLTargetSystem("db", engine=made, marker_table=f"{prefix}marker")
        fl = Flamingock(
            audit_store=SQLAuditStore.from_target(target, **tables(prefix)), target_systems=[target], changes=[One]
        )
        async with fl:
            assert (await fl.run()).applied == ["one"]
            assert (await fl.run()).status is RunStatus.NO_CHANGES
            assert await fl.audit_store.applied_summary() is None
    finally:
        await made.dispose()
