"""Rejection events: one per refused call of each dependency kind, logged with `extra=` fields and given to `on_rejection`.

Hostile values from the wire (control characters, a 10 KB issuer, forged trace
headers) must come out printable and truncated; a failing callback must leave
the 401 a 401; debug mode must stay off public https base URLs.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Annotated, Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from fastapi_connect_auth import (
    AuthErrorCode,
    ConnectAuth,
    ForgeAuth,
    ForgeInvocation,
    ForgeLifecycle,
    ForgeRequest,
    RejectionEvent,
    VerifiedForgeLifecycle,
)
from tests._keyserver import rsa_key
from tests.conftest import (
    BASE_URL,
    CLIENT_KEY,
    SHARED_SECRET,
    ConnectApp,
    ConnectAppFactory,
    TenantStore,
    Tokens,
    install_body,
    lifecycle_body,
    qsh_for,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
B3_TRACE = "80f198ee56343ba864fe8b2a57d3eff7"
B3_SPAN = "e457b5a2e4d86bd1"
TRACE_HEADERS = {
    "traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01",
    "x-b3-traceid": B3_TRACE,
    "x-b3-spanid": B3_SPAN,
}
HOSTILE = "evil\r\nWARNING forged line\x1b[31m\x00" + "k" * 10_000
APP_ARI = "ari:cloud:ecosystem::app/6c9a4a8f-27c5-4b7e-8f5e-3b9f2d0c1a77"
FORGE_KID = "forge-key-1"


@pytest.fixture
def events(tenants: TenantStore) -> list[RejectionEvent]:
    tenants.add()  # the tenant is installed: a refusal is about the call, not an unknown issuer
    return []


@pytest.fixture
def app(make_connect_app: ConnectAppFactory, events: list[RejectionEvent]) -> ConnectApp:
    """The tests' Connect app, its rejections collected in `events`."""
    return make_connect_app(on_rejection=events.append)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="fastapi_connect_auth")
    return caplog


def rejection_records(logs: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in logs.records if hasattr(record, "auth_code")]


def assert_safe(event: RejectionEvent) -> None:
    for value in (event.issuer, event.installation_id, event.route, event.detail):
        if value is not None:
            assert value.isprintable(), value
            assert len(value) <= 2048


# -- each Connect dependency kind -------------------------------------------------------------------------------


def test_a_refused_request_yields_an_event_with_its_route_issuer_and_trace_ids(
    app: ConnectApp, tokens: Tokens, events: list[RejectionEvent], logs: pytest.LogCaptureFixture
) -> None:
    token = tokens.hs256(qsh_for("GET", "/items/other"))

    response = app.get("/items/42", token, headers=TRACE_HEADERS)

    assert response.status_code == 401
    (event,) = events
    assert event == RejectionEvent(
        code=AuthErrorCode.INVALID_QSH,
        kind="request",
        status_code=401,
        detail="The query string hash does not match this request (was the URL rewritten by a proxy?).",
        route="/items/{item}",
        issuer=CLIENT_KEY,
        trace_id=TRACE_ID,
        span_id=SPAN_ID,
        b3_trace_id=B3_TRACE,
        b3_span_id=B3_SPAN,
    )
    (record,) = rejection_records(logs)
    assert record.levelno == logging.WARNING
    fields = {name: value for name, value in vars(record).items() if name.startswith("auth_")}
    assert fields == {
        "auth_code": "INVALID_QSH",
        "auth_kind": "request",
        "auth_status_code": 401,
        "auth_detail": event.detail,
        "auth_route": "/items/{item}",
        "auth_issuer": CLIENT_KEY,
        "auth_installation_id": None,
        "auth_lifecycle_event": None,
        "auth_trace_id": TRACE_ID,
        "auth_span_id": SPAN_ID,
        "auth_b3_trace_id": B3_TRACE,
        "auth_b3_span_id": B3_SPAN,
    }
    assert record.getMessage().startswith("Rejected Connect request: INVALID_QSH (iss='client-key')")
    assert token not in logs.text


