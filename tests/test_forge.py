"""Integration tests of Forge Remote verification: `ForgeRequest` on a small app, FITs minted with PyJWT.

Every refusal is checked for its code and status, for `WWW-Authenticate: Bearer`,
and for nothing having been stored; tokens never appear in answers or logs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import APIRouter, Depends, FastAPI
from fastapi.testclient import TestClient

from fastapi_connect_auth import (
    FORGE_STAGING_JWKS_URL,
    AuthError,
    AuthErrorCode,
    ConnectAuth,
    ConnectRequest,
    ForgeAuth,
    ForgeInvocation,
    ForgeRequest,
    JwksKeyProvider,
    VerifiedRequest,
    forge_app_ari,
)
from fastapi_connect_auth.testing import FakeForge, generate_rsa_key

NOW = 1_700_000_000.0
APP_UUID = "6c9a4a8f-27c5-4b7e-8f5e-3b9f2d0c1a77"
APP_ARI = f"ari:cloud:ecosystem::app/{APP_UUID}"
OTHER_APP_ARI = "ari:cloud:ecosystem::app/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"


@pytest.fixture(scope="module")
def signing_key() -> rsa.RSAPrivateKey:
    return generate_rsa_key()


@pytest.fixture
def forge(signing_key: rsa.RSAPrivateKey) -> FakeForge:
    return FakeForge(app_id=APP_UUID, private_key=signing_key, clock=lambda: NOW)


def make_app(config: ForgeAuth) -> tuple[FastAPI, list[ForgeInvocation]]:
    app = FastAPI(lifespan=config.lifespan)
    config.install(app)
    stored: list[ForgeInvocation] = []

    @app.post("/forge/events")
    async def events(call: Annotated[ForgeInvocation, Depends(ForgeRequest())]) -> dict[str, str]:
        stored.append(call)
        return {"installationId": call.installation_id}

    @app.get("/forge/whoami")
    async def whoami(call: Annotated[ForgeInvocation, Depends(ForgeRequest())]) -> dict[str, Any]:
        stored.append(call)
        return {"principal": call.principal, "cloudId": call.cloud_id}

    return app, stored


@pytest.fixture
def setup(forge: FakeForge) -> Iterator[tuple[TestClient, list[ForgeInvocation]]]:
    app, stored = make_app(forge.forge_auth(clock=lambda: NOW))
    with TestClient(app) as client:
        yield client, stored


def assert_refused(response: httpx2.Response, code: str, stored: list[ForgeInvocation], status: int = 401) -> None:
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert stored == []


# -- accepted -------------------------------------------------------------------------------


def test_ui_call_is_accepted_with_every_field(
    forge: FakeForge, setup: tuple[TestClient, list[ForgeInvocation]]
) -> None:
    client, stored = setup
    system, user = forge.system_token(), forge.user_token()
    fit = forge.mint_fit("ui", app={"license": {"isActive": True, "isEvaluation": False, "type": "commercial"}})
    response = forge.drive(client).ui_call("/forge/whoami", fit=fit, system_token=system, user_token=user)

    assert response.status_code == 200, response.text
    assert response.json() == {"principal": forge.account_id, "cloudId": forge.cloud_id}
    call = stored[0]
    assert call.app_id == APP_ARI
    assert call.installation_id == forge.installation_id
    assert call.api_base_url == forge.api_base_url
    assert call.app_version == "2.4.0"
    assert call.environment is not None
    assert call.environment.type == "PRODUCTION"
    assert call.module is not None
    assert (call.module.type, call.module.key) == ("jira:issuePanel", "issue-panel")  # a Jira site's UI module
    assert call.license is not None
    assert call.license.active is True
    assert call.license.is_evaluation is False
    assert [ctx.cloud_id for ctx in call.installation_contexts] == [forge.cloud_id]
    assert call.context is not None
    assert call.context.site_url == "https://fake-site.atlassian.net"
    assert call.principal == forge.account_id
    assert call.ic_label is None
    assert call.jti == jwt.decode(fit, options={"verify_signature": False})["jti"]
    assert call.trace_id is not None
    assert len(call.trace_id) == 32
    assert call.span_id is not None
    assert len(call.span_id) == 16
    assert call.system_token is not None
    assert call.system_token.get_secret_value() == system
    assert call.user_token is not None
    assert call.user_token.get_secret_value() == user
    assert system not in repr(call)
    assert user not in repr(call)


def test_a_repeated_forge_header_counts_once_its_first_value_as_starlette_reads_it(
    forge: FakeForge, setup: tuple[TestClient, list[ForgeInvocation]]
) -> None:
    client, stored = setup
    first, second = forge.system_token(), forge.system_token()
    headers = [
        ("Authorization", f"Bearer {forge.mint_fit('event')}"),
        ("X-Forge-OAuth-System", first),
        ("x-b3-traceid", "a" * 32),
        ("x-forge-oauth-system", second),
        ("X-B3-TraceId", "b" * 32),
        ("x-forge-oauth-user-x", "not the user token"),
    ]
    response = client.post("/forge/events", json={}, headers=headers)

    assert response.status_code == 200, response.text
    call = stored[0]
    assert call.system_token is not None
    assert call.system_token.get_secret_value() == first
    assert (call.trace_id, call.user_token, call.span_id) == ("a" * 32, None, None)


def test_event_without_token_headers_has_no_tokens_and_no_ui_context(
    forge: FakeForge, setup: tuple[TestClient, list[ForgeInvocation]]
) -> None:
    client, stored = setup
    response = client.post("/forge/events", json={}, headers={"Authorization": f"bEaReR {forge.mint_fit('event')}"})

    assert response.status_code == 200, response.text
    call = stored[0]
    assert (call.system_token, call.user_token, call.trace_id, call.context, call.principal) == (None,) * 5
    assert call.cloud_id == forge.cloud_id  # from app.installation.contexts
    assert call.license is None
    assert call.browser_visible is False


@pytest.mark.parametrize(
    ("claims", "visible"),
    [({}, False), ({"principal": "557058:user"}, True), ({"context": {"cloudId": "c"}}, True)],
    ids=["backend", "principal", "context"],
)
def test_a_fit_with_a_principal_or_a_context_is_browser_visible(
    forge: FakeForge, setup: tuple[TestClient, list[ForgeInvocation]], claims: dict[str, Any], visible: bool
) -> None:
    client, stored = setup
    fit = forge.mint_fit("event", **claims)
    assert forge.drive(client).event("/forge/events", {}, fit=fit).status_code == 200
    assert stored[0].browser_visible is visible


def test_license_reads_active_before_is_active(
    forge: FakeForge, setup: tuple[TestClient, list[ForgeInvocation]]
) -> None:
    client, stored = setup
    fit = forge.mint_fit("trigger", app={"license": {"active": False}})
    assert forge.drive(client).event("/forge/events", {}, fit=fit).status_code == 200
    assert stored[0].license is not None
    assert stored[0].license.active is False


@pytest.mark.parametrize("configured", [APP_UUID, APP_ARI, APP_UUID.upper(), [OTHER_APP_ARI, APP_UUID]])
def test_app_id_configured_as_uuid_ari_or_several(forge: FakeForge, configured: str | list[str]) -> None:
    app, stored = make_app(ForgeAuth(app_id=configured, key_provider=forge.key_provider(), clock=lambda: NOW))
    with TestClient(app) as client:
        assert forge.drive(client).event("/forge/events", {}).status_code == 200
    assert stored[0].app_id == APP_ARI


def test_two_configured_apps_each_accepted(signing_key: rsa.RSAPrivateKey) -> None:
    first = FakeForge(app_id=APP_UUID, private_key=signing_key, clock=lambda: NOW)
    second = FakeForge(app_id=OTHER_APP_ARI, private_key=signing_key, clock=lambda: NOW)
    config = ForgeAuth(app_id=[APP_ARI, OTHER_APP_ARI], key_provider=first.key_provider(), clock=lambda: NOW)
    app, stored = make_app(config)
    with TestClient(app) as client:
        assert first.drive(client).event("/forge/events", {}).status_code == 200
        assert second.drive(client).event("/forge/events", {}).status_code == 200
    assert [call.app_id for call in stored] == [APP_ARI, OTHER_APP_ARI]


def recording_keys(forge: FakeForge) -> tuple[JwksKeyProvider, list[str]]:
    """A key provider serving `forge`'s JWKS from any URL, and the URLs it was fetched from."""
    urls: list[str] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        urls.append(str(request.url))
        return httpx2.Response(200, json=forge.jwks())

    return JwksKeyProvider(client=httpx2.AsyncClient(transport=httpx2.MockTransport(handle))), urls


