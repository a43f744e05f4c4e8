"""Loading the application `--app` names: a Flamingock, or a function (maybe async) returning one."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable
from types import ModuleType

from .. import (
    Flamingock,
)
from ._base import CliError

__all__ = ["cwd_on_path", "load_app"]


def cwd_on_path() -> None:
    """Like uvicorn and `python -m`: modules in the current directory import."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def _split_ref(ref: str) -> tuple[str, str]:
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise CliError(f"--app {ref!r} must be MODULE:ATTR, e.g. myapp.migrations:build_flamingock")
    return module, attr


def _import_module(ref: str, name: str) -> ModuleType:
    cwd_on_path()
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(f"{exc.name}.")):
            raise CliError(
                f"--app {ref!r}: no module named {exc.name!r} in the current directory or on sys.path"
            ) from None
        raise CliError(f"--app {ref!r}: importing {name!r} failed: ModuleNotFoundError: {exc}") from exc
    except Exception as exc:  # whatever the application's module raises while importing
        raise CliError(f"--app {ref!r}: importing {name!r} failed: {type(exc).__name__}: {exc}") from exc


def _attribute(ref: str, module: ModuleType, attr: str) -> object:
    found: object = module
    for part in attr.split("."):
        if not hasattr(found, part):
            raise CliError(f"--app {ref!r}: module {module.__name__!r} has no attribute {attr!r}")
        found = getattr(found, part)
    return found


def _check_factory(ref: str, factory: Callable[..., object]) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return
    required = [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if required:
        raise CliError(f"--app {ref!r} must take no arguments, but it requires {', '.join(required)}")


async def _call_factory(ref: str, factory: Callable[..., object]) -> object:
    _check_factory(ref, factory)
    try:
        result = factory()
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:  # whatever the application's factory raises
        raise CliError(f"--app {ref!r}: calling it raised {type(exc).__name__}: {exc}") from exc
    return result


async def load_app(ref: str) -> Flamingock:
    """The `Flamingock` named by `module:attr`: the attribute itself, or what calling it returns (awaited if it
    is a coroutine). Raises `CliError` naming what is wrong."""
    module_name, attr = _split_ref(ref)
    found = _attribute(ref, _import_module(ref, module_name), attr)
    if isinstance(found, Flamingock):
        return found
    if not callable(found):
        raise CliError(f"--app {ref!r} is a {type(found).__name__}, not a Flamingock or a function returning one")
    result = await _call_factory(ref, found)
    if not isinstance(result, Flamingock):
        raise CliError(f"--app {ref!r} returned a {type(result).__name__}, not a Flamingock")
    return result
