from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from ..backend import (
    AUDIT_COLUMNS,
    AppliedSummary,
    AuditTable,
    ConfigurationError,
    DoctorCheck,
    Fence,
    LockLostError,
    StoreError,
    TargetStore,
    TargetSystem,
    Transaction,
    check_distinct,
    entry_row,
    library_logger,
)
from ._dialect import POSTGRESQL, qualified
from ._errors import is_denied, translate_errors
from ._lock import SQLLock
from ._target import SQLTargetSystem, SQLTransaction, has_table

if TYPE_CHECKING:
    from ..backend import AuditEntry

__all__ = ["DEFAULT_AUDIT_TABLE", "DEFAULT_LOCK_TABLE", "SQLAuditStore"]

logger = library_logger(__name__)

DEFAULT_AUDIT_TABLE = "flamingock_audit_log"
DEFAULT_LOCK_TABLE = "flamingock_lock"

_LONG = {"invoked_class", "source_file", "metadata", "error_trace", "author"}
_TYPES = {"execution_millis": "BIGINT", "system_change": "BOOLEAN", "transaction_flag": "BOOLEAN"}
# Columns an existing table must have to be taken for ours.
_AUDIT_SIGNATURE = ("change_id", "execution_id", "state")
_LOCK_SIGNATURE = ("lock_key", "owner", "fencing_token", "expires_at")


