"""One test per known attack on Connect or JWT verification, named after the advisory (as PyJWT's own tests are).

Each sends the attack end to end through a FastAPI app and checks it is refused
with the right code, and where it matters that Atlassian's CDN was never asked.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel, SecretStr

from example_app.main import create_app
from example_app.settings import Settings
from fastapi_connect_auth import (
    AtlassianKeyProvider,
    AuthError,
    AuthorizationMethod,
    ConnectAuth,
    ConnectEnvironment,
    ConnectRequest,
    ForgeInvocation,
    InMemoryForgeTokenStore,
    InMemoryRedeliveryStore,
    UnsafeRequestError,
    VerifiedRequest,
    product_client,
    remember_forge_delivery,
    remember_forge_tokens,
    sync_product_client,
)
from fastapi_connect_auth.stores import MemoryStore
from fastapi_connect_auth.testing import FakeProduct, forge_invocation, install_payload
from tests._keyserver import KeyServer, serve_keys
from tests.conftest import (
    BASE_URL,
    CLIENT_KEY,
    KID,
    MIB,
    NEW_SHARED_SECRET,
    NOW,
    PRODUCT_BASE_URL,
    SHARED_SECRET,
    ConnectApp,
    ConnectAppFactory,
    TenantStore,
    Tokens,
    Upload,
    add_lifecycle_routes,
    asgi_post,
    auth_header,
    install_body,
    lifecycle_body,
    public_pem,
    qsh_for,
)
from tests.test_outbound import product_replies, serve

LIFECYCLE_EVENTS = ["uninstalled", "enabled", "disabled"]


@pytest.fixture
def app(connect_app: ConnectApp) -> ConnectApp:
    connect_app.tenants.add()
    return connect_app


def test_cve_2021_26073_26074_context_token_on_lifecycle_and_server_routes(app: ConnectApp, tokens: Tokens) -> None:
    """ACE and Spring Boot accepted context JWTs (qsh `context-qsh`) where a request-bound token was required.

    A context token is handed to every user's browser; it must open only routes
    that ask for it (`qsh="context"` or `"any"`), never a lifecycle callback or webhook.
    """
    context_token = tokens.context()

    responses = {event: app.lifecycle(event, context_token) for event in LIFECYCLE_EVENTS}
    responses["installed"] = app.install(install_body(sharedSecret="attacker-chosen-secret"), context_token)
    responses["webhook"] = app.post("/webhook", context_token)
    responses["page"] = app.get("/computed", context_token)

    codes = {route: response.json()["code"] for route, response in responses.items()}
    assert all(response.status_code == 401 for response in responses.values()), codes
    assert codes == {
        "uninstalled": "INVALID_ALGORITHM",  # signed installs: only Atlassian's RS256 is accepted
        "enabled": "INVALID_QSH",
        "disabled": "INVALID_QSH",
        "installed": "INVALID_ALGORITHM",
        "webhook": "INVALID_QSH",
        "page": "INVALID_QSH",
    }
    assert app.tenants.secret_of() == SHARED_SECRET
    assert app.get("/context", context_token).status_code == 200


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused_everywhere(app: ConnectApp, tokens: Tokens, alg: str) -> None:
    """CVE-2015-9235 family: an unsigned token (`alg: none`, empty signature) must never verify."""

    def unsigned(qsh: str) -> str:
        return tokens.hand_signed(
            {"alg": alg, "typ": "JWT"}, tokens.claims(qsh, aud=["https://test.example.com"]), None
        )

    responses = [
        app.get("/computed", unsigned(qsh_for("GET", "/computed"))),
        app.get("/either", unsigned(qsh_for("GET", "/either"))),
        app.install(install_body(), unsigned(qsh_for("POST", "/installed"))),
        *(app.lifecycle(event, unsigned(qsh_for("POST", f"/{event}"))) for event in LIFECYCLE_EVENTS),
    ]

    assert [(response.status_code, response.json()["code"]) for response in responses] == [
        (401, "INVALID_ALGORITHM")
    ] * 6
    assert app.key_server.requests == []


def test_cve_2022_29217_key_confusion_hs256_signed_with_the_public_key(
    app: ConnectApp, tokens: Tokens, signing_key: RSAPrivateKey
) -> None:
    """An HS256 token whose HMAC key is Atlassian's public PEM must not pass as a signed install.

    The PEM is public, so anyone can make this token: only the algorithm the
    route chose (RS256 for installs) may be used, with a key of that type.
    """
    pem = public_pem(signing_key)
    claims = tokens.claims(qsh_for("POST", "/installed"), aud=["https://test.example.com"])
    forged_install = tokens.hand_signed({"alg": "HS256", "typ": "JWT", "kid": KID}, claims, pem)
    forged_request = tokens.hand_signed({"alg": "HS256", "typ": "JWT"}, tokens.claims(qsh_for("GET", "/either")), pem)

    install = app.install(install_body(sharedSecret="attacker-chosen-secret"), forged_install)
    request = app.get("/either", forged_request)

    assert (install.status_code, install.json()["code"]) == (401, "INVALID_ALGORITHM")
    assert (request.status_code, request.json()["code"]) == (401, "INVALID_SIGNATURE")
    assert app.tenants.secret_of() == SHARED_SECRET
    assert app.key_server.requests == []


@pytest.mark.parametrize(
    "kid",
    [
        "../../../etc/passwd",
        "prod/../../secret",
        "..",
        "./key",
        "/absolute/key",
        "a//b",
        "%2e%2e/%2e%2e/secret",
        "https://evil.example/key.pem",
        "//evil.example/key.pem",
        "key.pem?redirect=https://evil.example",
        "key.pem#fragment",
        "key\\..\\..\\secret",
        "key pem",
        "key.pem\r\nHost: evil.example",
        "x" * 1000,
    ],
)
def test_kid_path_traversal_never_reaches_the_key_server(app: ConnectApp, tokens: Tokens, kid: str) -> None:
    """The `kid` is attacker-controlled and goes into the CDN URL: it must be refused before any request."""
    response = app.install(install_body(), tokens.rs256(qsh_for("POST", "/installed"), kid=kid))

    assert (response.status_code, response.json()["code"]) == (401, "INVALID_KID")
    assert app.key_server.requests == []
    assert app.tenants.secret_of() == SHARED_SECRET


@pytest.mark.parametrize(
    "forged_headers",
    [
        {"Host": "attacker-app.example"},
        {"X-Forwarded-Host": "attacker-app.example", "X-Forwarded-Proto": "https"},
        {"Forwarded": "host=attacker-app.example;proto=https"},
    ],
    ids=["host", "x-forwarded-host", "forwarded"],
)
def test_audience_from_host_header_signed_install_for_another_app(
    app: ConnectApp, tokens: Tokens, forged_headers: dict[str, str]
) -> None:
    """Atlassian genuinely signs installs of the attacker's own app (aud = its URL) for the attacker's tenant.

    Replayed to us with the attacker's host in the request headers, it must not
    install or update a tenant here: `aud` is compared with our configured base
    URLs only.
    """
    token = tokens.rs256(qsh_for("POST", "/installed"), aud=["https://attacker-app.example"])

    response = app.install(install_body(sharedSecret="attacker-chosen-secret"), token, headers=forged_headers)

    assert (response.status_code, response.json()["code"]) == (401, "WRONG_AUDIENCE")
    assert app.tenants.secret_of() == SHARED_SECRET


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("POST", "/other-webhook"),
        ("POST", "/webhook?issue=10001"),
        ("GET", "/computed"),
        ("GET", "/any"),
    ],
    ids=["other-path", "added-query", "other-method-and-path", "any-mode-route"],
)
def test_replay_of_a_webhook_token_on_another_url(app: ConnectApp, tokens: Tokens, method: str, url: str) -> None:
    """A token captured from one webhook (a log, a proxy) is bound by its QSH to that method and URL."""
    captured = tokens.hs256(qsh_for("POST", "/webhook"), exp=NOW + 180)
    assert app.post("/webhook", captured).status_code == 200

    response = app.client.request(method, url, headers={"Authorization": f"JWT {captured}"})

    assert (response.status_code, response.json()["code"]) == (401, "INVALID_QSH")


@pytest.mark.parametrize("exp", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_non_finite_exp_never_means_never_expires(app: ConnectApp, tokens: Tokens, exp: float) -> None:
    """Found by fuzzing: `exp: NaN` compared as never expired (`now >= nan` is false). Non-finite dates are refused."""
    token = tokens.hs256(qsh_for("POST", "/webhook"), exp=exp)

    response = app.post("/webhook", token)

    assert (response.status_code, response.json()["code"]) == (401, "FAILED_TO_DECODE")


# -- issue 10: bodies, key providers ---------------------------------------------------------


@pytest.mark.parametrize("event", ["installed", "uninstalled", "enabled", "disabled"])
def test_lifecycle_body_buffered_before_the_token_was_checked(app: ConnectApp, event: str) -> None:
    """A 400 MiB chunked body with a junk token grew the server by ~400 MB before its 401.

    Now the token is decoded first and the body is never pulled; `test_served.py`
    measures the same under a real uvicorn process.
    """
    upload = Upload(50 * MIB)

    status, answer = asgi_post(app, f"/{event}", auth_header("junk.junk.junk"), upload)

    assert (status, answer["code"]) == (401, "FAILED_TO_DECODE")
    assert upload.pulled == 0


@pytest.mark.parametrize("event", ["enabled", "disabled"])
def test_chunked_lifecycle_body_past_the_cap_is_cut_off_whatever_its_length_says(
    app: ConnectApp, tokens: Tokens, event: str
) -> None:
    """A token that passes the body-independent checks gets its body read, and only up to `max_body_size`."""
    token = tokens.hs256(qsh_for("POST", f"/{event}"), secret="unknown-until-the-body-names-the-tenant")
    upload = Upload(50 * MIB)

    status, answer = asgi_post(app, f"/{event}", {**auth_header(token), "Content-Length": "10"}, upload)

    assert (status, answer["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert upload.pulled == 1


class IssueEvent(BaseModel):
    webhookEvent: str


def body_routes(app: FastAPI) -> None:
    verified = Depends(ConnectRequest(body=IssueEvent))

    @app.post("/issue-webhook")
    async def issue_webhook(call: VerifiedRequest[Any] = verified) -> str:
        return str(call.body.webhookEvent)


def test_webhook_body_parsed_before_authentication(make_connect_app: ConnectAppFactory, tokens: Tokens) -> None:
    """A body declared as a route parameter is read and validated by FastAPI before any dependency runs.

    With `ConnectRequest(body=...)`: an unsigned 50 MiB body is refused unread, an
    unsigned malformed one gets 401 (not a 422 with validation details), and only a
    signed malformed one gets 422.
    """
    app = make_connect_app(extra_routes=body_routes)
    app.tenants.add()
    upload = Upload(50 * MIB)

    status, answer = asgi_post(app, "/issue-webhook", {}, upload)
    unsigned_malformed = app.client.post("/issue-webhook", content=b"{not json")
    signed_malformed = app.client.post(
        "/issue-webhook", headers=auth_header(tokens.hs256(qsh_for("POST", "/issue-webhook"))), content=b"[]"
    )

    assert (status, answer["code"], upload.pulled) == (401, "MISSING_JWT", 0)
    assert (unsigned_malformed.status_code, unsigned_malformed.json()["code"]) == (401, "MISSING_JWT")
    assert signed_malformed.status_code == 422


@pytest.mark.parametrize("length", ["\u00b2", "\u00b9\u00b2", "1e3", "-1", "+5"])
def test_content_length_that_isdigit_but_not_int_is_no_500(app: ConnectApp, tokens: Tokens, length: str) -> None:
    """`"²".isdigit()` is true and `int("²")` raises: only ASCII digits count as a length; the bytes decide."""
    token = tokens.hs256(qsh_for("POST", "/enabled"))
    body = json.dumps(lifecycle_body("enabled")).encode()

    status, answer = asgi_post(app, "/enabled", {**auth_header(token), "Content-Length": length}, Upload(0, body))

    assert status == 200, answer
    assert answer["event"] == "enabled"


class FailingKeyProvider:
    """A custom provider that fails the way real ones do: not with an `AuthError`."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def get_public_key(self, kid: str, environment: ConnectEnvironment) -> RSAPublicKey:
        self.calls += 1
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("vault at https://admin:hunter2-secret@vault.internal is sealed"),
        httpx2.ConnectError("hunter2-secret: connection refused"),
        KeyError("hunter2-secret"),
    ],
    ids=["runtime-error", "httpx-error", "key-error"],
)
def test_key_provider_failure_was_a_500(
    make_connect_app: ConnectAppFactory, tokens: Tokens, caplog: pytest.LogCaptureFixture, error: Exception
) -> None:
    """A custom `PublicKeyProvider` raising anything but `AuthError` propagated as a 500.

    The Node library answers any provider error with `FAILED_TO_OBTAIN_PUBLIC_KEY`:
    so do we (503, retry later), and log the failure's type, never its text.
    """
    provider = FailingKeyProvider(error)
    app = make_connect_app(key_provider=provider)

    with caplog.at_level(logging.DEBUG, logger="fastapi_connect_auth"):
        response = app.install(install_body(), tokens.rs256(qsh_for("POST", "/installed")))

    assert response.status_code == 503, response.text
    assert response.json()["code"] == "FAILED_TO_OBTAIN_PUBLIC_KEY"
    assert provider.calls == 1
    assert type(error).__name__ in caplog.text
    assert "hunter2" not in caplog.text
    assert "hunter2" not in response.text
    assert app.tenants.tenants == {}


