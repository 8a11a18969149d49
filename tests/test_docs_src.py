"""Every code sample of the documentation, run: the docs cannot rot.

Tokens are made with PyJWT directly and QSHs from canonical strings written out
by hand; Atlassian's key CDN is an `httpx2.MockTransport` serving a real RSA key.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import io
import json
import logging
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import httpx2
import jwt
import pytest
from cryptography.fernet import Fernet
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from example_app.db import async_database_url
from fastapi_connect_auth import (
    AtlassianKeyProvider,
    AuthError,
    ConnectAuth,
    ConnectEnvironment,
    Credentials,
    RequestTarget,
    UnsafeRedirectError,
    UnsafeRequestError,
    UserTokenProvider,
)
from fastapi_connect_auth.testing import APIRequest, FakeProduct
from tests._keyserver import public_pem, rsa_key
from tests.browser import require_browser
from tests.postgres import Database
from tests.test_issue_writes import WriteCounter

ROOT = Path(__file__).resolve().parent.parent
DOCS_SRC = ROOT / "docs_src"
SAMPLES = sorted(path.name for path in DOCS_SRC.glob("*.py"))
PRODUCTION_KEYS = "https://asap-distribution.us-west-2.prod.atl-asap.net"
STAGING_KEYS = "https://asap-distribution.us-west-2.staging.atl-asap.net"
KID = "install-key-1"
CLIENT_KEY = "client-key-acme"
PRODUCT_URL = "https://acme.atlassian.net"
SECRET = "shh-secret-cat-" + "x" * 24

EXERCISED: set[str] = set()
F = TypeVar("F", bound=Callable[..., Any])


def exercises(*samples: str) -> Callable[[F], F]:
    """Mark a test as running `samples` (file names in docs_src/)."""

    def mark(test: F) -> F:
        EXERCISED.update(samples)
        return test

    return mark


def sample(name: str) -> ModuleType:
    return importlib.import_module(f"docs_src.{name}")


def qsh(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- what Atlassian sends ----------------------------------------------------------------


class KeyCdn:
    """Atlassian's install-key CDN: serves the public half of `rsa_key()` under `KID`, counts requests."""

    def __init__(self) -> None:
        self.requested: list[str] = []
        self.client = httpx2.AsyncClient(transport=httpx2.MockTransport(self._serve))

    def _serve(self, request: httpx2.Request) -> httpx2.Response:
        self.requested.append(str(request.url))
        if request.url.path == f"/{KID}":
            return httpx2.Response(200, content=public_pem(rsa_key()))
        return httpx2.Response(404)

    def provider(self) -> AtlassianKeyProvider:
        return AtlassianKeyProvider(client=self.client)


@pytest.fixture
def cdn() -> KeyCdn:
    return KeyCdn()


