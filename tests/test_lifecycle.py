"""`uninstalled`, `enabled` and `disabled` through `ConnectLifecycle`.

`uninstalled` is signed like `installed` (RS256 with signed installs), `enabled`
and `disabled` with the tenant's shared secret; every one needs a known tenant
and a token bound to its own callback (never a context token).
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from tests.conftest import (
    CLIENT_KEY,
    NOW,
    SHARED_SECRET,
    ConnectApp,
    ConnectAppFactory,
    Tokens,
    lifecycle_body,
    qsh_for,
)

SHARED_SECRET_EVENTS = ["enabled", "disabled"]
ALL_EVENTS = ["uninstalled", *SHARED_SECRET_EVENTS]


def assert_rejected(response: httpx2.Response, code: str, status: int = 401) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


@pytest.fixture
def app(connect_app: ConnectApp) -> ConnectApp:
    """Signed installs (`publicKey`), with the tenant `client-key` installed."""
    connect_app.tenants.add()
    return connect_app


def test_uninstalled_signed_by_atlassian_for_a_known_tenant(app: ConnectApp, tokens: Tokens) -> None:
    entity = {"client_key": CLIENT_KEY, "base_url": "https://tenant.atlassian.net"}

    response = app.lifecycle("uninstalled", tokens.rs256(qsh_for("POST", "/uninstalled")))

    assert response.status_code == 200, response.text
    assert response.json() == {"event": "uninstalled", "client_key": CLIENT_KEY, "stored_entity": entity}
    assert not app.tenants.tenants[CLIENT_KEY].installed


def test_uninstalled_for_an_unknown_tenant(connect_app: ConnectApp, tokens: Tokens) -> None:
    response = connect_app.lifecycle("uninstalled", tokens.rs256(qsh_for("POST", "/uninstalled")))

    assert_rejected(response, "UNKNOWN_ISSUER")


def test_uninstalled_from_an_untrusted_product_host_fetches_no_key(app: ConnectApp, tokens: Tokens) -> None:
    body = lifecycle_body("uninstalled", baseUrl="https://evil.example.com")

    response = app.lifecycle("uninstalled", tokens.rs256(qsh_for("POST", "/uninstalled")), body)

    assert_rejected(response, "UNTRUSTED_PRODUCT_HOST")
    assert app.key_server.requests == []
    assert app.tenants.secret_of() == SHARED_SECRET


def test_uninstalled_with_shared_secret_is_refused_when_installs_are_signed(app: ConnectApp, tokens: Tokens) -> None:
    response = app.lifecycle("uninstalled", tokens.hs256(qsh_for("POST", "/uninstalled")))

    assert_rejected(response, "INVALID_ALGORITHM")
    assert app.tenants.secret_of() == SHARED_SECRET


@pytest.mark.parametrize("method", ["sharedSecret", "any"])
def test_uninstalled_with_shared_secret_under_legacy_or_any(
    make_connect_app: ConnectAppFactory, tokens: Tokens, method: str
) -> None:
    app = make_connect_app(authorization_method=method)
    app.tenants.add()

    forged = app.lifecycle("uninstalled", tokens.hs256(qsh_for("POST", "/uninstalled"), secret="forged-" * 6))
    genuine = app.lifecycle("uninstalled", tokens.hs256(qsh_for("POST", "/uninstalled")))

    assert_rejected(forged, "INVALID_SIGNATURE")
    assert genuine.status_code == 200, genuine.text
    assert not app.tenants.tenants[CLIENT_KEY].installed


@pytest.mark.parametrize("event", SHARED_SECRET_EVENTS)
def test_enabled_and_disabled_signed_with_the_shared_secret(app: ConnectApp, tokens: Tokens, event: str) -> None:
    response = app.lifecycle(event, tokens.hs256(qsh_for("POST", f"/{event}")))

    assert response.status_code == 200, response.text
    assert response.json()["event"] == event
    assert response.json()["client_key"] == CLIENT_KEY


@pytest.mark.parametrize("event", SHARED_SECRET_EVENTS)
@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"secret": "not-the-tenants-shared-secret-at-all"}, "INVALID_SIGNATURE"),
        ({"iss": "other-client"}, "WRONG_ISSUER"),
        ({"exp": NOW - 3600}, "TOKEN_EXPIRED"),
    ],
    ids=["wrong-secret", "issuer-not-client-key", "expired"],
)
def test_enabled_and_disabled_rejections(
    app: ConnectApp, tokens: Tokens, event: str, overrides: dict[str, Any], code: str
) -> None:
    response = app.lifecycle(event, tokens.hs256(qsh_for("POST", f"/{event}"), **overrides))

    assert_rejected(response, code)


@pytest.mark.parametrize("event", SHARED_SECRET_EVENTS)
def test_enabled_and_disabled_need_a_known_tenant(connect_app: ConnectApp, tokens: Tokens, event: str) -> None:
    response = connect_app.lifecycle(event, tokens.hs256(qsh_for("POST", f"/{event}")))

    assert_rejected(response, "UNKNOWN_ISSUER")


@pytest.mark.parametrize("event", SHARED_SECRET_EVENTS)
def test_atlassian_signed_token_on_enabled_and_disabled_is_refused(app: ConnectApp, tokens: Tokens, event: str) -> None:
    response = app.lifecycle(event, tokens.rs256(qsh_for("POST", f"/{event}")))

    assert_rejected(response, "INVALID_ALGORITHM")
    assert app.key_server.requests == []


@pytest.mark.parametrize(
    ("route", "sent"), [("enabled", "disabled"), ("disabled", "enabled"), ("uninstalled", "enabled")]
)
def test_event_type_must_match_the_route(app: ConnectApp, tokens: Tokens, route: str, sent: str) -> None:
    """A callback for one event replayed at another route is a bad request once its token passed the route's checks."""
    qsh = qsh_for("POST", f"/{route}")
    token = tokens.rs256(qsh) if route == "uninstalled" else tokens.hs256(qsh)

    response = app.lifecycle(route, token, lifecycle_body(sent))

    assert_rejected(response, "INVALID_INSTALL_PAYLOAD", 400)
    assert sent in response.json()["detail"]
    assert app.tenants.secret_of() == SHARED_SECRET


