"""The test kit (`fastapi_connect_auth.testing`): what its fake product signs, serves and sends.

Its tokens are decoded here with PyJWT and their QSH compared with hashes of
canonical requests written out by hand, so the kit cannot drift from Atlassian's
format without these tests failing.
"""

from __future__ import annotations

import ast
import graphlib
import hashlib
import json
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

import fastapi_connect_auth.testing
from fastapi_connect_auth import (
    AtlassianKeyProvider,
    ConnectAuth,
    ConnectEnvironment,
    ConnectInstall,
    ConnectRequest,
    Credentials,
    InstallPayload,
    LifecyclePayload,
    RateLimitInfo,
    RetryPolicy,
    VerifiedInstallation,
    VerifiedRequest,
    product_client,
    request_target,
)
from fastapi_connect_auth.testing import DEFAULT_ACCOUNT_ID, FAKE_KEYS_URL, APIRequest, FakeProduct, expand_url

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

APP_URL = "https://app.example.test"
TenantCall = Annotated[VerifiedRequest[None], Depends(ConnectRequest())]


def sha256_hex(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


def decode_hs256(token: str, secret: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, secret, algorithms=["HS256"])
    return claims


# -- the fixture and its entry point ------------------------------------------------------


def test_fixture_gives_each_test_its_own_tenant_with_the_sessions_key(
    fake_product: FakeProduct, fake_product_signing_key: rsa.RSAPrivateKey
) -> None:
    other = FakeProduct(private_key=fake_product_signing_key)
    assert fake_product.private_key is fake_product_signing_key
    assert fake_product.client_key != other.client_key
    assert fake_product.shared_secret != other.shared_secret
    assert fake_product.base_url == "https://fake-jira.atlassian.net"


def test_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    (entry,) = [entry for entry in entry_points(group="pytest11") if entry.name == "fastapi_connect_auth"]
    assert entry.value == "fastapi_connect_auth.testing.plugin"


def test_a_users_test_gets_the_fixture_without_any_setup(tmp_path: Path) -> None:
    """Installing the library is enough: pytest loads the plugin from its entry point."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_user.py").write_text(
        textwrap.dedent(
            """
            def test_uses_the_fixture(fake_product):
                assert fake_product.kid and fake_product.client_key.startswith("fake-jira-")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


# -- payloads -----------------------------------------------------------------------------


def test_install_payload_is_what_jira_sends_and_the_library_accepts(fake_product: FakeProduct) -> None:
    body = fake_product.install_payload(app_key="my-app")
    payload = InstallPayload.model_validate_json(json.dumps(body))
    assert payload.key == "my-app"
    assert payload.client_key == fake_product.client_key
    assert payload.shared_secret.get_secret_value() == fake_product.shared_secret
    assert payload.base_url == fake_product.base_url
    assert payload.event_type == "installed"
    assert payload.product_type == "jira"


def test_payload_fields_are_overridden_and_none_leaves_one_out(fake_product: FakeProduct) -> None:
    body = fake_product.install_payload(clientKey="other", sharedSecret=None, cloudId="cloud-1")
    assert body["clientKey"] == "other"
    assert body["cloudId"] == "cloud-1"
    assert "sharedSecret" not in body


def test_enabled_and_disabled_payloads_carry_no_shared_secret(fake_product: FakeProduct) -> None:
    for event in ("enabled", "disabled"):
        body = fake_product.lifecycle_payload(event)
        assert "sharedSecret" not in body
        assert LifecyclePayload.model_validate(body).event_type == event
    assert fake_product.lifecycle_payload("uninstalled")["sharedSecret"] == fake_product.shared_secret


def test_rotating_the_shared_secret_keeps_the_old_ones(fake_product: FakeProduct) -> None:
    first = fake_product.shared_secret
    second = fake_product.rotate_shared_secret()
    third = fake_product.rotate_shared_secret("chosen-" * 6)
    assert len({first, second, third}) == 3
    assert fake_product.shared_secret == third == "chosen-" * 6
    assert fake_product.previous_shared_secrets == [first, second]
    assert len(FakeProduct.new_shared_secret().encode()) >= 32  # PyJWT's minimum for HMAC keys


# -- tokens -------------------------------------------------------------------------------


def test_signed_token_is_rs256_with_kid_aud_iss_and_computed_qsh(fake_product: FakeProduct) -> None:
    token = fake_product.signed_token("POST", "/installed", app_base_url=APP_URL + "/")
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256"
    assert header["kid"] == fake_product.kid == "fake-jira/install-key-1"
    claims = jwt.decode(token, fake_product.private_key.public_key(), algorithms=["RS256"], audience=APP_URL)
    assert claims["iss"] == fake_product.client_key
    assert claims["aud"] == [APP_URL]
    assert claims["qsh"] == sha256_hex("POST&/installed&")
    assert claims["exp"] - claims["iat"] == 180
    assert "sub" not in claims


def test_signed_token_qsh_is_relative_to_the_apps_base_path(fake_product: FakeProduct) -> None:
    token = fake_product.signed_token("POST", "/installed?b=2&a=1", app_base_url=f"{APP_URL}/connect")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["qsh"] == sha256_hex("POST&/installed&a=1&b=2")


def test_signed_token_overrides_forge_and_drop_claims(fake_product: FakeProduct) -> None:
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = fake_product.signed_token(
        "POST", "/uninstalled", app_base_url=APP_URL, private_key=other_key, kid="other/kid", iss="x", qsh=None
    )
    assert jwt.get_unverified_header(token)["kid"] == "other/kid"
    claims = jwt.decode(token, other_key.public_key(), algorithms=["RS256"], audience=APP_URL)
    assert claims["iss"] == "x"
    assert "qsh" not in claims
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, fake_product.private_key.public_key(), algorithms=["RS256"], audience=APP_URL)


