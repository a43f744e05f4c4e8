"""An audit store in memory, for users' unit tests: no files, no server, gone when the process ends."""

from ._store import InMemoryAuditStore, InMemoryLock

__all__ = ["InMemoryAuditStore", "InMemoryLock"]
