"""Loading the application `--app` names: a Flamingock, a function (maybe async) returning one, or what the web
integrations were given it in: a FastAPI/Starlette app or its lifespan, an aiohttp application or its cleanup
context (or a function returning one of those)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Sequence
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


def _engine_in(found: object) -> Flamingock | None:
    """The `Flamingock` an integration holds (its `flamingock` attribute), looked for in `found` itself (the lifespan
    or cleanup context), in a Starlette/FastAPI app's lifespan, and in an aiohttp application's cleanup contexts."""
    if isinstance(found, Flamingock):
        return found
    places: list[object] = [found, getattr(getattr(found, "router", None), "lifespan_context", None)]
    places += _cleanup_contexts(found)
    for place in places:
        engine = getattr(place, "flamingock", None)
        if isinstance(engine, Flamingock):
            return engine
    return None


def _cleanup_contexts(found: object) -> list[object]:
    """An aiohttp application's cleanup contexts (a sequence of its own type); none for anything else."""
    contexts = getattr(found, "cleanup_ctx", None)
    return list(contexts) if isinstance(contexts, Sequence) else []


def _looks_like_a_web_app(found: object) -> bool:
    return hasattr(found, "router") or isinstance(getattr(found, "cleanup_ctx", None), Sequence)


async def load_app(ref: str) -> Flamingock:
    """The `Flamingock` named by `module:attr`: the attribute itself, the one the web integrations were given where
    the attribute is a web app or its lifespan, or what calling it returns (awaited if it is a coroutine), looked
    for the same way. Raises `CliError` naming what is wrong."""
    module_name, attr = _split_ref(ref)
    found = _attribute(ref, _import_module(ref, module_name), attr)
    engine = _engine_in(found)
    if engine is not None:
        return engine
    if _looks_like_a_web_app(found):
        raise CliError(
            f"--app {ref!r} is a web application ({type(found).__name__}) that aioflamingock's lifespan or cleanup "
            "context was not given to: pass it aioflamingock.fastapi.lifespan(fl) (or "
            "aioflamingock.aiohttp.cleanup_ctx(fl)), or point --app at the Flamingock, or at a function returning one"
        )
    if not callable(found):
        raise CliError(f"--app {ref!r} is a {type(found).__name__}, not a Flamingock or a function returning one")
    result = await _call_factory(ref, found)
    engine = _engine_in(result)
    if engine is None:
        raise CliError(f"--app {ref!r} returned a {type(result).__name__}, not a Flamingock")
    return engine
