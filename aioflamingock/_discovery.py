"""Finding change classes: packages whose modules are named `_<ORDER>_<name>.py`, or classes passed directly.

Every problem is collected and raised together, before anything touches a store.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import sys
from collections.abc import Iterable, Sequence
from types import ModuleType

from ._change import Change, ChangeSpec, check_change_class
from ._errors import ChangeLoadError, ConfigurationError
from ._manifest import Declared, declared_in, write_manifest

__all__ = ["ChangeSource", "Declared", "declared_changes", "load_changes"]

order_from_module_name = ChangeSpec.order_from_module_name

ChangeSource = str | type[Change]

_LOOKS_LIKE_CHANGE = re.compile(r"^_[0-9]")


def _source_file(obj: object) -> str | None:
    try:
        return inspect.getsourcefile(obj)  # type: ignore[arg-type]
    except TypeError:
        return None


def _import(name: str, *, where: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # any error raised by user code while importing
        raise ChangeLoadError([f"{where}: failed to import: {type(exc).__name__}: {exc}"]) from exc


def _module_path(package: ModuleType, name: str) -> str:
    for finder_path in getattr(package, "__path__", []):
        return f"{finder_path}/{name}.py"
    return name


def _declared_changes(path: str) -> list[str]:
    """The classes a module's source declares with an `id` and an `execute`: what a change looks like. Read, not
    imported: a module that is not a change module may import what is not installed (a test, a script)."""
    try:
        with open(path, "rb") as file:
            tree = ast.parse(file.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return []
    found = []
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or not node.bases:
            continue
        assigned = {t.id for n in node.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        assigned |= {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
        methods = {n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        if "id" in assigned and "execute" in methods:
            found.append(node.name)
    return found


def _misnamed(package: ModuleType, name: str) -> str | None:
    """A problem if the module `name` of the changes package defines a change although its name keeps it from
    being loaded: such a change would be skipped without a word."""
    path = _module_path(package, name)
    classes = _declared_changes(path)
    if not classes:
        return None
    return (
        f"{path}: defines {', '.join(classes)} with an id, but the module is never loaded as a change: only "
        f"modules named `_<ORDER>_<name>.py` are (ORDER of at least 4 characters, e.g. `_0001_{name.lstrip('_')}.py`); "
        "rename it, or move shared code without an id elsewhere"
    )


def _package(package_name: str) -> tuple[ModuleType | None, list[str]]:
    package = _import(package_name, where=f"changes package {package_name!r}")
    if not hasattr(package, "__path__"):
        return None, [f"{package_name!r} ({_source_file(package)}) is a module, not a package of change modules"]
    return package, []


def _looks_like_change(name: str) -> bool:
    return _LOOKS_LIKE_CHANGE.match(name) is not None


def _change_modules(package: ModuleType) -> tuple[list[ModuleType], list[str]]:
    modules, problems = [], []
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not _looks_like_change(info.name):
            problem = None if info.ispkg else _misnamed(package, info.name)
            problems += [problem] if problem else []
            continue
        path = _module_path(package, info.name)
        if order_from_module_name(info.name) is None:
            problems.append(f"{path}: module name must be `_<ORDER>_<name>.py` with ORDER of at least 4 characters")
            continue
        modules.append(_import(f"{package.__name__}.{info.name}", where=path))
    return modules, problems


def _classes_in(module: ModuleType) -> list[type[Change]]:
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, Change)
        and obj is not Change
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
    ]


def _from_module(module: ModuleType) -> tuple[type[Change] | None, str | None]:
    classes = _classes_in(module)
    if len(classes) == 1:
        return classes[0], None
    path = _source_file(module) or module.__name__
    if not classes:
        return None, f"{path}: defines no Change subclass"
    names = ", ".join(c.__qualname__ for c in classes)
    return None, f"{path}: defines {len(classes)} Change subclasses ({names}); put one change in each module"


def _collect_classes(sources: Iterable[ChangeSource]) -> tuple[list[type[Change]], list[str], list[ModuleType]]:
    classes: list[type[Change]] = []
    problems: list[str] = []
    packages: list[ModuleType] = []
    for source in sources:
        if isinstance(source, str):
            package, found = _package(source)
            problems += found
            if package is None:
                continue
            packages.append(package)
            modules, found = _change_modules(package)
            problems += found
            for module in modules:
                cls, problem = _from_module(module)
                problems += [problem] if problem else []
                classes += [cls] if cls else []
        elif inspect.isclass(source) and issubclass(source, Change):
            classes.append(source)
        else:
            problems.append(f"changes: {source!r} is neither a package name nor a Change subclass")
    return list(dict.fromkeys(classes)), problems, packages


def _check_unique(specs: Sequence[ChangeSpec]) -> list[str]:
    problems = []
    for attr in ("id", "order"):
        seen: dict[str, ChangeSpec] = {}
        for spec in specs:
            value = getattr(spec, attr)
            if value in seen:
                first = seen[value]
                problems.append(
                    f"{spec.where()}: {spec.cls.__qualname__}.{attr} {value!r} is also the {attr} of "
                    f"{first.cls.__qualname__} ({first.where()}); each change needs its own {attr}"
                )
            seen[value] = spec
    return problems


def _spec(cls: type[Change]) -> tuple[ChangeSpec | None, list[str]]:
    module = sys.modules.get(cls.__module__)
    source = getattr(module, "__file__", None) if module is not None and cls.__qualname__ == cls.__name__ else None
    if source is None or not source.endswith(".py"):  # nested, or not from a source file: ask inspect
        source = _source_file(cls) or (_source_file(module) if module else None)
    return check_change_class(cls, derived_order=order_from_module_name(cls.__module__), source_file=source)


def load_changes(sources: Iterable[ChangeSource]) -> list[ChangeSpec]:
    """Import, check and order the changes. Raises `ConfigurationError` listing every problem. Each package's
    manifest is brought up to date, for the next `declared_changes`."""
    classes, problems, packages = _collect_classes(sources)
    specs: list[ChangeSpec] = []
    for cls in classes:
        spec, found = _spec(cls)
        problems += found
        specs += [spec] if spec else []
    problems += _check_unique(specs)
    if problems:
        raise ConfigurationError(problems)
    for package in packages:
        write_manifest(package, specs, _looks_like_change)
    return sorted(specs, key=lambda s: s.order)


def declared_changes(sources: Iterable[ChangeSource]) -> list[Declared] | None:
    """What `sources` declare, without importing a change module: from each package's manifest (the package
    itself is imported), and from each class given. None when a package has no manifest that describes every one
    of its modules as it is on disk, or a class given does not pass its checks: then `load_changes`."""
    declared: list[Declared] = []
    for source in sources:
        if isinstance(source, str):
            try:
                package = importlib.import_module(source)
            except Exception:  # the full load reports it
                return None
            found = declared_in(package, _looks_like_change) if hasattr(package, "__path__") else None
            if found is None:
                return None
            declared += found
        elif inspect.isclass(source) and issubclass(source, Change):
            spec, _problems = _spec(source)
            if spec is None:
                return None
            declared.append(Declared.of(spec))
        else:
            return None
    return declared