def test_staging_token_accepted_with_staging_keys_when_enabled(signing_key: rsa.RSAPrivateKey) -> None:
    staging = FakeForge(
        app_id=APP_UUID,
        private_key=signing_key,
        clock=lambda: NOW,
        api_base_url="https://api.stg.atlassian.com/ex/jira/x",
    )
    keys, urls = recording_keys(staging)
    app, _stored = make_app(ForgeAuth(app_id=APP_UUID, key_provider=keys, staging=True, clock=lambda: NOW))
    with TestClient(app) as client:
        assert staging.drive(client).event("/forge/events", {}).status_code == 200
    assert urls == [FORGE_STAGING_JWKS_URL]


def test_isolated_cloud_uses_the_template_for_the_labels_on_the_list_only(forge: FakeForge) -> None:
    keys, urls = recording_keys(forge)
    config = ForgeAuth(
        app_id=APP_UUID,
        key_provider=keys,
        isolated_cloud_jwks_url="https://keys.example.test/{ic_label}/jwks.json",
        isolated_cloud_labels={"acme_1"},
        clock=lambda: NOW,
    )
    app, stored = make_app(config)
    with TestClient(app) as client:
        assert forge.drive(client).event("/forge/events", {}, fit=forge.mint_fit(icLabel="acme_1")).status_code == 200
        off_the_list = forge.drive(client).event("/forge/events", {}, fit=forge.mint_fit(icLabel="orange"))
    assert (off_the_list.status_code, off_the_list.json()["code"]) == (401, "INVALID_IC_LABEL")
    assert urls == ["https://keys.example.test/acme_1/jwks.json"]  # none built for "orange"
    assert [call.ic_label for call in stored] == ["acme_1"]


