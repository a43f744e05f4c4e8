"""A changes package's manifest: what each of its modules declares, keyed by the hash of the module's source, so
that a run with nothing pending knows the declared ids without importing a change module.

Written by a full load, next to the package's bytecode (`__pycache__/aioflamingock-changes.json`), where Python
would write bytecode (not under `PYTHONDONTWRITEBYTECODE`). Read back only when it describes every module of the
package exactly as it is on disk: the same modules, each with the same source bytes. A module is described only
when what the engine reads from its class is fixed by its own source: one class, deriving directly from `Change`,
its `id`, `target_system` and every other attribute the engine reads written as literals, and nothing at the
module's top level that runs code but imports. Any other module makes its package load in full, as without a
manifest. Decision and limits: docs/decisions.md.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import json
import os
import pkgutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ._change import Change, ChangeSpec
from ._model import Recovery
from ._redact import library_logger

__all__ = ["MANIFEST_NAME", "Declared", "declared_in", "write_manifest"]

logger = library_logger(__name__)

MANIFEST_NAME = "aioflamingock-changes.json"
_FORMAT = 1
_READ_BY_ENGINE = frozenset({"id", "order", "author", "target_system", "transactional", "recovery", "idempotency"})
_REQUIRED_LITERALS = ("id", "target_system")


@dataclass(frozen=True, slots=True)
class Declared:
    """A change as its package's manifest describes it: what a run needs to see that nothing is pending."""

    id: str
    order: str
    target_system: str
    warns: bool
    """`ALWAYS_RETRY` without an `idempotency` note: a full load may warn about it, so such a run loads in full."""

    @classmethod
    def of(cls, spec: ChangeSpec) -> Declared:
        warns = spec.recovery is Recovery.ALWAYS_RETRY and not spec.idempotency
        return cls(spec.id, spec.order, spec.target_system, warns)


def _directory(package: ModuleType) -> str | None:
    paths = list(getattr(package, "__path__", ()))
    return paths[0] if len(paths) == 1 else None  # a namespace package over several directories: no manifest


def _path(directory: str) -> str:
    return os.path.join(directory, "__pycache__", MANIFEST_NAME)


def _listing(package: ModuleType) -> tuple[list[str], list[str]]:
    """The package's modules and subpackages, as the full load lists them."""
    modules: list[str] = []
    packages: list[str] = []
    for info in pkgutil.iter_modules(package.__path__):
        (packages if info.ispkg else modules).append(info.name)
    return sorted(modules), sorted(packages)


def _source(directory: str, name: str) -> bytes | None:
    try:
        with open(os.path.join(directory, f"{name}.py"), "rb") as file:
            return file.read()
    except OSError:  # a module without source (bytecode only, an extension): never described
        return None


def _digest(source: bytes) -> str:
    return hashlib.blake2b(source, digest_size=16).hexdigest()


def _read(directory: str) -> dict[str, Any] | None:
    try:
        with open(_path(directory), "rb") as file:
            manifest = json.loads(file.read())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
        return None
    if manifest.get("library") != _library_version():
        return None  # another version of the library may check or default differently
    return manifest


def _library_version() -> str:
    from . import __version__

    return __version__


def declared_in(package: ModuleType, looks_like_change: Any) -> list[Declared] | None:
    """The changes `package` declares, from its manifest, without importing a change module; None unless the
    manifest describes every module of the package as it is on disk now."""
    directory = _directory(package)
    if directory is None:
        return None
    manifest = _read(directory)
    if manifest is None:
        return None
    modules, packages = _listing(package)
    described = manifest.get("modules")
    if not isinstance(described, dict) or sorted(described) != modules or manifest.get("packages") != packages:
        return None
    declared: list[Declared] = []
    for name in modules:
        source = _source(directory, name)
        entry = described[name]
        if source is None or not isinstance(entry, dict) or entry.get("digest") != _digest(source):
            return None
        change = entry.get("change")
        if looks_like_change(name):
            if not isinstance(change, dict):
                return None  # a change module the manifest cannot describe
            try:
                declared.append(Declared(**change))
            except TypeError:  # not the fields of a Declared
                return None
    return declared


# -- writing --------------------------------------------------------------------------------------------------------


def _literal(node: ast.expr | None) -> bool:
    if node is None:
        return False
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _recovery_name(node: ast.expr) -> str | None:
    """`NAME` of `Recovery.NAME` (or `aioflamingock.Recovery.NAME`)."""
    if isinstance(node, ast.Attribute) and (
        (isinstance(node.value, ast.Name) and node.value.id == "Recovery")
        or (isinstance(node.value, ast.Attribute) and node.value.attr == "Recovery")
    ):
        return node.attr
    return None