@pytest.mark.parametrize("event", ALL_EVENTS)
def test_lifecycle_body_without_client_key_is_a_bad_request(app: ConnectApp, tokens: Tokens, event: str) -> None:
    qsh = qsh_for("POST", f"/{event}")
    token = tokens.rs256(qsh) if event == "uninstalled" else tokens.hs256(qsh)

    response = app.lifecycle(event, token, lifecycle_body(event, clientKey=None))

    assert_rejected(response, "INVALID_INSTALL_PAYLOAD", 400)
    assert "clientKey" in response.json()["detail"]


@pytest.mark.parametrize("event", ALL_EVENTS)
@pytest.mark.parametrize("method", ["publicKey", "sharedSecret"])
def test_context_token_is_refused_on_every_lifecycle_route(
    make_connect_app: ConnectAppFactory, tokens: Tokens, event: str, method: str
) -> None:
    """A context token is signed with the right secret, but is not bound to the callback."""
    app = make_connect_app(authorization_method=method)
    app.tenants.add()
    signed_uninstall = event == "uninstalled" and method == "publicKey"

    hs256_context = app.lifecycle(event, tokens.context())
    rs256_context = app.lifecycle(event, tokens.rs256("context-qsh"))

    assert_rejected(hs256_context, "INVALID_ALGORITHM" if signed_uninstall else "INVALID_QSH")
    assert_rejected(rs256_context, "INVALID_QSH" if signed_uninstall else "INVALID_ALGORITHM")
    assert app.tenants.secret_of() == SHARED_SECRET
    assert app.key_server.requests == []


@pytest.mark.parametrize(
    ("event", "signed"), [("uninstalled", True), ("uninstalled", False), ("enabled", False), ("disabled", False)]
)
def test_a_lifecycle_token_issued_in_the_future_is_refused(
    make_connect_app: ConnectAppFactory, tokens: Tokens, event: str, signed: bool
) -> None:
    """Its `iat` orders the store's writes: beyond the leeway (30 s) in the future it is refused, within it taken."""
    app = make_connect_app(authorization_method="any")
    app.tenants.add()
    token = tokens.rs256 if signed else tokens.hs256
    refused = app.lifecycle(event, token(qsh_for("POST", f"/{event}"), iat=NOW + 31, exp=NOW + 300))
    assert_rejected(refused, "TOKEN_NOT_YET_VALID")
    assert app.tenants.tenants[CLIENT_KEY].installed
    taken = app.lifecycle(event, token(qsh_for("POST", f"/{event}"), iat=NOW + 29, exp=NOW + 300))
    assert taken.status_code == 200, taken.text


@pytest.mark.parametrize("event", ALL_EVENTS)
def test_a_callback_for_a_tenant_that_uninstalled_is_verified_with_its_kept_secret(
    app: ConnectApp, tokens: Tokens, event: str
) -> None:
    """A late `disabled`, or a second `uninstalled`: verified, handed over as not installed, for a 2xx and no change."""
    app.tenants.uninstall()
    token = tokens.rs256 if event == "uninstalled" else tokens.hs256
    late = app.lifecycle(event, token(qsh_for("POST", f"/{event}")))
    assert late.status_code == 200, late.text
    forged = app.lifecycle(
        event, tokens.hs256(qsh_for("POST", f"/{event}"), secret="not-the-kept-secret-of-this-tenant-at-all")
    )
    assert forged.status_code == 401