def signed_lifecycle(
    event: str, path: str, *, aud: str, product_url: str = PRODUCT_URL, secret: str = SECRET
) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers and body of an RS256-signed `installed`/`uninstalled` callback to `path`."""
    now = int(time.time())
    claims = {"iss": CLIENT_KEY, "aud": [aud], "iat": now, "exp": now + 180, "qsh": qsh(f"POST&{path}&")}
    token = jwt.encode(claims, rsa_key(), algorithm="RS256", headers={"kid": KID})
    body = {
        "key": "my-connect-app",
        "clientKey": CLIENT_KEY,
        "sharedSecret": secret,
        "baseUrl": product_url,
        "productType": "jira",
        "eventType": event,
    }
    return {"Authorization": f"JWT {token}"}, body


def tenant_token(canonical: str | None, *, secret: str = SECRET, **extra: Any) -> dict[str, str]:
    """An HS256 token from the product, with `qsh` of `canonical` ("context-qsh" as is, None for none)."""
    now = int(time.time())
    claims: dict[str, Any] = {"iss": CLIENT_KEY, "sub": "account-1", "iat": now, "exp": now + 180, **extra}
    if canonical is not None:
        claims["qsh"] = canonical if canonical == "context-qsh" else qsh(canonical)
    return {"Authorization": f"JWT {jwt.encode(claims, secret, algorithm='HS256')}"}


def assert_rejected(response: httpx2.Response, code: str, status: int = 401) -> None:
    assert (response.status_code, response.json()["code"]) == (status, code), response.text


# -- the meta-test ------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_every_sample_is_shown_and_exercised(name: str) -> None:
    pages = "\n".join(page.read_text() for page in (ROOT / "docs").rglob("*.md"))
    assert f'--8<-- "docs_src/{name}"' in pages, f"no page includes docs_src/{name}"
    assert name in EXERCISED, f"no test runs docs_src/{name}"
    sample(name.removesuffix(".py"))  # importable without network or other side effects


def test_every_included_file_exists() -> None:
    for page in (ROOT / "docs").rglob("*.md"):
        for included in re.findall(r'--8<-- "([^"]+)"', page.read_text()):
            assert (ROOT / included).is_file(), f"{page.name} includes missing {included}"


# -- quickstart ---------------------------------------------------------------------------


@pytest.fixture
def quickstart(cdn: KeyCdn, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ModuleType, TestClient]]:
    module = sample("quickstart")
    monkeypatch.setattr(module.connect, "key_provider", cdn.provider())
    module.tenants.clear()
    with TestClient(module.app) as client:
        yield module, client
    module.tenants.clear()


@exercises("quickstart.py")
def test_quickstart_install_webhook_iframe_uninstall(quickstart: tuple[ModuleType, TestClient], cdn: KeyCdn) -> None:
    module, client = quickstart
    headers, body = signed_lifecycle("installed", "/installed", aud=module.BASE_URL)

    assert client.post("/installed", headers=headers, json=body).status_code == 204
    assert module.tenants[CLIENT_KEY].shared_secret == SECRET
    assert cdn.requested == [f"{PRODUCTION_KEYS}/{KID}"]

    event = {"webhookEvent": "jira:issue_created", "issue": {"key": "DEMO-1"}}
    webhook = client.post("/webhooks/issue-created", headers=tenant_token("POST&/webhooks/issue-created&"), json=event)
    assert webhook.status_code == 204
    malformed = client.post("/webhooks/issue-created", headers=tenant_token("POST&/webhooks/issue-created&"), json={})
    assert malformed.status_code == 422
    me = client.get("/api/me", headers=tenant_token("context-qsh"))
    assert me.json() == {"tenant": CLIENT_KEY, "user": "account-1"}

    headers, body = signed_lifecycle("uninstalled", "/uninstalled", aud=module.BASE_URL)
    assert client.post("/uninstalled", headers=headers, json=body).status_code == 204
    assert CLIENT_KEY not in module.tenants
    gone = client.post("/webhooks/issue-created", headers=tenant_token("POST&/webhooks/issue-created&"))
    assert_rejected(gone, "UNKNOWN_ISSUER")


@exercises("quickstart.py")
def test_quickstart_refuses_forged_calls(quickstart: tuple[ModuleType, TestClient]) -> None:
    module, client = quickstart
    headers, body = signed_lifecycle("installed", "/installed", aud="https://someone-else.example.com")
    assert_rejected(client.post("/installed", headers=headers, json=body), "WRONG_AUDIENCE")
    assert_rejected(client.post("/installed", json=body), "MISSING_JWT")

    module.tenants[CLIENT_KEY] = Credentials(SECRET)
    replayed = tenant_token("POST&/webhooks/other&")
    assert_rejected(client.post("/webhooks/issue-created", headers=replayed), "INVALID_QSH")
    context_token = tenant_token("context-qsh")
    assert_rejected(client.post("/webhooks/issue-created", headers=context_token), "INVALID_QSH")
    forged = tenant_token("POST&/webhooks/issue-created&", secret="not-the-tenant-secret-" + "y" * 20)
    assert_rejected(client.post("/webhooks/issue-created", headers=forged), "INVALID_SIGNATURE")
    assert_rejected(client.post("/webhooks/issue-created", content=b"{not json"), "MISSING_JWT")  # 401, not 422


@exercises("quickstart.py")
def test_quickstart_descriptor_names_the_routes(quickstart: tuple[ModuleType, TestClient]) -> None:
    module, client = quickstart
    descriptor = client.get("/atlassian-connect.json").json()
    paths = {route.path for route in module.app.routes}
    assert descriptor["baseUrl"] == module.BASE_URL
    assert descriptor["apiMigrations"]["signed-install"] is True
    assert set(descriptor["lifecycle"].values()) <= paths
    assert {hook["url"] for hook in descriptor["modules"]["webhooks"]} <= paths


# -- QSH modes ----------------------------------------------------------------------------


@pytest.fixture
def qsh_client() -> Iterator[TestClient]:
    connect = ConnectAuth(
        base_url="https://my-app.example.com", credentials_loader={CLIENT_KEY: Credentials(SECRET)}.get
    )
    app = FastAPI()
    connect.install(app)
    app.include_router(sample("qsh_modes").router)
    with TestClient(app) as client:
        yield client


PANEL = "/panel?xdm_e=https%3A%2F%2Facme.atlassian.net&lic=active"
PANEL_CANONICAL = "GET&/panel&lic=active&xdm_e=https%3A%2F%2Facme.atlassian.net"


@exercises("qsh_modes.py")
@pytest.mark.parametrize(
    ("method", "url", "canonical", "expected"),
    [
        ("POST", "/webhooks/issue-updated", "POST&/webhooks/issue-updated&", 200),
        ("POST", "/webhooks/issue-updated", "context-qsh", "INVALID_QSH"),
        ("POST", "/webhooks/issue-updated", None, "MISSING_QSH"),
        ("GET", PANEL, PANEL_CANONICAL, 200),
        ("GET", PANEL, "GET&/panel&lic=active", "INVALID_QSH"),
        ("GET", "/api/comments", "context-qsh", 200),
        ("GET", "/api/comments", "GET&/api/comments&", "INVALID_QSH"),
        ("GET", "/api/search?q=a+b", "context-qsh", 200),
        ("GET", "/api/search?q=a+b", "GET&/api/search&q=a%20b", 200),
        ("POST", "/callbacks/report?id=7", None, 200),
        ("GET", "/status", "GET&/status&", 200),
        ("GET", "/status", "GET&/elsewhere&", "INVALID_QSH"),
    ],
)
def test_qsh_modes(qsh_client: TestClient, method: str, url: str, canonical: str | None, expected: int | str) -> None:
    response = qsh_client.request(method, url, headers=tenant_token(canonical))
    if isinstance(expected, int):
        assert response.status_code == expected, response.text
    else:
        assert_rejected(response, expected)


@exercises("qsh_modes.py")
def test_optional_route_serves_anonymous_callers(qsh_client: TestClient) -> None:
    assert qsh_client.get("/status").json() == {"tenant": None}
    assert qsh_client.get("/status", headers=tenant_token("GET&/status&")).json() == {"tenant": CLIENT_KEY}


# -- storing installations ----------------------------------------------------------------


@exercises("storage_sqlalchemy.py")
def test_sqlalchemy_store_encrypts_secrets_and_follows_the_lifecycle(database: Database, cdn: KeyCdn) -> None:
    """On SQLite and on PostgreSQL."""
    module = sample("storage_sqlalchemy")
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    settings = {"database_url": async_database_url(database.url), "base_url": "https://my-app.example.com"}
    app = module.create_app(**settings, encryption_keys=[old_key], key_provider=cdn.provider())
    webhook = "/webhooks/issue-created"
    with TestClient(app) as client:
        headers, body = signed_lifecycle("installed", "/installed", aud=settings["base_url"])
        assert client.post("/installed", headers=headers, json=body).status_code == 204
        response = client.post(webhook, headers=tenant_token(f"POST&{webhook}&"))
        assert response.json() == {"tenant": PRODUCT_URL}

        new_secret = "rotated-secret-" + "z" * 24
        headers, body = signed_lifecycle("installed", "/installed", aud=settings["base_url"], secret=new_secret)
        assert client.post("/installed", headers=headers, json=body).status_code == 204
        assert_rejected(client.post(webhook, headers=tenant_token(f"POST&{webhook}&")), "INVALID_SIGNATURE")

    ((stored,),) = database.rows("SELECT encrypted_shared_secret FROM atlassian_tenants")
    assert new_secret.encode() not in stored
    assert Fernet(old_key).decrypt(bytes(stored)) == new_secret.encode()

    # Another replica, on the same database, with a rotated encryption key list: reads old rows.
    replica = module.create_app(**settings, encryption_keys=[new_key, old_key], key_provider=cdn.provider())
    with TestClient(replica) as client:
        response = client.post(webhook, headers=tenant_token(f"POST&{webhook}&", secret=new_secret))
        assert response.json() == {"tenant": PRODUCT_URL}
        headers, body = signed_lifecycle("uninstalled", "/uninstalled", aud=settings["base_url"])
        assert client.post("/uninstalled", headers=headers, json=body).status_code == 204
        gone = client.post(webhook, headers=tenant_token(f"POST&{webhook}&", secret=new_secret))
        assert_rejected(gone, "UNKNOWN_ISSUER")
    # The row stays, marked uninstalled, with the install's body minus its secret.
    ((installed, install),) = database.rows("SELECT installed, payload FROM atlassian_tenants")
    install = install if isinstance(install, dict) else json.loads(install)
    assert (installed, install["baseUrl"], "sharedSecret" in install) == (False, PRODUCT_URL, False)


@exercises("storage_own_tables.py", "storage_testing.py")
def test_own_tables_on_the_stores_engine_checked_from_a_sync_test() -> None:
    output = run_under_pytest("storage_testing.py")
    assert "1 passed" in output, output


@exercises("storage_own_tables.py")
def test_the_sample_prints_a_new_encryption_key() -> None:
    keys = [
        subprocess.run(
            [sys.executable, "-m", "docs_src.storage_own_tables"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        for _ in range(2)
    ]
    assert keys[0] != keys[1]
    for key in keys:
        token = Fernet(key).encrypt(b"shared secret")
        assert Fernet(key).decrypt(token) == b"shared secret"


# -- public keys --------------------------------------------------------------------------


@exercises("public_keys.py")
@pytest.mark.anyio
async def test_public_keys_sample_fetches_staging_keys_for_staging_tenants(cdn: KeyCdn) -> None:
    configured = sample("public_keys").connect
    assert configured.key_provider.urls_for(KID, ConnectEnvironment.STAGING)[0] == f"{STAGING_KEYS}/{KID}"
    connect = ConnectAuth(
        base_url="https://my-app.example.com",
        credentials_loader=configured.credentials_loader,
        product_hosts=configured.product_hosts,
        key_provider=cdn.provider(),
    )
    headers, body = signed_lifecycle(
        "installed", "/installed", aud="https://my-app.example.com", product_url="https://acme.jira-dev.com"
    )
    token = headers["Authorization"].removeprefix("JWT ")
    target = RequestTarget("POST", "/installed")
    result = await connect.verify_installation(token, target, json_bytes(body))
    assert result.client_key == CLIENT_KEY
    assert cdn.requested == [f"{STAGING_KEYS}/{KID}"]

    body["baseUrl"] = "https://acme.example.org"
    with pytest.raises(AuthError) as refused:
        await connect.verify_installation(token, target, json_bytes(body))
    assert refused.value.code == "UNTRUSTED_PRODUCT_HOST"
    assert len(cdn.requested) == 1


def json_bytes(body: dict[str, Any]) -> bytes:
    return httpx2.Request("POST", "/", json=body).content


# -- proxies ------------------------------------------------------------------------------


@exercises("proxies.py")
@pytest.mark.parametrize("path", ["/jira-inbox/webhooks/issue-created", "/webhooks/issue-created"])
def test_prefix_kept_or_stripped_by_the_proxy(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = sample("proxies")
    monkeypatch.setitem(module.tenants, CLIENT_KEY, Credentials(SECRET))
    # The product signs the path relative to the base URL's path: /webhooks/issue-created.
    headers = tenant_token("POST&/webhooks/issue-created&")
    with TestClient(module.app, root_path="/jira-inbox") as client:
        assert client.post(path, headers=headers).json() == {"tenant": CLIENT_KEY}


@exercises("proxies.py")
@pytest.mark.anyio
async def test_every_base_url_is_an_accepted_audience(cdn: KeyCdn, monkeypatch: pytest.MonkeyPatch) -> None:
    connect = sample("proxies").connect
    monkeypatch.setattr(connect, "key_provider", cdn.provider())
    for aud in ("https://apps.example.com/jira-inbox/", "https://my-tunnel.example.net"):
        headers, body = signed_lifecycle("installed", "/installed", aud=aud)
        token = headers["Authorization"].removeprefix("JWT ")
        result = await connect.verify_installation(token, RequestTarget("POST", "/installed"), json_bytes(body))
        assert result.client_key == CLIENT_KEY
    headers, body = signed_lifecycle("installed", "/installed", aud="https://apps.example.com")
    token = headers["Authorization"].removeprefix("JWT ")
    with pytest.raises(AuthError) as refused:
        await connect.verify_installation(token, RequestTarget("POST", "/installed"), json_bytes(body))
    assert refused.value.code == "WRONG_AUDIENCE"


# -- migration ----------------------------------------------------------------------------


@pytest.fixture
def migration(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    module = sample("migration")
    monkeypatch.setitem(module.tenants, CLIENT_KEY, Credentials(SECRET))
    return module


@exercises("migration.py")
def test_custom_token_extraction(migration: ModuleType) -> None:
    path = "/api/projects"
    token = tenant_token("context-qsh")["Authorization"].removeprefix("JWT ")
    with TestClient(migration.app) as client:
        assert client.get(path, headers={"X-Connect-JWT": token}).json() == {"accountId": "account-1"}
        assert client.get(path, headers={"Authorization": f"JWT {token}"}).json() == {"accountId": "account-1"}
        assert_rejected(client.get(path), "MISSING_JWT")


@exercises("migration.py")
def test_the_migration_webhook_takes_the_products_token_not_a_context_token(migration: ModuleType) -> None:
    path = "/api/hooks/jira/project/created"
    with TestClient(migration.app) as client:
        assert client.post(path, headers=tenant_token(f"POST&{path}&")).status_code == 204
        assert_rejected(client.post(path, headers=tenant_token("context-qsh")), "INVALID_QSH")


@exercises("migration.py")
@pytest.mark.anyio
async def test_framework_free_verification(migration: ModuleType, caplog: pytest.LogCaptureFixture) -> None:
    token = tenant_token("GET&/jobs&id=7")["Authorization"].removeprefix("JWT ")
    assert await migration.verify_outside_fastapi(token, "GET", "/jobs", "id=7") == CLIENT_KEY
    assert await migration.verify_outside_fastapi(token, "GET", "/jobs", "id=8") is None
    stranger = jwt.encode({"iss": "stranger", "exp": int(time.time()) + 60, "qsh": qsh("GET&/jobs&")}, SECRET)
    caplog.set_level("INFO", logger=migration.logger.name)
    assert await migration.verify_outside_fastapi(stranger, "GET", "/jobs", "") is None
    assert "not installed" in caplog.text


@exercises("migration.py")
def test_plain_401_handler(migration: ModuleType) -> None:
    with TestClient(migration.quiet_app) as client:
        response = client.post("/webhooks/issue-created", headers=tenant_token("POST&/wrong&"))
        ok = client.post("/webhooks/issue-created", headers=tenant_token("POST&/webhooks/issue-created&"))
    assert (response.status_code, response.json(), response.headers["www-authenticate"]) == (401, {}, "JWT")
    assert ok.status_code == 200


# -- testing with the test kit ------------------------------------------------------------


def run_under_pytest(*samples: str) -> str:
    """Run sample test files as a user runs them: pytest, with the kit's plugin giving its fixtures; its output."""
    plugin = ["-p", "fastapi_connect_auth.testing.plugin"]  # this repo's pytest config turns the entry point off
    paths = [f"docs_src/{sample}" for sample in samples]
    result = subprocess.run(  # noqa: S603 -- this interpreter's pytest on files of this repo
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *plugin, *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@exercises(
    "testing_app.py",
    "testing_test_app.py",
    "testing_running_app.py",
    "testing_confluence.py",
    "forge_testing.py",
    "forge_lifecycle.py",
)
def test_test_kit_samples_pass_under_pytest_with_the_plugin() -> None:
    output = run_under_pytest(
        "testing_test_app.py", "testing_running_app.py", "testing_confluence.py", "forge_testing.py"
    )
    assert "7 passed" in output, output


@exercises("testing_app.py", "testing_browser.py")
def test_the_browser_sample_passes_in_chromium() -> None:
    """The page of `testing_app.py`, in a real browser with the kit's AP bridge (skipped without one)."""
    require_browser()
    output = run_under_pytest("testing_browser.py")
    assert "1 passed" in output, output


# -- calling the product's REST API -------------------------------------------------------

OAUTH_CLIENT_ID = "oauth-client-acme"
AUTHORIZATION_SERVER = "https://oauth-2-authorization-server.services.atlassian.com"


def rest_tenant(base_url: str = PRODUCT_URL) -> Any:
    return sample("rest_client").Tenant(
        client_key=CLIENT_KEY, base_url=base_url, shared_secret=SECRET, oauth_client_id=OAUTH_CLIENT_ID
    )


class TenantAPI:
    """The tenant's REST API: records each request, redirects the paths in `redirects`, else answers `body`."""

    def __init__(self, body: dict[str, Any], redirects: dict[str, str] | None = None) -> None:
        self.body = body
        self.redirects = redirects or {}
        self.seen: list[httpx2.Request] = []
        self.transport = httpx2.MockTransport(self._answer)

    def _answer(self, request: httpx2.Request) -> httpx2.Response:
        self.seen.append(request)
        location = self.redirects.get(request.url.path)
        if location is not None:
            return httpx2.Response(302, headers={"Location": location})
        return httpx2.Response(200, json=self.body)

    def app_claims(self) -> list[dict[str, Any]]:
        """The verified claims of each request's app JWT."""
        claims = []
        for request in self.seen:
            scheme, _, token = request.headers["Authorization"].partition(" ")
            assert scheme == "JWT"
            claims.append(jwt.decode(token, SECRET, algorithms=["HS256"], audience=CLIENT_KEY, issuer="my-connect-app"))
        return claims


@exercises("rest_client.py")
@pytest.mark.anyio
@pytest.mark.parametrize("base_url", [PRODUCT_URL, f"{PRODUCT_URL}/wiki"])
async def test_app_jwt_is_bound_to_the_request_relative_to_the_tenant(base_url: str) -> None:
    api = TenantAPI({"fields": {"summary": "Printer on fire"}})
    summary = await sample("rest_client").issue_summary(rest_tenant(base_url), "DEMO-1", transport=api.transport)
    assert summary == "Printer on fire"
    assert [str(request.url) for request in api.seen] == [f"{base_url}/rest/api/3/issue/DEMO-1?fields=summary"]
    (claims,) = api.app_claims()
    assert claims["qsh"] == qsh("GET&/rest/api/3/issue/DEMO-1&fields=summary")  # without /wiki
    assert claims["exp"] - claims["iat"] == 180


@exercises("rest_client.py")
@pytest.mark.anyio
async def test_the_fake_products_api_accepts_the_apps_calls() -> None:
    module = sample("rest_client")
    product = FakeProduct(private_key=rsa_key(), shared_secret=SECRET)
    product.app_key = module.APP_KEY  # the app the product has installed
    product.issues["DEMO-1"] = "Printer on fire"
    tenant = module.Tenant(product.client_key, product.base_url, SECRET, OAUTH_CLIENT_ID)
    assert await module.issue_summary(tenant, "DEMO-1", transport=product.api_transport) == "Printer on fire"
    with pytest.raises(UnsafeRequestError, match="safe path segment"):
        await module.issue_summary(tenant, "../../../admin", transport=product.api_transport)
    assert [(call.status, call.refusal) for call in product.api_calls] == [(200, None)]  # nothing sent


@exercises("rest_client.py")
@pytest.mark.anyio
async def test_same_origin_redirects_are_signed_afresh() -> None:
    api = TenantAPI({"fields": {"summary": "Moved"}}, {"/rest/api/3/issue/OLD-1": "/rest/api/3/issue/NEW-1?x=1"})
    assert await sample("rest_client").issue_summary(rest_tenant(), "OLD-1", transport=api.transport) == "Moved"
    assert [claims["qsh"] for claims in api.app_claims()] == [
        qsh("GET&/rest/api/3/issue/OLD-1&fields=summary"),
        qsh("GET&/rest/api/3/issue/NEW-1&x=1"),
    ]


@exercises("rest_client.py")
@pytest.mark.anyio
@pytest.mark.parametrize(
    "location", ["https://attacker.example.com/collect", "http://acme.atlassian.net/rest/api/3/issue/DEMO-1"]
)
async def test_redirects_off_the_tenants_origin_are_refused(location: str) -> None:
    module = sample("rest_client")
    api = TenantAPI({}, {"/rest/api/3/issue/DEMO-1": location})
    with pytest.raises(UnsafeRedirectError) as refused:
        await module.issue_summary(rest_tenant(), "DEMO-1", transport=api.transport)
    assert refused.value.location == location
    assert [str(request.url.copy_with(query=None)) for request in api.seen] == [
        f"{PRODUCT_URL}/rest/api/3/issue/DEMO-1"
    ]

    async with module.tenant_client(rest_tenant(), transport=api.transport) as jira:
        with pytest.raises(UnsafeRequestError):
            await jira.get("https://attacker.example.com/rest/api/3/myself")
    with pytest.raises(UnsafeRequestError):
        module.tenant_client(rest_tenant("http://acme.atlassian.net"))
    assert len(api.seen) == 1


@exercises("rest_client.py")
@pytest.mark.anyio
async def test_acting_as_a_user_fetches_one_access_token_and_reuses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    module = sample("rest_client")
    token_requests: list[httpx2.Request] = []

    def token_endpoint(request: httpx2.Request) -> httpx2.Response:
        token_requests.append(request)
        return httpx2.Response(200, json={"access_token": "user-access-token-1", "expires_in": 900})

    api = TenantAPI({"accountId": "account-1"})
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(token_endpoint)) as token_client:
        monkeypatch.setattr(module, "user_tokens", UserTokenProvider(client=token_client))
        for _ in range(2):
            user = await module.current_user(rest_tenant(), "account-1", transport=api.transport)
            assert user == {"accountId": "account-1"}

    assert [request.headers["Authorization"] for request in api.seen] == ["Bearer user-access-token-1"] * 2
    (token_request,) = token_requests
    assert str(token_request.url) == f"{AUTHORIZATION_SERVER}/oauth2/token"
    form = dict(parse_qsl(token_request.content.decode()))
    assert (form["grant_type"], form["scope"]) == ("urn:ietf:params:oauth:grant-type:jwt-bearer", "READ")
    assertion = jwt.decode(form["assertion"], SECRET, algorithms=["HS256"], audience=AUTHORIZATION_SERVER)
    assert assertion["iss"] == f"urn:atlassian:connect:clientid:{OAUTH_CLIENT_ID}"
    assert assertion["sub"] == "urn:atlassian:connect:useraccountid:account-1"
    assert assertion["tnt"] == PRODUCT_URL