def test_shared_secret_token_hashes_any_method_and_url(fake_product: FakeProduct) -> None:
    token = fake_product.shared_secret_token("put", f"{APP_URL}/items/42?tags=b&tags=a&q=x+y", app_base_url=APP_URL)
    claims = decode_hs256(token, fake_product.shared_secret)
    assert claims["qsh"] == sha256_hex("PUT&/items/42&q=x%20y&tags=a,b")
    assert claims["iss"] == fake_product.client_key
    assert "sub" not in claims
    assert "context" not in claims


def test_shared_secret_token_names_the_acting_user_and_signs_with_a_chosen_secret(fake_product: FakeProduct) -> None:
    secret = "another-secret-" * 3
    token = fake_product.shared_secret_token("GET", "/inbox", account_id="user-1", shared_secret=secret)
    claims = decode_hs256(token, secret)
    assert claims["sub"] == "user-1"
    assert claims["context"] == {"user": {"accountId": "user-1"}}
    with pytest.raises(jwt.InvalidSignatureError):
        decode_hs256(token, fake_product.shared_secret)


def test_context_token_has_the_fixed_qsh_and_the_user(fake_product: FakeProduct) -> None:
    claims = decode_hs256(
        fake_product.context_token(context={"jira": {"issue": {"key": "DEMO-1"}}}), fake_product.shared_secret
    )
    assert claims["qsh"] == "context-qsh"
    assert claims["sub"] == DEFAULT_ACCOUNT_ID
    assert claims["context"] == {"jira": {"issue": {"key": "DEMO-1"}}, "user": {"accountId": DEFAULT_ACCOUNT_ID}}


def test_tokens_follow_the_products_clock() -> None:
    product = FakeProduct(clock=lambda: 1_000_000.9)
    claims = jwt.decode(product.context_token(lifetime=60), options={"verify_signature": False})
    assert (claims["iat"], claims["exp"]) == (1_000_000, 1_000_060)


def test_page_url_carries_jiras_parameters_and_a_jwt_over_them(fake_product: FakeProduct) -> None:
    url = fake_product.page_url("/inbox", app_base_url=APP_URL, app_key="app", account_id="user-2")
    parts = urlsplit(url)
    assert parts.path == "/inbox"
    params = parse_qsl(parts.query, keep_blank_values=True)
    assert params[-1][0] == "jwt"
    assert dict(params[:-1]) == {
        "xdm_e": "https://fake-jira.atlassian.net",
        "xdm_c": "channel-app__page",
        "cp": "",
        "xdm_deprecated_addon_key_do_not_use": "app",
        "lic": "none",
        "cv": "1001.0.0-SNAPSHOT",
        "tz": "Europe/Paris",
        "loc": "en-GB",
    }
    claims = decode_hs256(params[-1][1], fake_product.shared_secret)
    assert claims["sub"] == "user-2"
    assert claims["qsh"] == sha256_hex(
        "GET&/inbox&cp=&cv=1001.0.0-SNAPSHOT&lic=none&loc=en-GB&tz=Europe%2FParis&xdm_c=channel-app__page"
        "&xdm_deprecated_addon_key_do_not_use=app&xdm_e=https%3A%2F%2Ffake-jira.atlassian.net"
    )


def test_page_url_keeps_the_modules_own_query_and_extra_parameters(fake_product: FakeProduct) -> None:
    url = fake_product.page_url("/page?view=list", lic="active")
    params = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    assert params["view"] == "list"
    assert params["lic"] == "active"


# -- keys ---------------------------------------------------------------------------------


def test_key_transport_serves_the_public_key_at_its_kid_only(fake_product: FakeProduct) -> None:
    with httpx2.Client(transport=fake_product.key_transport) as client:
        found = client.get(f"{FAKE_KEYS_URL}/{fake_product.kid}")
        missing = client.get(f"{FAKE_KEYS_URL}/fake-jira/other-key")
    assert found.status_code == 200
    assert found.content == fake_product.public_key_pem
    assert found.content.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert missing.status_code == 404


@pytest.mark.anyio
async def test_key_provider_resolves_the_products_key_in_process(fake_product: FakeProduct) -> None:
    provider = fake_product.key_provider()
    key = await provider.get_public_key(fake_product.kid, ConnectEnvironment.PRODUCTION)
    assert key.public_numbers() == fake_product.private_key.public_key().public_numbers()
    assert provider.urls_for(fake_product.kid, ConnectEnvironment.PRODUCTION) == [f"{FAKE_KEYS_URL}/{fake_product.kid}"]


@pytest.mark.anyio
async def test_loopback_key_server_serves_the_key_over_real_http(fake_product: FakeProduct) -> None:
    with fake_product.serve_keys() as server:
        assert server.url.startswith("http://127.0.0.1:")
        async with httpx2.AsyncClient() as client:
            missing = await client.get(f"{server.url}/unknown")
            provider = AtlassianKeyProvider(client=client, base_url=server.url)
            key = await provider.get_public_key(fake_product.kid, ConnectEnvironment.PRODUCTION)
    assert missing.status_code == 404
    assert key.public_numbers() == fake_product.private_key.public_key().public_numbers()
    assert server.requests == ["/unknown", f"/{fake_product.kid}"]


