"""What every part of the command line shares and needs no extra: exit codes, the error it reports itself."""

from __future__ import annotations

import enum

__all__ = [
    "APP_ENV_VAR",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_MANUAL_INTERVENTION",
    "EXIT_OK",
    "EXIT_PENDING",
    "EXIT_USAGE",
    "INSTALL_HINT",
    "CliError",
    "Resolution",
]

EXIT_OK = 0
"""The command did what it was asked."""


EXIT_FAILURE = 1
"""A change failed, the store failed, the lock was lost or not obtained, `doctor` found a problem, `health` is
not ready."""


EXIT_USAGE = 2
"""Bad arguments, an `--app` that cannot be imported or is not a Flamingock, invalid changes (`ConfigurationError`),
an unknown change id, `unlock` without `--force`."""


EXIT_PENDING = 3
"""`validate`: a run would apply something, or a change needs manual intervention."""


EXIT_MANUAL_INTERVENTION = 4
"""`run` stopped at a change that needs manual intervention (`issues list`, then `fix`)."""


EXIT_INTERRUPTED = 130
"""Interrupted (Ctrl-C); the engine released the lock it held."""


APP_ENV_VAR = "AIOFLAMINGOCK_APP"


INSTALL_HINT = 'the aioflamingock command needs its extra: pip install "aioflamingock[cli]"'


class CliError(Exception):
    """A problem the command line reports itself, with its exit code (a usage error unless said otherwise)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class Resolution(enum.Enum):
    """What `fix --as` records."""

    APPLIED = "applied"
    ROLLED_BACK = "rolled-back"
