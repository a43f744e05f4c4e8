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

# AWS access key ids, and the parts of a SigV4 `Authorization` header or query string a message may quote.
_AWS_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|A3T[A-Z0-9])[A-Z0-9]{12,}\b")
_SIGV4_PART = re.compile(r"(?P<head>\b(?:Credential|Signature|X-Amz-Security-Token|X-Amz-Credential)=)[^,&\s\"']+")


def redact(text: str) -> str:
    """Replace passwords in connection strings, `key=value` secrets, AWS access key ids and SigV4 credentials
    and signatures with `***`."""
    text = _AWS_ACCESS_KEY_ID.sub("AKIA***", text)
    text = _SIGV4_PART.sub(r"\g<head>***", text)
    text = _URL_PASSWORD.sub(r"\g<head>***", text)
    return _KEY_VALUE.sub(r"\g<head>***", text)