@exercises("rest_client.py")
@pytest.mark.anyio
async def test_iframe_token_is_accepted_as_a_context_token_only() -> None:
    token = sample("rest_client").iframe_token(rest_tenant(), "account-1")
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["qsh"] == "context-qsh"
    connect = ConnectAuth(
        base_url="https://my-app.example.com", credentials_loader={CLIENT_KEY: Credentials(SECRET)}.get
    )
    verified = await connect.verify_request(token, RequestTarget("GET", "/api/me"), qsh="context")
    assert (verified.client_key, verified.account_id) == (CLIENT_KEY, "account-1")
    with pytest.raises(AuthError) as refused:
        await connect.verify_request(token, RequestTarget("GET", "/api/me"))
    assert refused.value.code == "INVALID_QSH"


# -- rate limits --------------------------------------------------------------------------


def rate_limited_jira() -> FakeProduct:
    """A fake Jira with the sample's app installed and `POST /rest/api/3/issue` creating DEMO-n."""
    product = FakeProduct(private_key=rsa_key(), shared_secret=SECRET)
    product.app_key = "my-connect-app"  # the app the product has installed

    @product.api.route("POST", "/rest/api/3/issue")
    def create(call: APIRequest) -> httpx2.Response:
        return httpx2.Response(
            201,
            json={"key": f"DEMO-{len(product.api_calls) + 1}"},
            headers={"X-RateLimit-NearLimit": "true", "X-RateLimit-Remaining": "3"},
        )

    return product


