"""The command line is an optional extra: `import aioflamingock` never loads it, and without it `main()` says what
to install."""

from __future__ import annotations

import subprocess
import sys

from aioflamingock._cli import EXIT_USAGE, build_app

from .conftest import InProcess, cli_env


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60, check=False
    )


def test_importing_the_library_imports_neither_typer_nor_rich() -> None:
    done = python(
        "import sys, aioflamingock, aioflamingock.sqlite, aioflamingock.memory\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'rich', 'click'}))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_the_extra_the_command_names_the_pip_line() -> None:
    done = python(
        "import sys, runpy\n"
        "sys.modules['typer'] = None  # as if typer were not installed\n"
        "sys.argv = ['aioflamingock', 'plan']\n"
        "runpy.run_module('aioflamingock', run_name='__main__')"
    )
    assert done.returncode == EXIT_USAGE  # as docs/cli.md's table says: a usage problem, not a failure
    assert 'pip install "aioflamingock[cli]"' in done.stderr
    assert "Traceback" not in done.stderr


def test_help_lists_every_command_and_no_arguments_shows_it() -> None:
    cli = InProcess({})
    text = cli("--help").stdout
    app = build_app()  # the commands that registered themselves, and the groups they joined
    commands = [c.name or c.callback.__name__ for c in app.registered_commands if c.callback is not None]
    commands += [g.name for g in app.registered_groups if g.name]
    assert len(commands) == 13, commands  # the commands and the groups (audit, issues, import)
    for command in commands:
        assert f" {command} " in text, command
    assert "AIOFLAMINGOCK_APP" in text
    audit = cli("audit", "list", "--help").stdout
    assert all(option in audit for option in ("--history", "--since", "--json"))
    bare = cli(code=EXIT_USAGE)
    assert "Usage: aioflamingock" in bare.stdout + bare.stderr
    unknown = cli("frobnicate", code=EXIT_USAGE)
    assert "frobnicate" in unknown.stderr