@pytest.mark.parametrize(
    ("method", "unsigned_install"),
    [("publicKey", "MISSING_JWT"), ("sharedSecret", "UNAUTHORIZED_REQUEST"), ("any", "UNAUTHORIZED_REQUEST")],
)
def test_reclaim_of_an_uninstalled_client_key_by_an_unsigned_install(
    make_connect_app: ConnectAppFactory, tokens: Tokens, method: AuthorizationMethod, unsigned_install: str
) -> None:
    """Issue 9: after a tenant uninstalled, an unsigned legacy install with its clientKey was taken for a new tenant.

    Loaders were told to return `None` for uninstalled tenants, which means "first
    install, nothing to verify": the newcomer then read the old tenant's stored data.
    Now the loader says "known but uninstalled": the tenant's calls are refused in
    every mode, and an install for its clientKey must be signed.
    """
    app = make_connect_app(authorization_method=method)
    app.tenants.add()
    app.tenants.uninstall()
    refused = {
        "webhook": app.post("/webhook", tokens.hs256(qsh_for("POST", "/webhook"))),
        "enabled": app.lifecycle("enabled", tokens.hs256(qsh_for("POST", "/enabled"))),
        "signed": app.get("/either", tokens.rs256(qsh_for("GET", "/either"))),
    }
    assert {name: response.json()["code"] for name, response in refused.items()} == dict.fromkeys(
        refused, "UNKNOWN_ISSUER"
    )

    attacker_secret = "attacker-chosen-secret-" * 2
    reclaim = app.install(install_body(sharedSecret=attacker_secret))
    assert (reclaim.status_code, reclaim.json()["code"]) == (401, unsigned_install)
    forged = app.install(
        install_body(sharedSecret=attacker_secret), tokens.hs256(qsh_for("POST", "/installed"), secret=attacker_secret)
    )
    assert forged.status_code == 401
    assert app.tenants.secret_of() == SHARED_SECRET

    # The tenant itself comes back signed: a new installation, its old row handed over.
    qsh = qsh_for("POST", "/installed")
    token = tokens.rs256(qsh) if method == "publicKey" else tokens.hs256(qsh)
    back = app.install(install_body(sharedSecret=NEW_SHARED_SECRET), token)
    assert back.status_code == 200, back.text
    assert back.json()["type"] == "newInstallation"
    assert back.json()["stored_entity"] == {"client_key": CLIENT_KEY, "base_url": PRODUCT_BASE_URL}
    assert app.post("/webhook", tokens.hs256(qsh_for("POST", "/webhook"), secret=NEW_SHARED_SECRET)).status_code == 200


