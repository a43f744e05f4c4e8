"""Mistakes users make inside a change, made the way a user makes them: a package of real change modules, a real
run on a real SQLite file, MongoDB server or DynamoDB endpoint. For each: what the audit then says is true, what
the user reads names the change and what to do, and a later run does not make things worse."""

from __future__ import annotations

import textwrap
import uuid
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aioflamingock import (
    AuditEntry,
    AuditState,
    ChangeFailedError,
    ChangeMisuseError,
    ConfigurationError,
    Flamingock,
    ManualInterventionRequiredError,
    NonTransactionalTargetSystem,
    PlannedAction,
    Remedy,
    RunStatus,
    TransactionBypassedError,
    UnawaitedCoroutineError,
)
from aioflamingock.memory import InMemoryAuditStore
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem
from tests.conftest import WritePackage

HEADER = "from aioflamingock import Change\n\n\n"
CREATE_NOTES = HEADER + textwrap.dedent(
    """
    class CreateNotes(Change):
        id = "create-notes"
        author = "alice"
        target_system = "app-db"

        async def execute(self, ctx):
            await ctx.connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    """
)


def change(class_name: str, change_id: str, body: str, *, extra: str = "") -> str:
    """A change module's source: `body` is the text of `execute`, indented by 8."""
    return (
        HEADER
        + f"class {class_name}(Change):\n"
        + f'    id = "{change_id}"\n    author = "alice"\n    target_system = "app-db"\n'
        + textwrap.indent(textwrap.dedent(extra), "    ")
        + "\n    async def execute(self, ctx):\n"
        + textwrap.indent(textwrap.dedent(body), "        ")
    )


def newest(entries: list[AuditEntry], change_id: str) -> AuditEntry:
    return [e for e in entries if e.change_id == change_id][-1]


async def entries_of(fl: Flamingock) -> list[AuditEntry]:
    return [e async for e in fl.history()]


def sqlite_engine(tmp_path: Path, package: str, *, marker_path: bool = False) -> Flamingock:
    """The shared-transaction path (audit in the app's own SQLite file), or the marker path (audit elsewhere)."""
    db = SQLiteTargetSystem("app-db", path=tmp_path / "app.db")
    if marker_path:
        audit = SQLiteTargetSystem("audit-db", path=tmp_path / "audit.db")
        return Flamingock(audit_store=SQLiteAuditStore.from_target(audit), target_systems=[db], changes=[package])
    return Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=[package])


def columns(tmp_path: Path, table: str) -> list[str]:
    import sqlite3

    with sqlite3.connect(tmp_path / "app.db") as conn:
        names = [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]
    conn.close()
    return names


async def assert_needs_a_human(fl: Flamingock, change_id: str, source_file: str) -> None:
    """What the audit and every reader say after a change went around the engine's transaction."""
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    cause = caught.value.__cause__
    assert isinstance(cause, TransactionBypassedError)
    message = str(caught.value)
    for fragment in (change_id, source_file, "may be committed"):
        assert fragment in message
    assert caught.value.remedy == Remedy.fix(change_id) and message.endswith(str(Remedy.fix(change_id)))
    entry = newest(await entries_of(fl), change_id)
    assert entry.state is AuditState.FAILED
    assert "TransactionBypassedError" in (entry.error_trace or "")
    planned = {p.change_id: p for p in await fl.plan()}[change_id]
    assert planned.action is PlannedAction.MANUAL_INTERVENTION
    assert "may be committed" in planned.reason and planned.remedy == Remedy.fix(change_id)
    assert [i.change_id for i in await fl.issues()] == [change_id]
    assert not (await fl.health()).ready
    with pytest.raises(ManualInterventionRequiredError, match=change_id):  # never executed again by itself
        await fl.run()


# -- 1. a transactional change that commits by itself -------------------------------------------------------------

COMMITS_ITSELF = {
    "commit": """
        await ctx.connection.execute("ALTER TABLE notes ADD COLUMN tags TEXT")
        await ctx.connection.commit()
    """,
    "commit-then-begin": """
        await ctx.connection.execute("ALTER TABLE notes ADD COLUMN tags TEXT")
        await ctx.connection.commit()
        await ctx.connection.execute("BEGIN")
    """,
    "commit-then-raise": """
        await ctx.connection.execute("ALTER TABLE notes ADD COLUMN tags TEXT")
        await ctx.connection.execute("COMMIT")
        raise ValueError("the change's own error, after its COMMIT")
    """,
}


