"""Seeing the writes a transactional change makes outside its transaction.

A change that forgets `session=ctx.session` writes outside the engine's transaction: that write commits at once
and is not undone when the transaction is rolled back. PyMongo offers no public way to refuse such a command
before it is sent, but it does tell command listeners about every command, in the task that sends it. The guard
is such a listener: while a transactional change runs, the target notes every write command of the change's task
that does not carry the change's session, and the change then fails as needing a human (its write is committed).

It sees what goes through a client created with it (`event_listeners=[session_guard()]`); a write through a
client without it, or through another driver, is not seen.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SessionWatch", "has_session_guard", "session_guard", "watching"]

# Commands that write; `aggregate` counts when its pipeline ends in $out or $merge.
_WRITES = frozenset(
    {
        "insert",
        "update",
        "delete",
        "findAndModify",
        "bulkWrite",
        "create",
        "drop",
        "dropDatabase",
        "createIndexes",
        "dropIndexes",
        "renameCollection",
        "collMod",
    }
)


@dataclass
class SessionWatch:
    """The session of the transaction a change runs in, and the writes seen without it."""

    session_id: Any
    outside: list[str] = field(default_factory=list)


watching: ContextVar[SessionWatch | None] = ContextVar("aioflamingock_mongodb_session_watch", default=None)


def _is_write(name: str, command: Any) -> bool:
    if name in _WRITES:
        return True
    if name == "aggregate":
        pipeline = command.get("pipeline") or []
        return bool(pipeline) and isinstance(pipeline[-1], dict) and bool({"$out", "$merge"} & set(pipeline[-1]))
    return False


def _started(event: Any) -> None:
    watch = watching.get()
    if watch is None or not _is_write(event.command_name, event.command):
        return
    if event.command.get("lsid") != watch.session_id:
        namespace = f"{event.database_name}.{event.command.get(event.command_name, '')}"
        watch.outside.append(f"{event.command_name} on {namespace!r}")


_guard_class: type[Any] | None = None


def _class() -> type[Any]:
    global _guard_class
    if _guard_class is None:
        from pymongo import monitoring

        class SessionGuard(monitoring.CommandListener):
            """Tells the engine about writes a transactional change sends without its session."""

            def started(self, event: monitoring.CommandStartedEvent) -> None:
                _started(event)

            def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
                pass

            def failed(self, event: monitoring.CommandFailedEvent) -> None:
                pass

        _guard_class = SessionGuard
    return _guard_class


def session_guard() -> Any:
    """A PyMongo command listener that lets the engine see a write a transactional change makes without
    `session=ctx.session`, and fail that change as needing a human instead of recording it as rolled back.
    Pass it when you create the client:

    ```python
    client = AsyncMongoClient(url, event_listeners=[session_guard()])
    ```

    It costs one Python call per command, and does nothing outside a transactional change."""
    return _class()()


def has_session_guard(client: Any) -> bool:
    """Whether `client` (PyMongo's, or Motor's wrapping one) was created with `session_guard()`."""
    options = getattr(getattr(client, "delegate", client), "options", None)
    listeners = getattr(options, "event_listeners", None) or []
    return _guard_class is not None and any(isinstance(listener, _guard_class) for listener in listeners)
