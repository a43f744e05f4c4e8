"""What the benchmark runners share: trivial change classes, generated; timing; the machine's description."""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from aioflamingock import Change, NonTransactionalContext

__all__ = ["count_call", "cpu_model", "generate_changes", "median_seconds", "package_version", "timed"]


async def count_call(self: Change, ctx: NonTransactionalContext) -> None:
    """The non-transactional changes' work: one entry in the target's `calls` list."""
    ctx["calls"].append(1)


def generate_changes(
    count: int, target: str, execute: Callable[[Change, Any], Awaitable[None]], *, transactional: bool
) -> list[type[Change]]:
    """`count` change classes, ordered c00000, c00001...; explicit classes need `order` set."""
    return [
        type(
            f"Bench{i:05d}",
            (Change,),
            {
                "id": f"c{i:05d}",
                "order": f"{i:05d}",
                "author": "bench",
                "target_system": target,
                "transactional": transactional,
                "execute": execute,
            },
        )
        for i in range(count)
    ]


async def timed(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await call()
    return time.perf_counter() - started, result


async def median_seconds(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    return statistics.median([(await timed(call))[0] for _ in range(repeat)])


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()