# -- the driver ---------------------------------------------------------------------------


def small_app(product: FakeProduct, base_url: str) -> tuple[FastAPI, dict[str, Credentials[None]]]:
    """A minimal Connect app under `base_url`'s path, written here with the library alone."""
    tenants: dict[str, Credentials[None]] = {}
    connect = ConnectAuth(base_url=base_url, credentials_loader=tenants.get, key_provider=product.key_provider())
    app = FastAPI(lifespan=connect.lifespan)
    connect.install(app)

    @app.get("/connect/atlassian-connect.json")
    async def descriptor() -> dict[str, Any]:
        return {
            "key": "small-app",
            "baseUrl": base_url,
            "lifecycle": {"installed": "/installed"},
            "modules": {
                "webhooks": [{"event": "jira:issue_deleted", "url": "/hooks?kind=deleted"}],
                "generalPages": [{"key": "main", "url": "/main"}],
            },
        }

    @app.post("/connect/installed")
    async def installed(install: Annotated[VerifiedInstallation[None], Depends(ConnectInstall())]) -> str:
        payload = install.payload
        tenants[payload.client_key] = Credentials(payload.shared_secret.get_secret_value())
        return payload.key

    @app.post("/connect/hooks")
    async def hooks(call: TenantCall, kind: str) -> str:
        return kind

    @app.get("/connect/main")
    async def main(call: TenantCall) -> str | None:
        return call.account_id

    @app.get("/connect/api/me")
    async def me(call: Annotated[VerifiedRequest[None], Depends(ConnectRequest(qsh="context"))]) -> str | None:
        return call.account_id

    return app, tenants


def test_driver_follows_the_descriptor_under_the_apps_base_path(fake_product: FakeProduct) -> None:
    base_url = f"{APP_URL}/connect"
    app, tenants = small_app(fake_product, base_url)
    with TestClient(app, base_url=APP_URL) as client:
        jira = fake_product.drive(client, app_base_url=base_url)
        jira.descriptor_url = "/connect/atlassian-connect.json"
        assert jira.install().json() == "small-app"
        assert fake_product.client_key in tenants
        assert jira.webhook("jira:issue_deleted").json() == "deleted"
        assert jira.load_page("main").json() == DEFAULT_ACCOUNT_ID
        assert jira.context_call("GET", "/api/me", account_id="user-3").json() == "user-3"
        assert jira.context_call("GET", "/api/me").json() == DEFAULT_ACCOUNT_ID
        assert jira.webhook("jira:issue_deleted", shared_secret="wrong-secret-" * 3).status_code == 401
        assert jira.app_key == "small-app"


def test_iframe_url_is_where_the_client_reaches_the_page_signed_for_the_apps_base_url(
    fake_product: FakeProduct,
) -> None:
    """What a browser loads: the client's address, the page under the app's base path, the `jwt` last."""
    base_url = f"{APP_URL}/connect"
    app, _ = small_app(fake_product, base_url)
    with TestClient(app, base_url="http://127.0.0.1:8123") as client:
        jira = fake_product.drive(client, app_base_url=base_url)
        jira.descriptor_url = "/connect/atlassian-connect.json"
        assert jira.install().is_success
        url = jira.iframe_url("main", account_id="user-4", lic="active")
        loaded = client.get(url)

    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "127.0.0.1:8123", "/connect/main")
    params = parse_qsl(parts.query, keep_blank_values=True)
    assert params[-1][0] == "jwt"
    assert dict(params)["lic"] == "active"
    claims = decode_hs256(params[-1][1], fake_product.shared_secret)
    canonical = "&".join(sorted(pair for pair in parts.query.split("&") if not pair.startswith("jwt=")))
    assert claims["qsh"] == sha256_hex(f"GET&/main&{canonical}")  # relative to the base path, `jwt` left out
    assert claims["sub"] == "user-4"
    assert loaded.json() == "user-4"


def test_driver_reads_the_base_url_from_the_descriptor(fake_product: FakeProduct) -> None:
    app, _ = small_app(fake_product, APP_URL)
    with TestClient(app, base_url=APP_URL) as client:
        jira = fake_product.drive(client)
        jira.descriptor_url = "/connect/atlassian-connect.json"
        assert jira.app_base_url == APP_URL
        with pytest.raises(LookupError, match="'uninstalled'"):
            jira.lifecycle_url("uninstalled")
        with pytest.raises(LookupError, match="jira:issue_created"):
            jira.webhook_url("jira:issue_created")
        with pytest.raises(LookupError, match="other"):
            jira.page_url("other")


def test_driver_refuses_a_descriptor_that_is_not_an_object(fake_product: FakeProduct) -> None:
    app = FastAPI()

    @app.get("/atlassian-connect.json")
    async def descriptor() -> list[str]:
        return ["not", "a", "descriptor"]

    with TestClient(app) as client, pytest.raises(ValueError, match="not a JSON object"):
        _ = fake_product.drive(client).descriptor


# -- the product's REST API -----------------------------------------------------------------


def app_jwt(product: FakeProduct, canonical: str, *, secret: str | None = None, **claims: Any) -> str:
    """An app's token for the product's REST API, made here with PyJWT and a hand-written canonical request."""
    now = int(product.clock())
    payload = {"iss": "my-app", "aud": [product.client_key], "iat": now, "exp": now + 60, "qsh": sha256_hex(canonical)}
    return jwt.encode({**payload, **claims}, secret or product.shared_secret, algorithm="HS256")


