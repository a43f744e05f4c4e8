"""Keeping credentials out of logs, errors, spans and audit entries: one function, applied at every sink.

The sinks: audit entries (`errorTrace`), the engine's exceptions, every log record of the library's loggers
(message, `exc_info` and `stack_info`, through `RedactingFilter`), span statuses and exception events
(`_tracing`), the command line's output and the readiness body.
"""

from __future__ import annotations

import logging
import re
import traceback

__all__ = ["RedactingFilter", "library_logger", "redact", "redacted_traceback"]

# scheme://user:password@host  ->  scheme://user:***@host. The password may hold `/`, `@` or `:` (unescaped, as
# people paste them): it runs to the last `@` before the query (`?`, `#`), so an e-mail address in the query stays
# out of it; a port followed by a path is not a password. The look-behind anchors the scheme at a word start, so
# long runs of letters cost linear time, not quadratic.
_URL_PASSWORD = re.compile(
    r"(?<![A-Za-z0-9+.-])(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)"
    r"(?!\d+(?:[/?#\s]|$))"
    r"(?P<secret>[^\s?#]+)"
    r"(?=@[^@\s?#]*(?:[?#\s\"'>)\],;]|$))"
)
_SECRET_NAMES = (
    r"password|passwd|pwd|passphrase|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?access[_-]?key"
    r"|private[_-]?key|credentials?"
)
# password=..., secret: ..., token='...', "passphrase": "...", aws_secret_access_key=...
_KEY_VALUE = re.compile(
    rf"(?P<head>(?:{_SECRET_NAMES})[\"']?\s*[=:]\s*[\"']?)(?P<secret>[^\s\"',;&}}]+)",
    re.IGNORECASE,
)
# --password hunter2, --api-key=...: command lines quoted in messages
_FLAG = re.compile(rf"(?P<head>--(?:{_SECRET_NAMES})[ =])(?P<secret>[^\s\"',;&}}]+)", re.IGNORECASE)
_BEARER = re.compile(r"(?P<head>\bBearer\s+)(?P<secret>[A-Za-z0-9._~+/=-]+)", re.IGNORECASE)

# AWS access key ids, and the parts of a SigV4 `Authorization` header or query string a message may quote.
_AWS_ACCESS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|A3T[A-Z0-9])[A-Z0-9]{12,}\b")
_SIGV4_PART = re.compile(r"(?P<head>\b(?:Credential|Signature|X-Amz-Security-Token|X-Amz-Credential)=)[^,&\s\"']+")
# A bare AWS secret access key, as AWS prints it: 40 characters of base64, mixed case. A lowercase hex digest
# (SHA-1 is 40 characters too) has no capitals, so it is left alone.
_FORTY = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


def _secret_key(match: re.Match[str]) -> str:
    value = match.group()
    mixed = any(c.isupper() for c in value) and any(c.islower() for c in value)
    return "***" if mixed and any(c.isdigit() or c in "/+" for c in value) else value


def redact(text: str) -> str:
    """Replace passwords in connection strings, `key=value` and `--flag value` secrets, bearer tokens, AWS access
    key ids, bare AWS secret keys and SigV4 credentials and signatures with `***`."""
    text = _AWS_ACCESS_KEY_ID.sub("AKIA***", text)
    text = _SIGV4_PART.sub(r"\g<head>***", text)
    text = _URL_PASSWORD.sub(r"\g<head>***", text)
    text = _KEY_VALUE.sub(r"\g<head>***", text)
    text = _FLAG.sub(r"\g<head>***", text)
    text = _BEARER.sub(r"\g<head>***", text)
    return _FORTY.sub(_secret_key, text)


def redacted_traceback(error: BaseException) -> str:
    return redact("".join(traceback.format_exception(error)))


class RedactingFilter(logging.Filter):
    """Redacts a record of the library's loggers before any handler sees it: the message with its arguments,
    the traceback of `exc_info` (kept as `exc_text`, which logging's formatter prints) and `stack_info`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redacted_traceback(record.exc_info[1]).rstrip("\n")
            record.exc_info = None  # a handler that formats it again would print the secrets
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def library_logger(name: str) -> logging.Logger:
    """The logger of one of the library's modules, with the redacting filter on it (a filter on a parent logger
    would not see its children's records)."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
