"""The `aioflamingock` command line: a thin layer over the methods of the `Flamingock` the application builds.

```
aioflamingock --app myapp.migrations:build_flamingock plan
```

Needs the `cli` extra (typer and rich); `import aioflamingock` never imports them. Exit codes are the `EXIT_*`
constants of `_base`. Machine output (`--json`) goes to stdout; progress, notes and errors go to stderr.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

from . import _base
from ._base import *  # noqa: F403  (the exit codes, the environment variable, CliError)
from ._loading import load_app

__all__ = [*_base.__all__, "build_app", "load_app", "main"]  # noqa: F405  (build_app: on first use)

_NEEDS_THE_EXTRA = {
    "build_app": "._app",
    "create_change": "._new",
    "next_order": "._new",
    "snake_case": "._new",
}
"""What needs typer and rich, imported on first use: `import aioflamingock._cli` never needs the extra."""


def __getattr__(name: str) -> Any:
    if name in _NEEDS_THE_EXTRA:
        return getattr(importlib.import_module(_NEEDS_THE_EXTRA[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(args: Sequence[str] | None = None) -> None:
    """The `aioflamingock` console script."""
    try:
        import rich  # noqa: F401
        import typer  # noqa: F401
    except ImportError as exc:  # the `cli` extra is not installed
        sys.stderr.write(f"error: {_base.INSTALL_HINT} ({exc})\n")
        raise SystemExit(_base.EXIT_USAGE) from None  # how it was installed, not what it was asked to do
    from ._app import build_app

    build_app()(args=list(args) if args is not None else None, prog_name="aioflamingock")
