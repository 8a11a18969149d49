"""Bodies: `ConnectRequest(body=Model)` reads a webhook body only after the token, capped, then validates it.

The order of answers is 401, then 413, then 422; the JSON is strict (no `NaN`,
`Infinity`, numbers out of range or nesting past 64 levels: each a 422), and the
body, once read, can be read again by the route. The ASGI-level tests count the
chunks the app pulled, so "not read" is observed, not inferred; a body slower than
its time limit is 408, and a client that hangs up mid-body leaves one log line.
(Under a real uvicorn: tests/test_served.py.)
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import anyio
import pytest
from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel, field_validator

from fastapi_connect_auth import ConnectRequest, VerifiedRequest
from tests.conftest import (
    HOSTILE_JSON,
    MIB,
    ConnectApp,
    ConnectAppFactory,
    Tokens,
    Upload,
    asgi_exchange,
    asgi_post,
    auth_header,
    qsh_for,
)

MAX_WEBHOOK = 1024


class IssueEvent(BaseModel):
    webhookEvent: str
    issue_key: str

    @field_validator("webhookEvent")
    @classmethod
    def _count(cls, value: str) -> str:
        VALIDATED.append(value)
        return value


VALIDATED: list[str] = []


def webhook_routes(app: FastAPI) -> None:
    # In a closure the dependency is a default value: a string annotation cannot see it.
    verified = Depends(ConnectRequest(body=IssueEvent, max_body_size=MAX_WEBHOOK))
    hurried = Depends(ConnectRequest(body=IssueEvent, body_timeout=0.2))
    large = Depends(ConnectRequest(body=IssueEvent, max_body_size=300_000))

    @app.post("/issue-webhook")
    async def issue_webhook(call: VerifiedRequest[Any] = verified) -> dict[str, Any]:
        event: IssueEvent = call.body
        return {"client_key": call.client_key, "event": event.webhookEvent, "issue": event.issue_key}

    @app.post("/hurried-webhook")
    async def hurried_webhook(call: VerifiedRequest[Any] = hurried) -> dict[str, Any]:
        return {"issue": call.body.issue_key}

    @app.post("/large-webhook")
    async def large_webhook(call: VerifiedRequest[Any] = large) -> None: ...

    @app.post("/webhook-then-route")
    async def then_route(request: Request, call: VerifiedRequest[Any] = verified) -> dict[str, Any]:
        return {"same": json.loads(await request.body())["issue_key"] == call.body.issue_key}


@pytest.fixture
def app(make_connect_app: ConnectAppFactory) -> ConnectApp:
    connect_app = make_connect_app(extra_routes=webhook_routes)
    connect_app.tenants.add()
    VALIDATED.clear()
    return connect_app


def signed(tokens: Tokens) -> dict[str, str]:
    return auth_header(tokens.hs256(qsh_for("POST", "/issue-webhook")))


def post(app: ConnectApp, headers: dict[str, str], content: bytes) -> Any:
    return app.client.post("/issue-webhook", headers=headers, content=content)


def test_signed_body_is_validated_into_the_model(app: ConnectApp, tokens: Tokens) -> None:
    body = json.dumps({"webhookEvent": "jira:issue_created", "issue_key": "DEMO-1"}).encode()

    response = post(app, signed(tokens), body)

    assert response.status_code == 200, response.text
    assert response.json() == {"client_key": "client-key", "event": "jira:issue_created", "issue": "DEMO-1"}


def test_unsigned_malformed_body_is_401_not_422(app: ConnectApp) -> None:
    response = post(app, {}, b"{not json")

    assert response.status_code == 401
    assert response.json()["code"] == "MISSING_JWT"


def test_forged_token_with_valid_body_is_401_and_never_validated(app: ConnectApp, tokens: Tokens) -> None:
    forged = auth_header(
        tokens.hs256(qsh_for("POST", "/issue-webhook"), secret="not-the-tenant-secret-but-long-enough-for-pyjwt")
    )

    response = post(app, forged, json.dumps({"webhookEvent": "x", "issue_key": "DEMO-1"}).encode())

    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_SIGNATURE"
    assert VALIDATED == []


def test_signed_malformed_body_is_422_without_echoing_it(app: ConnectApp, tokens: Tokens) -> None:
    response = post(app, signed(tokens), b'{"webhookEvent": "secret-looking-input"}')

    assert response.status_code == 422
    errors = response.json()["detail"]
    assert [error["loc"] for error in errors] == [["body", "issue_key"]]
    assert "secret-looking-input" not in response.text


def test_signed_invalid_json_is_422(app: ConnectApp, tokens: Tokens) -> None:
    response = post(app, signed(tokens), b"{not json")

    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_signed_oversized_body_is_413_before_validation(app: ConnectApp, tokens: Tokens) -> None:
    body = json.dumps({"webhookEvent": "x", "issue_key": "K" * MAX_WEBHOOK}).encode()

    response = post(app, signed(tokens), body)

    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"
    assert VALIDATED == []


def test_body_needs_a_token() -> None:
    with pytest.raises(ValueError, match="auto_error"):
        ConnectRequest(body=IssueEvent, auto_error=False)


def test_signed_chunked_webhook_is_cut_off_at_the_cap(app: ConnectApp, tokens: Tokens) -> None:
    upload = Upload(50 * MIB)

    status, answer = asgi_post(app, "/issue-webhook", signed(tokens), upload)

    assert (status, answer["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert upload.pulled == 1  # the first 1 MiB chunk is past the 1 KiB cap: nothing more is pulled


class Drip:
    """An ASGI `receive` sending a body one byte every `interval` seconds, for ever; counts the bytes sent."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.sent = 0

    async def receive(self) -> dict[str, Any]:
        if self.sent:
            await anyio.sleep(self.interval)
        self.sent += 1
        return {"type": "http.request", "body": b"{", "more_body": True}


