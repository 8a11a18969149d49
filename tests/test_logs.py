"""Unit: `RedactTokens` removes `jwt` query values from log records, and only them."""

from __future__ import annotations

import logging

import pytest

from fastapi_connect_auth import RedactTokens, redact_access_logs
from fastapi_connect_auth._logs import redact_tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /page?jwt=a.b.c HTTP/1.1", "GET /page?jwt=[redacted] HTTP/1.1"),
        ("/p?xdm_e=x&jwt=a.b.c&cp=", "/p?xdm_e=x&jwt=[redacted]&cp="),
        ("/p?JWT=a.b.c", "/p?JWT=[redacted]"),
        ("/p?%6a%77%74=a.b.c", "/p?%6a%77%74=[redacted]"),
        ("/p?jwtx=keep&xjwt=keep", "/p?jwtx=keep&xjwt=keep"),
        ("/p?a=1", "/p?a=1"),
        ("no query at all", "no query at all"),
    ],
)
def test_redact_tokens(text: str, expected: str) -> None:
    assert redact_tokens(text) == expected


def test_the_filter_rewrites_message_and_arguments() -> None:
    tuple_record = logging.LogRecord("x", logging.INFO, "", 0, '%s "GET %s" /q?jwt=in-msg', ("ip", "/p?jwt=t"), None)
    dict_record = logging.LogRecord("x", logging.INFO, "", 0, "%(path)s", None, None)
    dict_record.args = {"path": "/p?jwt=t", "status": 200}

    assert RedactTokens().filter(tuple_record)
    assert RedactTokens().filter(dict_record)

    assert tuple_record.getMessage() == 'ip "GET /p?jwt=[redacted]" /q?jwt=[redacted]'
    assert dict_record.getMessage() == "/p?jwt=[redacted]"


def test_redact_access_logs_installs_one_filter() -> None:
    logger = logging.getLogger("tests.access")

    first = redact_access_logs("tests.access")
    second = redact_access_logs("tests.access")

    assert first is second
    assert logger.filters == [first]
    logger.removeFilter(first)