def fake_tenant(product: FakeProduct) -> Any:
    return sample("rest_client").Tenant(product.client_key, product.base_url, SECRET, OAUTH_CLIENT_ID)


@exercises("rate_limits.py")
@pytest.mark.anyio
async def test_a_rate_limited_post_is_retried_in_the_background_and_signed_afresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    module = sample("rate_limits")
    product = rate_limited_jira()
    product.api.throttle(429, times=2, retry_after=2, headers={"RateLimit-Reason": "jira-per-issue-on-write"})
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    retries = replace(module.BACKGROUND, async_sleep=wait)
    with caplog.at_level(logging.INFO, logger="my_app"):
        key = await module.create_issue(
            fake_tenant(product), {"summary": "x"}, retries=retries, transport=product.api_transport
        )

    assert key == "DEMO-3"
    assert len(waits) == 2
    assert all(2.0 <= wait <= 2.6 for wait in waits)
    assert [call.status for call in product.api_calls] == [429, 429, 201]
    assert all(call.claims and call.claims["qsh"] == qsh("POST&/rest/api/3/issue&") for call in product.api_calls)
    assert "Under 20% of the rate limit left (3 remaining)." in caplog.text


@exercises("rate_limits.py")
@pytest.mark.anyio
async def test_an_interactive_call_gives_up_when_the_wait_would_pass_its_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    module = sample("rate_limits")
    assert (module.INTERACTIVE.max_retries, module.INTERACTIVE.budget) == (2, 5.0)
    product = rate_limited_jira()
    product.api.throttle(429, times=5, retry_after=10, headers={"RateLimit-Reason": "jira-burst-based"})
    interactive = replace(module.INTERACTIVE, other_statuses=frozenset({429}))

    with caplog.at_level(logging.WARNING, logger="my_app"):
        key = await module.create_issue(
            fake_tenant(product), {"summary": "x"}, retries=interactive, transport=product.api_transport
        )

    assert key is None
    assert [call.status for call in product.api_calls] == [429]  # a 10 s wait would pass the 5 s budget
    assert "Rate limited (jira-burst-based); try again in 10.0 s." in caplog.text
    assert SECRET not in caplog.text