@pytest.mark.parametrize("marker_path", [False, True], ids=["shared", "marker"])
@pytest.mark.parametrize("body", list(COMMITS_ITSELF))
async def test_sqlite_a_change_that_commits_itself_is_recorded_as_needing_a_human(
    tmp_path: Path, write_package: WritePackage, body: str, marker_path: bool
) -> None:
    package = write_package(
        {
            "_0001_create_notes.py": CREATE_NOTES,
            "_0002_add_tags.py": change("AddTags", "add-tags", COMMITS_ITSELF[body]),
        }
    )
    fl = sqlite_engine(tmp_path, package, marker_path=marker_path)
    await assert_needs_a_human(fl, "add-tags", "_0002_add_tags.py")
    assert "tags" in columns(tmp_path, "notes")  # what the audit warns about is real: the column was committed
    await fl.fix("add-tags", "applied")
    assert (await fl.run()).status is RunStatus.NO_CHANGES  # and once a human has said so, nothing runs again


async def test_sqlite_a_change_that_commits_itself_needs_a_human_even_with_always_retry(
    tmp_path: Path, write_package: WritePackage
) -> None:
    body = COMMITS_ITSELF["commit"]
    source = change("AddTags", "add-tags", body, extra='recovery = "ALWAYS_RETRY"\n')
    package = write_package({"_0001_create_notes.py": CREATE_NOTES, "_0002_add_tags.py": source})
    await assert_needs_a_human(sqlite_engine(tmp_path, package), "add-tags", "_0002_add_tags.py")


async def test_sqlite_a_failed_change_that_kept_to_its_transaction_says_only_what_is_known(
    tmp_path: Path, write_package: WritePackage
) -> None:
    body = """
        await ctx.connection.execute("ALTER TABLE notes ADD COLUMN tags TEXT")
        raise ValueError("no tags after all")
    """
    package = write_package(
        {"_0001_create_notes.py": CREATE_NOTES, "_0002_add_tags.py": change("AddTags", "add-tags", body)}
    )
    fl = sqlite_engine(tmp_path, package)
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    assert isinstance(caught.value.__cause__, ValueError)
    assert "tags" not in columns(tmp_path, "notes")
    planned = (await fl.plan())[1]
    assert planned.action is PlannedAction.APPLY
    assert "rolled back its transaction" in planned.reason
    assert "nothing was committed" not in planned.reason  # the engine cannot know that of writes made elsewhere
    assert "writes made any other way are not" in planned.reason
    trace = newest(await entries_of(fl), "add-tags").error_trace or ""
    assert trace.rstrip().splitlines()[-1].startswith("aioflamingock: The engine rolled back its transaction")
    assert "rolled back its transaction" in str(caught.value)


# -- 3. a forgotten await -----------------------------------------------------------------------------------------


FORGOTTEN_AWAIT = """
    ctx.connection.execute("CREATE TABLE tags (id INTEGER PRIMARY KEY, name TEXT)")
"""


