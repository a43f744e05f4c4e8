"""A change that commits by itself, met through the command line as an operator meets it: every command in a
process of its own, on a real SQLite file."""

from __future__ import annotations

import textwrap
from pathlib import Path

from aioflamingock._cli import EXIT_FAILURE, EXIT_MANUAL_INTERVENTION

from .conftest import Cli, cli_env

APP = """
from aioflamingock import Flamingock
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem


def build():
    db = SQLiteTargetSystem("notes-db", path="notes.db")
    return Flamingock(audit_store=SQLiteAuditStore.from_target(db), target_systems=[db], changes=["notes_changes"])
"""
CREATE = """
from aioflamingock import Change


class CreateNotes(Change):
    id = "create-notes"
    author = "alice"
    target_system = "notes-db"

    async def execute(self, ctx):
        await ctx.connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
"""
COMMITS_ITSELF = """
from aioflamingock import Change


class AddTags(Change):
    id = "add-tags"
    author = "alice"
    target_system = "notes-db"

    async def execute(self, ctx):
        await ctx.connection.execute("ALTER TABLE notes ADD COLUMN tags TEXT")
        await ctx.connection.commit()
"""


def test_a_change_that_commits_itself_is_an_issue_to_fix_not_a_retry(tmp_path: Path) -> None:
    (tmp_path / "notes_app.py").write_text(textwrap.dedent(APP))
    package = tmp_path / "notes_changes"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "_0001_create_notes.py").write_text(textwrap.dedent(CREATE))
    (package / "_0002_add_tags.py").write_text(textwrap.dedent(COMMITS_ITSELF))
    cli = Cli(tmp_path, {**cli_env(), "AIOFLAMINGOCK_APP": "notes_app:build"})

    failed = cli("run", code=EXIT_FAILURE)
    assert "add-tags" in failed.stderr and "may be committed" in failed.stderr
    assert "_0002_add_tags.py" in failed.stderr and "fix add-tags --as" in failed.stderr
    [issue] = cli.json("issues", "list")
    assert (issue["changeId"], issue["state"]) == ("add-tags", "FAILED")
    assert (
        "may be committed" in issue["reason"] and issue["fix"] == "aioflamingock fix add-tags --as applied|rolled-back"
    )
    stopped = cli("run", code=EXIT_MANUAL_INTERVENTION)  # not "duplicate column name: tags"
    assert "add-tags" in stopped.stderr and "duplicate column" not in stopped.stderr
    cli("fix", "add-tags", "--as", "applied")
    cli("run")
    assert [p["action"] for p in cli.json("plan")] == ["SKIP", "SKIP"]