@exercises("rate_limits.py")
@pytest.mark.anyio
async def test_a_used_up_quota_is_not_retried_and_says_when_it_resets(caplog: pytest.LogCaptureFixture) -> None:
    module = sample("rate_limits")
    product = rate_limited_jira()
    product.api.throttle(429, times=5, reason="jira-quota-tenant-based", reset="2099-01-01T00:00Z")

    with caplog.at_level(logging.WARNING, logger="my_app"):
        key = await module.create_issue(fake_tenant(product), {"summary": "x"}, transport=product.api_transport)

    assert key is None
    assert [call.status for call in product.api_calls] == [429]
    assert "Quota used up (jira-quota-tenant-based) until " in caplog.text


# -- issue_writes.py --------------------------------------------------------------------------


@exercises("issue_writes.py")
@pytest.mark.anyio
async def test_comments_posted_at_once_reach_the_issue_one_at_a_time() -> None:
    module = sample("issue_writes")
    product = rate_limited_jira()
    counter = WriteCounter()
    product.api.add_route("POST", "/rest/api/3/issue/{key}/comment", counter)

    with product.serve_api() as base_url:
        tenant = sample("rest_client").Tenant(product.client_key, base_url, SECRET, OAUTH_CLIENT_ID)
        ids = await module.post_comments(tenant, "DEMO-1", ["one", "two", "three", "four"])

    assert ids == ["1"] * 4
    assert counter.most == 1  # never two writes to the issue in flight