@pytest.mark.parametrize(
    "iss",
    ["victim\x00", "victim\n", "\x1b[31mred", "\ud800", "x" * 256],
    ids=["nul", "newline", "escape", "surrogate", "256-chars"],
)
def test_malformed_issuers_never_reach_the_loader(app: ConnectApp, tokens: Tokens, iss: str) -> None:
    """Issue 9: `iss` "victim\\u0000" made a PostgreSQL-backed loader fail with a 500 and a traceback quoting SQL.

    The checks before the loader need no secret, so anyone could send it. An issuer
    that no clientKey can be is refused before any loader or database call.
    """
    app.tenants.asked.clear()
    responses = [
        app.post("/webhook", tokens.hs256(qsh_for("POST", "/webhook"), iss=iss)),
        app.get("/context", tokens.context(iss=iss)),
        app.lifecycle("enabled", tokens.hs256(qsh_for("POST", "/enabled"), iss=iss)),
        app.get("/signed", tokens.rs256(qsh_for("GET", "/signed"), iss=iss)),
    ]
    codes = {(response.status_code, response.json()["code"]) for response in responses}
    # WRONG_ISSUER: `enabled`'s body names the real clientKey; pydantic refuses lone surrogates (FAILED_TO_DECODE).
    assert codes <= {(401, "UNKNOWN_ISSUER"), (401, "WRONG_ISSUER"), (401, "FAILED_TO_DECODE")}, codes
    assert app.tenants.asked == []