def call_api(product: FakeProduct, url: str, token: str | None, method: str = "GET") -> httpx2.Response:
    headers = {"Authorization": f"JWT {token}"} if token is not None else {}
    with httpx2.Client(transport=product.api_transport, base_url=product.base_url) as client:
        return client.request(method, url, headers=headers)


def test_rest_api_answers_a_valid_app_token_with_the_issues_summary(fake_product: FakeProduct) -> None:
    fake_product.app_key = "my-app"
    fake_product.issues["DEMO-7"] = "Fix the login"
    token = app_jwt(fake_product, "GET&/rest/api/3/issue/DEMO-7&fields=summary")
    response = call_api(fake_product, "/rest/api/3/issue/DEMO-7?fields=summary", token)
    assert response.status_code == 200
    assert response.json() == {"key": "DEMO-7", "fields": {"summary": "Fix the login"}}
    (call,) = fake_product.api_calls
    assert (call.method, call.url, call.status, call.refusal) == (
        "GET",
        "/rest/api/3/issue/DEMO-7?fields=summary",
        200,
        None,
    )
    assert call.claims is not None
    assert call.claims["qsh"] == sha256_hex("GET&/rest/api/3/issue/DEMO-7&fields=summary")
    missing = call_api(fake_product, "/rest/api/3/issue/DEMO-8", app_jwt(fake_product, "GET&/rest/api/3/issue/DEMO-8&"))
    assert missing.status_code == 404
    other_route = call_api(fake_product, "/rest/api/3/myself", app_jwt(fake_product, "GET&/rest/api/3/myself&"))
    assert other_route.status_code == 404


@pytest.mark.parametrize(
    ("token", "refusal"),
    [
        pytest.param(lambda p: None, "no Authorization: JWT header", id="no-token"),
        pytest.param(
            lambda p: app_jwt(p, "GET&/rest/api/3/issue/DEMO-7&", secret="x" * 43), "invalid token", id="secret"
        ),
        pytest.param(lambda p: app_jwt(p, "GET&/rest/api/3/issue/DEMO-7&", iss="other-app"), "invalid token", id="iss"),
        pytest.param(lambda p: app_jwt(p, "GET&/rest/api/3/issue/DEMO-7&", aud=["other"]), "invalid token", id="aud"),
        pytest.param(lambda p: app_jwt(p, "GET&/rest/api/3/issue/DEMO-7&", qsh=None), "invalid token", id="no-qsh"),
        pytest.param(lambda p: app_jwt(p, "GET&/rest/api/3/issue/DEMO-8&"), "qsh does not match", id="other-issue"),
        pytest.param(lambda p: app_jwt(p, "POST&/rest/api/3/issue/DEMO-7&"), "qsh does not match", id="other-method"),
        pytest.param(lambda p: app_jwt(p, "GET&/rest/api/3/issue/DEMO-7&", exp=1), "token expired", id="expired"),
    ],
)
def test_rest_api_refuses_any_other_token(fake_product: FakeProduct, token: Any, refusal: str) -> None:
    fake_product.app_key = "my-app"
    fake_product.issues["DEMO-7"] = "Fix the login"
    response = call_api(fake_product, "/rest/api/3/issue/DEMO-7", token(fake_product))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "JWT"
    (call,) = fake_product.api_calls
    assert call.claims is None
    assert call.refusal is not None
    assert call.refusal.startswith(refusal)


def test_rest_api_refuses_every_app_before_an_install(fake_product: FakeProduct) -> None:
    fake_product.issues["DEMO-7"] = "Fix the login"
    response = call_api(
        fake_product, "/rest/api/3/issue/DEMO-7", app_jwt(fake_product, "GET&/rest/api/3/issue/DEMO-7&")
    )
    assert response.status_code == 401
    assert fake_product.api_calls[0].refusal == "no app is installed"


def test_rest_api_hashes_paths_relative_to_the_products_base_path(fake_product_signing_key: rsa.RSAPrivateKey) -> None:
    product = FakeProduct(base_url="https://fake.atlassian.net/jira", private_key=fake_product_signing_key)
    product.app_key = "my-app"
    product.issues["DEMO-7"] = "Under a context path"
    token = app_jwt(product, "GET&/rest/api/3/issue/DEMO-7&")
    url = "https://fake.atlassian.net/jira/rest/api/3/issue/DEMO-7"
    assert call_api(product, url, token).status_code == 200
    assert call_api(product, url, app_jwt(product, "GET&/jira/rest/api/3/issue/DEMO-7&")).status_code == 401


@pytest.mark.anyio
async def test_rest_api_served_on_loopback_accepts_the_librarys_product_client(fake_product: FakeProduct) -> None:
    fake_product.app_key = "my-app"
    fake_product.issues["DEMO-7"] = "Over real HTTP"
    with fake_product.serve_api() as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        assert fake_product.base_url == base_url
        async with product_client(
            app_key="my-app",
            client_key=fake_product.client_key,
            base_url=base_url,
            shared_secret=fake_product.shared_secret,
        ) as jira:
            found = await jira.get("/rest/api/3/issue/DEMO-7", params={"fields": "summary"})
        async with httpx2.AsyncClient(base_url=base_url) as plain:
            garbled = await plain.get("/rest/api/3/issue/DEMO-7", headers={"Authorization": "JWT not-a-token"})
    assert fake_product.base_url == "https://fake-jira.atlassian.net"
    assert found.json()["fields"]["summary"] == "Over real HTTP"
    assert garbled.status_code == 401
    assert [call.status for call in fake_product.api_calls] == [200, 401]


