"""Keeping credentials out of logs, errors and audit entries."""

from __future__ import annotations

import re

__all__ = ["redact"]

# scheme://user:password@host  ->  scheme://user:***@host
# The look-behind anchors the scheme at a word start, so long runs of letters cost linear time, not quadratic.
_URL_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)(?P<secret>[^@/\s]+)(?=@)"
)
# password=..., secret: ..., token='...', aws_secret_access_key=...
_KEY_VALUE = re.compile(
    r"(?P<head>(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|secret[_-]?access[_-]?key)"
    r"[\"']?\s*[=:]\s*[\"']?)(?P<secret>[^\s\"',;&}]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """Replace passwords in connection strings and `key=value` secrets with `***`."""
    text = _URL_PASSWORD.sub(r"\g<head>***", text)
    return _KEY_VALUE.sub(r"\g<head>***", text)
