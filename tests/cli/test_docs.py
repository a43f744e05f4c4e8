"""docs/cli.md keeps up with the command: every command has a section, every exit code a row."""

from __future__ import annotations

import re

from aioflamingock import _cli

from .conftest import ROOT

PAGE = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


def test_every_command_has_a_section() -> None:
    app = _cli.build_app()
    commands = [c.name or c.callback.__name__ for c in app.registered_commands if c.callback is not None]
    groups = [
        f"{g.name} {c.name}"
        for g in app.registered_groups
        if g.typer_instance
        for c in g.typer_instance.registered_commands
    ]
    headings = set(re.findall(r"^### (.+)$", PAGE, re.MULTILINE))
    documented = {name.strip() for heading in headings for name in heading.split(",")}
    missing = [name for name in [*commands, *groups] if name not in documented]
    assert not missing, f"docs/cli.md has no `### ` section for {missing}"


def test_the_exit_code_table_is_the_constants() -> None:
    table = PAGE.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    constants = {value for name, value in vars(_cli).items() if name.startswith("EXIT_")}
    assert documented == constants
