#!/usr/bin/env python3
"""Developer commands that work on a fresh clone with only Python 3.11 and pip.

    python3 dev.py quickstart   # create .venv, install the package, run examples/quickstart.py
    python3 dev.py test         # create .venv, install everything; ruff, mypy, docs build, the whole test suite
    python3 dev.py docs         # rewrite the code blocks of docs/ from the examples they name

Extra arguments after `test` go to pytest (`python3 dev.py test -k lock -x`); the suite runs on two pytest-xdist
workers (`-n 0` to run it in one process).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def sh(*args: str | Path) -> None:
    print("+", " ".join(str(a) for a in args), flush=True)
    code = subprocess.call([str(a) for a in args], cwd=ROOT)
    if code:
        sys.exit(code)


def ensure_env(extras: str) -> None:
    """`.venv` with the package installed (editable) and `extras`; installed again only when pyproject.toml or the
    extras asked for changed since the last install (the code itself needs none: the install is editable)."""
    if not PY.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
        sh(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f"installed{extras.replace('[', '-').replace(']', '')}.sha256"
    if stamp.exists() and stamp.read_text() == wanted:
        return
    sh(PY, "-m", "pip", "install", "--quiet", "-e", f".{extras}")
    stamp.write_text(wanted)


def quickstart(args: list[str]) -> None:
    ensure_env("")
    sh(PY, "examples/quickstart.py", *args)


def ensure_servers() -> None:
    """PostgreSQL and MariaDB for the SQL tests, installed from the system's packages when they are missing and
    this is root on a Debian-like system (the tests start them and create their role and database)."""
    missing = [
        package
        for command, package in (("pg_lsclusters", "postgresql"), ("mariadb", "mariadb-server"))
        if shutil.which(command) is None
    ]
    if not missing or shutil.which("apt-get") is None or not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def test(args: list[str]) -> None:
    ensure_env("[dev]")
    ensure_servers()
    sh(BIN / "ruff", "check", ".")
    sh(BIN / "ruff", "format", "--check", ".")
    sh(BIN / "mypy")
    sh(BIN / "mkdocs", "build", "--strict", "--quiet", "--site-dir", VENV / "site")
    sh(PY, "-m", "pytest", "-n", "2", *args)  # two workers: see tests/conftest.py


def docs(args: list[str]) -> None:
    """Rewrite the code blocks of docs/ from the examples they name (see tests/docs_code.py)."""
    sys.path.insert(0, str(ROOT))
    from tests.docs_code import sync_page

    changed = [page.name for page in sorted((ROOT / "docs").glob("*.md")) if sync_page(page)]
    print(f"rewrote {', '.join(changed)}" if changed else "the docs show their examples as they are")


COMMANDS = {"quickstart": quickstart, "test": test, "docs": docs}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    COMMANDS[sys.argv[1]](sys.argv[2:])