async def send_following_redirects(client: httpx2.AsyncClient, how: str) -> None:
    if how == "per-request":
        await client.get("/rest/away", follow_redirects=True)
    elif how == "per-stream":
        async with client.stream("GET", "/rest/away", follow_redirects=True):
            pass
    else:
        client.follow_redirects = True
        await client.get("/rest/away")


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["per-request", "per-stream", "client-attribute"])
async def test_per_request_follow_redirects_sent_the_next_hop_cross_origin(how: str) -> None:
    """`client.get(url, follow_redirects=True)` made httpx2 send the redirect's next hop, to any origin, before we raised.

    Now the product client refuses it before anything is sent: neither the product
    nor the other origin receives a byte.
    """
    with serve(product_replies()) as outsider, serve(product_replies({"/rest/away": outsider.url})) as product:
        client = product_client(app_key="app", client_key="client", base_url=product.url, shared_secret=SHARED_SECRET)
        async with client:
            with pytest.raises(UnsafeRequestError, match="follow_redirects"):
                await send_following_redirects(client, how)
        assert product.received == []
        assert outsider.received == []


def test_per_request_follow_redirects_refused_by_the_sync_client_too() -> None:
    with serve(product_replies()) as product:
        client = sync_product_client(
            app_key="app", client_key="client", base_url=product.url, shared_secret=SHARED_SECRET
        )
        with client:
            with pytest.raises(UnsafeRequestError, match="follow_redirects"):
                client.get("/rest/api/3/myself", follow_redirects=True)
            assert client.get("/rest/api/3/myself", follow_redirects=False).status_code == 200
        assert len(product.received) == 1