def test_a_refused_install_yields_an_install_event(
    make_connect_app: ConnectAppFactory, tokens: Tokens, events: list[RejectionEvent]
) -> None:
    app = make_connect_app(on_rejection=events.append)
    token = tokens.rs256(qsh_for("POST", "/installed"), aud=("https://someone-else.example.com",))

    response = app.install(install_body(), token)

    assert response.status_code == 401
    (event,) = events
    assert (event.code, event.kind, event.route, event.issuer) == (
        AuthErrorCode.WRONG_AUDIENCE,
        "install",
        "/installed",
        CLIENT_KEY,
    )


@pytest.mark.parametrize("lifecycle", ["uninstalled", "enabled"])
def test_a_refused_lifecycle_callback_yields_a_lifecycle_event(
    make_connect_app: ConnectAppFactory, tokens: Tokens, events: list[RejectionEvent], lifecycle: str
) -> None:
    app = make_connect_app(on_rejection=events.append)
    token = tokens.hs256(qsh_for("POST", f"/{lifecycle}"), secret="not-the-tenant-secret-at-all-really")
    if lifecycle == "uninstalled":
        token = tokens.rs256(qsh_for("POST", "/uninstalled"), key=tokens.foreign_key)

    response = app.lifecycle(lifecycle, token, lifecycle_body(lifecycle))

    assert response.status_code == 401
    (event,) = events
    assert (event.code, event.kind, event.lifecycle_event, event.route) == (
        AuthErrorCode.INVALID_SIGNATURE,
        "lifecycle",
        lifecycle,
        f"/{lifecycle}",
    )


def test_a_body_refusal_keeps_its_status_in_the_event(
    make_connect_app: ConnectAppFactory, tokens: Tokens, events: list[RejectionEvent]
) -> None:
    app = make_connect_app(on_rejection=events.append)

    response = app.install(install_body(baseUrl="ftp://nowhere"), tokens.rs256(qsh_for("POST", "/installed")))

    assert response.status_code == 400
    assert [(event.code, event.status_code) for event in events] == [(AuthErrorCode.INVALID_INSTALL_PAYLOAD, 400)]


# -- hostile values --------------------------------------------------------------------------------------------


def test_a_hostile_issuer_and_forged_trace_headers_are_made_safe(
    app: ConnectApp, tokens: Tokens, events: list[RejectionEvent], logs: pytest.LogCaptureFixture
) -> None:
    token = tokens.hs256(qsh_for("GET", "/computed"), iss=HOSTILE)
    forged = {
        "traceparent": "00-" + "0" * 32 + "-" + SPAN_ID + "-01",  # the all-zero trace id is invalid
        "x-b3-traceid": "zz\r\nforged",
        "x-b3-spanid": "a" * 10_000,
    }

    response = app.get("/computed", token, headers=forged)

    assert response.status_code == 401
    (event,) = events
    assert event.code is AuthErrorCode.UNKNOWN_ISSUER
    assert event.issuer is not None
    assert event.issuer.startswith("evil??WARNING forged line?[31m?kkk")
    assert len(event.issuer) == 128
    assert event.issuer.endswith("…")
    assert (event.trace_id, event.span_id, event.b3_trace_id, event.b3_span_id) == (None,) * 4
    assert_safe(event)
    (record,) = rejection_records(logs)
    assert "\r" not in record.getMessage()
    assert "\n" not in record.getMessage()
    assert len(record.getMessage()) < 1000


def test_a_hostile_forge_installation_id_is_made_safe(events: list[RejectionEvent]) -> None:
    hostile = "ari:\x1b[2J\r\n" + "i" * 400
    config = forge_auth(on_rejection=events.append)
    response = forge_client(config).post(
        "/forge/events", headers={"Authorization": f"Bearer {fit(iss='forged', installation_id=hostile)}"}
    )

    assert response.status_code == 401
    (event,) = events
    assert event.code is AuthErrorCode.WRONG_ISSUER
    assert event.installation_id is not None
    assert event.installation_id.startswith("ari:?[2J??iii")
    assert len(event.installation_id) == 128
    assert_safe(event)


# -- Forge -----------------------------------------------------------------------------------------------------


class StaticKeys:
    """A `ForgeKeyProvider` with one key, counting lookups as `fetches` for the telemetry tests."""

    def __init__(self) -> None:
        self.fetches = 0

    async def get_signing_key(self, kid: str, jwks_url: str) -> RSAPublicKey:
        return rsa_key().public_key()