@pytest.mark.anyio
async def test_rest_api_answers_429_and_503_on_a_schedule_over_real_http(fake_product: FakeProduct) -> None:
    fake_product.app_key = "my-app"
    fake_product.issues["DEMO-7"] = "Eventually"
    fake_product.api.throttle(
        429, times=2, retry_after=1, headers={"RateLimit-Reason": "jira-burst-based", "X-RateLimit-NearLimit": "true"}
    )
    fake_product.api.throttle(
        503, retry_after="Tue, 14 Nov 2023 22:13:20 GMT", method="GET", path="/rest/api/{v}/issue/{key}"
    )
    fake_product.api.throttle(429, method="POST")  # never matched by a GET
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    with fake_product.serve_api() as base_url:
        async with product_client(
            app_key="my-app",
            client_key=fake_product.client_key,
            base_url=base_url,
            shared_secret=fake_product.shared_secret,
            retries=RetryPolicy(async_sleep=wait, random=lambda: 0.0),
        ) as jira:
            first = await jira.get("/rest/api/3/issue/DEMO-7", extensions={"retries": None})  # over real HTTP
            found = await jira.get("/rest/api/3/issue/DEMO-7")

    assert first.status_code == 429
    info = RateLimitInfo.from_response(first)
    assert (info.retry_after, info.reason, info.near_limit) == (1.0, "jira-burst-based", True)
    assert found.json()["fields"]["summary"] == "Eventually"
    assert waits == [1.0, 1.0]  # the second 429, then the 503 whose date has passed (at least 1 s)
    assert [call.status for call in fake_product.api_calls] == [429, 429, 503, 200]
    assert all(call.claims is not None for call in fake_product.api_calls)  # throttled only once verified


def test_rest_api_throttles_only_verified_calls(fake_product: FakeProduct) -> None:
    fake_product.app_key = "my-app"
    fake_product.api.throttle(429)
    with httpx2.Client(transport=fake_product.api_transport, base_url=fake_product.base_url) as client:
        refused = client.get("/rest/api/3/issue/DEMO-1", headers={"Authorization": "JWT not-a-token"})
    assert refused.status_code == 401
    assert [call.status for call in fake_product.api_calls] == [401]


# -- every product ------------------------------------------------------------------------


def test_each_product_has_its_own_defaults(fake_product_signing_key: rsa.RSAPrivateKey) -> None:
    jira, confluence, bitbucket = (
        FakeProduct(product_type=kind, private_key=fake_product_signing_key)
        for kind in ("jira", "confluence", "bitbucket")
    )
    assert (jira.base_url, jira.kid, jira.signs_installs) == (
        "https://fake-jira.atlassian.net",
        "fake-jira/install-key-1",
        True,
    )
    assert (confluence.base_url, confluence.kid, confluence.signs_installs) == (
        "https://fake-confluence.atlassian.net/wiki",
        "fake-confluence/install-key-1",
        True,
    )
    assert (bitbucket.base_url, bitbucket.signs_installs) == ("https://api.bitbucket.org", False)
    for product in (jira, confluence, bitbucket):
        payload = InstallPayload.model_validate(product.install_payload(app_key="my-app"))
        assert payload.product_type == product.product_type
        assert payload.client_key.startswith(f"fake-{product.product_type}-")


def test_an_unknown_product_is_refused() -> None:
    with pytest.raises(ValueError, match="product_type must be one of"):
        FakeProduct(product_type="trello")  # type: ignore[arg-type]


def test_webhook_bodies_are_the_products_own(fake_product: FakeProduct, fake_confluence: FakeProduct) -> None:
    issue = fake_product.webhook_body("jira:issue_updated", account_id="user-9")
    assert issue["webhookEvent"] == "jira:issue_updated"
    assert issue["issue"]["key"] == "DEMO-1"
    assert issue["user"] == {"accountId": "user-9"}
    page = fake_confluence.webhook_body("page_created")
    assert page["page"]["spaceKey"] == "DOC"
    assert page["userAccountId"] == DEFAULT_ACCOUNT_ID
    assert "issue" not in page
    push = FakeProduct(product_type="bitbucket", private_key=fake_product.private_key).webhook_body("repo:push")
    assert push["repository"]["full_name"] == "fake-workspace/fake-repo"
    assert push["actor"]["account_id"] == DEFAULT_ACCOUNT_ID


def test_payload_builders_have_no_side_effects(fake_product: FakeProduct) -> None:
    secret = fake_product.shared_secret
    fake_product.install_payload(app_key="my-app")
    fake_product.lifecycle_payload("uninstalled", app_key="my-app")
    fake_product.webhook_body("jira:issue_created")
    assert fake_product.app_key is None
    assert fake_product.shared_secret == secret
    assert fake_product.previous_shared_secrets == []


def test_the_plugin_has_a_fixture_per_product(fake_confluence: FakeProduct, fake_bitbucket: FakeProduct) -> None:
    assert fake_confluence.product_type == "confluence"
    assert fake_bitbucket.product_type == "bitbucket"
    assert fake_confluence.client_key != fake_bitbucket.client_key


# -- descriptor URL templates ---------------------------------------------------------------


def test_expand_url_fills_and_encodes_context_parameters() -> None:
    url = expand_url("/page?space={space.key}&id={content.id}", {"space.key": "D O/C", "content.id": "42"})
    assert url == "/page?space=D%20O%2FC&id=42"


