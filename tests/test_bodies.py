"""Bodies: `ConnectRequest(body=Model)` reads a webhook body only after the token, capped, then validates it.

The order of answers is 401, then 413, then 422; the JSON is strict (no `NaN`,
`Infinity`, numbers out of range or nesting past 64 levels: each a 422), and the
body, once read, can be read again by the route. The ASGI-level tests count the
chunks the app pulled, so "not read" is observed, not inferred.
"""

from __future__ import annotations

import json
from typing import Any

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
    large = Depends(ConnectRequest(body=IssueEvent, max_body_size=300_000))

    @app.post("/issue-webhook")
    async def issue_webhook(call: VerifiedRequest[Any] = verified) -> dict[str, Any]:
        event: IssueEvent = call.body
        return {"client_key": call.client_key, "event": event.webhookEvent, "issue": event.issue_key}

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