def fit(*, installation_id: str = "ari:cloud:ecosystem::installation/1", **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": "forge/invocation-token",
        "aud": [APP_ARI],
        "iat": now,
        "nbf": now,
        "exp": now + 25,
        "jti": str(uuid.uuid4()),
        "app": {"id": APP_ARI, "installationId": installation_id, "apiBaseUrl": "https://api.atlassian.com/ex/jira/1"},
        **claims,
    }
    return jwt.encode(payload, rsa_key(), algorithm="RS256", headers={"kid": FORGE_KID})


def forge_auth(**options: Any) -> ForgeAuth:
    return ForgeAuth(app_id=APP_ARI, key_provider=StaticKeys(), **options)


def forge_client(config: ForgeAuth) -> TestClient:
    app = FastAPI()
    config.install(app)

    @app.post("/forge/{module}")
    async def handler(call: Annotated[ForgeInvocation, Depends(ForgeRequest())]) -> dict[str, str]:
        return {"installation": call.installation_id}

    return TestClient(app)


def test_a_refused_forge_call_yields_a_forge_event_with_its_b3_ids(
    events: list[RejectionEvent], logs: pytest.LogCaptureFixture
) -> None:
    system_token = "system-token-" + "t" * 40
    token = fit(exp=int(time.time()) - 3600)
    response = forge_client(forge_auth(on_rejection=events.append)).post(
        "/forge/events",
        headers={"Authorization": f"Bearer {token}", "x-forge-oauth-system": system_token, **TRACE_HEADERS},
    )

    assert response.status_code == 401
    (event,) = events
    assert (event.code, event.kind, event.route, event.installation_id) == (
        AuthErrorCode.TOKEN_EXPIRED,
        "forge",
        "/forge/{module}",
        "ari:cloud:ecosystem::installation/1",
    )
    assert (event.b3_trace_id, event.b3_span_id, event.trace_id) == (B3_TRACE, B3_SPAN, TRACE_ID)
    (record,) = rejection_records(logs)
    assert record.auth_kind == "forge"  # type: ignore[attr-defined]
    for secret in (token, token.rpartition(".")[2], system_token):
        assert secret not in logs.text
        assert secret not in repr(event)


@pytest.mark.anyio
async def test_the_flow_called_directly_takes_trace_ids_as_arguments(events: list[RejectionEvent]) -> None:
    config = forge_auth(on_rejection=events.append)
    with pytest.raises(Exception, match="MISSING_JWT"):
        await config.verify_invocation(None, trace_id=B3_TRACE, span_id=B3_SPAN)

    assert (events[0].b3_trace_id, events[0].b3_span_id, events[0].route) == (B3_TRACE, B3_SPAN, None)


# -- the callback ------------------------------------------------------------------------------------------------


def test_an_async_callback_is_awaited(make_connect_app: ConnectAppFactory, tokens: Tokens) -> None:
    seen: list[AuthErrorCode] = []

    async def record(event: RejectionEvent) -> None:
        seen.append(event.code)

    make_connect_app(on_rejection=record).get("/computed", tokens.hs256(qsh_for("GET", "/elsewhere")))

    assert seen == [AuthErrorCode.INVALID_QSH]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_failing_callback_leaves_a_401_a_401(
    make_connect_app: ConnectAppFactory, tokens: Tokens, logs: pytest.LogCaptureFixture, kind: str
) -> None:
    def broken(event: RejectionEvent) -> None:
        raise RuntimeError("the metrics backend is down")

    async def broken_async(event: RejectionEvent) -> None:
        raise RuntimeError("the metrics backend is down")

    app = make_connect_app(on_rejection=broken if kind == "sync" else broken_async)
    response = app.get("/computed", tokens.hs256(qsh_for("GET", "/elsewhere")))

    assert response.status_code == 401
    assert response.json()["code"] == "INVALID_QSH"
    errors = [record for record in logs.records if record.levelno == logging.ERROR]
    assert [record.getMessage() for record in errors] == [
        "The on_rejection callback failed (RuntimeError); the call is refused all the same."
    ]


def test_a_failing_forge_callback_leaves_a_401_a_401() -> None:
    def broken(event: RejectionEvent) -> None:
        raise ValueError("nope")

    response = forge_client(forge_auth(on_rejection=broken)).post("/forge/events")

    assert (response.status_code, response.json()["code"]) == (401, "MISSING_JWT")


