"""A corpus of malformed and hostile tokens and bodies, sent to the example app on a real SQLite file.

Every case must be answered with its expected 4xx status and error code, and
leave the database exactly as it was: a rejected call stores nothing. Tokens
are made here with PyJWT, or assembled by hand when PyJWT refuses to make
them, and query string hashes are written out as canonical strings.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from example_app.main import create_app
from example_app.settings import Settings
from fastapi_connect_auth import AtlassianKeyProvider
from fastapi_connect_auth.testing import FAKE_KEYS_URL, FakeProduct, generate_rsa_key

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

APP_URL = "https://connect-app.example.test"
APP_KEY = "fastapi-connect-example"
MAX_BODY = 64 * 1024
VALID: Any = object()
"""Stands for "the correctly made token or body" in a `Target` call."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def qsh(method: str, path: str, query: str = "") -> str:
    """The QSH of a canonical request written out by hand: `METHOD&path&sorted-query`."""
    return hashlib.sha256(f"{method}&{path}&{query}".encode()).hexdigest()


def hand_token(header: dict[str, Any] | str, claims: dict[str, Any] | str, signature: bytes = b"") -> str:
    """A token PyJWT would not make: any header, any claims, any signature bytes."""
    parts = [part if isinstance(part, str) else json.dumps(part) for part in (header, claims)]
    return ".".join(b64url(part.encode()) for part in parts) + "." + b64url(signature)