@pytest.fixture
def cdn() -> Iterator[KeyServer]:
    with serve_keys() as server:
        yield server


def forged_install_app(provider: AtlassianKeyProvider, tenants: TenantStore) -> FastAPI:
    connect = ConnectAuth(base_url=BASE_URL, credentials_loader=tenants.load, key_provider=provider, clock=lambda: NOW)
    app = FastAPI()
    connect.install(app)
    add_lifecycle_routes(app, tenants)
    return app


def test_forged_installs_with_random_kids_amplified_into_cdn_requests(
    cdn: KeyServer, signing_key: RSAPrivateKey, tokens: Tokens, tenants: TenantStore
) -> None:
    """Each forged install naming a new kid made the app ask Atlassian's CDN (100 installs: 200 requests).

    Now unknown kids are remembered for minutes and fetches of new kids are rate-limited per
    environment: 1,000 concurrent forged installs cost a few dozen requests, and a genuine
    install right after the burst still succeeds (it waits at most `1 / new_kid_rate` seconds).
    """
    cdn.serve_key(KID, public_pem(signing_key))
    app = forged_install_app(AtlassianKeyProvider(base_url=cdn.url), tenants)
    qsh = qsh_for("POST", "/installed")
    body = json.dumps(install_body()).encode()

    async def burst_then_genuine() -> tuple[list[httpx2.Response], httpx2.Response]:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            forged = await asyncio.gather(
                *(
                    client.post("/installed", content=body, headers=auth_header(tokens.rs256(qsh, kid=f"forged/{i}")))
                    for i in range(1000)
                )
            )
            genuine = await client.post("/installed", content=body, headers=auth_header(tokens.rs256(qsh)))
        return forged, genuine

    forged, genuine = anyio.run(burst_then_genuine)

    assert {response.status_code for response in forged} <= {401, 503}
    assert {response.json()["code"] for response in forged} == {"FAILED_TO_OBTAIN_PUBLIC_KEY"}
    forged_fetches = [path for path in cdn.requests if path.startswith("/forged/")]
    print(f"\n1,000 forged installs: {len(forged_fetches)} CDN requests")
    assert len(forged_fetches) <= 36, len(forged_fetches)
    assert genuine.status_code == 200, genuine.text
    assert cdn.count(KID) == 1