def test_no_event_for_an_accepted_call(
    make_connect_app: ConnectAppFactory, tokens: Tokens, events: list[RejectionEvent]
) -> None:
    response = make_connect_app(on_rejection=events.append).get("/computed", tokens.hs256(qsh_for("GET", "/computed")))

    assert response.status_code == 200
    assert events == []


# -- debug mode ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("base_url", ["https://app.example.com", ["http://localhost:8000", "https://my-app.ngrok.app"]])
def test_debug_is_refused_at_startup_with_a_public_https_base_url(tenants: TenantStore, base_url: Any) -> None:
    with pytest.raises(ValueError, match="debug=True is for local development only"):
        ConnectAuth(base_url=base_url, credentials_loader=tenants.load, debug=True)


@pytest.mark.parametrize(
    "base_url",
    [
        "http://localhost:8000",
        "https://localhost",
        "https://127.0.0.1:8443",
        "https://app.localhost",
        "http://10.0.0.5",
    ],
)
def test_debug_is_allowed_on_local_base_urls(tenants: TenantStore, base_url: str) -> None:
    assert ConnectAuth(base_url=base_url, credentials_loader=tenants.load, debug=True).debug is True


def test_debug_puts_the_canonical_request_in_the_event_and_the_log_not_the_answer(
    make_connect_app: ConnectAppFactory,
    tokens: Tokens,
    events: list[RejectionEvent],
    logs: pytest.LogCaptureFixture,
) -> None:
    app = make_connect_app(base_url="http://localhost:8000", debug=True, on_rejection=events.append)
    token = tokens.hs256(qsh_for("GET", "/computed"))

    response = app.get("/computed?b=x+y&a=1&jwt=ignored", headers={"Authorization": f"JWT {token}"})

    assert response.status_code == 401
    (event,) = events
    assert event.detail.endswith("(debug) The canonical request we computed: GET&/computed&a=1&b=x%20y")
    assert "GET&/computed" in logs.text
    assert "canonical" not in response.text
    assert SHARED_SECRET not in logs.text
    assert BASE_URL not in event.detail


def test_debug_says_nothing_more_for_other_codes(
    make_connect_app: ConnectAppFactory, tokens: Tokens, events: list[RejectionEvent]
) -> None:
    app = make_connect_app(base_url="http://localhost:8000", debug=True, on_rejection=events.append)

    app.get("/computed", tokens.hs256(qsh_for("GET", "/computed"), exp=1))

    assert events[0].detail == "The JWT has expired."


def test_events_are_plain_data() -> None:
    event = RejectionEvent(code=AuthErrorCode.MISSING_JWT, kind="request", status_code=401, detail="No JWT.")

    assert event.log_fields()["auth_code"] == "MISSING_JWT"
    with pytest.raises(AttributeError):
        event.code = AuthErrorCode.INVALID_QSH  # type: ignore[misc]


def test_a_forge_lifecycle_event_for_another_installation_yields_an_event(events: list[RejectionEvent]) -> None:
    config = forge_auth(on_rejection=events.append)
    app = FastAPI()
    config.install(app)

    @app.post("/forge/lifecycle/installed", status_code=204)
    async def installed(event: Annotated[VerifiedForgeLifecycle, Depends(ForgeLifecycle("installed"))]) -> None:
        raise AssertionError("never reached")

    body = {"id": str(uuid.uuid4()), "app": {"id": str(uuid.uuid4()), "version": "1.0.0"}}
    installation = f"ari:cloud:ecosystem::installation/{uuid.uuid4()}"
    token = fit(installation_id=installation)
    response = TestClient(app).post(
        "/forge/lifecycle/installed", json=body, headers={"Authorization": f"Bearer {token}", **TRACE_HEADERS}
    )

    assert (response.status_code, response.json()["code"]) == (401, "INSTALLATION_MISMATCH")
    (event,) = events
    assert (event.code, event.kind, event.route, event.installation_id, event.b3_trace_id) == (
        AuthErrorCode.INSTALLATION_MISMATCH,
        "forge",
        "/forge/lifecycle/installed",
        installation,
        B3_TRACE,
    )