def _inert(node: ast.stmt) -> bool:
    """A top-level statement that cannot change a class: an import, a docstring, a function definition, a literal
    assignment, an `if TYPE_CHECKING:` of imports."""
    if isinstance(node, ast.Import | ast.ImportFrom | ast.Pass):
        return True
    if isinstance(node, ast.Expr):
        return isinstance(node.value, ast.Constant)
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return not node.decorator_list
    if isinstance(node, ast.Assign):
        return all(isinstance(t, ast.Name) for t in node.targets) and _literal(node.value)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and (node.value is None or _literal(node.value))
    if isinstance(node, ast.If):
        test = node.test
        named = (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        )
        return named and not node.orelse and all(isinstance(n, ast.Import | ast.ImportFrom) for n in node.body)
    return False


def _class_literals(node: ast.ClassDef) -> dict[str, Any] | None:
    """The engine's attributes the class body writes as literals, or None when its body writes any attribute
    otherwise (a `Recovery.NAME` is a literal here)."""
    found: dict[str, Any] = {}
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.Pass):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue
        if isinstance(statement, ast.Assign) and len(statement.targets) == 1:
            target, value = statement.targets[0], statement.value
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            target, value = statement.target, statement.value
        else:
            return None
        if not isinstance(target, ast.Name):
            return None
        recovery = _recovery_name(value) if target.id == "recovery" else None
        if recovery is not None:
            found[target.id] = recovery
        elif _literal(value):
            if target.id in _READ_BY_ENGINE:
                found[target.id] = ast.literal_eval(value)
        else:
            return None
    return found


def _describe(source: bytes, module_name: str, spec: ChangeSpec) -> dict[str, Any] | None:
    """What the manifest records of a change module whose class loaded as `spec`; None when its source does not
    fix what the engine read from the class (see the module's docstring)."""
    cls = spec.cls
    if cls.__bases__ != (Change,) or cls.__module__ != module_name:
        return None
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    if len(classes) != 1 or not all(_inert(node) for node in tree.body if not isinstance(node, ast.ClassDef)):
        return None
    node = classes[0]
    if node.name != cls.__name__ or node.decorator_list or node.keywords or len(node.bases) != 1:
        return None
    literals = _class_literals(node)
    if literals is None or any(name not in literals for name in _REQUIRED_LITERALS):
        return None
    loaded = {
        "id": spec.id,
        "order": spec.order,
        "author": spec.author,
        "target_system": spec.target_system,
        "transactional": spec.transactional,
        "recovery": spec.recovery.value,
        "idempotency": spec.idempotency,
    }
    # The source read now must say what was imported (a file saved in between is not described).
    if any(loaded[name] != value for name, value in literals.items()):
        return None
    if "order" not in literals and spec.order != ChangeSpec.order_from_module_name(module_name):
        return None
    return dataclasses.asdict(Declared.of(spec))


def write_manifest(package: ModuleType, specs: Sequence[ChangeSpec], looks_like_change: Any) -> None:
    """After a full load of `package` (its change classes checked as `specs`): record what each module declares,
    where Python would write bytecode. Never fails a run: a manifest that cannot be written is not written."""
    directory = _directory(package)
    if directory is None or sys.dont_write_bytecode:
        return
    old = _read(directory) or {}
    old_modules: Mapping[str, Any] = old.get("modules") if isinstance(old.get("modules"), dict) else {}  # type: ignore[assignment]
    by_module = {spec.cls.__module__: spec for spec in specs}
    modules, packages = _listing(package)
    described: dict[str, Any] = {}
    for name in modules:
        source = _source(directory, name)
        if source is None:
            return
        digest = _digest(source)
        previous = old_modules.get(name)
        if isinstance(previous, dict) and previous.get("digest") == digest:
            described[name] = previous
            continue
        change = None
        if looks_like_change(name):
            spec = by_module.get(f"{package.__name__}.{name}")
            change = _describe(source, f"{package.__name__}.{name}", spec) if spec is not None else None
        described[name] = {"digest": digest, "change": change}
    manifest = {"format": _FORMAT, "library": _library_version(), "modules": described, "packages": packages}
    if manifest == old:
        return
    path = _path(directory)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(manifest, file, separators=(",", ":"))
        os.replace(temporary, path)
    except OSError as exc:
        logger.debug("the manifest of %s was not written: %s", package.__name__, exc)
        with contextlib.suppress(OSError):
            os.unlink(temporary)