async def _allowed(connection: Any, probe: str) -> bool:
    """`probe` runs: False if the server refuses it for want of a privilege."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    try:
        await connection.execute(text(probe))
    except DBAPIError as exc:
        if is_denied(exc):
            return False
        raise
    return True


def _params(entry: AuditEntry) -> dict[str, Any]:
    return dict(zip(AUDIT_COLUMNS, entry_row(entry), strict=True))


class SQLAuditStore(TargetStore[SQLTargetSystem, SQLLock]):
    """Audit log and lock in two tables of the target's own database (PostgreSQL, MySQL or MariaDB).

    A transactional change on that same target takes the shared-transaction path: its writes and its APPLIED row
    commit together, in one database transaction, after the lock row has been read `FOR UPDATE` in it. Leases are
    judged by the server's clock.
    """

    def __init__(
        self,
        *,
        target: SQLTargetSystem,
        audit_table: str = DEFAULT_AUDIT_TABLE,
        lock_table: str = DEFAULT_LOCK_TABLE,
        schema: str | None = None,
        create_tables: bool = True,
    ) -> None:
        if not isinstance(target, SQLTargetSystem):
            raise ConfigurationError([f"SQLAuditStore needs a SQLTargetSystem, got {type(target).__name__}"])
        self.target = target
        self.audit_table = qualified("audit_table", audit_table, schema)
        self.lock_table = qualified("lock_table", lock_table, schema)
        check_distinct(
            "SQLAuditStore",
            audit_table=self.audit_table,
            lock_table=self.lock_table,
            marker_table=target.marker_table,
        )
        self.create_tables = create_tables
        self._lock = SQLLock(target, self.lock_table)
        self._summary_table = f"{self.audit_table}_summary"
        self._summary_kept = False
        where = f"table {self.audit_table!r} of {target.describe()}"
        self._table = AuditTable(self.audit_table, lambda id: f"{where}, id {id}")

    @classmethod
    def from_target(
        cls,
        target: SQLTargetSystem,
        *,
        audit_table: str = DEFAULT_AUDIT_TABLE,
        lock_table: str = DEFAULT_LOCK_TABLE,
        schema: str | None = None,
        create_tables: bool = True,
    ) -> SQLAuditStore:
        """The store in `target`'s database, through its engine. `create_tables=False`: check that the tables
        exist instead of creating them (a `ConfigurationError` prints the statements to run)."""
        return cls(
            target=target, audit_table=audit_table, lock_table=lock_table, schema=schema, create_tables=create_tables
        )

    def describe(self) -> str:
        return f"SQLAuditStore({self.target.describe()}, {self.audit_table})"

    # -- tables -----------------------------------------------------------------------------------------------------

    def _schema(self) -> dict[str, str]:
        """Every table and index the store needs, by name, with the statement that creates it."""
        dialect = self.target.dialect
        types = {c: _TYPES.get(c, dialect.text if c in _LONG else "VARCHAR(255)") for c in AUDIT_COLUMNS}
        columns = ", ".join(f"{c} {kind}" for c, kind in types.items())
        index = f"{self.audit_table.rpartition('.')[2]}_change"
        return {
            self.audit_table: f"CREATE TABLE {self.audit_table} (id {dialect.identity}, {columns})"
            f"{dialect.table_options}",
            index: f"CREATE INDEX {index} ON {self.audit_table} (change_id, id)",
            self.lock_table: f"CREATE TABLE {self.lock_table} (lock_key VARCHAR(255) NOT NULL PRIMARY KEY, "
            "owner VARCHAR(255) NOT NULL, acquired_at BIGINT NOT NULL, expires_at BIGINT NOT NULL, "
            f"fencing_token BIGINT NOT NULL){dialect.table_options}",
        }

    async def _prepare(self) -> None:
        schema = self._schema()
        missing = await self._missing(schema)
        if missing and not self.create_tables:
            statements = "; ".join(schema[name] for name in missing)
            raise ConfigurationError(
                [f"{self.describe()}: {', '.join(missing)} missing (create_tables=False): run {statements}"]
            )
        for name in missing:
            try:
                async with self.target.connect("creating the audit tables") as connection:
                    await connection.exec_driver_sql(schema[name])
            except Exception:
                # instances starting together race to create them: the loser finds them made
                if name in await self._missing(schema):
                    raise
        try:
            await self._prepare_summary()
        except StoreError as exc:  # the summary is a shortcut: a store that cannot look for it opens without it
            self._summary_kept = False
            logger.info("%s: no summary of the audit (%s): start-ups read every state", self.describe(), exc)

    async def _missing(self, schema: dict[str, str]) -> list[str]:
        return (await self._look(schema))[0]

    async def _look(self, schema: dict[str, str]) -> tuple[list[str], set[str]]:
        """The tables and index of `schema` not in the database, in `schema`'s order; and those of them the role
        may not see (MySQL hides a table on which the role holds no privilege). A table of that name that is not
        ours (an application's table given as `audit_table`) is refused before anything is written."""
        from sqlalchemy import inspect

        hidden: set[str] = set()

        def look(sync: Any) -> dict[str, list[str] | None]:
            inspector = inspect(sync)
            found: dict[str, list[str] | None] = {}
            for name in (self.audit_table, self.lock_table):
                owner, _, table = name.rpartition(".")
                seen = has_table(inspector, table, owner or None)
                if seen is None:
                    hidden.add(name)
                if seen:
                    found[name] = [c["name"].lower() for c in inspector.get_columns(table, schema=owner or None)]
                    if name == self.audit_table:
                        for index in inspector.get_indexes(table, schema=owner or None):
                            found[str(index["name"])] = None
            return found

        async def query(connection: Any) -> dict[str, list[str] | None]:
            hidden.clear()
            return dict(await connection.run_sync(look))

        present = await self.target.read("reading the schema", query)
        for name, signature in {self.audit_table: _AUDIT_SIGNATURE, self.lock_table: _LOCK_SIGNATURE}.items():
            columns = present.get(name)
            if columns is not None and not all(column in columns for column in signature):
                role = "audit_table" if name == self.audit_table else "lock_table"
                raise ConfigurationError(
                    [
                        f"{role} {name!r} exists but is not aioflamingock's (it has no {', '.join(signature)} "
                        f"column): pass another {role}, or rename that table"
                    ]
                )
        return [name for name in schema if name not in present], hidden

    async def _diagnose(self) -> list[DoctorCheck]:
        schema = self._schema()
        missing, hidden = await self._look(schema)
        checks = [
            DoctorCheck(
                self.subject(),
                "tables",
                False,
                f"{name!r} is missing, or the role holds no privilege on it (the server does not say which)"
                if name in hidden
                else f"{name!r} is missing",
                f"any run creates it (with the privilege to create tables), or run `{schema[name]}`; if it exists, "
                "grant the role its privileges"
                if name in hidden
                else f"any run creates it (with the privilege to create tables), or run `{schema[name]}`",
            )
            for name in missing
        ] or [DoctorCheck(self.subject(), "tables", True, f"{', '.join(schema)} present")]
        checks.append(await self._privileges(missing))
        return checks

    def _probes(self) -> list[tuple[str, str, list[str]]]:
        """For each table: statements that change nothing (`WHERE 1 = 0`), which the server refuses unless the role
        may do what the store does with that table. The server judges, with every grant and role it knows of."""
        audit, lock = self.audit_table, self.lock_table
        lock_columns = "lock_key, owner, acquired_at, expires_at, fencing_token"
        return [
            (
                "audit",
                audit,
                [
                    f"SELECT 1 FROM {audit} WHERE 1 = 0",
                    f"INSERT INTO {audit} (change_id) SELECT change_id FROM {audit} WHERE 1 = 0",
                ],
            ),
            (
                "lock",
                lock,
                [
                    f"SELECT 1 FROM {lock} WHERE 1 = 0",
                    f"INSERT INTO {lock} ({lock_columns}) SELECT {lock_columns} FROM {lock} WHERE 1 = 0",
                    f"UPDATE {lock} SET owner = owner WHERE 1 = 0",
                    f"DELETE FROM {lock} WHERE 1 = 0",
                ],
            ),
        ]

    async def _privileges(self, missing: list[str]) -> DoctorCheck:
        """What the role may do: create the missing tables in their schema (or database); read and write the audit
        and the lock."""
        from sqlalchemy import text

        dialect = self.target.dialect
        schema = self.audit_table.rpartition(".")[0] or None
        lacking: list[str] = []
        async with self.target.connect("reading the privileges") as connection:
            user, current = (await connection.execute(text(f"SELECT CURRENT_USER, {dialect.default_schema}"))).one()
            for what, name, probes in self._probes():
                if name not in missing and not all([await _allowed(connection, probe) for probe in probes]):
                    lacking.append(what)
            if missing and not (await connection.execute(text(dialect.may_create), {"schema": schema})).scalar():
                lacking.append("create")
        if not lacking:
            return DoctorCheck(
                self.subject(), "privileges", True, f"{user!r} may {'create, ' if missing else ''}read and write them"
            )
        words = {
            "audit": f"read and insert into {self.audit_table}",
            "lock": f"read and write {self.lock_table}",
            "create": f"create tables in {dialect.schema_word} {schema or current}",
        }
        return DoctorCheck(
            self.subject(),
            "privileges",
            False,
            f"{user!r} may not {'; nor '.join(words[what] for what in lacking)}",
            "grant them (SELECT, INSERT on the audit table; SELECT, INSERT, UPDATE, DELETE on the lock table; "
            f"CREATE on the {dialect.schema_word}), or have an administrator create the tables",
        )

    # -- the summary of the applied changes --------------------------------------------------------------------------

    def _summary_schema(self, owner_schema: str = "") -> dict[str, str]:
        """The summary's table and what drops it when an entry is changed or deleted, by name, with the statements
        that create them (PostgreSQL: a function, run as its owner, and a statement trigger; MySQL: two row
        triggers). An entry added is seen by the summary's `last_id`, which is then no longer the newest id."""
        summary, audit = self._summary_table, self.audit_table
        base = audit.rpartition(".")[2]
        table = (
            f"CREATE TABLE {summary} (id INTEGER NOT NULL PRIMARY KEY, last_id BIGINT NOT NULL, "
            f"applied BIGINT NOT NULL, digest VARCHAR(64) NOT NULL){self.target.dialect.table_options}"
        )
        if self.target.dialect is POSTGRESQL:
            # Run as its owner (who made the summary), with no search path to hijack: the table's name in full.
            function, full = f"{summary}_forget", summary if "." in summary else f"{owner_schema}.{summary}"
            return {
                summary: table,
                function: f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                f"SET search_path = pg_catalog, pg_temp AS $$ BEGIN DELETE FROM {full}; RETURN NULL; END $$",
                f"{base}_summary_on_change": f"CREATE TRIGGER {base}_summary_on_change AFTER UPDATE OR DELETE OR "
                f"TRUNCATE ON {audit} FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
            }
        owner = f"{audit.rpartition('.')[0]}." if "." in audit else ""
        return {
            summary: table,
            **{
                f"{base}_summary_on_{event.lower()}": f"CREATE TRIGGER {owner}{base}_summary_on_{event.lower()} "
                f"AFTER {event} ON {audit} FOR EACH ROW DELETE FROM {summary}"
                for event in ("UPDATE", "DELETE")
            },
        }

    async def _summary_missing(self) -> list[str]:
        schema = self.audit_table.rpartition(".")[0] or None
        wanted = list(self._summary_schema())
        if self.target.dialect is POSTGRESQL:
            sql = (
                "SELECT :table WHERE to_regclass(:table) IS NOT NULL "
                "UNION ALL SELECT :function WHERE to_regprocedure(:function || '()') IS NOT NULL "
                "UNION ALL SELECT tgname FROM pg_trigger WHERE tgrelid = to_regclass(:audit) AND tgname = :trigger"
            )
            params: dict[str, Any] = {
                "table": wanted[0],
                "function": wanted[1],
                "trigger": wanted[2],
                "audit": self.audit_table,
            }
            found = {str(row[0]) for row in await self._rows(sql, params, "looking for the audit's summary")}
        else:
            sql = (
                "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = "
                "COALESCE(:schema, DATABASE()) AND TRIGGER_NAME IN (:update, :delete)"
            )
            params = {"schema": schema, "update": wanted[1], "delete": wanted[2]}
            found = {str(row[0]) for row in await self._rows(sql, params, "looking for the audit's summary")}
            if await self.target._has_table(self._summary_table):
                found.add(self._summary_table)
        return [name for name in wanted if name not in found]

    async def _prepare_summary(self) -> None:
        """Create what the summary needs, where the role may; without it (a role that may not create tables or
        triggers, `create_tables=False`, MySQL's binary log refusing triggers), every start-up reads every state."""
        self._summary_kept = False
        missing = await self._summary_missing()
        if not missing:
            self._summary_kept = True
            return
        owner = ""
        if self.target.dialect is POSTGRESQL and "." not in self.audit_table:
            [(owner,)] = await self._rows("SELECT current_schema()", {}, "reading the current schema")
        schema = self._summary_schema(str(owner))
        if not self.create_tables:
            logger.info(
                "%s: no summary of the audit (run %s to have one)",
                self.describe(),
                "; ".join(schema[n] for n in missing),
            )
            return
        for name in missing:
            try:
                async with self.target.connect("creating the audit's summary") as connection:
                    await connection.exec_driver_sql(schema[name])
            except Exception as exc:
                if name in await self._summary_missing():  # instances starting together: the loser finds it made
                    logger.info("%s: no summary of the audit (%s): start-ups read every state", self.describe(), exc)
                    return
        self._summary_kept = True

    def summary_removal(self) -> str:
        return f"`DELETE FROM {self._summary_table}`"

    async def applied_summary(self) -> AppliedSummary | None:
        """One statement, one row: the summary, if no entry was added since it was written (its `last_id` is the
        audit's newest id; the triggers drop it when an entry is changed or deleted)."""
        if not self._summary_kept:
            return None
        return self._table.summary(
            await self._rows(self._table.summary_sql(self._summary_table), {}, "reading the audit's summary")
        )

    async def refresh_summary(self) -> None:
        """In one transaction that no entry can be added to, changed in or deleted from meanwhile (PostgreSQL: the
        audit locked in SHARE mode; MySQL: its newest id and each change's newest row read with shared locks): each
        change's newest state, then the summary of them."""
        from sqlalchemy import text

        if not self._summary_kept:
            return
        audit, summary, newest = self.audit_table, self._summary_table, self._table.applied_sql
        postgresql = self.target.dialect is POSTGRESQL
        upsert = f"INSERT INTO {summary} (id, last_id, applied, digest) VALUES (1, :last_id, :applied, :digest) " + (
            "ON CONFLICT (id) DO UPDATE SET last_id = EXCLUDED.last_id, applied = EXCLUDED.applied, "
            "digest = EXCLUDED.digest"
            if postgresql
            else "ON DUPLICATE KEY UPDATE last_id = VALUES(last_id), applied = VALUES(applied), digest = VALUES(digest)"
        )
        async with self.target.begin("updating the audit's summary") as connection:
            if postgresql:
                await connection.execute(text(f"LOCK TABLE {audit} IN SHARE MODE"))
            else:
                await connection.execute(text(f"SELECT MAX(id) FROM {audit} LOCK IN SHARE MODE"))
                newest += " LOCK IN SHARE MODE"
            last_id, made = self._table.summarize_applied((await connection.execute(text(newest))).all())
            await connection.execute(text(upsert), {"last_id": last_id, "applied": made.count, "digest": made.digest})

    # -- the audit --------------------------------------------------------------------------------------------------

    @cached_property
    def _fenced_insert_sql(self) -> Any:
        """The entry's row, inserted only if our lock row is still ours, which that row's lock (`FOR UPDATE`) then
        keeps so until the transaction ends: a takeover waits for it. One statement, one round trip."""
        from sqlalchemy import text

        values = ", ".join(":" + c for c in AUDIT_COLUMNS)
        return text(
            f"INSERT INTO {self.audit_table} ({', '.join(AUDIT_COLUMNS)}) SELECT {values} FROM {self.lock_table} "
            "WHERE lock_key = :lock_key AND owner = :lock_owner AND fencing_token = :lock_token FOR UPDATE"
        )

    async def _fenced_insert(self, connection: Any, entry: AuditEntry, fence: Fence) -> None:
        """In `connection`'s transaction: insert the entry if the lock row is still ours, and lock that row (a
        takeover then waits for this transaction to end); LockLostError if the row is no longer ours."""
        params = _params(entry) | {"lock_key": fence.key, "lock_owner": fence.owner, "lock_token": fence.token}
        inserted = await connection.execute(self._fenced_insert_sql, params)
        if inserted.rowcount != 1:
            raise LockLostError(
                f"{entry.state.value} of {entry.change_id!r} not recorded: lock {fence.key!r} is no longer held "
                f"by {fence.owner!r} with token {fence.token}"
            )

    async def append(self, entry: AuditEntry, *, fence: Fence) -> None:
        async with self.target.begin(f"recording {entry.state.value} of {entry.change_id!r}") as connection:
            await self._fenced_insert(connection, entry, fence)

    def shares_transactions_with(self, target: TargetSystem) -> bool:
        return target is self.target

    async def append_in_transaction(self, tx: Transaction, entry: AuditEntry, *, fence: Fence) -> None:
        assert isinstance(tx, SQLTransaction)
        with translate_errors(f"recording {entry.state.value} of {entry.change_id!r}"):
            await self._fenced_insert(tx.context.connection, entry, fence)

    async def _rows(self, sql: str, params: dict[str, Any], what: str) -> list[tuple[Any, ...]]:
        from sqlalchemy import text

        async def query(connection: Any) -> list[tuple[Any, ...]]:
            return [tuple(row) for row in await connection.execute(text(sql), params)]

        return await self.target.read(what, query)

    async def current_states(self, change_ids: Iterable[str] | None = None) -> dict[str, AuditEntry]:
        rows = await self._rows(self._table.newest_sql, {}, "reading the current states")
        return self._table.newest(rows, change_ids)

    async def _page(self, after: int, limit: int) -> list[tuple[Any, ...]]:
        sql = self._table.page_sql(":after", ":limit")
        return await self._rows(sql, {"after": after, "limit": limit}, "reading the history")

    def history(self) -> AsyncIterator[AuditEntry]:
        return self._table.history(self._page)