@pytest.mark.parametrize("marker_path", [False, True], ids=["shared", "marker"])
async def test_sqlite_a_forgotten_await_fails_the_change_before_anything_is_recorded_applied(
    tmp_path: Path, write_package: WritePackage, marker_path: bool
) -> None:
    package = write_package(
        {
            "_0001_create_notes.py": CREATE_NOTES,
            "_0002_create_tags.py": change("CreateTags", "create-tags", FORGOTTEN_AWAIT),
        }
    )
    fl = sqlite_engine(tmp_path, package, marker_path=marker_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # whatever the application's filters are
        with pytest.raises(ChangeFailedError) as caught:
            await fl.run()
    cause = caught.value.__cause__
    assert isinstance(cause, UnawaitedCoroutineError)
    assert cause.change_id == "create-tags"
    # the line of the call without `await`: the 8th line of the module (3 of header, then the class)
    assert "_0002_create_tags.py:11" in str(cause), str(cause)
    assert "Connection.execute" in str(cause) and "add the missing `await`" in str(cause)
    assert newest(await entries_of(fl), "create-tags").state is AuditState.FAILED
    assert (await fl.plan())[1].action is PlannedAction.APPLY  # nothing committed: the fixed code will apply it
    assert columns(tmp_path, "tags") == []
    with pytest.raises(ChangeFailedError):  # the same code again: the same refusal, never an APPLIED
        await fl.run()
    assert AuditState.APPLIED not in [e.state for e in await entries_of(fl) if e.change_id == "create-tags"]


async def test_a_forgotten_await_in_a_non_transactional_change_is_never_recorded_applied(
    write_package: WritePackage,
) -> None:
    body = """
        ctx["queue"].publish("notes-created")
    """
    source = change("Publish", "publish-notes", body, extra="transactional = False\n").replace('"app-db"', '"queue"')

    class Queue:
        def __init__(self) -> None:
            self.sent: list[str] = []

        async def publish(self, message: str) -> None:
            self.sent.append(message)

    queue = Queue()
    target = NonTransactionalTargetSystem("queue", dependencies={"queue": queue})
    package = write_package({"_0001_publish.py": source})
    fl = Flamingock(audit_store=InMemoryAuditStore(), target_systems=[target], changes=[package])
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    assert isinstance(caught.value.__cause__, UnawaitedCoroutineError)
    assert "Queue.publish" in str(caught.value.__cause__) and "_0001_publish.py:" in str(caught.value.__cause__)
    assert queue.sent == []
    states = [e.state for e in await entries_of(fl)]
    assert states == [AuditState.STARTED, AuditState.FAILED]


async def test_a_coroutine_dropped_outside_a_change_still_gets_the_usual_warning() -> None:
    async def never() -> None:
        pass

    with pytest.warns(RuntimeWarning, match="never awaited"):
        never()
        import gc

        gc.collect()


# -- 4. an untouched skeleton -------------------------------------------------------------------------------------


async def test_an_untouched_skeleton_is_refused_before_anything_opens(
    tmp_path: Path, write_package: WritePackage
) -> None:
    import importlib

    from aioflamingock._cli import create_change

    package = write_package({"_0001_create_notes.py": CREATE_NOTES})
    path = create_change("add note tags", package, author="alice", target_system=None, order=None)
    importlib.invalidate_caches()
    fl = sqlite_engine(tmp_path, package)
    for call in (fl.validate, fl.plan, fl.run):
        with pytest.raises(ConfigurationError) as caught:
            await call()
        assert path.name in str(caught.value) and "edit it" in str(caught.value).lower()
    assert not (tmp_path / "app.db").exists()  # nothing opened, nothing written


# -- 5. a change module with the wrong file name ------------------------------------------------------------------


async def test_a_change_in_a_module_with_the_wrong_name_is_an_error_not_a_silent_skip(
    tmp_path: Path, write_package: WritePackage
) -> None:
    misnamed = change(
        "CreateTags", "create-tags", FORGOTTEN_AWAIT.replace("ctx.", "await ctx."), extra='order = "0002"\n'
    )
    helpers = HEADER + "class NotesChange(Change):\n    author = 'alice'\n    target_system = 'app-db'\n"
    a_test = "import a_module_only_the_tests_have\n\n\ndef test_x():\n    pass\n"
    package = write_package(
        {
            "_0001_create_notes.py": CREATE_NOTES,
            "create_tags.py": misnamed,
            "helpers.py": helpers,
            "test_notes.py": a_test,
        }
    )
    fl = sqlite_engine(tmp_path, package)
    with pytest.raises(ConfigurationError) as caught:
        await fl.plan()
    message = str(caught.value)
    assert "create_tags.py" in message and "CreateTags" in message and "_<ORDER>_<name>.py" in message
    assert "helpers.py" not in message and "test_notes.py" not in message  # shared code and tests stay allowed
    assert not (tmp_path / "app.db").exists()


# -- MongoDB ------------------------------------------------------------------------------------------------------


@pytest.fixture
async def guarded_client(mongodb_uri: str) -> AsyncIterator[Any]:
    from pymongo import AsyncMongoClient

    from aioflamingock.mongodb import session_guard

    client: AsyncMongoClient[Any] = AsyncMongoClient(
        mongodb_uri, serverSelectionTimeoutMS=5000, event_listeners=[session_guard()]
    )
    try:
        yield client
    finally:
        await client.close()


def mongo_change(class_name: str, change_id: str, body: str, extra: str = "") -> str:
    return change(class_name, change_id, body, extra=extra).replace('"app-db"', '"users-db"')


SEED_USERS = mongo_change(
    "SeedUsers", "seed-users", 'await ctx.db.users.insert_many([{"_id": 1}, {"_id": 2}], session=ctx.session)'
)


def mongo_engine(client: Any, database: str, package: str) -> Flamingock:
    from aioflamingock.mongodb import MongoDBAuditStore, MongoDBTargetSystem

    db = MongoDBTargetSystem("users-db", client=client, database=database)
    return Flamingock(audit_store=MongoDBAuditStore.from_target(db), target_systems=[db], changes=[package])


MONGO_BYPASSES = {
    "commit": """
        await ctx.db.users.update_many({}, {"$set": {"status": "active"}}, session=ctx.session)
        await ctx.session.commit_transaction()
    """,
    "commit-then-start": """
        await ctx.db.users.update_many({}, {"$set": {"status": "active"}}, session=ctx.session)
        await ctx.session.commit_transaction()
        await ctx.session.start_transaction()
    """,
    "write-outside-the-session": """
        await ctx.db.users.update_many({}, {"$set": {"status": "active"}})
        raise ValueError("the change's own error, after a write without its session")
    """,
}


@pytest.mark.parametrize("body", list(MONGO_BYPASSES))
async def test_mongodb_a_change_that_goes_around_its_transaction_is_recorded_as_needing_a_human(
    guarded_client: Any, mongodb_database: str, write_package: WritePackage, body: str
) -> None:
    source = mongo_change("ActivateUsers", "activate-users", MONGO_BYPASSES[body])
    package = write_package({"_0001_seed_users.py": SEED_USERS, "_0002_activate_users.py": source})
    fl = mongo_engine(guarded_client, mongodb_database, package)
    await assert_needs_a_human(fl, "activate-users", "_0002_activate_users.py")
    users = await guarded_client[mongodb_database].users.find({}).to_list(None)
    assert {u.get("status") for u in users} == {"active"}  # the warning is true: the update was committed


async def test_mongodb_without_the_guard_a_write_outside_the_session_is_not_seen_and_the_text_says_so(
    mongodb_client: Any, mongodb_database: str, write_package: WritePackage
) -> None:
    source = mongo_change("ActivateUsers", "activate-users", MONGO_BYPASSES["write-outside-the-session"])
    package = write_package({"_0001_seed_users.py": SEED_USERS, "_0002_activate_users.py": source})
    fl = mongo_engine(mongodb_client, mongodb_database, package)
    with pytest.raises(ChangeFailedError):
        await fl.run()
    planned = (await fl.plan())[1]
    assert planned.action is PlannedAction.APPLY
    assert "writes made any other way are not" in planned.reason  # never "nothing was committed"


async def test_mongodb_a_forgotten_await_fails_the_change_and_commits_nothing(
    guarded_client: Any, mongodb_database: str, write_package: WritePackage
) -> None:
    body = """
        await ctx.db.users.update_many({}, {"$set": {"status": "active"}}, session=ctx.session)
        ctx.db.audit_trail.insert_one({"event": "activated"}, session=ctx.session)
    """
    source = mongo_change("ActivateUsers", "activate-users", body)
    package = write_package({"_0001_seed_users.py": SEED_USERS, "_0002_activate_users.py": source})
    fl = mongo_engine(guarded_client, mongodb_database, package)
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    assert isinstance(caught.value.__cause__, UnawaitedCoroutineError)
    assert "_0002_activate_users.py:12" in str(caught.value.__cause__)
    users = await guarded_client[mongodb_database].users.find({}).to_list(None)
    assert all("status" not in u for u in users)  # the engine's transaction, with the update, was rolled back
    assert (await fl.plan())[1].action is PlannedAction.APPLY


# -- DynamoDB -----------------------------------------------------------------------------------------------------


def dynamodb_engine(client: Any, prefix: str, package: str) -> Flamingock:
    from aioflamingock.dynamodb import DynamoDBAuditStore, DynamoDBTargetSystem

    db = DynamoDBTargetSystem("users-db", client=client, marker_table=f"{prefix}marker")
    store = DynamoDBAuditStore.from_target(db, audit_table=f"{prefix}audit", lock_table=f"{prefix}lock")
    return Flamingock(audit_store=store, target_systems=[db], changes=[package])


async def users_table(client: Any, prefix: str) -> str:
    table = f"{prefix}users"
    await client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return table


@pytest.mark.parametrize("swallowed", [False, True], ids=["raised", "caught-by-the-change"])
async def test_dynamodb_a_write_with_the_client_in_a_transactional_change_is_refused_and_never_sent(
    dynamodb_client: Any, dynamodb_prefix: str, write_package: WritePackage, swallowed: bool
) -> None:
    table = await users_table(dynamodb_client, dynamodb_prefix)
    put = f'await ctx.client.put_item(TableName="{table}", Item={{"id": {{"S": "1"}}}})'
    body = f"try:\n    {put}\nexcept Exception:\n    pass\n" if swallowed else put
    source = change("SeedUser", "seed-user", body).replace('"app-db"', '"users-db"')
    package = write_package({"_0001_seed_user.py": source})
    fl = dynamodb_engine(dynamodb_client, dynamodb_prefix, package)
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    cause = caught.value.__cause__
    assert isinstance(cause, ChangeMisuseError) and not isinstance(cause, TransactionBypassedError)
    assert "PutItem" in str(cause) and "ctx.transaction" in str(cause)
    assert "Item" not in await dynamodb_client.get_item(TableName=table, Key={"id": {"S": "1"}})  # never sent
    assert (await fl.plan())[0].action is PlannedAction.APPLY  # nothing was written: a fixed change applies


async def test_dynamodb_a_forgotten_await_sends_nothing_and_records_no_applied(
    dynamodb_client: Any, dynamodb_prefix: str, write_package: WritePackage
) -> None:
    table = await users_table(dynamodb_client, dynamodb_prefix)
    body = f"""
        ctx.transaction.put(TableName="{table}", Item={{"id": {{"S": "1"}}}})
        ctx.client.describe_table(TableName="{table}")
    """
    source = change("Seed", "seed", body).replace('"app-db"', '"users-db"')
    package = write_package({"_0001_seed.py": source})
    fl = dynamodb_engine(dynamodb_client, dynamodb_prefix, package)
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    assert isinstance(caught.value.__cause__, UnawaitedCoroutineError)
    assert "_0001_seed.py:12" in str(caught.value.__cause__)
    assert [e.state for e in await entries_of(fl)] == [AuditState.FAILED]
    assert "Item" not in await dynamodb_client.get_item(TableName=table, Key={"id": {"S": "1"}})  # never committed


# -- also found: a non-transactional change that leaves a transaction open -----------------------------------------


async def test_sqlite_a_non_transactional_change_that_leaves_a_transaction_open_is_not_recorded_applied(
    tmp_path: Path, write_package: WritePackage
) -> None:
    """Left open, the transaction would hold the APPLIED entry written after it on the same connection, and both
    would vanish when the connection closed: the audit would say STARTED of a change whose writes were lost."""
    body = """
        await ctx.connection.execute("BEGIN")
        await ctx.connection.execute("INSERT INTO notes (body) VALUES ('hello')")
    """
    source = change("SeedNotes", "seed-notes", body, extra="transactional = False\n")
    package = write_package({"_0001_create_notes.py": CREATE_NOTES, "_0002_seed_notes.py": source})
    fl = sqlite_engine(tmp_path, package)
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    assert isinstance(caught.value.__cause__, ChangeMisuseError)
    assert "returned without ending it" in str(caught.value) and "seed-notes" in str(caught.value)
    fresh = sqlite_engine(tmp_path, package)  # what another process reads from the file
    assert [e.state for e in await entries_of(fresh) if e.change_id == "seed-notes"] == [
        AuditState.STARTED,
        AuditState.FAILED,
    ]
    import sqlite3

    with sqlite3.connect(tmp_path / "app.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM notes").fetchone() == (0,)
    conn.close()


# -- Couchbase (key-value double: its transactions cannot run here, so the non-transactional path) -----------------


async def test_couchbase_a_forgotten_await_writes_nothing_and_records_no_applied(
    couchbase_server: Any, couchbase_cluster: Any, couchbase_collections: dict[str, str], write_package: WritePackage
) -> None:
    from aioflamingock.couchbase import CouchbaseAuditStore, CouchbaseTargetSystem

    key = f"note-{uuid.uuid4().hex[:8]}"
    body = f"""
        ctx.collection("_default").upsert("{key}", {{"body": "hello"}})
    """
    source = change("SeedNote", "seed-note", body, extra="transactional = False\n").replace('"app-db"', '"notes"')
    package = write_package({"_0001_seed_note.py": source})
    target = CouchbaseTargetSystem("notes", cluster=couchbase_cluster, bucket=couchbase_server.bucket)
    store = CouchbaseAuditStore.from_target(target, **couchbase_collections)
    fl = Flamingock(audit_store=store, target_systems=[target], changes=[package])
    with pytest.raises(ChangeFailedError) as caught:
        await fl.run()
    assert isinstance(caught.value.__cause__, UnawaitedCoroutineError)
    assert "upsert" in str(caught.value.__cause__) and "_0001_seed_note.py:12" in str(caught.value.__cause__)
    assert [e.state for e in await entries_of(fl)] == [AuditState.STARTED, AuditState.FAILED]
    exists = await couchbase_cluster.bucket(couchbase_server.bucket).default_collection().exists(key)
    assert not exists.exists