def hmac_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes, digest: str = "sha256") -> str:
    """An HMAC over `header.claims` with any key bytes (a PEM, say: key confusion) and any digest."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(hmac.new(key, signing_input.encode(), digest).digest())}"


@dataclass
class Target:
    """The running example app, its tenant (installed, one webhook stored) and its key server's log."""

    client: TestClient
    product: FakeProduct
    database: Path
    key_requests: list[str] = field(default_factory=list)

    # -- tokens -------------------------------------------------------------------------

    def claims(self, qsh_value: str | None, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.product.client_key, "iat": now, "exp": now + 180, "qsh": qsh_value}
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def hs256(
        self, qsh_value: str | None, *, secret: str | None = None, algorithm: str = "HS256", **overrides: Any
    ) -> str:
        """A token signed with the tenant's shared secret (or `secret`), as webhooks and pages are."""
        return jwt.encode(self.claims(qsh_value, **overrides), secret or self.product.shared_secret, algorithm)

    def webhook_token(self, **overrides: Any) -> str:
        return self.hs256(qsh("POST", "/webhooks"), **overrides)

    def rs256(
        self,
        path: str = "/installed",
        *,
        kid: Any = VALID,
        key: rsa.RSAPrivateKey | None = None,
        algorithm: str = "RS256",
        aud: Any = VALID,
        **overrides: Any,
    ) -> str:
        """A signed lifecycle token: RS256 by the product's install key, `kid` header, `aud` the app."""
        claims = self.claims(qsh("POST", path), aud=[APP_URL] if aud is VALID else aud, **overrides)
        kid = self.product.kid if kid is VALID else kid
        headers = {"kid": kid} if kid is not None else {}
        return jwt.encode(claims, key or self.product.private_key, algorithm, headers=headers)

    # -- calls --------------------------------------------------------------------------

    def send(
        self,
        method: str,
        url: str,
        token: str | None,
        content: bytes | Iterator[bytes] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx2.Response:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if token is not None:
            all_headers["Authorization"] = f"JWT {token}"
        return self.client.request(method, url, content=content, headers=all_headers)

    def install_body(self, **fields: Any) -> bytes:
        return json.dumps(self.product.install_payload(app_key=APP_KEY, **fields)).encode()

    def install(self, token: Any = VALID, body: Any = VALID, **fields: Any) -> httpx2.Response:
        token = self.rs256() if token is VALID else token
        return self.send("POST", "/installed", token, self.install_body(**fields) if body is VALID else body)

    def uninstall(self, token: Any = VALID, body: Any = VALID, **fields: Any) -> httpx2.Response:
        token = self.rs256("/uninstalled") if token is VALID else token
        if body is VALID:
            body = json.dumps(self.product.lifecycle_payload("uninstalled", app_key=APP_KEY, **fields)).encode()
        return self.send("POST", "/uninstalled", token, body)

    def enable(self, token: str) -> httpx2.Response:
        body = json.dumps(self.product.lifecycle_payload("enabled", app_key=APP_KEY)).encode()
        return self.send("POST", "/enabled", token, body)

    def webhook(self, token: Any = VALID, body: Any = VALID, *, query: str = "") -> httpx2.Response:
        token = self.webhook_token() if token is VALID else token
        if body is VALID:
            body = json.dumps({"webhookEvent": "jira:issue_created", "issue": {"key": "HOSTILE-1"}}).encode()
        return self.send("POST", "/webhooks" + (f"?{query}" if query else ""), token, body)

    def page(self, query: str) -> httpx2.Response:
        """Load the inbox page with a raw query string (the `jwt` parameter included by the caller)."""
        return self.client.get(f"/inbox?{query}")

    def events(self, token: str | None) -> httpx2.Response:
        return self.send("GET", "/api/events", token)

    # -- the database -------------------------------------------------------------------

    def snapshot(self) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """Every stored installation and event, whole rows: any write shows up here."""
        with closing(sqlite3.connect(self.database)) as connection:
            tenants = connection.execute(
                "SELECT client_key, base_url, encrypted_shared_secret, installed, enabled FROM atlassian_tenants ORDER BY client_key"
            ).fetchall()
            events = connection.execute("SELECT * FROM events ORDER BY id").fetchall()
        return tenants, events


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, fake_product_signing_key: rsa.RSAPrivateKey) -> Iterator[Target]:
    """One app for the whole corpus, with one installed tenant that has one stored webhook."""
    database = tmp_path_factory.mktemp("hostile") / "app.db"
    product = FakeProduct(private_key=fake_product_signing_key)
    key_requests: list[str] = []
    key_transport = product.key_transport

    def key_server(request: httpx2.Request) -> httpx2.Response:
        key_requests.append(request.url.raw_path.decode("ascii"))
        return key_transport.handle_request(request)

    key_provider = AtlassianKeyProvider(
        client=httpx2.AsyncClient(transport=httpx2.MockTransport(key_server)), base_url=FAKE_KEYS_URL
    )
    settings = Settings(base_url=APP_URL, database_url=f"sqlite:///{database}", product_api_timeout=0)
    app = create_app(settings, key_provider=key_provider, product_transport=product.api_transport)
    with TestClient(app, base_url=APP_URL) as client:
        hostile = Target(client, product, database, key_requests)
        assert hostile.install().status_code == 204
        assert hostile.webhook().status_code == 204
        tenants, events = hostile.snapshot()
        assert (len(tenants), len(events)) == (1, 1)
        yield hostile


# -- the corpus ---------------------------------------------------------------------------

Send = Callable[[Target], httpx2.Response]
NOT_JSON_CODE = None
"""FastAPI's 422 format for a verified webhook body that does not validate (no `code`): `ConnectRequest(body=...)`."""


def case(case_id: str, send: Send, status: int, code: str | None) -> Any:
    return pytest.param(send, status, code, id=case_id)


def nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def chunked(body: bytes, size: int = 4096) -> Iterator[bytes]:
    """A body sent without Content-Length (chunked transfer encoding)."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def tampered_signature(token: str) -> str:
    """`token` with its first signature byte flipped."""
    head, _, signature = token.rpartition(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[0] ^= 0x01
    return f"{head}.{b64url(bytes(raw))}"


def page_query(t: Target, signed: str, sent: str | None = None, **overrides: Any) -> str:
    """`sent` (default `signed`) plus a `jwt` whose QSH covers the canonical query `signed`."""
    token = t.hs256(qsh("GET", "/inbox", signed), **overrides)
    return f"{signed if sent is None else sent}&jwt={token}"


def kid_case(case_id: str, kid: Any, code: str = "INVALID_KID") -> Any:
    return case(f"kid-{case_id}", lambda t: t.install(t.rs256(kid=kid)), 401, code)


def aud_case(case_id: str, aud: Any, code: str = "WRONG_AUDIENCE") -> Any:
    return case(f"aud-{case_id}", lambda t: t.install(t.rs256(aud=aud)), 401, code)


def install_body_case(case_id: str, body: bytes | Callable[[Target], bytes], status: int = 400) -> Any:
    code = "INVALID_INSTALL_PAYLOAD" if status == 400 else "PAYLOAD_TOO_LARGE"
    return case(f"install-body-{case_id}", lambda t: t.install(body=body(t) if callable(body) else body), status, code)


def install_field_case(case_id: str, status: int = 400, code: str = "INVALID_INSTALL_PAYLOAD", **fields: Any) -> Any:
    return case(f"install-field-{case_id}", lambda t: t.install(**fields), status, code)


NOW = int(time.time())
LONG = "A" * 20_000

TOKEN_SHAPES = [
    case("no-token-webhook", lambda t: t.webhook(token=None), 401, "MISSING_JWT"),
    case("no-token-install", lambda t: t.install(token=None), 401, "MISSING_JWT"),
    case("no-token-events", lambda t: t.events(None), 401, "MISSING_JWT"),
    case(
        "empty-jwt-scheme",
        lambda t: t.send("POST", "/webhooks", None, b"{}", {"Authorization": "JWT  "}),
        401,
        "MISSING_JWT",
    ),
    case(
        "bearer-scheme",
        lambda t: t.send("POST", "/webhooks", None, b"{}", {"Authorization": f"Bearer {t.webhook_token()}"}),
        401,
        "MISSING_JWT",
    ),
    case("one-segment", lambda t: t.webhook("eyJhbGciOiJIUzI1NiJ9"), 401, "FAILED_TO_DECODE"),
    case("two-segments", lambda t: t.webhook(t.webhook_token().rpartition(".")[0]), 401, "FAILED_TO_DECODE"),
    case("four-segments", lambda t: t.webhook(t.webhook_token() + ".AAAA"), 401, "FAILED_TO_DECODE"),
    case("empty-segments", lambda t: t.webhook(".."), 401, "FAILED_TO_DECODE"),
    case(
        "truncated-payload",
        lambda t: t.webhook(
            ".".join(p[: len(p) // 2] if i == 1 else p for i, p in enumerate(t.webhook_token().split(".")))
        ),
        401,
        "FAILED_TO_DECODE",
    ),
    case("truncated-signature", lambda t: t.webhook(t.webhook_token()[:-4]), 401, "INVALID_SIGNATURE"),
    case(
        "signature-bad-length",
        lambda t: t.webhook(t.webhook_token().rpartition(".")[0] + ".A"),
        401,
        "FAILED_TO_DECODE",
    ),
    case("invalid-base64-chars", lambda t: t.webhook("eyJ@bGciOiJIUzI1NiJ9.e30.AAAA"), 401, "FAILED_TO_DECODE"),
    case("padded-base64", lambda t: t.webhook(t.webhook_token().replace(".", "=.", 1)), 401, "FAILED_TO_DECODE"),
    case("header-not-json", lambda t: t.webhook(hand_token("{alg: HS256", t.claims(None))), 401, "FAILED_TO_DECODE"),
    case("header-json-array", lambda t: t.webhook(hand_token('["HS256"]', t.claims(None))), 401, "FAILED_TO_DECODE"),
    case("header-alg-number", lambda t: t.webhook(hand_token({"alg": 256}, t.claims(None))), 401, "FAILED_TO_DECODE"),
    case(
        "header-kid-object",
        lambda t: t.install(hand_token({"alg": "RS256", "kid": {"k": 1}}, t.claims(None))),
        401,
        "FAILED_TO_DECODE",
    ),
    case("claims-json-array", lambda t: t.webhook(hand_token({"alg": "HS256"}, "[1, 2]")), 401, "FAILED_TO_DECODE"),
    case("claims-json-number", lambda t: t.webhook(hand_token({"alg": "HS256"}, "42")), 401, "FAILED_TO_DECODE"),
    case(
        "claims-invalid-utf8",
        lambda t: t.webhook(b64url(b'{"alg":"HS256"}') + "." + b64url(b'{"iss":"\xff"}') + ".AAAA"),
        401,
        "FAILED_TO_DECODE",
    ),
    case("claims-no-iss", lambda t: t.webhook(t.webhook_token(iss=None)), 401, "FAILED_TO_DECODE"),
    case("claims-no-exp", lambda t: t.webhook(t.webhook_token(exp=None)), 401, "FAILED_TO_DECODE"),
    case(
        "claims-iss-number",
        lambda t: t.webhook(hmac_signed({"alg": "HS256"}, t.claims(None, iss=12345), t.product.shared_secret.encode())),
        401,
        "FAILED_TO_DECODE",
    ),
    case("claims-exp-string", lambda t: t.webhook(t.webhook_token(exp=str(NOW + 180))), 401, "FAILED_TO_DECODE"),
    case("claims-exp-nan", lambda t: t.webhook(t.webhook_token(exp=float("nan"))), 401, "FAILED_TO_DECODE"),
    case("claims-exp-infinity", lambda t: t.webhook(t.webhook_token(exp=float("inf"))), 401, "FAILED_TO_DECODE"),
    case("claims-aud-number", lambda t: t.install(t.rs256(aud=7)), 401, "FAILED_TO_DECODE"),
    case(
        "claims-deeply-nested-context",
        lambda t: t.webhook(hand_token({"alg": "HS256"}, nested(2000).decode())),
        401,
        "FAILED_TO_DECODE",
    ),
    case("huge-token-header", lambda t: t.webhook(t.webhook_token(padding=LONG)), 401, "FAILED_TO_DECODE"),
    case("huge-token-query", lambda t: t.page(f"jwt={t.webhook_token(padding=LONG)}"), 401, "FAILED_TO_DECODE"),
    case("non-ascii-token-query", lambda t: t.page("jwt=" + quote("é.é.é")), 401, "FAILED_TO_DECODE"),
    case(
        "duplicate-jwt-params",
        lambda t: t.page(page_query(t, "a=1") + f"&jwt={t.webhook_token()}"),
        401,
        "FAILED_TO_DECODE",
    ),
]

ALGORITHMS = [
    case(
        "alg-none",
        lambda t: t.webhook(hand_token({"alg": "none"}, t.claims(qsh("POST", "/webhooks")))),
        401,
        "INVALID_ALGORITHM",
    ),
    case(
        "alg-None-capitalised",
        lambda t: t.webhook(hand_token({"alg": "None"}, t.claims(qsh("POST", "/webhooks")))),
        401,
        "INVALID_ALGORITHM",
    ),
    case(
        "alg-none-install",
        lambda t: t.install(
            hand_token({"alg": "none", "kid": t.product.kid}, t.claims(qsh("POST", "/installed"), aud=[APP_URL]))
        ),
        401,
        "INVALID_ALGORITHM",
    ),
    case(
        "alg-hs384",
        lambda t: t.webhook(
            hmac_signed(
                {"alg": "HS384"}, t.claims(qsh("POST", "/webhooks")), t.product.shared_secret.encode(), "sha384"
            )
        ),
        401,
        "INVALID_ALGORITHM",
    ),
    case(
        "alg-hs512",
        lambda t: t.webhook(
            hmac_signed(
                {"alg": "HS512"}, t.claims(qsh("POST", "/webhooks")), t.product.shared_secret.encode(), "sha512"
            )
        ),
        401,
        "INVALID_ALGORITHM",
    ),
    case("alg-rs512-install", lambda t: t.install(t.rs256(algorithm="RS512")), 401, "INVALID_ALGORITHM"),
    case("alg-ps256-install", lambda t: t.install(t.rs256(algorithm="PS256")), 401, "INVALID_ALGORITHM"),
    case(
        "alg-es256-header",
        lambda t: t.install(hand_token({"alg": "ES256", "kid": t.product.kid}, t.claims(None), b"\x01" * 64)),
        401,
        "INVALID_ALGORITHM",
    ),
    case("alg-rs256-on-webhook", lambda t: t.webhook(t.rs256("/webhooks")), 401, "INVALID_ALGORITHM"),
    case(
        "alg-hs256-on-install",
        lambda t: t.install(t.hs256(qsh("POST", "/installed"), aud=[APP_URL])),
        401,
        "INVALID_ALGORITHM",
    ),
    case("alg-rs256-on-enabled", lambda t: t.enable(t.rs256("/enabled")), 401, "INVALID_ALGORITHM"),
    case(
        "key-confusion-install",
        lambda t: t.install(
            hmac_signed(
                {"alg": "HS256", "kid": t.product.kid},
                t.claims(qsh("POST", "/installed"), aud=[APP_URL]),
                t.product.public_key_pem,
            )
        ),
        401,
        "INVALID_ALGORITHM",
    ),
    case(
        "key-confusion-webhook",
        lambda t: t.webhook(
            hmac_signed({"alg": "HS256"}, t.claims(qsh("POST", "/webhooks")), t.product.public_key_pem)
        ),
        401,
        "INVALID_SIGNATURE",
    ),
    case("forged-install-key", lambda t: t.install(t.rs256(key=generate_rsa_key())), 401, "INVALID_SIGNATURE"),
    case(
        "wrong-shared-secret",
        lambda t: t.webhook(t.webhook_token(secret="not-the-tenant-secret-" * 2)),
        401,
        "INVALID_SIGNATURE",
    ),
    case("flipped-signature-bit", lambda t: t.webhook(tampered_signature(t.webhook_token())), 401, "INVALID_SIGNATURE"),
    case(
        "empty-signature-hs256",
        lambda t: t.webhook(t.webhook_token().rpartition(".")[0] + "."),
        401,
        "INVALID_SIGNATURE",
    ),
]

KIDS = [
    kid_case("missing", None, "MISSING_KID"),
    kid_case("empty", "", "MISSING_KID"),
    kid_case("parent-traversal", "../../etc/passwd"),
    kid_case("inner-traversal", "keys/../../secret"),
    kid_case("dot-segment", "keys/./key"),
    kid_case("encoded-traversal", "..%2F..%2Fsecret"),
    kid_case("absolute-url", "https://evil.example/key.pem"),
    kid_case("leading-slash", "/etc/passwd"),
    kid_case("double-slash", "keys//key"),
    kid_case("query", "key.pem?x=1"),
    kid_case("fragment", "key.pem#x"),
    kid_case("whitespace", "key pem"),
    kid_case("newline", "key\r\nHost: evil.example"),
    kid_case("backslash", "..\\..\\secret"),
    kid_case("too-long", "k" * 300),
    kid_case("non-ascii", "clé"),
]

AUDIENCES = [
    aud_case("missing", None),
    aud_case("empty-list", []),
    aud_case("prefix", ["https://connect-app.example"]),
    aud_case("superstring-host", ["https://connect-app.example.test.evil.example"]),
    aud_case("extra-path", [f"{APP_URL}/installed"]),
    aud_case("http-scheme", ["http://connect-app.example.test"]),
    aud_case("other-app", ["https://other-app.example.test"]),
    aud_case("with-userinfo", ["https://connect-app.example.test@evil.example"]),
]

ISSUERS_AND_TIMES = [
    case("install-iss-not-client-key", lambda t: t.install(t.rs256(iss="fake-jira-someone-else")), 401, "WRONG_ISSUER"),
    case("install-client-key-not-iss", lambda t: t.install(clientKey="fake-jira-someone-else"), 401, "WRONG_ISSUER"),
    case(
        "install-duplicate-client-key-last-wins",
        lambda t: t.install(body=t.install_body()[:-1] + b', "clientKey": "fake-jira-someone-else"}'),
        401,
        "WRONG_ISSUER",
    ),
    case(
        "uninstall-iss-not-client-key",
        lambda t: t.uninstall(t.rs256("/uninstalled", iss="fake-jira-someone-else")),
        401,
        "WRONG_ISSUER",
    ),
    case(
        "uninstall-unknown-tenant",
        lambda t: t.uninstall(t.rs256("/uninstalled", iss="fake-jira-unknown"), clientKey="fake-jira-unknown"),
        401,
        "UNKNOWN_ISSUER",
    ),
    case(
        "webhook-unknown-issuer", lambda t: t.webhook(t.webhook_token(iss="fake-jira-unknown")), 401, "UNKNOWN_ISSUER"
    ),
    case(
        "unknown-kid-format-valid",
        lambda t: t.install(t.rs256(kid="fake-jira/no-such-key")),
        401,
        "FAILED_TO_OBTAIN_PUBLIC_KEY",
    ),
    case("webhook-expired", lambda t: t.webhook(t.webhook_token(exp=NOW - 3600)), 401, "TOKEN_EXPIRED"),
    case("install-expired", lambda t: t.install(t.rs256(exp=NOW - 3600)), 401, "TOKEN_EXPIRED"),
    case("events-expired", lambda t: t.events(t.hs256("context-qsh", exp=NOW - 3600)), 401, "TOKEN_EXPIRED"),
    case("webhook-nbf-future", lambda t: t.webhook(t.webhook_token(nbf=NOW + 3600)), 401, "TOKEN_NOT_YET_VALID"),
    case("install-nbf-future", lambda t: t.install(t.rs256(nbf=NOW + 3600)), 401, "TOKEN_NOT_YET_VALID"),
]

QSH_CASES = [
    case("qsh-missing", lambda t: t.webhook(t.webhook_token(qsh=None)), 401, "MISSING_QSH"),
    case("qsh-garbage", lambda t: t.webhook(t.webhook_token(qsh="0" * 64)), 401, "INVALID_QSH"),
    case("qsh-other-method", lambda t: t.webhook(t.hs256(qsh("GET", "/webhooks"))), 401, "INVALID_QSH"),
    case("qsh-other-path", lambda t: t.webhook(t.hs256(qsh("POST", "/installed"))), 401, "INVALID_QSH"),
    case("qsh-query-added", lambda t: t.webhook(query="replay=1"), 401, "INVALID_QSH"),
    case("qsh-context-on-webhook", lambda t: t.webhook(t.hs256("context-qsh")), 401, "INVALID_QSH"),
    case("qsh-computed-on-events", lambda t: t.events(t.hs256(qsh("GET", "/api/events"))), 401, "INVALID_QSH"),
    case("install-qsh-other-path", lambda t: t.install(t.rs256("/uninstalled")), 401, "INVALID_QSH"),
    case(
        "page-duplicate-key-value-changed", lambda t: t.page(page_query(t, "a=1,2", sent="a=1&a=3")), 401, "INVALID_QSH"
    ),
    case(
        "page-duplicate-key-value-added",
        lambda t: t.page(page_query(t, "a=1,2", sent="a=1&a=2&a=3")),
        401,
        "INVALID_QSH",
    ),
    case("page-duplicate-key-value-dropped", lambda t: t.page(page_query(t, "a=1,2", sent="a=1")), 401, "INVALID_QSH"),
]

BODIES = [
    install_body_case("empty", b""),
    install_body_case("not-json", b"{not json"),
    install_body_case("json-array", b"[]"),
    install_body_case("json-number", b"42"),
    install_body_case("json-string", b'"installed"'),
    install_body_case("json-null", b"null"),
    install_body_case("invalid-utf8", b'{"key": "\xff\xfe"}'),
    install_body_case("utf16", lambda t: t.install_body().decode().encode("utf-16")),
    install_body_case("deeply-nested", nested(5_000)),
    install_body_case("oversized-content-length", lambda t: t.install_body(description="x" * (MAX_BODY + 1)), 413),
    case(
        "install-body-oversized-chunked",
        lambda t: t.install(body=chunked(t.install_body(padding="x" * (MAX_BODY + 1)))),
        413,
        "PAYLOAD_TOO_LARGE",
    ),
    case(
        "install-body-oversized-without-token-is-401-first",
        lambda t: t.install(token=None, body=b" " * (MAX_BODY + 1)),
        401,
        "MISSING_JWT",
    ),
    install_field_case("no-shared-secret", sharedSecret=None),
    install_field_case("no-base-url", baseUrl=None),
    install_field_case("empty-client-key", clientKey=""),
    install_field_case("client-key-too-long", clientKey="k" * 256),
    install_field_case("shared-secret-number", sharedSecret=12345),
    install_field_case("shared-secret-too-long", sharedSecret="s" * 1025),
    install_field_case("base-url-javascript", baseUrl="javascript:alert(1)"),
    install_field_case("base-url-credentials", baseUrl="https://user:pw@fake-jira.atlassian.net"),
    install_field_case("base-url-query", baseUrl="https://fake-jira.atlassian.net?x=1"),
    install_field_case("base-url-untrusted", 401, "UNTRUSTED_PRODUCT_HOST", baseUrl="https://jira.evil.example"),
    install_field_case(
        "base-url-lookalike", 401, "UNTRUSTED_PRODUCT_HOST", baseUrl="https://fake-jira.atlassian.net.evil.example"
    ),
    case(
        "uninstall-event-type-installed", lambda t: t.uninstall(eventType="installed"), 400, "INVALID_INSTALL_PAYLOAD"
    ),
    case(
        "webhook-unsigned-huge-body",
        lambda t: t.webhook(token=None, body=b'{"x": "' + b"y" * 1_000_000 + b'"}'),
        401,
        "MISSING_JWT",
    ),
    case("webhook-json-array", lambda t: t.webhook(body=b"[1, 2, 3]"), 422, NOT_JSON_CODE),
    case("webhook-json-number", lambda t: t.webhook(body=b"42"), 422, NOT_JSON_CODE),
    case("webhook-not-json", lambda t: t.webhook(body=b"{not json"), 422, NOT_JSON_CODE),
    case(
        "webhook-signed-huge-body",
        lambda t: t.webhook(body=b'{"x": "' + b"y" * 1_100_000 + b'"}'),
        413,
        "PAYLOAD_TOO_LARGE",
    ),
    case("webhook-invalid-utf8", lambda t: t.webhook(body=b'{"key": "\xff"}'), 422, NOT_JSON_CODE),
    case("webhook-deeply-nested", lambda t: t.webhook(body=nested(100_000)), 422, NOT_JSON_CODE),
    # The body is read only after the call is verified: an unsigned caller learns nothing about it.
    case("webhook-unsigned-not-json", lambda t: t.webhook(token=None, body=b"{not json"), 401, "MISSING_JWT"),
]

CORPUS = [*TOKEN_SHAPES, *ALGORITHMS, *KIDS, *AUDIENCES, *ISSUERS_AND_TIMES, *QSH_CASES, *BODIES]


@pytest.mark.parametrize(("send", "status", "code"), CORPUS)
def test_hostile_input_is_refused_and_stores_nothing(target: Target, send: Send, status: int, code: str | None) -> None:
    before = target.snapshot()
    requests_before = len(target.key_requests)
    response = send(target)
    assert response.status_code == status, response.text[:500]
    body = response.json()
    if code is NOT_JSON_CODE:
        assert "code" not in body  # FastAPI's body error, raised before the Connect dependency ran
    else:
        assert body["code"] == code, body
    if status == 401:
        assert response.headers["WWW-Authenticate"] == "JWT"
    assert target.snapshot() == before
    if code in ("MISSING_KID", "INVALID_KID"):
        assert len(target.key_requests) == requests_before  # no URL was built from a hostile kid


def test_the_corpus_is_large_and_its_cases_are_distinct() -> None:
    ids = [param.id for param in CORPUS]
    assert len(ids) >= 60
    assert len(set(ids)) == len(ids)


def test_repeated_query_keys_in_any_order_pass_with_a_valid_qsh(target: Target) -> None:
    """The canonical query sorts a repeated key's values: the product may send them in any order."""
    for sent in ("a=2&a=1&b=x", "b=x&a=1&a=2", "a=1&b=x&a=2"):
        response = target.page(page_query(target, "a=1,2&b=x", sent=sent))
        assert response.status_code == 200, (sent, response.text[:200])


def test_the_tenant_still_works_after_the_corpus(target: Target) -> None:
    """The corpus neither uninstalled the tenant nor rotated its secret: a genuine webhook is stored."""
    before_tenants, before_events = target.snapshot()
    assert target.webhook().status_code == 204
    tenants, events = target.snapshot()
    assert tenants == before_tenants
    assert len(events) == len(before_events) + 1
