"""The `Change` base class users subclass, and the checked description the engine works from."""

from __future__ import annotations

import dis
import inspect
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from ._model import Recovery

__all__ = ["CHANGE_ID_PATTERN", "Change", "ChangeSpec", "check_change_class"]

CHANGE_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")  # matched whole: fullmatch
ORDER_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


class Change:
    """Base class of a change. Subclass it, set the class attributes and define `async def execute(self, ctx)`.

    ```python
    class AddUserStatus(Change):
        id = "add-user-status"
        author = "alice"
        target_system = "users-db"

        async def execute(self, ctx: SQLiteContext) -> None: ...
        async def rollback(self, ctx: SQLiteContext) -> None: ...   # optional
    ```

    `order` comes from the module name (`_0003_add_user_status.py`) unless set here. `ctx` is the context of the
    target system named by `target_system`.
    """

    id: ClassVar[str]
    author: ClassVar[str]
    target_system: ClassVar[str]
    order: ClassVar[str | None] = None
    transactional: ClassVar[bool] = True
    recovery: ClassVar[Recovery | str] = Recovery.MANUAL_INTERVENTION
    idempotency: ClassVar[str | None] = None
    """A note saying why running this change twice is safe. Silences the warning for a non-transactional
    change with `ALWAYS_RETRY`."""

    async def execute(self, ctx: Any) -> None:
        """Do the change's work on its target system, through `ctx`. Required, and must be `async def`."""
        raise NotImplementedError

    async def rollback(self, ctx: Any) -> None:
        """Undo what `execute` did. Optional (`async def`): called after a non-transactional change failed,
        and by `Flamingock.undo()`."""
        raise NotImplementedError


_MODULE_NAME = re.compile(r"_(?P<order>[0-9][A-Za-z0-9]*)_(?P<name>\w+)")  # matched whole: fullmatch
_MIN_ORDER_LENGTH = 4


@dataclass(frozen=True, slots=True)
class ChangeSpec:
    """A change class after every check passed: what the engine reads instead of the class."""

    cls: type[Change]
    id: str
    order: str
    author: str
    target_system: str
    transactional: bool
    recovery: Recovery
    source_file: str | None
    has_rollback: bool
    idempotency: str | None

    @property
    def class_name(self) -> str:
        return f"{self.cls.__module__}.{self.cls.__qualname__}"

    def where(self) -> str:
        return self.source_file or self.class_name

    @staticmethod
    def order_from_module_name(module_name: str) -> str | None:
        """The order a change module's name gives: `pkg.changes._0003_add_status` -> `"0003"`; `None` when the
        name does not follow the pattern `_<ORDER>_<name>` (an order of at least 4 characters, a digit first)."""
        match = _MODULE_NAME.fullmatch(module_name.rpartition(".")[2])
        if match is None or len(match["order"]) < _MIN_ORDER_LENGTH:
            return None
        return match["order"]


def _own_attr(cls: type[Change], name: str) -> Any:
    for klass in cls.__mro__:
        if klass is Change:
            return None
        if name in vars(klass):
            return vars(klass)[name]
    return None


def _defines(cls: type[Change], name: str) -> bool:
    return getattr(cls, name) is not getattr(Change, name)


def _check_id(value: Any) -> str | None:
    if not isinstance(value, str):
        return f'id is missing or not a string (got {value!r}); set `id = "..."`'
    if not CHANGE_ID_PATTERN.fullmatch(value):
        return f"id {value!r} must be 1-128 characters of [A-Za-z0-9._-]"
    return None