@exercises("issue_writes.py")
@pytest.mark.anyio
async def test_an_edit_and_its_comment_are_not_interleaved_with_another_task_s_write() -> None:
    module = sample("issue_writes")
    product = rate_limited_jira()

    @product.api.route("PUT", "/rest/api/3/issue/{key}")
    def edit(call: APIRequest) -> httpx2.Response:
        return httpx2.Response(204)

    @product.api.route("POST", "/rest/api/3/issue/{key}/comment")
    def comment(call: APIRequest) -> httpx2.Response:
        return httpx2.Response(201, json={"id": "1"})

    tenant = fake_tenant(product)
    transport = product.api_transport
    await asyncio.gather(
        module.edit_then_comment(tenant, "DEMO-1", "Renamed", transport=transport),
        module.post_comments(tenant, "DEMO-1", ["meanwhile"], transport=transport),
    )

    calls = [(call.method, call.url) for call in product.api_calls]
    edit_at = calls.index(("PUT", "/rest/api/3/issue/DEMO-1"))
    assert calls[edit_at + 1] == ("POST", "/rest/api/3/issue/DEMO-1/comment")  # its own comment, right after
    assert len(calls) == 3


# -- forge_remote.py --------------------------------------------------------------------------


@exercises("forge_remote.py")
@pytest.mark.anyio
async def test_forge_remote_sample_verifies_calls_and_calls_the_product_with_their_tokens() -> None:
    from fastapi_connect_auth import InMemoryForgeTokenStore, ProductAPIError
    from fastapi_connect_auth.testing import FakeForge

    module = sample("forge_remote")
    forge, tokens = FakeForge(), InMemoryForgeTokenStore()
    app = module.create_app(forge.forge_auth(), tokens, product_transport=forge.api_transport)
    with pytest.raises(ProductAPIError, match="next invocation"):
        await module.sync(tokens, forge.installation_id)
    with TestClient(app) as client:
        driver = forge.drive(client)
        me = driver.ui_call("/forge/me", user_token=forge.user_token())
        refused = client.get("/forge/me")
        not_from_the_ui = driver.event("/forge/hourly", {}, shape="ui", system_token=forge.system_token())
        kept = driver.event("/forge/hourly", {}, shape="trigger", system_token=forge.system_token())
        hostile = driver.event(
            "/forge/issue-created",
            {"eventType": "avi:jira:created:issue", "issue": {"key": "../../../admin"}},
            system_token=forge.system_token(),
        )
        unparsed = driver.event("/forge/issue-created", {"issue": {}}, system_token=forge.system_token())
    synced = await module.sync(tokens, forge.installation_id, transport=forge.api_transport)

    assert me.json() == {"accountId": forge.account_id, "tokenKind": "user"}
    assert (refused.status_code, refused.json()["code"]) == (401, "MISSING_JWT")
    assert (not_from_the_ui.status_code, not_from_the_ui.json()["code"]) == (401, "WRONG_INVOCATION")
    assert kept.status_code == 204
    assert synced == {"accountId": "app-system-user", "tokenKind": "system"}
    assert (hostile.status_code, unparsed.status_code) == (422, 422)  # api_path refused: nothing sent
    assert not [call for call in forge.api_calls if "admin" in call.url]