@pytest.mark.anyio
async def test_an_unknown_kid_is_remembered_for_minutes(cdn: KeyServer) -> None:
    """A kid every host answered 404 for is not asked again within `unknown_kid_ttl` (outages: `failure_ttl`)."""
    provider = AtlassianKeyProvider(base_url=cdn.url, failure_ttl=0.01)

    for _ in range(3):
        with pytest.raises(AuthError) as caught:
            await provider.get_public_key("forged/kid")
        assert caught.value.status_code == 401
        await asyncio.sleep(0.02)  # past failure_ttl: an outage would be retried by now

    assert cdn.count("forged/kid") == 1


@pytest.mark.anyio
async def test_new_kid_fetches_are_rate_limited_per_environment(cdn: KeyServer) -> None:
    """Past the burst, a new kid is refused (503, not cached) unless it can wait for the next slot."""
    clock = [0.0]
    provider = AtlassianKeyProvider(
        base_url=cdn.url, new_kid_burst=2, new_kid_rate=0.5, new_kid_wait=0.0, clock=lambda: clock[0]
    )

    async def status(kid: str, environment: ConnectEnvironment = ConnectEnvironment.PRODUCTION) -> int:
        with pytest.raises(AuthError) as caught:
            await provider.get_public_key(kid, environment)
        return caught.value.status_code

    assert [await status("a"), await status("b"), await status("c")] == [401, 401, 503]
    assert await status("d", ConnectEnvironment.STAGING) == 401  # another environment, another budget
    clock[0] += 2.0  # one more slot
    assert [await status("c"), await status("e")] == [401, 503]  # "c" was not remembered as refused
    assert sorted(cdn.requests) == ["/a", "/b", "/c", "/d"]


def test_iframe_api_listed_issues_the_user_may_not_see(tmp_path: Path) -> None:
    """The example's `/api/events` listed every stored issue to any user of the tenant, fetched as the app.

    Now each issue is fetched as the calling user and listed only when Jira shows it to
    them: Bob never sees Alice's restricted issue, neither its summary nor its key.
    """
    jira = FakeProduct()
    jira.issues.update({"DEMO-1": "Alice's restricted issue"})
    jira.api.restrict("DEMO-1", "account-alice")
    settings = Settings(base_url="https://app.example.test", database_url=f"sqlite:///{tmp_path / 'app.db'}")
    app = create_app(
        settings, key_provider=jira.key_provider(), product_transport=jira.api_transport, user_tokens=jira.user_tokens()
    )
    with TestClient(app, base_url=settings.base_url) as client:
        driver = jira.drive(client)
        assert driver.install().status_code == 204
        assert driver.webhook("jira:issue_created").status_code == 204
        alice = driver.context_call("GET", "/api/events", account_id="account-alice")
        bob = driver.context_call("GET", "/api/events", account_id="account-bob")
    assert [event["current_summary"] for event in alice.json()] == ["Alice's restricted issue"]
    assert bob.status_code == 200
    assert bob.json() == []
    assert "DEMO-1" not in bob.text
    assert "A fake issue" not in bob.text  # nor the webhook's copy of its summary
    assert bob.headers["X-Events-Withheld"] == "1"
    issue_calls = [(call.account_id, call.status) for call in jira.api_calls if call.url.startswith("/rest/")]
    assert issue_calls == [("account-alice", 200), ("account-bob", 404)]


# -- issue 18/19: stores, tenancy, tokens --------------------------------------------------------