class HangUp:
    """An ASGI `receive` sending the start of a body, then the client's disconnect."""

    def __init__(self, start: bytes) -> None:
        self.messages = [{"type": "http.request", "body": start, "more_body": True}, {"type": "http.disconnect"}]

    async def receive(self) -> dict[str, Any]:
        return self.messages.pop(0) if self.messages else {"type": "http.disconnect"}


def test_a_dripped_body_is_408_at_the_dependency_s_time_limit(app: ConnectApp, tokens: Tokens) -> None:
    drip = Drip(0.02)
    token = tokens.hs256(qsh_for("POST", "/hurried-webhook"))
    started = time.monotonic()

    status, headers, answer = asgi_exchange(app, "/hurried-webhook", auth_header(token), drip.receive)

    assert (status, answer["code"]) == (408, "BODY_TIMEOUT")
    assert headers["connection"] == "close"
    assert "0.2 seconds" in answer["detail"]
    assert 0.2 <= time.monotonic() - started < 2.0
    assert drip.sent > 2  # it was reading, then stopped


@pytest.mark.parametrize("event", ["enabled", "disabled"])
def test_a_dripped_lifecycle_body_is_408_at_the_config_s_time_limit(
    make_connect_app: ConnectAppFactory, tokens: Tokens, event: str
) -> None:
    app = make_connect_app(body_timeout=0.2)
    token = tokens.hs256(qsh_for("POST", f"/{event}"), secret="unknown-until-the-body-names-the-tenant")

    status, headers, answer = asgi_exchange(app, f"/{event}", auth_header(token), Drip(0.02).receive)

    assert (status, answer["code"]) == (408, "BODY_TIMEOUT")
    assert headers["connection"] == "close"


def test_a_client_that_hangs_up_mid_body_leaves_one_log_line_and_no_traceback(
    app: ConnectApp, tokens: Tokens, caplog: pytest.LogCaptureFixture
) -> None:
    """Starlette raises `ClientDisconnect`; it used to reach the server as an exception, with a traceback."""
    token = tokens.hs256(qsh_for("POST", "/issue-webhook"))
    caplog.set_level(logging.INFO)

    status, _, answer = asgi_exchange(app, "/issue-webhook", auth_header(token), HangUp(b'{"webhookEvent": ').receive)

    assert (status, answer["code"]) == (400, "CLIENT_DISCONNECTED")  # sent to no one: the client is gone
    assert [(record.name, record.levelno, record.getMessage()) for record in caplog.records] == [
        (
            "fastapi_connect_auth",
            logging.INFO,
            "The client disconnected after 17 bytes of the body of POST '/issue-webhook'.",
        )
    ]
    assert caplog.records[0].exc_info is None
    assert token not in caplog.text


@pytest.mark.parametrize("case", HOSTILE_JSON)
def test_hostile_json_is_422_never_500(app: ConnectApp, tokens: Tokens, case: str) -> None:
    headers = auth_header(tokens.hs256(qsh_for("POST", "/large-webhook")))
    response = app.client.post("/large-webhook", headers=headers, content=HOSTILE_JSON[case])
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert VALIDATED == []


def test_the_route_can_read_the_body_again(app: ConnectApp, tokens: Tokens) -> None:
    headers = auth_header(tokens.hs256(qsh_for("POST", "/webhook-then-route")))
    body = json.dumps({"webhookEvent": "jira:issue_created", "issue_key": "DEMO-1"})
    assert app.client.post("/webhook-then-route", headers=headers, content=body).json() == {"same": True}