# -- refused --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return jwt.utils.base64url_encode(data).decode()


def _tampered(fit: str) -> str:
    header, _payload, signature = fit.split(".")
    claims = jwt.decode(fit, options={"verify_signature": False})
    claims["principal"] = "557058:someone-else"
    return ".".join([header, _b64(json.dumps(claims).encode()), signature])


def _alg_none(forge: FakeForge) -> str:
    header = _b64(json.dumps({"alg": "none", "kid": forge.kid}).encode())
    payload = _b64(json.dumps(forge.fit_claims()).encode())
    return f"{header}.{payload}."


def _key_confusion(forge: FakeForge) -> str:
    """HS256 with the public key's PEM as the secret: accepted by a verifier that lets the token pick the algorithm."""
    pem = (
        forge.signing_keys[forge.kid]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = ".".join(
        [_b64(json.dumps({"alg": "HS256", "kid": forge.kid}).encode()), _b64(json.dumps(forge.fit_claims()).encode())]
    )
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


REFUSALS: dict[str, tuple[Any, str]] = {
    "wrong issuer": (lambda f: f.mint_fit(iss="forge/something-else"), "WRONG_ISSUER"),
    "another app's audience": (lambda f: f.mint_fit(aud=OTHER_APP_ARI, app={"id": OTHER_APP_ARI}), "WRONG_AUDIENCE"),
    "audience missing": (lambda f: f.mint_fit(aud=None), "FAILED_TO_DECODE"),
    "app.id not in aud": (lambda f: f.mint_fit(app={"id": OTHER_APP_ARI}), "WRONG_AUDIENCE"),
    "aud ours, app.id another app": (
        lambda f: f.mint_fit(aud=[APP_ARI, OTHER_APP_ARI], app={"id": OTHER_APP_ARI}),
        "WRONG_AUDIENCE",
    ),
    "tampered payload": (lambda f: _tampered(f.mint_fit()), "INVALID_SIGNATURE"),
    "alg none": (_alg_none, "INVALID_ALGORITHM"),
    "HS256 with the public key PEM": (_key_confusion, "INVALID_ALGORITHM"),
    "RS512": (lambda f: f.mint_fit(algorithm="RS512"), "INVALID_ALGORITHM"),
    "kid missing": (lambda f: f.mint_fit(headers={"kid": None}), "MISSING_KID"),
    "kid hostile": (lambda f: f.mint_fit(headers={"kid": "../../etc/passwd"}), "INVALID_KID"),
    "unknown kid": (lambda f: f.mint_fit(headers={"kid": "forge-unknown"}), "FAILED_TO_OBTAIN_PUBLIC_KEY"),
    "signed by another key": (lambda f: f.mint_fit(key=generate_rsa_key()), "INVALID_SIGNATURE"),
    "expired beyond leeway": (lambda f: f.mint_fit(exp=int(NOW) - 11), "TOKEN_EXPIRED"),
    "nbf in the future": (lambda f: f.mint_fit(nbf=int(NOW) + 11), "TOKEN_NOT_YET_VALID"),
    "iat in the future": (lambda f: f.mint_fit(iat=int(NOW) + 11), "TOKEN_NOT_YET_VALID"),
    "exp not a number": (lambda f: f.mint_fit(exp="tomorrow"), "FAILED_TO_DECODE"),
    "exp NaN": (lambda f: f.mint_fit(exp=float("nan")), "FAILED_TO_DECODE"),
    "exp missing": (lambda f: f.mint_fit(exp=None), "FAILED_TO_DECODE"),
    "iat missing": (lambda f: f.mint_fit(iat=None), "FAILED_TO_DECODE"),
    "nbf missing": (lambda f: f.mint_fit(nbf=None), "FAILED_TO_DECODE"),
    "jti missing": (lambda f: f.mint_fit(jti=None), "FAILED_TO_DECODE"),
    "iss missing": (lambda f: f.mint_fit(iss=None), "FAILED_TO_DECODE"),
    "app missing": (lambda f: f.mint_fit(app=None), "FAILED_TO_DECODE"),
    "installationId missing": (lambda f: f.mint_fit(app={"installationId": None}), "FAILED_TO_DECODE"),
    "apiBaseUrl missing": (lambda f: f.mint_fit(app={"apiBaseUrl": None}), "FAILED_TO_DECODE"),
    "installation.id differs": (
        lambda f: f.mint_fit(app={"installation": {"id": "ari:cloud:ecosystem::installation/other"}}),
        "INSTALLATION_MISMATCH",
    ),
    "hostile icLabel": (lambda f: f.mint_fit(icLabel="../evil?x="), "INVALID_IC_LABEL"),
    "icLabel without an Isolated Cloud setup": (lambda f: f.mint_fit(icLabel="acme"), "INVALID_IC_LABEL"),
    "staging token on a production-only setup": (
        lambda f: f.mint_fit(app={"apiBaseUrl": "https://api.stg.atlassian.com/ex/jira/x"}),
        "UNTRUSTED_API_HOST",
    ),
    "apiBaseUrl off the allow-list": (
        lambda f: f.mint_fit(app={"apiBaseUrl": "https://attacker.example/ex/jira/x"}),
        "UNTRUSTED_API_HOST",
    ),
    "apiBaseUrl look-alike host": (
        lambda f: f.mint_fit(app={"apiBaseUrl": "https://api.atlassian.com.attacker.example/ex"}),
        "UNTRUSTED_API_HOST",
    ),
    "apiBaseUrl with credentials": (
        lambda f: f.mint_fit(app={"apiBaseUrl": "https://user:pw@api.atlassian.com/ex"}),
        "UNTRUSTED_API_HOST",
    ),
    "apiBaseUrl on plain http": (
        lambda f: f.mint_fit(app={"apiBaseUrl": "http://api.atlassian.com/ex/jira/x"}),
        "UNTRUSTED_API_HOST",
    ),
    "apiBaseUrl on loopback not configured": (
        lambda f: f.mint_fit(app={"apiBaseUrl": "http://127.0.0.1:9/ex/jira/x"}),
        "UNTRUSTED_API_HOST",
    ),
    **{
        f"apiBaseUrl {name}": (lambda f, url=url: f.mint_fit(app={"apiBaseUrl": url}), "UNTRUSTED_API_HOST")
        for name, url in {
            "with a port": "https://api.atlassian.com:8443/ex/jira/x",
            "with a bad port": "https://api.atlassian.com:99999/ex/jira/x",
            "with a query": "https://api.atlassian.com/ex/jira/x?next=https://attacker.example",
            "with an empty query": "https://api.atlassian.com/ex/jira/x?",
            "with a fragment": "https://api.atlassian.com/ex/jira/x#frag",
            "with a user only": "https://user@api.atlassian.com/ex/jira/x",
            "with an empty userinfo": "https://@api.atlassian.com/ex/jira/x",
            "with a backslash": "https://api.atlassian.com\\@attacker.example/ex",
            "with a newline": "https://api.atlassian.com/ex/jira/x\nHost: attacker.example",
            "with a tab": "https://api.atlassian.com/ex/\tjira",
            "with a space": "https://api.atlassian.com/ex/jira x",
            "with a DEL": "https://api.atlassian.com/ex/jira\x7f",
            "with a NUL": "https://api.atlassian.com/ex/jira\x00",
            "with non-ASCII": "https://api.atlassian.com/ex/jira/\u2028",
            "not a URL": "api.atlassian.com/ex/jira/x",
            "with a staging look-alike": "https://api.stg.atlassian.com.attacker.example/ex",
        }.items()
    },
    "lifetime too long": (lambda f: f.mint_fit(exp=int(NOW) + 601), "INVALID_TOKEN_LIFETIME"),
    "lifetime negative": (lambda f: f.mint_fit(iat=int(NOW), exp=int(NOW) - 1), "INVALID_TOKEN_LIFETIME"),
    "expires before it is issued": (lambda f: f.mint_fit(iat=int(NOW) + 5, exp=int(NOW) + 4), "INVALID_TOKEN_LIFETIME"),
    "two-segment token": (lambda f: f.mint_fit().rpartition(".")[0], "FAILED_TO_DECODE"),
    "garbage": (lambda f: "not-a-token", "FAILED_TO_DECODE"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_with_the_right_code(
    case: str, forge: FakeForge, setup: tuple[TestClient, list[ForgeInvocation]], caplog: pytest.LogCaptureFixture
) -> None:
    client, stored = setup
    make, code = REFUSALS[case]
    fit = make(forge)
    system = forge.system_token()
    with caplog.at_level(logging.DEBUG, logger="fastapi_connect_auth"):
        response = forge.drive(client).event("/forge/events", {"n": 1}, fit=fit, system_token=system)

    assert_refused(response, code, stored)
    for secret in (fit, system, fit.split(".")[-1] or fit):
        assert secret not in response.text
        assert secret not in caplog.text
    assert "Rejected Forge invocation" in caplog.text


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer   ", "JWT {fit}", "Basic {fit}", "{fit}"], ids=repr
)
def test_without_a_bearer_fit_refused(
    authorization: str | None, forge: FakeForge, setup: tuple[TestClient, list[ForgeInvocation]]
) -> None:
    client, stored = setup
    headers = {} if authorization is None else {"Authorization": authorization.format(fit=forge.mint_fit())}
    assert_refused(client.post("/forge/events", json={}, headers=headers), "MISSING_JWT", stored)


def test_loopback_api_host_accepted_only_when_configured(forge: FakeForge) -> None:
    fit = forge.mint_fit(app={"apiBaseUrl": "http://127.0.0.1:8123/ex/jira/x"})
    app, stored = make_app(forge.forge_auth(api_hosts=["127.0.0.1"], clock=lambda: NOW))
    with TestClient(app) as client:
        assert forge.drive(client).event("/forge/events", {}, fit=fit).status_code == 200
    assert stored[0].api_base_url == "http://127.0.0.1:8123/ex/jira/x"


def test_leeway_admits_small_clock_skew(forge: FakeForge, setup: tuple[TestClient, list[ForgeInvocation]]) -> None:
    client, _stored = setup
    for skewed in (
        forge.mint_fit(exp=int(NOW) - 9, nbf=int(NOW) - 30, iat=int(NOW) - 30),
        forge.mint_fit(exp=int(NOW) + 30, nbf=int(NOW) + 9, iat=int(NOW) + 9),
    ):
        assert forge.drive(client).event("/forge/events", {}, fit=skewed).status_code == 200


def test_the_audience_is_never_taken_from_the_token(signing_key: rsa.RSAPrivateKey) -> None:
    """A validly signed FIT of another Forge app (the same key, as Forge signs every app's) is refused."""
    ours = FakeForge(app_id=APP_UUID, private_key=signing_key, clock=lambda: NOW)
    theirs = FakeForge(app_id=OTHER_APP_ARI, private_key=signing_key, clock=lambda: NOW)
    app, stored = make_app(ours.forge_auth(clock=lambda: NOW))
    with TestClient(app) as client:
        assert_refused(theirs.drive(client).event("/forge/events", {}), "WRONG_AUDIENCE", stored)


def test_an_independently_made_token_is_accepted(forge: FakeForge) -> None:
    """A FIT built here with PyJWT alone, not with the kit's `mint_fit`."""
    claims = {
        "iss": "forge/invocation-token",
        "aud": [APP_ARI],
        "iat": NOW,
        "nbf": NOW,
        "exp": NOW + 25,
        "jti": str(uuid.uuid4()),
        "app": {
            "id": APP_ARI,
            "installationId": "ari:cloud:ecosystem::installation/1",
            "apiBaseUrl": "https://api.atlassian.com/ex/confluence/c",
        },
    }
    fit = jwt.encode(claims, forge.signing_keys[forge.kid], "RS256", {"kid": forge.kid})
    app, stored = make_app(forge.forge_auth(clock=lambda: NOW))
    with TestClient(app) as client:
        response = client.post("/forge/events", json={}, headers={"Authorization": f"Bearer {fit}"})
    assert response.status_code == 200, response.text
    assert stored[0].installation_id == "ari:cloud:ecosystem::installation/1"


@pytest.mark.anyio
async def test_verify_invocation_is_framework_free(forge: FakeForge) -> None:
    config = forge.forge_auth(clock=lambda: NOW)
    call = await config.verify_invocation(forge.mint_fit("trigger"), system_token="sys", trace_id="not hex!")
    assert call.module is not None
    assert (call.module.type, call.module.key) == ("core:endpoint", "hourly-sync")  # as Forge sends triggers
    assert call.trace_id is None  # malformed trace ids are dropped, never echoed
    with pytest.raises(AuthError) as refused:
        await config.verify_invocation(None)
    assert refused.value.code is AuthErrorCode.MISSING_JWT


def test_config_refuses_bad_app_ids_and_templates() -> None:
    for bad in ("", "not-a-uuid", "ari:cloud:ecosystem::app/xyz", "6c9a4a8f27c54b7e8f5e3b9f2d0c1a77"):
        with pytest.raises(ValueError, match="Forge app id"):
            forge_app_ari(bad)
    with pytest.raises(ValueError, match="at least one"):
        ForgeAuth(app_id=[])
    with pytest.raises(ValueError, match="ic_label"):
        ForgeAuth(app_id=APP_UUID, isolated_cloud_jwks_url="https://keys.example.test/jwks.json")


def test_without_install_the_dependency_says_what_to_do(forge: FakeForge) -> None:
    app = FastAPI()

    @app.get("/x")
    async def route(call: Annotated[ForgeInvocation, Depends(ForgeRequest())]) -> None: ...

    with TestClient(app, raise_server_exceptions=True) as client, pytest.raises(RuntimeError, match=r"forge\.install"):
        client.get("/x", headers={"Authorization": f"Bearer {forge.mint_fit()}"})


def test_forgetting_install_fails_at_startup_with_the_fix(forge: FakeForge) -> None:
    config = forge.forge_auth()
    app = FastAPI(lifespan=config.lifespan)
    router = APIRouter()

    @router.post("/forge/events")
    async def route(call: Annotated[ForgeInvocation, Depends(ForgeRequest())]) -> None: ...

    app.include_router(router, prefix="/api")
    with pytest.raises(RuntimeError, match=r"POST /api/forge/events uses ForgeRequest.*call forge\.install\(app\)"):
        TestClient(app).__enter__()
    config.install(app)
    with TestClient(app) as client:
        assert client.post("/api/forge/events").status_code == 401
    # An included router's routes are documented as the app's own.
    assert "401" in app.openapi()["paths"]["/api/forge/events"]["post"]["responses"]


def test_the_startup_check_covers_mounted_apps_and_both_sides(forge: FakeForge) -> None:
    connect = ConnectAuth(base_url="https://app.example.test", credentials_loader=lambda key: None)
    config = forge.forge_auth()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with connect.lifespan(app), config.lifespan(app):
            yield

    app = FastAPI(lifespan=lifespan)
    connect.install(app)
    forge_app = FastAPI()

    @forge_app.get("/whoami")
    async def whoami(call: Annotated[ForgeInvocation, Depends(ForgeRequest())]) -> None: ...

    @forge_app.get("/configured")
    async def configured(call: Annotated[ForgeInvocation, Depends(ForgeRequest(config=config))]) -> None: ...

    @app.get("/connect")
    async def connect_route(call: Annotated[VerifiedRequest[Any], Depends(ConnectRequest())]) -> None: ...

    app.mount("/forge", forge_app)
    with pytest.raises(RuntimeError) as failed:
        TestClient(app).__enter__()
    assert str(failed.value) == (
        "GET /forge/whoami uses ForgeRequest, but no ForgeAuth is installed on this app:"
        " call forge.install(app), or pass config= to the dependency."
    )
    config.install(forge_app)
    with TestClient(app) as client:
        assert client.get("/forge/whoami").status_code == 401


def test_a_connect_app_that_forgot_install_fails_at_startup_too() -> None:
    connect = ConnectAuth(base_url="https://app.example.test", credentials_loader=lambda key: None)
    app = FastAPI(lifespan=connect.lifespan)

    @app.get("/connect")
    async def connect_route(call: Annotated[VerifiedRequest[Any], Depends(ConnectRequest())]) -> None: ...

    with pytest.raises(RuntimeError, match=r"GET /connect uses ConnectRequest.*call connect\.install\(app\)"):
        TestClient(app).__enter__()


def test_openapi_shows_the_bearer_scheme(forge: FakeForge) -> None:
    app, _ = make_app(forge.forge_auth())
    schema = app.openapi()
    assert schema["components"]["securitySchemes"] == {
        "ForgeInvocationToken": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A Forge Invocation Token (FIT), sent by Forge as `Authorization: Bearer <token>`.",
        }
    }
    assert schema["paths"]["/forge/events"]["post"]["security"] == [{"ForgeInvocationToken": []}]
    assert {"401", "503"} <= set(schema["paths"]["/forge/events"]["post"]["responses"])
    assert "413" not in schema["paths"]["/forge/events"]["post"]["responses"]
    assert schema["components"]["schemas"]["AuthErrorResponse"]["properties"]["code"] == {
        "$ref": "#/components/schemas/AuthErrorCode"
    }
    unauthorized = schema["paths"]["/forge/events"]["post"]["responses"]["401"]
    assert unauthorized["headers"]["WWW-Authenticate"]["description"] == "`Bearer`"
    assert unauthorized["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AuthErrorResponse"}


# -- which invocations a route takes ----------------------------------------------------------

UI_ONLY = ForgeRequest(invocation="ui")
EVENTS_ONLY = ForgeRequest(invocation="event")
HOURLY_ONLY = ForgeRequest(invocation="trigger", module_keys={"hourly-sync"})


def routes_by_invocation(config: ForgeAuth) -> tuple[FastAPI, list[ForgeInvocation]]:
    app = FastAPI()
    config.install(app)
    stored: list[ForgeInvocation] = []

    @app.post("/ui")
    async def ui(call: Annotated[ForgeInvocation, Depends(UI_ONLY)]) -> None:
        stored.append(call)

    @app.post("/events")
    async def events(call: Annotated[ForgeInvocation, Depends(EVENTS_ONLY)]) -> None:
        stored.append(call)

    @app.post("/hourly")
    async def hourly(call: Annotated[ForgeInvocation, Depends(HOURLY_ONLY)]) -> None:
        stored.append(call)

    return app, stored


@pytest.mark.parametrize(
    ("path", "shape", "overrides", "accepted"),
    [
        ("/ui", "ui", {}, True),
        ("/ui", "event", {}, False),
        ("/ui", "ui", {"principal": None}, True),  # a context alone is still a UI call
        ("/events", "event", {}, True),
        ("/events", "trigger", {}, True),
        ("/events", "ui", {}, False),
        ("/events", "ui", {"context": None}, False),  # a principal alone too
        ("/events", "ui", {"principal": None}, False),
        ("/hourly", "trigger", {}, True),
        ("/hourly", "event", {}, False),  # another module
        ("/hourly", "trigger", {"app": {"module": None}}, False),
        ("/hourly", "ui", {"app": {"module": {"key": "hourly-sync"}}}, False),
    ],
)
def test_a_route_takes_only_the_invocations_it_names(
    forge: FakeForge,
    caplog: pytest.LogCaptureFixture,
    path: str,
    shape: Any,
    overrides: dict[str, Any],
    accepted: bool,
) -> None:
    fit = forge.mint_fit(shape, **overrides)
    app, stored = routes_by_invocation(forge.forge_auth(clock=lambda: NOW))
    with TestClient(app) as client, caplog.at_level(logging.WARNING, logger="fastapi_connect_auth"):
        response = client.post(path, headers=forge.drive(client).headers(fit))
    if accepted:
        assert response.status_code == 200, response.text
        assert len(stored) == 1
    else:
        assert_refused(response, "WRONG_INVOCATION", stored)
        assert "WRONG_INVOCATION" in caplog.text


def test_the_wrong_invocation_is_refused_before_any_key_lookup(forge: FakeForge) -> None:
    app, stored = routes_by_invocation(forge.forge_auth(clock=lambda: NOW))
    with TestClient(app) as client:
        response = client.post("/events", headers=forge.drive(client).headers(forge.mint_fit("ui")))
    assert_refused(response, "WRONG_INVOCATION", stored)
    assert forge.jwks_requests == 0


@pytest.mark.anyio
async def test_verify_invocation_takes_the_same_restrictions(forge: FakeForge) -> None:
    config = forge.forge_auth(clock=lambda: NOW)
    event = await config.verify_invocation(forge.mint_fit("event"), invocation="backend")
    assert not event.browser_visible
    with pytest.raises(AuthError) as refused:
        await config.verify_invocation(forge.mint_fit("ui"), invocation="lifecycle")
    assert refused.value.code is AuthErrorCode.WRONG_INVOCATION
    with pytest.raises(AuthError) as refused:
        await config.verify_invocation(forge.mint_fit("event"), module_keys=())
    assert refused.value.code is AuthErrorCode.WRONG_INVOCATION


# -- configuration: environments, lifetimes, Isolated Cloud, staging ---------------------------


def test_environments_restrict_the_environment_types(forge: FakeForge) -> None:
    app, stored = make_app(forge.forge_auth(environments={"production"}, clock=lambda: NOW))
    with TestClient(app) as client:
        driver = forge.drive(client)
        assert driver.event("/forge/events", {}).status_code == 200
        for environment in ({"type": "DEVELOPMENT"}, {"type": None}, None):
            fit = forge.mint_fit("event", app={"environment": environment})
            response = driver.event("/forge/events", {}, fit=fit)
            assert (response.status_code, response.json()["code"]) == (401, "WRONG_ENVIRONMENT")
    assert len(stored) == 1


def test_the_longest_lifetime_is_configurable(forge: FakeForge) -> None:
    app, _ = make_app(forge.forge_auth(max_token_lifetime=3600, clock=lambda: NOW))
    with TestClient(app) as client:
        assert forge.drive(client).event("/forge/events", {}, fit=forge.mint_fit(exp=int(NOW) + 3600)).is_success
        refused = forge.drive(client).event("/forge/events", {}, fit=forge.mint_fit(exp=int(NOW) + 3601))
    assert refused.json()["code"] == "INVALID_TOKEN_LIFETIME"


@pytest.mark.parametrize(
    ("api_base_url", "jwks"),
    [
        ("https://api.stg.atlassian.com/ex/jira/x", FORGE_STAGING_JWKS_URL),
        ("https://API.STG.ATLASSIAN.COM:443/ex/jira/x", FORGE_STAGING_JWKS_URL),
        ("https://api.atlassian.com/ex/jira/x", "https://forge.fake-cdn.test/.well-known/jwks.json"),
        ("https://api.atlassian.com:443/ex/jira/x", "https://forge.fake-cdn.test/.well-known/jwks.json"),
    ],
)
def test_the_staging_keys_are_chosen_by_the_parsed_host(forge: FakeForge, api_base_url: str, jwks: str) -> None:
    provider, urls = recording_keys(forge)
    app, _ = make_app(forge.forge_auth(staging=True, key_provider=provider, clock=lambda: NOW))
    with TestClient(app) as client:
        fit = forge.mint_fit("event", app={"apiBaseUrl": api_base_url})
        assert forge.drive(client).event("/forge/events", {}, fit=fit).status_code == 200
    assert urls == [jwks]


def test_isolated_cloud_and_lifetime_settings_are_checked() -> None:
    template = "https://keys.example.test/{ic_label}/jwks.json"
    with pytest.raises(ValueError, match="go together"):
        ForgeAuth(app_id=APP_UUID, isolated_cloud_jwks_url=template)
    with pytest.raises(ValueError, match="go together"):
        ForgeAuth(app_id=APP_UUID, isolated_cloud_labels={"acme"})
    with pytest.raises(ValueError, match="label"):
        ForgeAuth(app_id=APP_UUID, isolated_cloud_jwks_url=template, isolated_cloud_labels={"../x"})
    for lifetime in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="max_token_lifetime"):
            ForgeAuth(app_id=APP_UUID, max_token_lifetime=lifetime)