PLANT_NOW = 1_900_000_000.0


def _product_token(exp: float) -> str:
    """A product token as opaque to the app as Forge's: JWT-shaped, with an `exp`."""
    return jwt.encode({"exp": exp, "jti": str(exp)}, "k" * 32, "HS256")


@pytest.mark.anyio
async def test_planted_system_token_from_a_browser_fit_never_replaces_or_outlives_the_genuine_one() -> None:
    """A user resent their `requestRemote` FIT with a junk `x-forge-oauth-system` whose exp is 2100.

    It replaced the installation's stored system token (the later unverified exp won) and
    outlived every later genuine one; background work then failed with 401.
    """

    clock = [PLANT_NOW]
    store = InMemoryForgeTokenStore(clock=lambda: clock[0])
    installation = "ari:cloud:ecosystem::installation/plant"
    genuine, junk = _product_token(PLANT_NOW + 3600), _product_token(4_102_444_800)  # 2100-01-01
    event = forge_invocation(installation, "cloud-1")
    browser = forge_invocation(installation, "cloud-1", browser=True)

    def carrying(invocation: ForgeInvocation, token: str) -> ForgeInvocation:
        return ForgeInvocation(invocation.claims, system_token=SecretStr(token))

    assert await remember_forge_tokens(store, carrying(event, genuine), clock=lambda: clock[0])
    assert not await remember_forge_tokens(store, carrying(browser, junk), clock=lambda: clock[0])
    kept = await store.get(installation, None)
    assert kept is not None
    assert kept.token == genuine
    # Even from a FIT no browser sent, an unverified exp never outlives receipt + 4 h, and the later token wins.
    clock[0] += 60
    assert await remember_forge_tokens(store, carrying(event, junk), clock=lambda: clock[0])
    kept = await store.get(installation, None)
    assert kept is not None
    assert kept.expires_at == clock[0] + 4 * 3600
    clock[0] += 60
    later = _product_token(clock[0] + 1800)
    assert await remember_forge_tokens(store, carrying(event, later), clock=lambda: clock[0])
    kept = await store.get(installation, None)
    assert kept is not None
    assert kept.token == later


@pytest.mark.anyio
async def test_the_same_jti_with_another_body_was_stored_as_a_second_event() -> None:
    """One FIT stored 50 different bodies: the FIT signs no body, so the jti alone must not be a licence."""

    store = InMemoryRedeliveryStore()
    call = forge_invocation("ari:cloud:ecosystem::installation/jti", "cloud-1")
    assert await remember_forge_delivery(store, call, b'{"n": 1}')
    assert not await remember_forge_delivery(store, call, b'{"n": 1}')  # Forge's retry: accepted, stored once
    for n in range(2, 52):
        with pytest.raises(AuthError) as refused:
            await remember_forge_delivery(store, call, f'{{"n": {n}}}'.encode())
        assert (refused.value.code.value, refused.value.status_code) == ("DELIVERY_CONFLICT", 409)


@pytest.mark.anyio
async def test_a_fit_of_another_installation_on_the_same_site_got_the_linked_connect_tenant() -> None:
    """`connect_tenant` fell back to the cloud id even for a tenant linked to another installation."""

    store = MemoryStore()
    linked = "ari:cloud:ecosystem::installation/linked"
    await store.save_install(install_payload("jira", "s" * 40, installationId=linked, cloudId="site-1"))
    assert (await store.connect_tenant(forge_invocation(linked, "site-1"))) is not None
    other = forge_invocation("ari:cloud:ecosystem::installation/other", "site-1")
    assert await store.connect_tenant(other) is None


@pytest.mark.anyio
async def test_jira_and_confluence_on_one_cloud_id_were_taken_for_each_other() -> None:
    """The cloud-id fallback ignored the product: a Confluence FIT got the Jira tenant of the same site."""

    store = MemoryStore()
    await store.save_install(install_payload("jira-only", "s" * 40, cloudId="site-2"))
    installation = "ari:cloud:ecosystem::installation/wiki"
    assert await store.connect_tenant(forge_invocation(installation, "site-2", product="confluence")) is None
    found = await store.connect_tenant(forge_invocation(installation, "site-2", product="jira"))
    assert found is not None
    assert found.client_key == "jira-only"