def test_expand_url_refuses_a_template_left_unexpanded() -> None:
    with pytest.raises(ValueError, match=r"\['space.key'\]"):
        expand_url("/page?space={space.key}&id={content.id}", {"content.id": "42"})


def template_app(product: FakeProduct, authorization_method: Any = "publicKey") -> FastAPI:
    """An app whose page and webhook URLs carry context parameters, as descriptors declare them."""
    tenants: dict[str, Credentials[None]] = {}
    connect = ConnectAuth(
        base_url=APP_URL,
        credentials_loader=tenants.get,
        key_provider=product.key_provider(),
        authorization_method=authorization_method,
    )
    app = FastAPI(lifespan=connect.lifespan)
    connect.install(app)

    @app.get("/atlassian-connect.json")
    async def descriptor() -> dict[str, Any]:
        return {
            "key": "template-app",
            "baseUrl": APP_URL,
            "lifecycle": {"installed": "/installed", "uninstalled": "/uninstalled"},
            "modules": {
                "webhooks": [{"event": "page_created", "url": "/hooks?space={space.key}"}],
                "spacePages": [{"key": "space", "url": "/space?key={space.key}&page={content.id}"}],
            },
        }

    @app.post("/installed")
    async def installed(install: Annotated[VerifiedInstallation[None], Depends(ConnectInstall())]) -> str:
        payload = install.payload
        tenants[payload.client_key] = Credentials(payload.shared_secret.get_secret_value())
        return install.type.value

    @app.post("/uninstalled")
    async def uninstalled(request: Request) -> None:
        await connect.verify_lifecycle("uninstalled", *await lifecycle_parts(request))

    @app.post("/hooks")
    async def hooks(call: TenantCall, space: str) -> str:
        return space

    @app.get("/space")
    async def space(call: TenantCall, key: str, page: str) -> list[str]:
        return [key, page]

    return app


async def lifecycle_parts(request: Request) -> tuple[str | None, Any, bytes]:
    token = request.headers["Authorization"].removeprefix("JWT ")
    return token, request_target(request), await request.body()


def test_driver_expands_page_and_webhook_templates_from_the_context(fake_confluence: FakeProduct) -> None:
    with TestClient(template_app(fake_confluence), base_url=APP_URL) as client:
        confluence = fake_confluence.drive(client)
        assert confluence.install().is_success
        page = confluence.load_page("space", module="spacePages", context={"space.key": "DOC", "content.id": "7"})
        assert page.json() == ["DOC", "7"]
        assert page.request.url.params["key"] == "DOC"
        assert confluence.webhook("page_created", context={"space.key": "TEAM"}).json() == "TEAM"
        with pytest.raises(ValueError, match=r"content\.id"):
            confluence.load_page("space", module="spacePages", context={"space.key": "DOC"})
        with pytest.raises(ValueError, match=r"space\.key"):
            confluence.webhook("page_created")


def test_bitbucket_installs_are_signed_with_the_shared_secret(fake_bitbucket: FakeProduct) -> None:
    with TestClient(template_app(fake_bitbucket, "sharedSecret"), base_url=APP_URL) as client:
        bitbucket = fake_bitbucket.drive(client)
        first = bitbucket.install()
        assert first.json() == "newInstallation"
        assert jwt.get_unverified_header(first.request.headers["Authorization"][4:])["alg"] == "HS256"
        old_secret = fake_bitbucket.shared_secret
        update = bitbucket.update()
        assert update.json() == "update"
        decode_hs256(update.request.headers["Authorization"][4:], old_secret)  # the secret the app held
        assert bitbucket.uninstall().is_success


# -- installing decides which app the REST API accepts --------------------------------------


def test_rest_api_accepts_the_app_once_installed_and_refuses_it_once_uninstalled(fake_product: FakeProduct) -> None:
    with TestClient(template_app(fake_product), base_url=APP_URL) as client:
        jira = fake_product.drive(client)
        assert jira.install(token="not-a-token").status_code == 401
        assert fake_product.app_key is None  # a refused install installs nothing
        assert jira.install().is_success
        assert fake_product.app_key == "template-app"
        assert jira.uninstall().is_success
        assert fake_product.app_key is None


# -- extending the REST API -----------------------------------------------------------------


def test_users_add_routes_that_see_path_parameters_and_claims(fake_confluence: FakeProduct) -> None:
    fake_confluence.app_key = "my-app"

    @fake_confluence.api.route("GET", "/rest/api/content/{id}")
    def content(call: APIRequest) -> httpx2.Response:
        return httpx2.Response(200, json={"id": call.params["id"], "by": call.claims["iss"]})

    token = app_jwt(fake_confluence, "GET&/rest/api/content/98311&")
    response = call_api(fake_confluence, "/rest/api/content/98311", token)
    assert response.json() == {"id": "98311", "by": "my-app"}
    refused = call_api(fake_confluence, "/rest/api/content/98311", app_jwt(fake_confluence, "GET&/other&"))
    assert refused.status_code == 401  # a route answers only verified calls
    post = call_api(
        fake_confluence,
        "/rest/api/content/98311",
        app_jwt(fake_confluence, "POST&/rest/api/content/98311&"),
        "POST",
    )
    assert post.status_code == 404
    assert [call.status for call in fake_confluence.api_calls] == [200, 401, 404]


