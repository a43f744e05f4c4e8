from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ..backend import (
    ChangeMisuseError,
    ClosedResourceError,
    ConfigurationError,
    DoctorCheck,
    Marker,
    StoreError,
    Transaction,
    TransactionalTargetSystem,
    TransactionOutcomeUnknownError,
    check_identifier,
    redact,
    utc_now,
)
from ._dialect import Dialect, dialect_of, qualified
from ._errors import (
    ERRORS,
    import_sqlalchemy,
    is_aborted,
    is_connection_lost,
    is_denied,
    translate_errors,
)

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

__all__ = ["DEFAULT_MARKER_TABLE", "SQLContext", "SQLTargetSystem", "SQLTransaction", "has_table"]

DEFAULT_MARKER_TABLE = "flamingock_marker"
T = TypeVar("T")
CLEANUP_SECONDS = 10.0

_NOT_IN_A_TRANSACTION = re.compile(
    r"\s*(?:(?:/\*.*?\*/|--[^\n]*(?:\n|$))\s*)*"  # leading comments
    r"(COMMIT|ROLLBACK(?!\s+TO\b)|BEGIN|START\s+TRANSACTION|END\b|SET\s+(?:SESSION\s+)?AUTOCOMMIT"
    r"|CREATE(?!\s+TEMPORARY\b)|ALTER|DROP(?!\s+TEMPORARY\b)|RENAME|TRUNCATE|LOCK\s+TABLES?|UNLOCK\s+TABLES?"
    r"|GRANT|REVOKE)\b",
    re.IGNORECASE | re.DOTALL,
)
_TRANSACTION_CONTROL = {"COMMIT", "ROLLBACK", "BEGIN", "START", "END", "SET"}


@dataclass(frozen=True)
class SQLContext:
    """What a change on a SQL target receives.

    In a transactional change, `connection` is inside the transaction the engine commits, with the change's audit
    entry on the shared path: don't commit, roll back or begin one yourself, and on MySQL issue no DDL (MySQL
    commits it at once, and the transaction with it). In a non-transactional change, `connection` is in autocommit
    mode: each statement commits on its own."""

    connection: AsyncConnection
    target_id: str
    in_transaction: bool

    def session(self, **options: Any) -> AsyncSession:
        """An ORM session on `connection`, in the engine's transaction when there is one: its `commit()` only
        releases a savepoint, and closing it without `commit()` discards what it wrote; the engine commits. Use it
        as `async with ctx.session() as session:`."""
        from sqlalchemy.ext.asyncio import AsyncSession

        mode = "create_savepoint" if self.in_transaction else "conservative_savepoint"
        return AsyncSession(bind=self.connection, join_transaction_mode=mode, **options)


def has_table(inspector: Any, name: str, schema: str | None) -> bool | None:
    """Whether table `name` exists; None if the role may not see it: MySQL refuses to describe a table on which
    the role holds no privilege (even one that does not exist), so to that role it is missing."""
    from sqlalchemy.exc import DBAPIError

    try:
        return bool(inspector.has_table(name, schema=schema))
    except DBAPIError as exc:
        if is_denied(exc):
            return None
        raise


