"""Dependencies point one way. Every import of every module of the package, those inside functions included, is
read from its source:

- a backend (`sqlite/`, `mongodb/`, `dynamodb/`, `couchbase/`, `sql/`, `memory/`) imports from the core only
  `aioflamingock.backend`, and no other backend;
- the engine (the core's private modules) imports no backend;
- nothing imports the command line but `python -m aioflamingock`;
- what sits in front of the engine (the command line, the web integrations and their start-up helper, the testing
  kit) uses the library as its users do: public names of `aioflamingock`, `aioflamingock.backend` and the
  backends' packages, and its own modules.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import aioflamingock

PACKAGE = Path(aioflamingock.__file__).parent
BACKENDS = ("sqlite", "mongodb", "dynamodb", "couchbase", "sql", "memory")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[str]:
    """Every module `path` imports, absolute, wherever the import statement stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.append(module)
            found += [f"{module}.{alias.name}" for alias in node.names]  # `from .. import backend`
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def owner(module: str) -> str | None:
    """The backend `module` belongs to, if any."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "aioflamingock" and parts[1] in BACKENDS else None


def core_imports(path: Path) -> list[str]:
    return [m for m in imports(path) if m.startswith("aioflamingock.") or m == "aioflamingock"]


@pytest.mark.parametrize("path", [p for p in MODULES if owner(module_name(p))], ids=lambda p: module_name(p))
def test_a_backend_imports_from_the_core_only_the_backend_contract(path: Path) -> None:
    mine = owner(module_name(path))
    wrong = [
        m
        for m in core_imports(path)
        if owner(m) != mine and not m.startswith("aioflamingock.backend") and m != "aioflamingock"
    ]
    # `from .. import backend` reads as importing the package itself, then the name: only the name counts
    wrong = [m for m in wrong if not (m == "aioflamingock" and "aioflamingock.backend" in core_imports(path))]
    assert wrong == [], f"{module_name(path)} imports {wrong}: import them from aioflamingock.backend"


@pytest.mark.parametrize("path", [p for p in MODULES if owner(module_name(p)) is None], ids=lambda p: module_name(p))
def test_the_core_imports_no_backend(path: Path) -> None:
    wrong = [m for m in core_imports(path) if owner(m)]
    assert wrong == [], f"{module_name(path)} imports {wrong}: the engine knows backends only by their interfaces"


def test_nothing_imports_the_command_line_but_its_entry_point() -> None:
    importers = [
        module_name(p)
        for p in MODULES
        if any(m.startswith("aioflamingock._cli") for m in imports(p))
        and not module_name(p).startswith("aioflamingock._cli")
    ]
    assert importers == ["aioflamingock.__main__"]


FRONTS = {
    "aioflamingock._cli": (),
    "aioflamingock.testing": (),
    "aioflamingock.fastapi": ("aioflamingock._startup",),
    "aioflamingock.aiohttp": ("aioflamingock._startup",),
    "aioflamingock._startup": (),
    "aioflamingock.importers": (),
}
"""Each front, and the modules of the package it may use besides public names."""


def front(module: str) -> str | None:
    return next((f for f in FRONTS if module == f or module.startswith(f"{f}.")), None)


def public(module: str) -> bool:
    """`aioflamingock`, one of its public names, `aioflamingock.backend` or `.importers`, a backend's package or
    public name."""
    parts = module.split(".")
    if parts[0] != "aioflamingock" or len(parts) == 1 or parts[1] in {"backend", "importers"}:
        return True
    if parts[1] in aioflamingock.__all__:
        return True
    if parts[1] in BACKENDS:
        package = importlib.import_module(f"aioflamingock.{parts[1]}")
        return len(parts) == 2 or parts[2] in package.__all__
    return False


@pytest.mark.parametrize("path", [p for p in MODULES if front(module_name(p))], ids=lambda p: module_name(p))
def test_the_command_line_and_the_integrations_use_only_public_names(path: Path) -> None:
    mine = front(module_name(path))
    assert mine is not None
    allowed = (mine, *FRONTS[mine])
    wrong = [
        m for m in core_imports(path) if not public(m) and not any(m == a or m.startswith(f"{a}.") for a in allowed)
    ]
    assert wrong == [], f"{module_name(path)} imports {wrong}: use the public names, as a user would"


def test_the_rules_see_imports_inside_functions(tmp_path: Path) -> None:
    """The reader itself: an import in a function body counts like one at the top."""
    source = PACKAGE / "sqlite" / "_target.py"
    assert any(m == "aiosqlite" for m in imports(source))  # imported inside `_open`, lazily