def test_a_later_route_overrides_the_default_one(fake_product: FakeProduct) -> None:
    fake_product.app_key = "my-app"
    fake_product.issues["DEMO-1"] = "Default"
    fake_product.api.add_route(
        "get", "/rest/api/3/issue/{key}", lambda call: httpx2.Response(403, json={"key": call.params["key"]})
    )
    overridden = call_api(
        fake_product, "/rest/api/3/issue/DEMO-1", app_jwt(fake_product, "GET&/rest/api/3/issue/DEMO-1&")
    )
    assert (overridden.status_code, overridden.json()) == (403, {"key": "DEMO-1"})
    v2 = call_api(fake_product, "/rest/api/2/issue/DEMO-1", app_jwt(fake_product, "GET&/rest/api/2/issue/DEMO-1&"))
    assert v2.json()["fields"]["summary"] == "Default"
    v4 = call_api(fake_product, "/rest/api/4/issue/DEMO-1", app_jwt(fake_product, "GET&/rest/api/4/issue/DEMO-1&"))
    assert v4.status_code == 404


def test_only_jira_has_a_default_issue_route(fake_confluence: FakeProduct) -> None:
    fake_confluence.app_key = "my-app"
    fake_confluence.issues["DEMO-1"] = "Not Confluence's"
    url = "/rest/api/3/issue/DEMO-1"
    assert call_api(fake_confluence, url, app_jwt(fake_confluence, "GET&/rest/api/3/issue/DEMO-1&")).status_code == 404


def test_the_kits_modules_import_one_another_in_one_direction() -> None:
    """No cycles: shared pieces live in modules that import nothing of the kit above them."""
    package = Path(fastapi_connect_auth.testing.__file__).parent
    imports: dict[str, set[str]] = {}
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
        imports[path.stem] = {name for name in names if name}
    order = list(graphlib.TopologicalSorter(imports).static_order())  # raises CycleError on a cycle
    assert order.index("_tenant") < order.index("_driver") < order.index("_product")
    assert order.index("_tenant") < order.index("_restapi") < order.index("_product")


# -- acting as a user: the fake authorization server and per-user visibility ---------------------------------------

ALICE, BOB = "account-alice", "account-bob"


def user_assertion(product: FakeProduct, account_id: str = ALICE, **claims: Any) -> str:
    """A JWT bearer grant assertion made with PyJWT, as Atlassian's libraries sign it."""
    now = int(product.clock())
    payload = {
        "iss": f"urn:atlassian:connect:clientid:{product.oauth_client_id}",
        "sub": f"urn:atlassian:connect:useraccountid:{account_id}",
        "tnt": product.base_url,
        "aud": product.api.authorization_server,
        "iat": now,
        "exp": now + 60,
        **claims,
    }
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, product.shared_secret, algorithm="HS256")


def request_user_token(product: FakeProduct, assertion: str) -> httpx2.Response:
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
    with httpx2.Client(transport=product.api_transport) as client:
        return client.post(product.api.authorization_server + "/oauth2/token", data=form)


def test_install_payload_carries_the_oauth_client_id(fake_product: FakeProduct) -> None:
    payload = fake_product.install_payload()
    assert payload["oauthClientId"] == fake_product.oauth_client_id
    assert InstallPayload.model_validate(payload).oauth_client_id == fake_product.oauth_client_id


def test_authorization_server_issues_a_token_bound_to_the_grants_user(fake_product: FakeProduct) -> None:
    fake_product.app_key = "my-app"
    fake_product.issues["DEMO-7"] = "Visible to Alice only"
    fake_product.api.restrict("DEMO-7", ALICE)
    answers = {}
    for account_id in (ALICE, BOB):
        granted = request_user_token(fake_product, user_assertion(fake_product, account_id))
        assert granted.status_code == 200
        assert granted.json()["token_type"] == "Bearer"
        assert granted.json()["expires_in"] > 0
        with httpx2.Client(transport=fake_product.api_transport, base_url=fake_product.base_url) as client:
            headers = {"Authorization": f"Bearer {granted.json()['access_token']}"}
            answers[account_id] = client.get("/rest/api/3/issue/DEMO-7", headers=headers)
    assert answers[ALICE].json()["fields"]["summary"] == "Visible to Alice only"
    assert answers[BOB].status_code == 404  # Jira's answer: not "forbidden", so existence is not revealed
    assert answers[BOB].json()["errorMessages"] == ["Issue does not exist or you do not have permission to see it."]
    assert [(call.account_id, call.status) for call in fake_product.api_calls] == [
        (ALICE, 200),
        (ALICE, 200),
        (BOB, 200),
        (BOB, 404),
    ]
    # The app's own JWT still sees every issue.
    app_token = app_jwt(fake_product, "GET&/rest/api/3/issue/DEMO-7&")
    assert call_api(fake_product, "/rest/api/3/issue/DEMO-7", app_token).status_code == 200
    assert fake_product.api_calls[-1].account_id is None


@pytest.mark.parametrize(
    ("claims", "refusal"),
    [
        pytest.param({"iss": "urn:atlassian:connect:clientid:other"}, "invalid assertion", id="iss"),
        pytest.param({"aud": "https://elsewhere.test"}, "invalid assertion", id="aud"),
        pytest.param({"tnt": "https://other.atlassian.net"}, "tnt is not", id="tnt"),
        pytest.param({"sub": "urn:atlassian:connect:useraccountid:"}, "sub names no", id="no-account"),
        pytest.param({"sub": None}, "invalid assertion", id="no-sub"),
        pytest.param({"exp": 1, "iat": 0}, "assertion expired", id="expired"),
        pytest.param({"exp": 2**40}, "assertion lives too long", id="long-lived"),
    ],
)
def test_authorization_server_refuses_any_other_assertion(
    fake_product: FakeProduct, claims: dict[str, Any], refusal: str
) -> None:
    fake_product.app_key = "my-app"
    response = request_user_token(fake_product, user_assertion(fake_product, **claims))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    (call,) = fake_product.api_calls
    assert call.refusal is not None
    assert call.refusal.startswith(refusal)