class _Guard:
    """Refuses, before it reaches the server, a statement that would end the engine's transaction (or, on MySQL,
    commit it implicitly: DDL) on a connection whose transactional change is running. One listener on the engine
    while the target is open; a change's connection is guarded while its code runs."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._guarded: set[int] = set()

    def listen(self, engine: AsyncEngine) -> None:
        from sqlalchemy import event

        if not event.contains(engine.sync_engine, "before_cursor_execute", self._refuse):
            event.listen(engine.sync_engine, "before_cursor_execute", self._refuse)

    def stop(self, engine: AsyncEngine) -> None:
        from sqlalchemy import event

        if event.contains(engine.sync_engine, "before_cursor_execute", self._refuse):
            event.remove(engine.sync_engine, "before_cursor_execute", self._refuse)

    @contextmanager
    def guarding(self, connection: AsyncConnection) -> Iterator[None]:
        key = id(connection.sync_connection)
        self._guarded.add(key)
        try:
            yield
        finally:
            self._guarded.discard(key)

    def _refuse(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if id(conn) not in self._guarded:
            return
        found = _NOT_IN_A_TRANSACTION.match(statement)
        if found is None:
            return
        word = found.group(1).split()[0].upper()
        if word in _TRANSACTION_CONTROL:
            raise ChangeMisuseError(
                f"a transactional change may not end or begin the engine's transaction ({word} refused before "
                "it ran): the engine commits the change's writes with its audit entry",
                None,
            )
        if self._dialect.implicit_commit:
            raise ChangeMisuseError(
                f"{self._dialect.name} commits {word} statements at once, and the open transaction with them: "
                f"a transactional change may not issue one ({word} refused before it ran). Mark the change "
                "`transactional = False` (its statements then commit one by one, and its recovery applies)",
                None,
            )


class SQLTransaction(Transaction):
    context: SQLContext

    def __init__(self, context: SQLContext, root: Any, guard: _Guard) -> None:
        super().__init__(context)
        self._root = root
        self._guard = guard

    def running_change(self) -> AbstractContextManager[None]:
        """While the change's code runs, a statement that would end the engine's transaction (or, on MySQL, commit
        it implicitly: DDL) is refused before it reaches the server."""
        return self._guard.guarding(self.context.connection)

    async def bypassed(self) -> str | None:
        connection = self.context.connection
        if not self._root.is_active or connection.get_transaction() is not self._root:
            return (
                "ended the engine's transaction itself (`connection.commit()` or `rollback()`; or, after an error, "
                "the database rolled it back)"
            )
        return None


class SQLTargetSystem(TransactionalTargetSystem):
    """A PostgreSQL or MySQL/MariaDB database, through the SQLAlchemy `AsyncEngine` the application already has.

    A transactional change runs in one transaction on a connection of the engine's pool; the engine's lock and
    audit use other connections of the same pool (at most two more at once). The marker table of the
    separate-transaction path (`marker_table`, in `schema` if given) is created the first time a transaction begins
    on this target, outside it: MySQL would commit the transaction with the DDL. A role that may not create it still
    runs the other paths; a marker-path change then fails, naming the statement that creates it.
    """

    def __init__(
        self,
        id: str,
        *,
        engine: AsyncEngine,
        marker_table: str = DEFAULT_MARKER_TABLE,
        schema: str | None = None,
    ) -> None:
        self.id = check_identifier("target system id", id)
        asyncio_ext = import_sqlalchemy()
        if not isinstance(engine, asyncio_ext.AsyncEngine):
            raise ConfigurationError(
                [
                    f"SQLTargetSystem {id!r}: engine must be an sqlalchemy.ext.asyncio.AsyncEngine "
                    f"(create_async_engine), got {type(engine).__name__}"
                ]
            )
        self._engine: AsyncEngine = engine
        self.dialect = dialect_of(engine.dialect.name, f"SQLTargetSystem {id!r}")
        self.schema = schema
        self.marker_table = qualified("marker_table", marker_table, schema)
        self._open_now = False
        self._marker_ready = False
        self._marker_problem: StoreError | None = None
        self._guard = _Guard(self.dialect)

    def describe(self) -> str:
        url = self._engine.url
        where = f"{url.get_backend_name()}://{url.host or ''}{'' if url.port is None else f':{url.port}'}"
        return redact(f"SQLTargetSystem({self.id!r}, {where}/{url.database or ''})")

    @property
    def engine(self) -> AsyncEngine:
        if not self._open_now:
            raise ClosedResourceError(f"{self.describe()} is not open")
        return self._engine

    async def _open(self) -> None:
        from sqlalchemy import text

        async def ping(connection: AsyncConnection) -> None:
            await connection.execute(text("SELECT 1"))

        self._open_now = True  # for `read`, which takes its connections from the engine
        try:
            await self.read(f"connecting to {self.describe()}", ping)
        except BaseException:
            self._open_now = False
            raise
        self._guard.listen(self._engine)

    async def _close(self) -> None:
        self._guard.stop(self._engine)
        self._open_now, self._marker_ready, self._marker_problem = False, False, None

    @asynccontextmanager
    async def connect(self, what: str) -> AsyncIterator[AsyncConnection]:
        """A connection of the pool for one of the backend's own operations, in autocommit mode."""
        with translate_errors(what):
            async with self.engine.connect() as connection:
                yield await connection.execution_options(isolation_level="AUTOCOMMIT")

    async def read(self, what: str, query: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`query(connection)` on a connection of the pool in autocommit mode; again on the next one while the one
        before turned out broken (the server restarted since they were pooled: each broken one leaves the pool), at
        most once per connection the pool held. For reads only, which may run twice. A server that is down refuses
        each new connection at once."""
        spare: int | None = None
        while True:
            try:
                async with self.connect(what) as connection:
                    return await query(connection)
            except StoreError as exc:
                if spare is None:
                    spare = int(getattr(self._engine.pool, "checkedin", lambda: 0)()) + 1
                if spare <= 0 or exc.__cause__ is None or not is_connection_lost(exc.__cause__):
                    raise
                spare -= 1

    @asynccontextmanager
    async def begin(self, what: str) -> AsyncIterator[AsyncConnection]:
        """A connection of the pool in a transaction of its own, committed when the block ends."""
        with translate_errors(what):
            async with self.engine.begin() as connection:
                yield connection

    @asynccontextmanager
    async def context(self) -> AsyncIterator[Any]:
        """The context of a non-transactional change: a connection in autocommit mode."""
        async with self.connect("running a non-transactional change") as connection:
            yield SQLContext(connection, self.id, in_transaction=False)

    async def _diagnose(self) -> list[DoctorCheck]:
        from sqlalchemy import text

        with translate_errors("reading the server's version"):
            async with self.connect("reading the server's version") as connection:
                version = (await connection.execute(text("SELECT VERSION()"))).scalar()
        return [DoctorCheck(self.subject(), "server", True, f"{self.dialect.name}: {str(version)[:80]}")]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SQLTransaction]:
        await self._ensure_marker_table()
        with ERRORS.boundary("beginning a transaction"):
            connection = await self.engine.connect()
        try:
            with translate_errors("beginning a transaction"):
                root = await connection.begin()
            yield SQLTransaction(SQLContext(connection, self.id, in_transaction=True), root, self._guard)
            await self._commit(connection)
        except BaseException:
            with anyio.move_on_after(CLEANUP_SECONDS, shield=True):
                try:
                    await connection.rollback()
                except Exception:  # a broken connection: the server drops its transaction with it
                    await connection.invalidate()
            raise
        finally:
            with anyio.move_on_after(CLEANUP_SECONDS, shield=True):
                await connection.close()

    async def _commit(self, connection: AsyncConnection) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        try:
            await connection.commit()
        except SQLAlchemyError as exc:
            if is_connection_lost(exc) and not is_aborted(exc):
                raise TransactionOutcomeUnknownError(
                    redact(f"SQL: the connection broke while committing, so the outcome is unknown: {exc}")
                ) from exc
            raise ERRORS.translate(exc, "committing a transaction") from exc

    def _marker_ddl(self) -> str:
        return (
            f"CREATE TABLE IF NOT EXISTS {self.marker_table} (change_id VARCHAR(255) NOT NULL PRIMARY KEY, "
            f"execution_id VARCHAR(255) NOT NULL, created_at VARCHAR(40) NOT NULL){self.dialect.table_options}"
        )

    async def _ensure_marker_table(self) -> None:
        """Create the marker table if it is missing. A role that may not create it is no reason to refuse a
        shared-path change, which needs none: the failure is kept, and said by `write_marker` if a change takes the
        marker path."""
        if self._marker_ready or self._marker_problem is not None:
            return
        from sqlalchemy import text

        try:
            async with self.connect("creating the marker table") as connection:
                await connection.execute(text(self._marker_ddl()))
        except StoreError as exc:
            # instances starting together race to create it: PostgreSQL may refuse the loser's IF NOT EXISTS
            if not await self._has_table(self.marker_table):
                self._marker_problem = exc
                return
        self._marker_ready = True

    async def _has_table(self, qualified_name: str) -> bool:
        from sqlalchemy import inspect

        schema, _, name = qualified_name.rpartition(".")

        async def look(connection: AsyncConnection) -> bool:
            return bool(await connection.run_sync(lambda sync: has_table(inspect(sync), name, schema or None)))

        return await self.read(f"looking for {qualified_name}", look)

    async def write_marker(self, tx: Transaction, marker: Marker) -> None:
        from sqlalchemy import text

        assert isinstance(tx, SQLTransaction)
        if self._marker_problem is not None:
            raise ConfigurationError(
                [
                    f"{self.describe()}: the marker table {self.marker_table} is missing and could not be created "
                    f"({self._marker_problem}): run `{self._marker_ddl()}`, or let the role create tables"
                ]
            ) from self._marker_problem
        connection = tx.context.connection
        with translate_errors("writing the marker"):
            await connection.execute(
                text(f"DELETE FROM {self.marker_table} WHERE change_id = :change_id"), {"change_id": marker.change_id}
            )
            await connection.execute(
                text(
                    f"INSERT INTO {self.marker_table} (change_id, execution_id, created_at) "
                    "VALUES (:change_id, :execution_id, :created_at)"
                ),
                {
                    "change_id": marker.change_id,
                    "execution_id": marker.execution_id,
                    "created_at": utc_now().isoformat(),
                },
            )

    async def read_marker(self, change_id: str) -> Marker | None:
        from sqlalchemy import text

        if not self._marker_ready and not await self._has_table(self.marker_table):
            return None

        async def query(connection: AsyncConnection) -> Any:
            sql = f"SELECT execution_id FROM {self.marker_table} WHERE change_id = :change_id"
            return (await connection.execute(text(sql), {"change_id": change_id})).first()

        row = await self.read("reading the marker", query)
        return None if row is None else Marker(change_id, str(row[0]))

    async def delete_marker(self, change_id: str) -> None:
        from sqlalchemy import text

        if not self._marker_ready and not await self._has_table(self.marker_table):
            return
        async with self.connect("deleting the marker") as connection:
            await connection.execute(
                text(f"DELETE FROM {self.marker_table} WHERE change_id = :change_id"), {"change_id": change_id}
            )
