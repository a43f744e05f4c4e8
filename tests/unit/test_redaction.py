"""Credentials stay out of audit entries, logs and errors."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aioflamingock import AuditState, Change, ChangeFailedError, Flamingock, NonTransactionalTargetSystem
from aioflamingock._redact import redact

from ._support import TARGET, SpyStore, history

URL_PASSWORD = "S3cretPw"
KEY_PASSWORD = "hunter2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mongodb://user:pw@host", "mongodb://user:***@host"),
        (
            "cannot reach mongodb+srv://alice:s3cr%40t@cluster0.example.net/app?retryWrites=true",
            "cannot reach mongodb+srv://alice:***@cluster0.example.net/app?retryWrites=true",
        ),
        ("couchbases://admin:pa55@cb.example.net", "couchbases://admin:***@cb.example.net"),
        ("password=hunter2 host=db", "password=*** host=db"),
        ('Password: "hunter2"', 'Password: "***"'),
        ("{'password': 'hunter2', 'user': 'bob'}", "{'password': '***', 'user': 'bob'}"),
        ("pwd=hunter2;server=db", "pwd=***;server=db"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG", "aws_secret_access_key=***"),
        ("api_key=abc123&x=1", "api_key=***&x=1"),
        ("denied for AKIAIOSFODNN7EXAMPLE in us-east-1", "denied for AKIA*** in us-east-1"),
        (
            "Authorization: AWS4-HMAC-SHA256 Credential=ASIAXYZ/20260101/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=host, Signature=0123abcd",
            "Authorization: AWS4-HMAC-SHA256 Credential=***, SignedHeaders=host, Signature=***",
        ),
        ("?X-Amz-Security-Token=FwoGZX&x=1", "?X-Amz-Security-Token=***&x=1"),
    ],
)
def test_redact_hides_secrets(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "mongodb://db.internal:27017/app",
        "https://example.com:8443/path?email=a@b.com",
        "change 'add-status' failed: ValueError: bad value",
    ],
)
def test_redact_leaves_text_without_secrets_alone(text: str) -> None:
    assert redact(text) == text


def test_redact_takes_linear_time_on_long_text() -> None:
    text = "0f" * 25_000  # e.g. a hex dump in an exception message
    started = time.perf_counter()
    assert redact(text) == text
    assert time.perf_counter() - started < 0.25


class LeaksCredentials(Change):
    id = "connects"
    order = "0001"
    author = "tester"
    target_system = TARGET
    transactional = False

    async def execute(self, ctx: Any) -> None:
        raise ConnectionError(f"cannot connect to mongodb://admin:{URL_PASSWORD}@db.internal:27017/app")

    async def rollback(self, ctx: Any) -> None:
        raise ConnectionError(f"login failed: user=admin password={KEY_PASSWORD}")


async def _run_leaky(store: SpyStore, target: NonTransactionalTargetSystem) -> ChangeFailedError:
    with pytest.raises(ChangeFailedError) as caught:
        await Flamingock(audit_store=store, target_systems=[target], changes=[LeaksCredentials]).run()
    return caught.value


async def test_error_traces_in_the_audit_hide_passwords(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    await _run_leaky(store, target)

    entries = {e.state: e for e in await history(store)}
    failed, rollback_failed = entries[AuditState.FAILED], entries[AuditState.ROLLBACK_FAILED]
    assert failed.error_trace is not None and rollback_failed.error_trace is not None
    assert "mongodb://admin:***@db.internal" in failed.error_trace
    assert "password=***" in rollback_failed.error_trace
    for entry in entries.values():
        document = str(entry.to_document())
        assert URL_PASSWORD not in document and KEY_PASSWORD not in document


async def test_logs_hide_passwords(
    store: SpyStore, target: NonTransactionalTargetSystem, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aioflamingock"):
        await _run_leaky(store, target)
    assert caplog.records, "the failure is logged"
    logged = caplog.text
    assert URL_PASSWORD not in logged and KEY_PASSWORD not in logged


async def test_the_raised_error_message_hides_passwords(store: SpyStore, target: NonTransactionalTargetSystem) -> None:
    error = await _run_leaky(store, target)
    assert URL_PASSWORD not in str(error)


# -- one catalogue of secret forms, through every sink ------------------------------------------------------------

SECRETS = {
    "url-with-slash": ("mongodb://admin:Pa55/w0rd@db.internal:27017/app", "Pa55/w0rd"),
    "url-with-at-and-colon": ("postgresql://app:p@ss:w0rd@db.internal:5432/app", "p@ss:w0rd"),
    "aws-secret-access-key": ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    "aws-access-key-id": ("AKIAIOSFODNN7EXAMPLE", "IOSFODNN7EXAMPLE"),
    "passphrase": ("passphrase=correct-horse-battery", "correct-horse-battery"),
    "json-password": ('{"password": "s3cr3t-json"}', "s3cr3t-json"),
    "token-colon": ("token: tkn-1234567", "tkn-1234567"),
    "apikey": ("apikey=ak_live_4242", "ak_live_4242"),
    "cli-flag": ("--password flagpass1", "flagpass1"),
    "bearer": ("Authorization: Bearer eyJhbGciOi.abc.def", "eyJhbGciOi.abc.def"),
}
CATALOGUE = "; ".join(text for text, _ in SECRETS.values())


@pytest.mark.parametrize("form", list(SECRETS))
def test_redact_hides_every_form_of_the_catalogue(form: str) -> None:
    text, secret = SECRETS[form]
    assert secret not in redact(f"could not connect: {text} (retrying)")


@pytest.mark.parametrize(
    "text",
    [
        "da39a3ee5e6b4b0d3255bfef95601890afd80709",  # a SHA-1 hex digest: 40 characters, no capitals
        "https://example.com:8443/path?email=a@b.com",
        "the password was wrong",
        "execution 4f1c2a9e8d7b6c5a4f3e2d1c0b9a8f7e",
    ],
)
def test_redact_leaves_look_alikes_alone(text: str) -> None:
    assert redact(text) == text


class LeaksTheCatalogue(Change):
    id = "leaks"
    order = "0001"
    author = "tester"
    target_system = TARGET
    transactional = False

    async def execute(self, ctx: Any) -> None:
        raise ConnectionError(CATALOGUE)


def assert_no_secret(text: str, sink: str) -> None:
    leaked = [form for form, (_, secret) in SECRETS.items() if secret in text]
    assert not leaked, f"{sink} leaks {leaked}"


async def test_no_secret_of_the_catalogue_reaches_any_sink(
    store: SpyStore,
    target: NonTransactionalTargetSystem,
    caplog: pytest.LogCaptureFixture,
    spans: InMemorySpanExporter,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="aioflamingock"), pytest.raises(ChangeFailedError) as caught:
        await Flamingock(audit_store=store, target_systems=[target], changes=[LeaksTheCatalogue]).run()
    assert_no_secret(str(caught.value), "the raised error")
    for entry in await history(store):
        assert_no_secret(str(entry.to_document()), f"the audit's {entry.state.value} entry")
    assert caplog.records
    for record in caplog.records:
        formatted = logging.Formatter().format(record)  # message, traceback and stack, as a handler prints them
        assert_no_secret(formatted, f"the log record {record.getMessage()[:40]!r}")
        assert record.exc_info is None  # a handler formatting it again would print the secrets
    finished = spans.get_finished_spans()
    assert finished
    for span in finished:
        assert_no_secret(str(span.status.description), f"span {span.name}'s status")
        for event in span.events:
            assert_no_secret(str(dict(event.attributes or {})), f"span {span.name}'s {event.name} event")
    issues = await Flamingock(audit_store=store, target_systems=[target], changes=[LeaksTheCatalogue]).issues()
    assert_no_secret(str(issues), "issues()")
