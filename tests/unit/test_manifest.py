"""A run with nothing pending knows the declared ids from each changes package's manifest, without importing a
change module, and never misses a pending change for it: every test is a real process on a real SQLite file,
the way a service starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from aioflamingock._manifest import MANIFEST_NAME

APP = """
import asyncio, json, sys
from aioflamingock import Flamingock, PendingChangesError
from aioflamingock.sqlite import SQLiteAuditStore, SQLiteTargetSystem

package, database, command = sys.argv[1:4]
targets = [SQLiteTargetSystem(name, path=database) for name in sys.argv[4:] or ["db"]]
fl = Flamingock(audit_store=SQLiteAuditStore.from_target(targets[0]), target_systems=targets, changes=[package])
if command == "run":
    report = asyncio.run(fl.run())
    outcome = {"status": report.status.value, "changes": {c.change_id: c.outcome.value for c in report.changes}}
else:
    try:
        asyncio.run(fl.validate())
        outcome = {"pending": []}
    except PendingChangesError as exc:
        outcome = {"pending": exc.pending}
outcome["imported"] = sorted(m for m in sys.modules if m.startswith(package + "._"))
outcome["pydantic"] = "pydantic" in sys.modules
print(json.dumps(outcome))
"""


def change(number: int, *, change_id: str | None = None, body: str = "", target: str = "db") -> str:
    return textwrap.dedent(
        f'''
        """Change {number}."""

        from aioflamingock import Change, Recovery


        class Change{number}(Change):
            id = {change_id or f"change-{number}"!r}
            author = "tester"
            target_system = {target!r}
            recovery = Recovery.MANUAL_INTERVENTION
        {textwrap.indent(body, "    ")}
            async def execute(self, ctx):
                await ctx.connection.execute("INSERT INTO applied VALUES (?)", (self.id,))
        '''
    )


class Service:
    """A service's changes package on disk and its SQLite database; `start()` is one process's start-up."""

    def __init__(self, root: Path, modules: dict[str, str]) -> None:
        self.root = root
        self.package = root / "service_changes"
        self.package.mkdir()
        (self.package / "__init__.py").write_text("")
        self.database = root / "app.db"
        for name, source in modules.items():
            self.write(name, source)
        (root / "app.py").write_text(APP)
        import sqlite3

        with sqlite3.connect(self.database) as connection:
            connection.execute("CREATE TABLE applied (id TEXT)")
        connection.close()

    def write(self, name: str, source: str) -> None:
        (self.package / name).write_text(source)

    @property
    def manifest(self) -> Path:
        return self.package / "__pycache__" / MANIFEST_NAME

    def start(self, command: str = "run", *targets: str, write_bytecode: bool = True) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        if not write_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        args = [sys.executable, "app.py", "service_changes", str(self.database), command, *targets]
        done = subprocess.run(args, cwd=self.root, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def applied_rows(self) -> list[str]:
        import sqlite3

        with sqlite3.connect(self.database) as connection:
            rows = [row[0] for row in connection.execute("SELECT id FROM applied ORDER BY rowid")]
        connection.close()
        return rows


@pytest.fixture
def service(tmp_path: Path) -> Service:
    return Service(tmp_path, {f"_000{n}_change.py": change(n) for n in (1, 2, 3)})


def test_a_start_up_with_nothing_pending_imports_no_change_module(service: Service) -> None:
    first = service.start()
    assert first["status"] == "SUCCESS" and len(first["imported"]) == 3
    assert service.manifest.exists()

    again = service.start()
    assert again == {
        "status": "NO_CHANGES",
        "changes": {f"change-{n}": "ALREADY_APPLIED" for n in (1, 2, 3)},
        "imported": [],
        "pydantic": False,
    }
    assert service.start("validate")["pending"] == [] and service.start("validate")["imported"] == []
    assert service.applied_rows() == ["change-1", "change-2", "change-3"]


def test_an_edited_id_is_a_pending_change(service: Service) -> None:
    service.start()
    path = service.package / "_0002_change.py"
    path.write_text(path.read_text().replace("'change-2'", "'change-20'"))

    assert service.start("validate")["pending"] == ["change-20"]
    report = service.start()
    assert report["changes"]["change-20"] == "APPLIED"
    assert service.applied_rows() == ["change-1", "change-2", "change-3", "change-20"]
    assert service.start()["status"] == "NO_CHANGES"


def test_a_module_added_or_removed_is_seen(service: Service) -> None:
    service.start()
    service.write("_0004_change.py", change(4))
    assert service.start()["changes"]["change-4"] == "APPLIED"
    (service.package / "_0001_change.py").unlink()
    report = service.start()
    assert report["status"] == "NO_CHANGES" and "change-1" not in report["changes"]


def test_a_new_misnamed_module_is_refused_as_without_a_manifest(service: Service) -> None:
    service.start()
    service.write("helpers.py", change(5))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    args = [sys.executable, "app.py", "service_changes", str(service.database), "run"]
    done = subprocess.run(args, cwd=service.root, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "helpers.py: defines Change5 with an id, but the module is never loaded as a change" in done.stderr


@pytest.mark.parametrize(
    ("why", "body", "prelude"),
    [
        ("an id computed", "", "PREFIX = 'change'\n"),
        ("code at the top of the module", "", "print('loading', file=__import__('sys').stderr)\n"),
        ("a class attribute set by a call", "transactional = bool(1)\n", ""),
    ],
)
def test_a_module_whose_source_does_not_fix_its_declaration_is_imported_every_time(
    service: Service, why: str, body: str, prelude: str
) -> None:
    source = change(4, body=body)
    if why == "an id computed":
        source = source.replace("id = 'change-4'", 'id = PREFIX + "-4"')
    service.write("_0004_change.py", prelude + source)
    service.start()
    manifest = json.loads(service.manifest.read_text())
    assert manifest["modules"]["_0004_change"]["change"] is None, why
    again = service.start()
    assert again["status"] == "NO_CHANGES"
    assert again["imported"] == [f"service_changes._000{n}_change" for n in (1, 2, 3, 4)]


def test_a_target_system_no_longer_configured_is_refused_as_without_a_manifest(service: Service) -> None:
    service.write("_0004_change.py", change(4, target="other"))
    service.start("run", "db", "other")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    args = [sys.executable, "app.py", "service_changes", str(service.database), "run", "db"]
    done = subprocess.run(args, cwd=service.root, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "target_system 'other' is not a configured target system" in done.stderr


def test_no_manifest_is_written_where_python_writes_no_bytecode(service: Service) -> None:
    service.start(write_bytecode=False)
    assert not service.manifest.exists()
    assert service.start(write_bytecode=False)["imported"] != []


def test_a_damaged_or_foreign_manifest_is_ignored(service: Service) -> None:
    service.start()
    service.manifest.write_text("{not json")
    assert len(service.start()["imported"]) == 3  # loaded in full, and the manifest written again
    manifest = json.loads(service.manifest.read_text())
    manifest["library"] = "0.0.0"
    service.manifest.write_text(json.dumps(manifest))
    assert len(service.start()["imported"]) == 3
    assert service.start()["imported"] == []


def test_a_package_where_no_manifest_can_be_written_still_runs(service: Service) -> None:
    (service.package / "__pycache__").write_text("")  # a file where the folder would be: nothing is written there
    assert service.start()["status"] == "SUCCESS"
    again = service.start()
    assert again["status"] == "NO_CHANGES" and len(again["imported"]) == 3
