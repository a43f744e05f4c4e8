"""Catching a forgotten `await` inside a change's `execute` or `rollback`.

CPython reports a coroutine destroyed before it ever ran by calling `warnings._warn_unawaited_coroutine(coro)`
from the coroutine's finalizer, before any warning filter is looked at. While a change's code runs, the engine
answers that call itself for the coroutines of the change's task (a context variable says which task): it notes
where the coroutine was let go of and the change then fails. For the line: with refcounting a coroutine is
finalized the moment its last reference goes, so the frame running at that moment is the one that dropped it,
and for `connection.execute(...)` written without `await` that is the line of the call. Everywhere else (other
tasks, code outside a change) the original function runs and the usual `RuntimeWarning` is unchanged.

What it cannot see: a coroutine kept alive by a reference cycle is finalized only when the garbage collector
runs, perhaps after the change returned; it then gets the usual warning. The happy path pays one context
variable set and reset per `execute`.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import FrameType
from typing import Any

from ._interfaces import set_while

__all__ = ["watch_unawaited"]

_found: ContextVar[list[str] | None] = ContextVar("aioflamingock_unawaited", default=None)
_original: Callable[[Any], None] | None = None
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_HOOK_NAME = "_warn_unawaited_coroutine"


def _where(frame: FrameType | None) -> str:
    """The first frame outside this library: the user's code that let the coroutine go."""
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return "an unknown place"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} (in {frame.f_code.co_name})"


def _describe(coro: Any, frame: FrameType | None) -> str:
    name = getattr(coro, "__qualname__", type(coro).__name__)
    origin = getattr(coro, "cr_origin", None)  # set when the application tracks coroutine origins
    if origin:
        filename, line, function = origin[0]
        return f"coroutine {name!r} created at {filename}:{line} (in {function})"
    return f"coroutine {name!r} created and dropped at {_where(frame)}"


def _hook(coro: Any) -> None:
    found = _found.get()
    if found is None:
        if _original is not None:
            _original(coro)
        else:  # what CPython does when `warnings` has no hook of its own
            name = getattr(coro, "__qualname__", "?")
            warnings.warn(f"coroutine {name!r} was never awaited", RuntimeWarning, stacklevel=2, source=coro)
        return
    try:
        found.append(_describe(coro, sys._getframe(1)))
    except Exception:  # called from a finalizer: never raise there
        found.append(f"coroutine {coro!r}")


def _install() -> None:
    global _original
    current = getattr(warnings, _HOOK_NAME, None)
    if current is not _hook:
        _original = current
        setattr(warnings, _HOOK_NAME, _hook)


@contextmanager
def watch_unawaited() -> Iterator[list[str]]:
    """Collect, into the yielded list, the coroutines the current task drops without awaiting while inside."""
    _install()
    found: list[str] = []
    with set_while(_found, found):
        yield found