@exercises("forge_ui_refused.py")
def test_a_user_token_the_product_refuses_is_a_clean_4xx() -> None:
    from fastapi_connect_auth import InMemoryForgeTokenStore
    from fastapi_connect_auth.testing import FakeForge

    forge = FakeForge()
    forge.issues.update({"DEMO-1": "Visible", "DEMO-2": "Restricted"})
    forge.api.restrict("DEMO-2", "someone-else")
    app = sample("forge_ui_refused").create_app(
        forge.forge_auth(), InMemoryForgeTokenStore(), product_transport=forge.api_transport
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        driver = forge.drive(client)
        seen = driver.ui_call("/forge/issues/DEMO-1", user_token=forge.user_token())
        hidden = driver.ui_call("/forge/issues/DEMO-2", user_token=forge.user_token())
        revoked_token = forge.user_token()
        forge.revoke(revoked_token)
        revoked = driver.ui_call("/forge/issues/DEMO-1", user_token=revoked_token)
        forge.api.throttle(403)
        forbidden = driver.ui_call("/forge/issues/DEMO-1", user_token=forge.user_token())
        forge.api.throttle(500)
        broken = driver.ui_call("/forge/issues/DEMO-1", user_token=forge.user_token())
        hostile = driver.ui_call("/forge/issues/..%2Fadmin", user_token=forge.user_token())

    assert seen.json() == {"key": "DEMO-1", "summary": "Visible"}
    assert hidden.status_code == 404
    assert (revoked.status_code, forbidden.status_code) == (403, 403)
    assert revoked.json() == {"detail": "Jira refused this for your account: check your access."}
    assert broken.status_code == 500  # what the product did not explain stays the app's error
    assert hostile.status_code == 404  # no route, or the product found no such issue
    assert not [call for call in forge.api_calls if "admin" in call.url]


# -- observability ------------------------------------------------------------------------


@exercises("observability.py")
def test_rejections_are_counted_and_logged_as_json_fields() -> None:
    module = sample("observability")
    stream = io.StringIO()
    module.handler.setStream(stream)
    try:
        with TestClient(module.app) as client:
            accepted = client.post("/webhooks/issue-updated", headers=tenant_token("POST&/webhooks/issue-updated&"))
            refused = client.post("/webhooks/issue-updated", headers=tenant_token("POST&/elsewhere&"))
    finally:
        logging.getLogger("fastapi_connect_auth").removeHandler(module.handler)

    assert accepted.status_code == 200, accepted.text
    assert_rejected(refused, "INVALID_QSH")
    assert module.rejections == {("request", "INVALID_QSH"): 1}
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert (line["auth_code"], line["auth_kind"], line["auth_route"], line["auth_issuer"]) == (
        "INVALID_QSH",
        "request",
        "/webhooks/issue-updated",
        CLIENT_KEY,
    )
    assert line["message"].startswith("Rejected Connect request: INVALID_QSH")


# -- forge_cors.py, forge_lifespans.py --------------------------------------------------------


@exercises("forge_cors.py")
@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://fake-app.cdn.prod.atlassian-dev.net", True),
        ("https://2c1f7b0e-8f0a-4a7e-9d6b-0c3f7a1d2b4e.cdn.prod.atlassian-dev.net", True),
        ("https://cdn.prod.atlassian-dev.net", False),
        ("https://x.cdn.prod.atlassian-dev.net.attacker.example", False),
        ("https://attacker.example/x.cdn.prod.atlassian-dev.net", False),
        ("http://fake-app.cdn.prod.atlassian-dev.net", False),
        ("https://a.b.cdn.prod.atlassian-dev.net", False),
        ("https://acme.atlassian.net", False),
        ("null", False),
    ],
)
def test_cors_answers_forge_ui_preflights_only_and_the_call_still_needs_its_fit(origin: str, allowed: bool) -> None:
    from fastapi_connect_auth.testing import FakeForge

    forge = FakeForge()
    app = sample("forge_cors").create_app(forge.forge_auth())
    preflight_headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    with TestClient(app) as client:
        preflight = client.options("/forge/tasks", headers=preflight_headers)  # no token: browsers send none
        without_fit = client.post("/forge/tasks", headers={"Origin": origin}, json={})
        event_fit = client.post(
            "/forge/tasks", headers={"Origin": origin, "Authorization": f"Bearer {forge.mint_fit('event')}"}, json={}
        )
        with_fit = forge.drive(client).request_remote("/forge/tasks", method="POST", json_body={})

    assert (without_fit.status_code, without_fit.json()["code"]) == (401, "MISSING_JWT")
    assert (event_fit.status_code, event_fit.json()["code"]) == (401, "WRONG_INVOCATION")
    assert with_fit.json() == {"user": forge.account_id, "site": forge.cloud_id}
    if allowed:
        assert preflight.status_code == 200
        assert preflight.headers["Access-Control-Allow-Origin"] == origin
        assert "authorization" in preflight.headers["Access-Control-Allow-Headers"].lower()
        assert "Access-Control-Allow-Credentials" not in preflight.headers
        assert without_fit.headers["Access-Control-Allow-Origin"] == origin  # the browser may read the 401
    else:
        assert preflight.status_code == 400
        assert "Access-Control-Allow-Origin" not in preflight.headers
        assert "Access-Control-Allow-Origin" not in without_fit.headers


@exercises("forge_lifespans.py")
def test_both_lifespans_open_their_key_fetchers_and_check_their_routes() -> None:
    from fastapi_connect_auth import ConnectRequest, ForgeInvocation, ForgeRequest, VerifiedRequest
    from fastapi_connect_auth.testing import FakeForge

    module = importlib.reload(sample("forge_lifespans"))
    forge = FakeForge(app_id=next(iter(module.forge.app_ids)))
    module.forge.key_provider = forge.key_provider()
    module.forge.jwks_url = "https://forge.fake-cdn.test/.well-known/jwks.json"

    @module.app.get("/connect")
    async def connect_route(call: VerifiedRequest[Any] = Depends(ConnectRequest())) -> None: ...  # noqa: B008

    @module.app.post("/forge/events")
    async def forge_route(call: ForgeInvocation = Depends(ForgeRequest(invocation="event"))) -> None: ...  # noqa: B008

    with TestClient(module.app) as client:
        assert module.connect.key_provider._owns_client  # opened by connect.lifespan (its client made at a fetch)
        assert forge.drive(client).event("/forge/events", {}).status_code == 200
        assert client.get("/connect").json()["code"] == "MISSING_JWT"

    forgot = FastAPI(lifespan=module.lifespan)

    @forgot.post("/forge/events")
    async def unconfigured(call: ForgeInvocation = Depends(ForgeRequest())) -> None: ...  # noqa: B008

    with pytest.raises(RuntimeError, match=r"call forge\.install\(app\)"), TestClient(forgot):
        pass


# -- writing your own store ---------------------------------------------------------------------


@exercises("store_contract.py")
def test_the_store_contract_sample_runs_the_whole_contract_and_passes() -> None:
    """As a user runs it: pytest on the sample file, which collects the contract through its subclass."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "docs_src/store_contract.py"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary
    assert "failed" not in summary
    assert int(summary.split()[0]) >= 25


# -- redeliveries -------------------------------------------------------------------------


@exercises("redelivery.py")
def test_retries_are_stored_once_a_webhook_by_its_identifier_a_forge_event_by_its_content() -> None:
    from fastapi_connect_auth import InMemoryRedeliveryStore
    from fastapi_connect_auth.testing import FakeForge

    class DatabaseDownOnce(list[tuple[str, dict[str, Any]]]):
        """The app's events: the first write fails, as a database that is down would."""

        down = True

        def append(self, item: tuple[str, dict[str, Any]]) -> None:
            if self.down:
                self.down = False
                raise ConnectionError("the database is down")
            super().append(item)

    module, forge, stored = sample("redelivery"), FakeForge(), DatabaseDownOnce()
    connect = ConnectAuth(
        base_url="https://my-app.example.com", credentials_loader={CLIENT_KEY: Credentials(SECRET)}.get
    )
    app = module.create_app(connect, forge.forge_auth(), InMemoryRedeliveryStore(), stored)
    issue = {"webhookEvent": "jira:issue_created", "issue": {"key": "DEMO-1"}}

    def webhook(body: dict[str, Any], retry: str | None = None) -> httpx2.Response:
        headers = {**tenant_token("POST&/webhooks&"), "X-Atlassian-Webhook-Identifier": "wh-1"}
        headers.update({"X-Atlassian-Webhook-Retry": retry} if retry else {})
        return client.post("/webhooks", json=body, headers=headers)

    with TestClient(app, base_url="https://my-app.example.com", raise_server_exceptions=False) as client:
        driver = forge.drive(client)
        failed = webhook(issue)  # remembered, then the write failed: forgotten
        answers = [webhook(issue, "1"), webhook(issue, "2")]
        conflict = webhook({**issue, "issue": {"key": "DEMO-2"}}, "3")
        event = driver.event("/forge/events", {"eventType": "avi:jira:created:issue", "timestamp": 1})
        retried = driver.retry_event(event, retry_reason="TIMEOUT_ERROR")
        replay = driver.event("/forge/events", {"eventType": "other"}, fit=jwt_of(retried.request))

    assert failed.status_code == 500
    assert [answer.status_code for answer in (*answers, event, retried)] == [204] * 4
    assert_rejected(conflict, "DELIVERY_CONFLICT", 422)
    assert_rejected(replay, "DELIVERY_CONFLICT", 409)
    assert stored == [
        (CLIENT_KEY, issue),
        (forge.installation_id, {"eventType": "avi:jira:created:issue", "timestamp": 1}),
    ]


