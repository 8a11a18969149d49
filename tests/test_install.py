"""The `installed` callback through `ConnectInstall`: signed installs (RS256) and legacy ones (shared secret).

The scenarios named after the Node library's `test/verifyInstallation.test.ts`
are ported one by one; the rest pin down audience, issuer, product-host and
body handling.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from fastapi_connect_auth import ConnectEnvironment, ProductHosts
from tests.conftest import (
    BASE_URL,
    CLIENT_KEY,
    KID,
    NEW_SHARED_SECRET,
    SHARED_SECRET,
    ConnectApp,
    ConnectAppFactory,
    Tokens,
    auth_header,
    install_body,
    qsh_for,
)

INSTALL_QSH = qsh_for("POST", "/installed")
WEBHOOK_QSH = qsh_for("POST", "/webhook")
PRODUCTION_KEY_URL = f"https://asap-distribution.us-west-2.prod.atl-asap.net/{KID}"
STAGING_KEY_URL = f"https://asap-distribution.us-west-2.staging.atl-asap.net/{KID}"
TokenMaker = Callable[[Tokens], str]


def assert_rejected(response: httpx2.Response, code: str, status: int = 401) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "JWT"


class StaticKeyProvider:
    """A `PublicKeyProvider` of the app's own, as the Node tests' stub: one key, every request recorded."""

    def __init__(self, key: RSAPublicKey) -> None:
        self.key = key
        self.requests: list[tuple[str, ConnectEnvironment]] = []

    async def get_public_key(self, kid: str, environment: ConnectEnvironment) -> RSAPublicKey:
        self.requests.append((kid, environment))
        return self.key


# -- verifyInstallation with signed install ---------------------------------------------------------


def test_signed_first_time_installation(connect_app: ConnectApp, tokens: Tokens) -> None:
    response = connect_app.install(install_body(), tokens.rs256(INSTALL_QSH))

    assert response.status_code == 200, response.text
    assert response.json() == {
        "type": "newInstallation",
        "client_key": CLIENT_KEY,
        "stored_entity": None,
        "signed_with": "RS256",
    }
    assert connect_app.tenants.secret_of(CLIENT_KEY) == SHARED_SECRET


def test_signed_first_time_installation_with_an_app_key_provider(
    make_connect_app: ConnectAppFactory, tokens: Tokens, signing_key: RSAPrivateKey
) -> None:
    provider = StaticKeyProvider(signing_key.public_key())
    app = make_connect_app(key_provider=provider)

    response = app.install(install_body(), tokens.rs256(INSTALL_QSH))

    assert response.status_code == 200, response.text
    assert response.json()["type"] == "newInstallation"
    assert provider.requests == [(KID, ConnectEnvironment.PRODUCTION)]


def test_signed_first_time_installation_with_default_key_provider_fetches_the_production_cdn(
    connect_app: ConnectApp, tokens: Tokens
) -> None:
    response = connect_app.install(install_body(), tokens.rs256(INSTALL_QSH))

    assert response.status_code == 200, response.text
    assert connect_app.key_server.requests == [PRODUCTION_KEY_URL]


@pytest.mark.parametrize("known_tenant", [False, True], ids=["first-time", "update"])
def test_signed_installation_without_qsh_is_refused(
    connect_app: ConnectApp, tokens: Tokens, known_tenant: bool
) -> None:
    """The Node library can skip the QSH of an install; we never do: the token must be bound to the callback."""
    if known_tenant:
        connect_app.tenants.add()

    response = connect_app.install(install_body(), tokens.rs256(None))

    assert_rejected(response, "MISSING_QSH")


def test_signed_installation_update(connect_app: ConnectApp, tokens: Tokens) -> None:
    entity = connect_app.tenants.add()

    response = connect_app.install(install_body(sharedSecret=NEW_SHARED_SECRET), tokens.rs256(INSTALL_QSH))

    assert response.status_code == 200, response.text
    assert response.json()["type"] == "update"
    assert response.json()["stored_entity"] == entity


def test_signed_installation_fails_because_jwt_is_missing(connect_app: ConnectApp) -> None:
    response = connect_app.install(install_body())

    assert_rejected(response, "MISSING_JWT")
    assert connect_app.tenants.tenants == {}


SIGNED_INSTALL_FAILURES: dict[str, tuple[TokenMaker, str]] = {
    "JWT issuer is different than clientKey": (lambda t: t.rs256(INSTALL_QSH, iss="other-client"), "WRONG_ISSUER"),
    "JWT aud is different than baseUrl": (
        lambda t: t.rs256(INSTALL_QSH, aud=["https://other.example.com"]),
        "WRONG_AUDIENCE",
    ),
    "JWT aud is missing": (lambda t: t.rs256(INSTALL_QSH, aud=None), "WRONG_AUDIENCE"),
    "JWT kid is missing": (lambda t: t.rs256(INSTALL_QSH, kid=None), "MISSING_KID"),
    "QSH is missing": (lambda t: t.rs256(None), "MISSING_QSH"),
    "QSH is invalid": (lambda t: t.rs256(qsh_for("POST", "/uninstalled")), "INVALID_QSH"),
    "JWT signature is invalid": (lambda t: t.rs256(INSTALL_QSH, key=t.foreign_key), "INVALID_SIGNATURE"),
    "JWT is expired": (lambda t: t.rs256(INSTALL_QSH, exp=1_699_999_000), "TOKEN_EXPIRED"),
    "JWT is signed with a shared secret": (lambda t: t.hs256(INSTALL_QSH), "INVALID_ALGORITHM"),
    "JWT cannot be decoded": (lambda t: "not-a-jwt", "FAILED_TO_DECODE"),
}


@pytest.mark.parametrize(("make_token", "code"), SIGNED_INSTALL_FAILURES.values(), ids=SIGNED_INSTALL_FAILURES)
@pytest.mark.parametrize("known_tenant", [False, True], ids=["first-time", "update"])
def test_signed_installation_fails(
    connect_app: ConnectApp, tokens: Tokens, make_token: TokenMaker, code: str, known_tenant: bool
) -> None:
    if known_tenant:
        connect_app.tenants.add()
    before = dict(connect_app.tenants.tenants)

    response = connect_app.install(install_body(sharedSecret=NEW_SHARED_SECRET), make_token(tokens))

    assert_rejected(response, code)
    assert connect_app.tenants.tenants == before


@pytest.mark.parametrize(("outage_status", "status"), [(None, 401), (500, 503)], ids=["unknown-kid", "cdn-outage"])
def test_signed_installation_fails_when_fetching_public_key(
    connect_app: ConnectApp, tokens: Tokens, outage_status: int | None, status: int
) -> None:
    """A kid no CDN knows is a plain rejection; a CDN that is down is a 503 Atlassian will retry."""
    connect_app.key_server.outage_status = outage_status

    response = connect_app.install(install_body(), tokens.rs256(INSTALL_QSH, kid="prod/unknown-key.pem"))

    assert_rejected(response, "FAILED_TO_OBTAIN_PUBLIC_KEY", status)
    assert len(connect_app.key_server.requests) == 2  # the primary CDN, then the fallback


# -- audience ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "aud",
    [BASE_URL, [BASE_URL], f"{BASE_URL}/", [f"{BASE_URL}/"], ["https://someone-else.example.com", BASE_URL]],
    ids=["string", "list", "string-trailing-slash", "list-trailing-slash", "second-of-two"],
)
def test_audience_accepted_as_string_or_list_and_without_trailing_slash(
    connect_app: ConnectApp, tokens: Tokens, aud: str | list[str]
) -> None:
    response = connect_app.install(install_body(), tokens.rs256(INSTALL_QSH, aud=aud))

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "aud",
    [
        "https://test.example.co",
        "https://test.example.com.evil.example",
        "https://test.example.com/connect",
        "http://test.example.com",
        "https://evil.example/https://test.example.com",
        "test.example.com",
        "",
        [],
    ],
    ids=["prefix", "superstring-host", "superstring-path", "other-scheme", "embedded", "bare-host", "empty", "none"],
)
def test_audience_that_is_not_exactly_a_base_url_is_rejected(
    connect_app: ConnectApp, tokens: Tokens, aud: str | list[str]
) -> None:
    response = connect_app.install(install_body(), tokens.rs256(INSTALL_QSH, aud=aud))

    assert_rejected(response, "WRONG_AUDIENCE")
    assert connect_app.key_server.requests == []


@pytest.mark.parametrize("aud", [BASE_URL, "https://tunnel.example.net"])
def test_each_configured_base_url_is_an_accepted_audience(
    make_connect_app: ConnectAppFactory, tokens: Tokens, aud: str
) -> None:
    app = make_connect_app(base_url=[BASE_URL, "https://tunnel.example.net/"])

    response = app.install(install_body(), tokens.rs256(INSTALL_QSH, aud=[aud]))

    assert response.status_code == 200, response.text


@pytest.mark.parametrize("forged_header", ["Host", "X-Forwarded-Host"])
def test_audience_is_never_taken_from_the_request_host(
    connect_app: ConnectApp, tokens: Tokens, forged_header: str
) -> None:
    token = tokens.rs256(INSTALL_QSH, aud=["https://evil.example"])

    response = connect_app.install(install_body(), token, headers={forged_header: "evil.example"})

    assert_rejected(response, "WRONG_AUDIENCE")


# -- issuer and product host --------------------------------------------------------------------------


def test_issuer_must_be_the_body_client_key(connect_app: ConnectApp, tokens: Tokens) -> None:
    """A token Atlassian signed for one tenant cannot install another."""
    response = connect_app.install(install_body(clientKey="victim-client"), tokens.rs256(INSTALL_QSH))

    assert_rejected(response, "WRONG_ISSUER")
    assert connect_app.tenants.tenants == {}


@pytest.mark.parametrize(
    "base_url",
    [
        "https://evil.example.com",
        "https://tenant.atlassian.net.evil.example",
        "https://atlassian.net",
        "http://tenant.atlassian.net",
        "https://tenant.jira-dev.com",
    ],
)
def test_untrusted_product_host_is_rejected_before_any_key_fetch(
    connect_app: ConnectApp, tokens: Tokens, base_url: str
) -> None:
    response = connect_app.install(install_body(baseUrl=base_url), tokens.rs256(INSTALL_QSH))

    assert_rejected(response, "UNTRUSTED_PRODUCT_HOST")
    assert connect_app.key_server.requests == []
    assert connect_app.tenants.tenants == {}


def test_staging_host_accepted_when_enabled_and_its_key_fetched_from_the_staging_cdn(
    make_connect_app: ConnectAppFactory, tokens: Tokens
) -> None:
    app = make_connect_app(
        product_hosts=ProductHosts.of(environments=[ConnectEnvironment.PRODUCTION, ConnectEnvironment.STAGING])
    )

    response = app.install(install_body(baseUrl="https://tenant.jira-dev.com"), tokens.rs256(INSTALL_QSH))

    assert response.status_code == 200, response.text
    assert app.key_server.requests == [STAGING_KEY_URL]


# -- bodies ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "field"),
    [
        (b"this is not json", "body"),
        (b"[]", "body"),
        (json.dumps(install_body(clientKey=None)).encode(), "clientKey"),
        (json.dumps(install_body(sharedSecret=None)).encode(), "sharedSecret"),
        (json.dumps(install_body(baseUrl=None)).encode(), "baseUrl"),
        (json.dumps(install_body(clientKey=123)).encode(), "clientKey"),
        (json.dumps(install_body(sharedSecret=["a"])).encode(), "sharedSecret"),
        (json.dumps(install_body(baseUrl="ftp://tenant.atlassian.net")).encode(), "baseUrl"),
        (json.dumps(install_body(baseUrl="https://user:pw@tenant.atlassian.net")).encode(), "baseUrl"),
        (json.dumps(install_body(baseUrl="https://tenant.atlassian.net/?next=x")).encode(), "baseUrl"),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "no-clientKey",
        "no-sharedSecret",
        "no-baseUrl",
        "clientKey-not-a-string",
        "sharedSecret-not-a-string",
        "baseUrl-not-http",
        "baseUrl-with-userinfo",
        "baseUrl-with-query",
    ],
)
def test_malformed_install_body_is_a_clear_400_and_nothing_is_stored(
    connect_app: ConnectApp, tokens: Tokens, content: bytes, field: str
) -> None:
    response = connect_app.client.post("/installed", content=content, headers=auth_header(tokens.rs256(INSTALL_QSH)))

    assert_rejected(response, "INVALID_INSTALL_PAYLOAD", 400)
    assert field in response.json()["detail"]
    assert connect_app.tenants.tenants == {}
    assert connect_app.key_server.requests == []


def _chunks(data: bytes) -> Iterator[bytes]:
    yield from (data[start : start + 4096] for start in range(0, len(data), 4096))


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_install_body_over_the_limit_is_413(make_connect_app: ConnectAppFactory, tokens: Tokens, framing: str) -> None:
    app = make_connect_app(max_body_size=1024)
    huge = json.dumps(install_body(description="x" * 2000)).encode()
    content: bytes | Iterator[bytes] = huge if framing == "content-length" else _chunks(huge)

    response = app.client.post("/installed", content=content, headers=auth_header(tokens.rs256(INSTALL_QSH)))

    assert_rejected(response, "PAYLOAD_TOO_LARGE", 413)
    assert app.tenants.tenants == {}


# -- tokens that are not for this route ----------------------------------------------------------------


def test_context_token_on_the_install_route_is_rejected(connect_app: ConnectApp, tokens: Tokens) -> None:
    """Even signed by Atlassian, a token with the fixed `context-qsh` is not bound to this callback."""
    response = connect_app.install(install_body(), tokens.rs256("context-qsh"))

    assert_rejected(response, "INVALID_QSH")
    assert connect_app.key_server.requests == []


def test_hs256_token_on_the_public_key_install_route_is_rejected(connect_app: ConnectApp, tokens: Tokens) -> None:
    connect_app.tenants.add()

    response = connect_app.install(install_body(sharedSecret=NEW_SHARED_SECRET), tokens.hs256(INSTALL_QSH))

    assert_rejected(response, "INVALID_ALGORITHM")
    assert connect_app.tenants.secret_of() == SHARED_SECRET


# -- payload variants and updates ------------------------------------------------------------------------


def test_connect_on_forge_payload_with_installation_id_is_accepted(connect_app: ConnectApp, tokens: Tokens) -> None:
    installation_id = "ari:cloud:ecosystem::installation/9b2ac23c-6d7d-4c4b-a8d6-4c0d2e4f7c11"
    body = install_body(installationId=installation_id, cloudId="2a1f5d3e-1111-2222-3333-444455556666")

    response = connect_app.install(body, tokens.rs256(INSTALL_QSH))

    assert response.status_code == 200, response.text
    assert response.json()["type"] == "newInstallation"


def test_update_replacing_the_secret_makes_the_old_secret_fail_on_the_next_webhook(
    connect_app: ConnectApp, tokens: Tokens
) -> None:
    entity = connect_app.tenants.add(shared_secret=SHARED_SECRET)

    update = connect_app.install(install_body(sharedSecret=NEW_SHARED_SECRET), tokens.rs256(INSTALL_QSH))
    old = connect_app.post("/webhook", tokens.hs256(WEBHOOK_QSH, secret=SHARED_SECRET))
    new = connect_app.post("/webhook", tokens.hs256(WEBHOOK_QSH, secret=NEW_SHARED_SECRET))

    assert update.status_code == 200, update.text
    assert update.json()["type"] == "update"
    assert update.json()["stored_entity"] == entity
    assert_rejected(old, "INVALID_SIGNATURE")
    assert new.status_code == 200, new.text


# -- verifyInstallation with legacy authentication ----------------------------------------------------------


def test_legacy_first_time_installation_needs_no_jwt(legacy_app: ConnectApp) -> None:
    response = legacy_app.install(install_body())

    assert response.status_code == 200, response.text
    assert response.json() == {
        "type": "newInstallation",
        "client_key": CLIENT_KEY,
        "stored_entity": None,
        "signed_with": None,
    }
    assert legacy_app.tenants.secret_of() == SHARED_SECRET


def test_legacy_first_time_installation_without_qsh(legacy_app: ConnectApp, tokens: Tokens) -> None:
    """A first legacy install has no stored secret to check a token with, so its QSH is not checked."""
    response = legacy_app.install(install_body(), tokens.hs256(None, secret="whatever-the-product-had-in-mind!"))

    assert response.status_code == 200, response.text
    assert response.json()["type"] == "newInstallation"


def test_legacy_installation_update_signed_with_the_stored_secret(legacy_app: ConnectApp, tokens: Tokens) -> None:
    entity = legacy_app.tenants.add(shared_secret=SHARED_SECRET)

    response = legacy_app.install(
        install_body(sharedSecret=NEW_SHARED_SECRET), tokens.hs256(INSTALL_QSH, secret=SHARED_SECRET)
    )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "type": "update",
        "client_key": CLIENT_KEY,
        "stored_entity": entity,
        "signed_with": "HS256",
    }
    assert legacy_app.tenants.secret_of() == NEW_SHARED_SECRET


def test_legacy_installation_update_without_jwt_is_unauthorized(legacy_app: ConnectApp) -> None:
    legacy_app.tenants.add()

    response = legacy_app.install(install_body(sharedSecret=NEW_SHARED_SECRET))

    assert_rejected(response, "UNAUTHORIZED_REQUEST")
    assert legacy_app.tenants.secret_of() == SHARED_SECRET


LEGACY_UPDATE_FAILURES: dict[str, tuple[TokenMaker, str]] = {
    "to decode token": (lambda t: "a.b", "FAILED_TO_DECODE"),
    "JWT issuer is different than clientKey": (lambda t: t.hs256(INSTALL_QSH, iss="other-client"), "WRONG_ISSUER"),
    # The Node library can skip the QSH of an update; we never do.
    "QSH is missing": (lambda t: t.hs256(None), "MISSING_QSH"),
    "QSH is invalid": (lambda t: t.hs256(qsh_for("POST", "/enabled")), "INVALID_QSH"),
    "JWT signature is invalid": (
        lambda t: t.hs256(INSTALL_QSH, secret="not-the-stored-shared-secret-at-all"),
        "INVALID_SIGNATURE",
    ),
    "JWT signed with the new secret from the body": (
        lambda t: t.hs256(INSTALL_QSH, secret=NEW_SHARED_SECRET),
        "INVALID_SIGNATURE",
    ),
    "JWT is expired": (lambda t: t.hs256(INSTALL_QSH, exp=1_699_999_000), "TOKEN_EXPIRED"),
    "JWT is signed by Atlassian's key": (lambda t: t.rs256(INSTALL_QSH), "INVALID_ALGORITHM"),
}


@pytest.mark.parametrize(("make_token", "code"), LEGACY_UPDATE_FAILURES.values(), ids=LEGACY_UPDATE_FAILURES)
def test_legacy_installation_update_fails(
    legacy_app: ConnectApp, tokens: Tokens, make_token: TokenMaker, code: str
) -> None:
    legacy_app.tenants.add()

    response = legacy_app.install(install_body(sharedSecret=NEW_SHARED_SECRET), make_token(tokens))

    assert_rejected(response, code)
    assert legacy_app.tenants.secret_of() == SHARED_SECRET


def test_legacy_first_time_installation_fails_because_issuer_is_not_the_client_key(
    legacy_app: ConnectApp, tokens: Tokens
) -> None:
    response = legacy_app.install(install_body(), tokens.hs256(INSTALL_QSH, iss="other-client"))

    assert_rejected(response, "WRONG_ISSUER")
    assert legacy_app.tenants.tenants == {}


def test_legacy_install_still_checks_the_product_host(legacy_app: ConnectApp) -> None:
    response = legacy_app.install(install_body(baseUrl="https://evil.example.com"))

    assert_rejected(response, "UNTRUSTED_PRODUCT_HOST")
    assert legacy_app.tenants.tenants == {}


# -- authorization_method="any" (a transition) -------------------------------------------------------------


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "legacy"])
def test_any_method_accepts_signed_and_legacy_installs(
    make_connect_app: ConnectAppFactory, tokens: Tokens, signed: bool
) -> None:
    app = make_connect_app(authorization_method="any")
    token = tokens.rs256(INSTALL_QSH) if signed else None

    response = app.install(install_body(), token)

    assert response.status_code == 200, response.text
    assert response.json()["signed_with"] == ("RS256" if signed else None)


def test_any_method_still_verifies_a_signed_install(make_connect_app: ConnectAppFactory, tokens: Tokens) -> None:
    app = make_connect_app(authorization_method="any")

    response = app.install(install_body(), tokens.rs256(INSTALL_QSH, key=tokens.foreign_key))

    assert_rejected(response, "INVALID_SIGNATURE")
    assert app.tenants.tenants == {}


def test_legacy_install_names_the_algorithm_it_requires(legacy_app: ConnectApp, tokens: Tokens) -> None:
    response = legacy_app.install(install_body(), tokens.rs256(INSTALL_QSH))

    assert_rejected(response, "INVALID_ALGORITHM")
    assert "HS256 is required" in response.json()["detail"]
