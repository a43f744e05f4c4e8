"""`new`: the next change module, a skeleton to fill in."""

from __future__ import annotations

import getpass
import importlib
import importlib.util
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

import typer
from rich.text import Text

from .. import ChangeSpec
from ._base import CliError
from ._loading import cwd_on_path
from ._output import command, report_error, settings_of

__all__ = ["DEFAULT_ORDER", "PLACEHOLDER_TARGET", "create_change", "new", "next_order", "skeleton", "snake_case"]

DEFAULT_ORDER = "0001"


PLACEHOLDER_TARGET = "TODO-target-system"


_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9 _-]{0,99}$")


_TARGET_LINE = re.compile(r"""^\s*target_system\s*=\s*["']([^"'\\]+)["']""", re.MULTILINE)


def snake_case(name: str) -> str:
    """`"AddUserStatus"`, `"add user status"`, `"add-user-status"` -> `"add_user_status"`."""
    if not _NAME.match(name.strip()):
        raise CliError(
            f"NAME {name!r} must start with a letter and hold only letters, digits, spaces, '-' and '_' (100 at most)"
        )
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name.strip())
    return re.sub(r"[ _-]+", "_", words).strip("_").lower()


def _package_dir(package: str) -> Path:
    """A directory, or the directory of an importable package (the current directory is on sys.path)."""
    if Path(package).is_dir():
        return Path(package)
    cwd_on_path()
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        raise CliError(f"--package {package!r}: {type(exc).__name__}: {exc}") from exc
    if spec is None or not spec.submodule_search_locations:
        raise CliError(f"--package {package!r} is neither a directory nor an importable package")
    return Path(next(iter(spec.submodule_search_locations)))


def _existing(directory: Path) -> dict[str, Path]:
    """The change modules in `directory`, by order."""
    found = {}
    for path in directory.glob("_*.py"):
        order = ChangeSpec.order_from_module_name(path.stem)
        if order is not None:
            found[order] = path
    return found


def next_order(orders: Iterable[str]) -> str:
    """The order after the highest one, as wide: `0009` -> `0010`; `0001` when there is none."""
    highest = max(orders, default=None)
    if highest is None:
        return DEFAULT_ORDER
    if not highest.isdigit():
        raise CliError(f"the highest order {highest!r} is not a number; pass --order")
    following = str(int(highest) + 1).zfill(len(highest))
    if following <= highest:  # 9999 -> 10000 would sort first: orders compare as strings
        raise CliError(f"the order after {highest!r} would be {following!r}, which sorts before it; pass --order")
    return following


def _check_order(order: str, existing: dict[str, Path]) -> str:
    if ChangeSpec.order_from_module_name(f"_{order}_x") is None:
        raise CliError(f"--order {order!r} must be a digit then letters or digits, at least 4 characters")
    if order in existing:
        raise CliError(f"order {order} is taken by {existing[order]}")
    return order


def _default_target(existing: dict[str, Path]) -> str:
    """The target system of the newest change, as a starting point."""
    if not existing:
        return PLACEHOLDER_TARGET
    match = _TARGET_LINE.search(existing[max(existing)].read_text(encoding="utf-8"))
    return match[1] if match else PLACEHOLDER_TARGET


def skeleton(name: str, *, author: str, target_system: str) -> str:
    """The text of a new change module for the snake_case `name`."""
    class_name = "".join(part.capitalize() for part in name.split("_"))
    return f'''"""{name.replace("_", " ").capitalize()}."""

from __future__ import annotations

from typing import Any

from aioflamingock import Change


class {class_name}(Change):
    id = {json.dumps(name.replace("_", "-"))}
    author = {json.dumps(author)}
    target_system = {json.dumps(target_system)}
    # transactional = False                      # for a target without transactions (a queue, a bucket, an API)
    # recovery = "ALWAYS_RETRY"                  # only if running it twice is harmless

    async def execute(self, ctx: Any) -> None:
        raise NotImplementedError("{class_name}.execute: write the change")

    # async def rollback(self, ctx: Any) -> None:
    #     """Undo execute: for `aioflamingock undo` and after a non-transactional failure."""
'''


def create_change(name: str, package: str, *, author: str, target_system: str | None, order: str | None) -> Path:
    """Write the next `_<ORDER>_<name>.py` of `package`; refuse to overwrite or to reuse a name."""
    snake = snake_case(name)
    directory = _package_dir(package)
    existing = _existing(directory)
    same = [p.name for p in existing.values() if p.stem.split("_", 2)[2] == snake]
    if same:
        raise CliError(f"a change named {snake!r} exists already: {directory / same[0]}")
    order = _check_order(order, existing) if order is not None else next_order(existing)
    path = directory / f"_{order}_{snake}.py"
    text = skeleton(snake, author=author, target_system=target_system or _default_target(existing))
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        raise CliError(f"{path} exists already; not overwriting it") from None
    return path


@command("Write")
def new(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the change does, e.g. add_user_status or 'add user status'.")],
    package: Annotated[str, typer.Option(help="The changes package (dotted name) or its directory.")],
    author: Annotated[str | None, typer.Option(help="Default: the current user.")] = None,
    target_system: Annotated[str | None, typer.Option(help="Default: that of the newest change.")] = None,
    order: Annotated[str | None, typer.Option(help="Default: the next after the highest, as wide.")] = None,
) -> None:
    """Write the next `_<ORDER>_<name>.py` change module, a skeleton to fill in. Needs no --app."""
    settings = settings_of(ctx)
    try:
        path = create_change(
            name, package, author=author or getpass.getuser(), target_system=target_system, order=order
        )
    except CliError as exc:
        raise typer.Exit(report_error(settings, exc)) from None
    settings.out.print(Text(f"✓ created {path}", style="green"))