def jwt_of(request: httpx2.Request) -> str:
    return request.headers["Authorization"].removeprefix("Bearer ")


# -- Forge Containers -------------------------------------------------------------------------


@exercises("containers_app.py", "containers_testing.py")
def test_containers_samples_pass_under_pytest_with_the_plugin() -> None:
    output = run_under_pytest("containers_testing.py")
    assert "3 passed" in output, output


@exercises("containers_app.py")
def test_the_containers_app_reads_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from docs_src import containers_app
    from fastapi_connect_auth.testing import FakeSidecar

    sidecar = FakeSidecar()
    for name, value in sidecar.environ(HOOK_SECRET="from-forge-variables").items():
        monkeypatch.setenv(name, value)
    with TestClient(containers_app.create_app()) as client:
        assert client.get("/healthz").status_code == 200


@exercises("containers_migration.py")
def test_one_route_answers_alike_on_remote_and_on_containers() -> None:
    from docs_src import containers_migration
    from fastapi_connect_auth.testing import FakeForge, FakeSidecar

    forge = FakeForge()
    sidecar = FakeSidecar(forge)
    with TestClient(containers_migration.remote_app(forge.forge_auth())) as client:
        remote = forge.drive(client).ui_call("/whoami")
    with TestClient(containers_migration.container_app(sidecar.containers())) as client:
        container = sidecar.drive(client).ui("/whoami")
    assert remote.json() == container.json()
    assert remote.json() == {"installation": forge.installation_id, "site": forge.cloud_id, "user": forge.account_id}


# -- end_of_support.py ------------------------------------------------------------------------


@exercises("end_of_support.py")
@pytest.mark.anyio
async def test_end_of_support_sample_links_rekeys_reports_and_purges() -> None:
    from fastapi_connect_auth import ForgeStoredToken, InMemoryForgeTokenStore, InstallationDetailsClient
    from fastapi_connect_auth.stores import MemoryStore
    from fastapi_connect_auth.testing import FakeForge, install_payload

    module = sample("end_of_support")
    store = MemoryStore()
    on_contact, in_batch, unknown = FakeForge(), FakeForge(), FakeForge()
    for forge, client_key in ((on_contact, "tenant-a"), (in_batch, "tenant-b")):
        forge.connect_key = module.CONNECT_KEY
        forge.serve_connect_client_key(client_key)
        await store.save_install(install_payload(client_key, "s" * 40, cloudId="old-site"), signed_at=1)
    auth = on_contact.forge_auth()
    module.link_on_first_contact(auth, store, transport=on_contact.api_transport)
    event = await auth.verify_invocation(on_contact.mint_fit("trigger"), system_token=on_contact.system_token())
    linked = await store.installation_tenant(event.installation_id)
    assert linked is not None
    assert linked.client_key == "tenant-a"

    now = time.time()
    for forge in (in_batch, unknown):
        invocation = await forge.forge_auth().verify_invocation(forge.mint_fit("lifecycle"))
        await store.record_forge_installation(invocation)
        await store.put(
            forge.installation_id, None, ForgeStoredToken(forge.system_token(), forge.api_base_url, now + 3600, now)
        )
    await store.record_forge_installation(event)
    report = await module.nightly(store, transport=in_batch.api_transport)
    assert (report["not_reached"], report["connect_tenants"], report["verified"], report["unlinked"]) == (1, 2, 2, 0)

    rows = {"tenant-a": ["a1"], "tenant-b": ["b1", "b2"], "tenant-never-linked": ["x"]}
    rekeyed = await module.rekey(store, rows)
    assert rekeyed == {
        on_contact.installation_id: ["a1"],
        in_batch.installation_id: ["b1", "b2"],
        "tenant-never-linked": ["x"],
    }

    tokens = InMemoryForgeTokenStore()
    details = InstallationDetailsClient(
        app_id=in_batch.app_id, environment_id=in_batch.environment_id, transport=in_batch.api_transport
    )
    data = {in_batch.installation_id: ["b1"]}
    assert not await module.purge_if_gone(details, tokens, in_batch.installation_id, data)  # no token: cannot tell
    await tokens.put(
        in_batch.installation_id, None, ForgeStoredToken(in_batch.system_token(), in_batch.api_base_url, now + 3600)
    )
    in_batch.installed = False
    assert await module.purge_if_gone(details, tokens, in_batch.installation_id, data)
    assert data == {}


@exercises("forge_lifecycle.py")
def test_the_one_lifecycle_route_takes_each_event() -> None:
    """The manifest's one endpoint: installed, upgraded and preUninstall at /forge/lifecycle, each handled as itself."""
    from fastapi_connect_auth import ForgeLifecycleEvent
    from fastapi_connect_auth.testing import FakeForge

    forge = FakeForge()
    installations: dict[str, dict[str, Any]] = {}
    app = sample("forge_lifecycle").create_app(forge.forge_auth(), installations, transport=forge.api_transport)
    states: list[str] = []
    events: tuple[ForgeLifecycleEvent, ...] = ("installed", "upgraded", "pre-uninstall")
    with TestClient(app) as client:
        driver = forge.drive(client)
        for event in events:
            assert driver.lifecycle("/forge/lifecycle", event).status_code == 204
            states.append(installations[forge.installation_id]["state"])
        other = driver.lifecycle("/forge/lifecycle", "installed", fit=forge.mint_fit("event"))
        unknown = driver.lifecycle("/forge/lifecycle", "installed", {"id": forge.installation_id, "app": {"id": "x"}})
    assert states == ["installed", "installed", "uninstalling"]
    assert (other.status_code, other.json()["code"]) == (401, "WRONG_INVOCATION")
    assert unknown.status_code == 422
    assert installations[forge.installation_id]["state"] == "uninstalling"