def _check_text(name: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f'{name} is missing or empty (got {value!r}); set `{name} = "..."`'
    return None


def _check_recovery(value: Any) -> str | None:
    try:
        Recovery(value)
    except ValueError:
        names = ", ".join(r.value for r in Recovery)
        return f"recovery {value!r} is not one of {names}"
    return None


# What a body that only raises NotImplementedError compiles to (a docstring adds nothing to the bytecode).
_STUB_OPCODES = frozenset(
    {"RESUME", "RETURN_GENERATOR", "POP_TOP", "NOP", "PUSH_NULL", "LOAD_GLOBAL", "LOAD_CONST", "PRECALL", "CALL"}
    | {"RAISE_VARARGS", "KW_NAMES", "COPY_FREE_VARS", "CACHE", "LOAD_NAME", "CALL_FUNCTION", "RETURN_CONST"}
)


def _only_raises_not_implemented(function: Any) -> bool:
    """Whether `function`'s whole body is `raise NotImplementedError(...)`: the skeleton `aioflamingock new`
    writes, never edited. Cheap for every other function: their code names more than that one exception."""
    code = getattr(function, "__code__", None)
    if code is None or code.co_names != ("NotImplementedError",):
        return False
    return all(instruction.opname in _STUB_OPCODES for instruction in dis.get_instructions(code))


def _takes_one_context(function: Any) -> bool:
    """Whether `function(self, ctx)` is a valid call, read from its code object (cheap: no `inspect.signature`)."""
    code = getattr(function, "__code__", None)
    if code is None:
        return True  # not plain Python (a wrapped callable): the call itself will tell
    defaults = len(getattr(function, "__defaults__", None) or ())
    required_keywords = code.co_kwonlyargcount - len(getattr(function, "__kwdefaults__", None) or {})
    varargs = bool(code.co_flags & inspect.CO_VARARGS)
    return (code.co_argcount - defaults) <= 2 and (code.co_argcount >= 2 or varargs) and required_keywords == 0


def _constructor_problem(cls: type[Change]) -> str | None:
    """The engine creates every change with `cls()`: a constructor that needs arguments fails only at run time."""
    if cls.__init__ is object.__init__ and cls.__new__ is object.__new__:
        return None
    try:
        inspect.signature(cls).bind()
    except TypeError as exc:
        return f"__init__ cannot be called without arguments ({exc}); the engine creates it as `{cls.__name__}()`"
    except ValueError:
        return None
    return None


def _check_methods(cls: type[Change]) -> list[str]:
    problems = []
    if not _defines(cls, "execute"):
        problems.append("execute is not defined; define `async def execute(self, ctx)`")
    elif not inspect.iscoroutinefunction(cls.execute):
        problems.append("execute must be `async def execute(self, ctx)`")
    elif not _takes_one_context(cls.execute):
        problems.append("execute must take the context and nothing else: `async def execute(self, ctx)`")
    elif _only_raises_not_implemented(cls.execute):
        problems.append(
            "execute only raises NotImplementedError: it is still the skeleton `aioflamingock new` wrote, and "
            "deployed as it is, it could only fail. Edit it (write the change), or delete the file"
        )
    if _defines(cls, "rollback") and not inspect.iscoroutinefunction(cls.rollback):
        problems.append("rollback must be `async def rollback(self, ctx)`")
    elif _defines(cls, "rollback") and not _takes_one_context(cls.rollback):
        problems.append("rollback must take the context and nothing else: `async def rollback(self, ctx)`")
    constructor = _constructor_problem(cls)
    if constructor is not None:
        problems.append(constructor)
    return problems


def _check_order(value: Any, derived: str | None) -> tuple[str | None, str | None]:
    if value is None:
        if derived is None:
            return (
                None,
                'order is not set and the module name is not `_<ORDER>_<name>.py`; set `order = "..."`',
            )
        return derived, None
    if not isinstance(value, str) or not ORDER_PATTERN.fullmatch(value):
        return None, f"order {value!r} must be 1-64 characters of [A-Za-z0-9._-]"
    return value, None


def check_change_class(
    cls: type[Change], *, derived_order: str | None, source_file: str | None
) -> tuple[ChangeSpec | None, list[str]]:
    """Check one change class; return its spec, or the problems (each prefixed with where to fix it)."""
    where = f"{source_file or cls.__module__}: {cls.__qualname__}"
    problems = [
        p
        for p in (
            _check_id(_own_attr(cls, "id")),
            _check_text("author", _own_attr(cls, "author")),
            _check_text("target_system", _own_attr(cls, "target_system")),
            _check_recovery(cls.recovery),
            None if isinstance(cls.transactional, bool) else "transactional must be True or False",
        )
        if p is not None
    ]
    problems += _check_methods(cls)
    order, order_problem = _check_order(cls.order, derived_order)
    if order_problem:
        problems.append(order_problem)
    if problems or order is None:
        return None, [f"{where}.{p}" for p in problems]
    spec = ChangeSpec(
        cls=cls,
        id=cls.id,
        order=order,
        author=cls.author,
        target_system=cls.target_system,
        transactional=cls.transactional,
        recovery=Recovery(cls.recovery),
        source_file=source_file,
        has_rollback=_defines(cls, "rollback"),
        idempotency=cls.idempotency,
    )
    return spec, []