def test_authorization_server_refuses_another_secret_and_unknown_bearer_tokens(fake_product: FakeProduct) -> None:
    fake_product.app_key = "my-app"
    fake_product.issues["DEMO-7"] = "Secret"
    forged = jwt.encode(jwt.decode(user_assertion(fake_product), options={"verify_signature": False}), "x" * 43)
    assert request_user_token(fake_product, forged).status_code == 400
    with httpx2.Client(transport=fake_product.api_transport, base_url=fake_product.base_url) as client:
        guessed = client.get("/rest/api/3/issue/DEMO-7", headers={"Authorization": "Bearer guessed"})
    assert guessed.status_code == 401
    assert fake_product.api_calls[-1].refusal == "unknown Bearer token"


@pytest.mark.anyio
@pytest.mark.parametrize("served", [False, True], ids=["in-process", "loopback"])
async def test_the_librarys_user_client_sees_only_what_its_user_may_see(
    fake_product: FakeProduct, served: bool
) -> None:
    fake_product.app_key = "my-app"
    fake_product.issues.update({"DEMO-7": "Alice's", "DEMO-8": "Everyone's"})
    fake_product.api.restrict("DEMO-7", ALICE)

    async def fetch(base_url: str, account_id: str, transport: httpx2.AsyncBaseTransport | None) -> list[int]:
        async with product_client(
            app_key="my-app",
            client_key=fake_product.client_key,
            base_url=base_url,
            shared_secret=fake_product.shared_secret,
            as_user=account_id,
            oauth_client_id=fake_product.oauth_client_id,
            tokens=fake_product.user_tokens(),
            transport=transport,
        ) as jira:
            return [(await jira.get(f"/rest/api/3/issue/{key}")).status_code for key in ("DEMO-7", "DEMO-8")]

    if served:
        with fake_product.serve_api() as base_url:
            seen = {account: await fetch(base_url, account, None) for account in (ALICE, BOB)}
    else:
        seen = {
            account: await fetch(fake_product.base_url, account, fake_product.api_transport) for account in (ALICE, BOB)
        }
    assert seen == {ALICE: [200, 200], BOB: [404, 200]}
    assert [call.url for call in fake_product.api_calls if call.url == "/oauth2/token"] == ["/oauth2/token"] * 2


def webhook_app(product: FakeProduct) -> FastAPI:
    """An app whose webhook answers what it was sent: the identifier, the retry number, the body, the token's iat."""
    tenants: dict[str, Credentials[None]] = {}
    connect = ConnectAuth(base_url=APP_URL, credentials_loader=tenants.get, key_provider=product.key_provider())
    app = FastAPI(lifespan=connect.lifespan)
    connect.install(app)
    tenants[product.client_key] = Credentials(product.shared_secret)

    @app.get("/atlassian-connect.json")
    async def descriptor() -> dict[str, Any]:
        return {
            "key": "hooks-app",
            "baseUrl": APP_URL,
            "modules": {"webhooks": [{"event": "jira:issue_updated", "url": "/hooks?kind=updated"}]},
        }

    @app.post("/hooks")
    async def hooks(
        call: Annotated[VerifiedRequest[None], Depends(ConnectRequest(body=dict[str, Any]))], request: Request
    ) -> dict[str, Any]:
        return {
            "identifier": call.webhook_identifier,
            "retry": request.headers.get("x-atlassian-webhook-retry"),
            "body": call.body,
            "raw": (call.raw_body or b"").decode(),
        }

    return app


def test_every_webhook_carries_an_identifier_and_a_retry_repeats_it_with_a_fresh_token(
    fake_product: FakeProduct,
) -> None:
    with TestClient(webhook_app(fake_product), base_url=APP_URL) as client:
        jira = fake_product.drive(client)
        first, second = jira.webhook("jira:issue_updated"), jira.webhook("jira:issue_updated")
        retried = jira.retry_webhook(first)
        again = jira.retry_webhook(retried)
        chosen = jira.webhook("jira:issue_updated", {"n": 1}, identifier="id-7", retry=3)
        changed = jira.retry_webhook(first, body={"other": True})
        with pytest.raises(ValueError, match="no webhook identifier"):
            jira.retry_webhook(client.get("/atlassian-connect.json"))
    assert first.json()["identifier"] != second.json()["identifier"]  # a new one per webhook
    assert first.json()["retry"] is None  # absent on the first try
    assert (retried.json()["identifier"], retried.json()["retry"]) == (first.json()["identifier"], "1")
    assert (retried.json()["raw"], retried.json()["body"]) == (first.json()["raw"], first.json()["body"])
    assert (again.json()["identifier"], again.json()["retry"]) == (first.json()["identifier"], "2")
    assert (chosen.json()["identifier"], chosen.json()["retry"], chosen.json()["body"]) == ("id-7", "3", {"n": 1})
    assert (changed.json()["identifier"], changed.json()["body"]) == (first.json()["identifier"], {"other": True})
    for response in (first, retried, again):
        token = response.request.headers["Authorization"].removeprefix("JWT ")
        claims = decode_hs256(token, fake_product.shared_secret)
        assert claims["qsh"] == sha256_hex("POST&/hooks&kind=updated")  # signed for the URL it went to
