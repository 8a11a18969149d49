"""One test per known attack on Connect or JWT verification, named after the advisory (as PyJWT's own tests are).

Each sends the attack end to end through a FastAPI app and checks it is refused
with the right code, and where it matters that Atlassian's CDN was never asked.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from tests.conftest import KID, NOW, SHARED_SECRET, ConnectApp, Tokens, install_body, public_pem, qsh_for

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
