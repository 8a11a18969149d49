"""Calls to a product's REST API: app JWTs, user impersonation, context tokens and the refusals.

Every token is checked independently: decoded with PyJWT and its `qsh` compared
with `hashlib.sha256` of a canonical request written out by hand (several are
Atlassian's published vectors). The product and the token endpoint are real
loopback HTTP servers, or `httpx2.MockTransport` where https hosts are needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import jwt
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from fastapi_connect_auth import (
    ConnectAppAuth,
    ConnectAuth,
    ConnectRequest,
    ConnectUserAuth,
    Credentials,
    ProductAPIError,
    RetryPolicy,
    TokenRequestError,
    UnsafeRedirectError,
    UnsafeRequestError,
    UserTokenProvider,
    VerifiedRequest,
    authorization_server_for,
    context_token,
    product_client,
    sync_product_client,
)
from tests._keyserver import free_loopback_port

SECRET = "tenant-shared-secret-of-at-least-thirty-two-bytes"
APP_KEY = "com.example.my-app"
CLIENT_KEY = "tenant-client-key"
OAUTH_CLIENT_ID = "oauth-client-id-1"
ACCOUNT_ID = "5b10ac8d82e05b22cc7d4ef5"
TENANT = "https://tenant.atlassian.net"
NOW = 1_700_000_000.0


def sha256_hex(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def decode_app_jwt(
    authorization: str | None, *, verify_times: bool = True, audience: str = CLIENT_KEY
) -> dict[str, Any]:
    """The claims of an `Authorization: JWT <token>` header, checked by PyJWT alone."""
    assert authorization is not None
    assert authorization.startswith("JWT ")
    token = authorization.removeprefix("JWT ")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims: dict[str, Any] = jwt.decode(
        token,
        SECRET,
        algorithms=["HS256"],
        audience=audience,
        options={"require": ["iss", "iat", "exp", "qsh"], "verify_exp": verify_times, "verify_iat": verify_times},
    )
    assert claims["iss"] == APP_KEY
    return claims


# --- loopback HTTP servers -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request as the server saw it."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("ascii"), keep_blank_values=True)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class LoopbackServer:
    url: str
    respond: Callable[[Received], Reply]
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def serve(respond: Callable[[Received], Reply]) -> Iterator[LoopbackServer]:
    """A real HTTP server on 127.0.0.1 in a thread, answering with `respond` and recording every request."""
    state = LoopbackServer("", respond)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_one(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            received = Received(
                self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)
            )
            with state.lock:
                state.received.append(received)
            reply = state.respond(received)
            if reply.delay:
                time.sleep(reply.delay)
            body = b"" if reply.body is None else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = handle_one

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def product_replies(redirects: dict[str, str] | None = None) -> Callable[[Received], Reply]:
    """A fake product: redirects the paths in `redirects`, answers 200 with the path elsewhere."""

    def respond(received: Received) -> Reply:
        if redirects and received.path in redirects:
            return Reply(302, headers={"Location": redirects[received.path]})
        return Reply(200, {"path": received.path})

    return respond


class FakeTokenEndpoint:
    """Issues `token-1`, `token-2`, … with `expires_in`, or answers with `error` when set."""

    def __init__(self, expires_in: float = 900, delay: float = 0.0) -> None:
        self.expires_in = expires_in
        self.delay = delay
        self.error: Reply | None = None
        self.issued = 0
        self.lock = threading.Lock()

    def __call__(self, received: Received) -> Reply:
        if self.error is not None:
            return self.error
        with self.lock:
            self.issued += 1
            token = f"token-{self.issued}"
        return Reply(
            200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}, delay=self.delay
        )


@contextmanager
def user_setup(
    endpoint: FakeTokenEndpoint | None = None, clock: Callable[[], float] = time.time
) -> Iterator[tuple[LoopbackServer, LoopbackServer, UserTokenProvider]]:
    """A product, a token endpoint and a provider pointed at it."""
    with serve(product_replies()) as product, serve(endpoint or FakeTokenEndpoint()) as token_server:
        yield product, token_server, UserTokenProvider(authorization_server=token_server.url, clock=clock)


def user_client(
    product: LoopbackServer, tokens: UserTokenProvider, account_id: str = ACCOUNT_ID, scopes: tuple[str, ...] = ()
) -> httpx2.AsyncClient:
    return product_client(
        app_key=APP_KEY,
        client_key=CLIENT_KEY,
        base_url=product.url,
        shared_secret=SECRET,
        as_user=account_id,
        oauth_client_id=OAUTH_CLIENT_ID,
        scopes=scopes,
        tokens=tokens,
    )


# --- mock transport for https tenants ------------------------------------------------------------------------------


class MockProduct:
    """Every host answers here; `redirects` maps a full URL to a Location. Records each request."""

    def __init__(self, redirects: dict[str, tuple[int, str]] | None = None) -> None:
        self.redirects = redirects or {}
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        redirect = self.redirects.get(str(request.url))
        if redirect is not None:
            status, location = redirect
            return httpx2.Response(status, headers={"Location": location})
        return httpx2.Response(200, json={"ok": True})

    def hosts(self) -> list[str]:
        return [request.url.host for request in self.requests]


def app_auth(base_url: str = TENANT, clock: Callable[[], float] = time.time, **options: Any) -> ConnectAppAuth:
    return ConnectAppAuth(
        app_key=APP_KEY, client_key=CLIENT_KEY, base_url=base_url, shared_secret=SECRET, clock=clock, **options
    )


def mock_client(mock: MockProduct, base_url: str = TENANT, **auth_options: Any) -> httpx2.Client:
    return httpx2.Client(
        base_url=base_url, auth=app_auth(base_url, **auth_options), transport=httpx2.MockTransport(mock)
    )


# --- app JWT: claims and QSH ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "method", "path", "params", "canonical"),
    [
        pytest.param(
            "https://tenant.atlassian.net/wiki",
            "GET",
            "/rest/api/space",
            {"expand": "a,b"},
            "GET&/rest/api/space&expand=a%2Cb",
            id="confluence-base-path",
        ),
        pytest.param(
            "https://tenant.atlassian.net/wiki",
            "GET",
            "/rest/api/content",
            [("label", "b c"), ("spaceKey", "DOC"), ("label", "a"), ("title", "x+y")],
            "GET&/rest/api/content&label=a,b%20c&spaceKey=DOC&title=x%2By",
            id="repeated-keys-and-spaces",
        ),
        pytest.param(
            "https://bitbucket.org/base",
            "GET",
            "/path/to/service",
            [
                ("zee_last", "param"),
                ("repeated", "parameter 1"),
                ("first", "param"),
                ("repeated", "parameter 2"),
                ("repeated", "Parameter 2"),
            ],
            "GET&/path/to/service&first=param&repeated=Parameter%202,parameter%201,parameter%202&zee_last=param",
            id="atlassian-published-vector",
        ),
        pytest.param(
            "https://tenant.atlassian.net", "POST", "/rest/api/3/issue", None, "POST&/rest/api/3/issue&", id="jira-post"
        ),
        pytest.param("https://tenant.atlassian.net/wiki", "GET", "/", None, "GET&/&", id="the-base-itself"),
    ],
)
def test_app_jwt_claims_and_qsh(base_url: str, method: str, path: str, params: Any, canonical: str) -> None:
    mock, clock = MockProduct(), FakeClock()
    with mock_client(mock, base_url, clock=clock) as client:
        response = client.request(method, path, params=params, json={} if method == "POST" else None)
    assert response.status_code == 200
    (sent,) = mock.requests
    assert "jwt" not in sent.url.params
    bitbucket = "bitbucket.org" in base_url
    claims = decode_app_jwt(
        sent.headers["Authorization"], verify_times=False, audience=None if bitbucket else CLIENT_KEY
    )  # type: ignore[arg-type]
    assert claims["qsh"] == sha256_hex(canonical)
    assert (claims["iat"], claims["exp"]) == (int(NOW), int(NOW) + 180)
    if bitbucket:
        assert claims["sub"] == CLIENT_KEY
        assert "aud" not in claims
    else:
        assert claims["aud"] == [CLIENT_KEY]
        assert "sub" not in claims


def test_each_send_is_signed_afresh() -> None:
    mock, clock = MockProduct(), FakeClock()
    with mock_client(mock, clock=clock) as client:
        request = client.build_request("GET", "/rest/api/3/myself")
        first = decode_app_jwt(client.send(request).request.headers["Authorization"], verify_times=False)
        clock.now += 100
        second = decode_app_jwt(client.send(request).request.headers["Authorization"], verify_times=False)
    assert len(mock.requests) == 2
    assert second["iat"] == first["iat"] + 100
    assert first["qsh"] == second["qsh"] == sha256_hex("GET&/rest/api/3/myself&")


# --- redirects ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "method"), [(302, "GET"), (307, "POST"), (308, "PUT")])
def test_same_origin_redirect_is_followed_and_re_signed(status: int, method: str) -> None:
    mock = MockProduct({f"{TENANT}/wiki/rest/old": (status, "/wiki/rest/new?b=2&a=1")})
    with mock_client(mock, f"{TENANT}/wiki") as client:
        response = client.request(method, "/rest/old", content=b"body" if method != "GET" else None)
    assert response.status_code == 200
    first, second = mock.requests
    assert second.method == method
    assert second.url.path == "/wiki/rest/new"
    assert decode_app_jwt(first.headers["Authorization"])["qsh"] == sha256_hex(f"{method}&/rest/old&")
    assert decode_app_jwt(second.headers["Authorization"])["qsh"] == sha256_hex(f"{method}&/rest/new&a=1&b=2")
    if method != "GET":
        assert second.content == b"body"


@pytest.mark.parametrize(
    "location",
    [
        "https://attacker.example/steal",
        "http://tenant.atlassian.net/rest/x",
        "https://tenant.atlassian.net:8443/rest/x",
        "https://other.atlassian.net/rest/x",
    ],
    ids=["other-host", "https-to-http", "other-port", "other-tenant"],
)
def test_redirect_to_another_origin_is_refused_before_it_is_sent(location: str) -> None:
    mock = MockProduct({f"{TENANT}/rest/api/3/myself": (302, location)})
    with mock_client(mock) as client, pytest.raises(UnsafeRedirectError, match="Not following") as caught:
        client.get("/rest/api/3/myself")
    assert caught.value.location == location
    assert len(mock.requests) == 1  # the other origin got nothing, with or without credentials


def test_redirects_are_returned_unfollowed_when_asked() -> None:
    mock = MockProduct({f"{TENANT}/a": (302, "https://media.example/file")})
    with mock_client(mock, follow_redirects=False) as client:
        response = client.get("/a")
    assert response.status_code == 302
    assert len(mock.requests) == 1


def test_redirect_loop_stops() -> None:
    mock = MockProduct({f"{TENANT}/a": (302, "/b"), f"{TENANT}/b": (302, "/a")})
    with mock_client(mock, max_redirects=3) as client, pytest.raises(httpx2.TooManyRedirects):
        client.get("/a")
    assert len(mock.requests) == 4


def test_a_client_following_redirects_itself_is_reported() -> None:
    mock = MockProduct({f"{TENANT}/a": (302, "/b")})
    auth = app_auth()
    client = httpx2.Client(base_url=TENANT, auth=auth, transport=httpx2.MockTransport(mock), follow_redirects=True)
    with client, pytest.raises(ProductAPIError, match="follow_redirects=False"):
        client.get("/a")


# --- refusals before sending ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://attacker.example/rest/api/3/myself",
        "https://tenant.atlassian.net.attacker.example/rest",
        "http://tenant.atlassian.net/rest/api/3/myself",
        "https://tenant.atlassian.net:444/rest",
        "https://other.atlassian.net/rest",
    ],
)
def test_requests_to_another_origin_are_refused(url: str) -> None:
    mock = MockProduct()
    with mock_client(mock) as client, pytest.raises(UnsafeRequestError, match="Refused to send"):
        client.get(url)
    assert mock.requests == []


@pytest.mark.parametrize("base_url", ["http://tenant.atlassian.net", "http://10.0.0.1:8080", "http://localhost.evil"])
def test_plain_http_is_refused_except_to_loopback(base_url: str) -> None:
    with pytest.raises(UnsafeRequestError, match="plain http"):
        app_auth(base_url)
    with pytest.raises(UnsafeRequestError, match="plain http"):
        UserTokenProvider(authorization_server=base_url)


@pytest.mark.parametrize("base_url", ["http://localhost:2990/jira", "http://127.0.0.1:8080", "http://[::1]:8000"])
def test_plain_http_to_loopback_is_allowed(base_url: str) -> None:
    assert app_auth(base_url).base_url == httpx2.URL(base_url)


@pytest.mark.parametrize(
    "base_url",
    ["ftp://tenant.atlassian.net", "https://user:pw@tenant.atlassian.net", "https://t.atlassian.net/?a=b", "/wiki"],
)
def test_malformed_base_urls_are_refused(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        app_auth(base_url)


def test_secrets_are_not_in_reprs() -> None:
    tokens = UserTokenProvider()
    grant = tokens.grant(base_url=TENANT, oauth_client_id=OAUTH_CLIENT_ID, shared_secret=SECRET, account_id=ACCOUNT_ID)
    user = ConnectUserAuth(
        base_url=TENANT, oauth_client_id=OAUTH_CLIENT_ID, shared_secret=SECRET, account_id=ACCOUNT_ID, tokens=tokens
    )
    for text in (repr(app_auth()), repr(grant), repr(user)):
        assert SECRET not in text


# --- a real loopback product --------------------------------------------------------------------------------------


def test_real_product_receives_verifiable_jwts_and_same_origin_redirects() -> None:
    with (
        serve(product_replies()) as outsider,
        serve(
            product_replies({"/wiki/rest/moved": "/wiki/rest/api/space?spaceKey=DOC", "/wiki/rest/away": outsider.url})
        ) as product,
        sync_product_client(
            app_key=APP_KEY, client_key=CLIENT_KEY, base_url=f"{product.url}/wiki", shared_secret=SECRET
        ) as client,
    ):
        assert client.get("/rest/api/content", params=[("title", "a b"), ("id", "2"), ("id", "10")]).json() == {
            "path": "/wiki/rest/api/content"
        }
        assert client.get("/rest/moved").json() == {"path": "/wiki/rest/api/space"}
        with pytest.raises(UnsafeRedirectError):
            client.get("/rest/away")
    qshs = [decode_app_jwt(received.headers.get("authorization"))["qsh"] for received in product.received]
    assert qshs == [
        sha256_hex("GET&/rest/api/content&id=10,2&title=a%20b"),
        sha256_hex("GET&/rest/moved&"),
        sha256_hex("GET&/rest/api/space&spaceKey=DOC"),
        sha256_hex("GET&/rest/away&"),
    ]
    assert outsider.received == []


@pytest.mark.anyio
async def test_real_product_with_the_async_client() -> None:
    with serve(product_replies()) as product:
        async with product_client(
            app_key=APP_KEY, client_key=CLIENT_KEY, base_url=product.url, shared_secret=SECRET
        ) as client:
            response = await client.delete("/rest/api/3/issue/DOC-1", params={"deleteSubtasks": "true"})
    assert response.status_code == 200
    (received,) = product.received
    assert decode_app_jwt(received.headers["authorization"])["qsh"] == sha256_hex(
        "DELETE&/rest/api/3/issue/DOC-1&deleteSubtasks=true"
    )


# --- acting as a user ----------------------------------------------------------------------------------------------


def check_assertion(
    received: Received, token_server: LoopbackServer, product: LoopbackServer, scope: str | None
) -> None:
    """What Atlassian's token endpoint checks, done with PyJWT."""
    assert received.method == "POST"
    assert received.path == "/oauth2/token"
    assert received.headers["accept"] == "application/json"
    form = received.form()
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    assert form.get("scope") == ([scope] if scope else None)
    (assertion,) = form["assertion"]
    assert jwt.get_unverified_header(assertion)["alg"] == "HS256"
    claims = jwt.decode(
        assertion,
        SECRET,
        algorithms=["HS256"],
        audience=token_server.url,
        options={"require": ["iss", "sub", "tnt", "aud", "iat", "exp"]},
    )
    assert claims["iss"] == f"urn:atlassian:connect:clientid:{OAUTH_CLIENT_ID}"
    assert claims["sub"] == f"urn:atlassian:connect:useraccountid:{ACCOUNT_ID}"
    assert claims["tnt"] == product.url
    assert claims["aud"] == token_server.url
    assert 0 < claims["exp"] - claims["iat"] <= 60


@pytest.mark.anyio
async def test_user_token_is_requested_with_a_valid_assertion_and_sent_as_bearer() -> None:
    with user_setup() as (product, token_server, tokens):
        async with user_client(product, tokens, scopes=("write", "read", "READ")) as client:
            response = await client.get("/rest/api/3/myself")
    assert response.status_code == 200
    (token_request,) = token_server.received
    check_assertion(token_request, token_server, product, scope="READ WRITE")
    assert product.received[0].headers["authorization"] == "Bearer token-1"


def test_user_token_with_the_sync_client_and_no_scopes() -> None:
    with (
        user_setup() as (product, token_server, tokens),
        sync_product_client(
            app_key=APP_KEY,
            client_key=CLIENT_KEY,
            base_url=product.url,
            shared_secret=SECRET,
            as_user=ACCOUNT_ID,
            oauth_client_id=OAUTH_CLIENT_ID,
            tokens=tokens,
        ) as client,
    ):
        client.get("/a")
        client.get("/b")
    (token_request,) = token_server.received
    check_assertion(token_request, token_server, product, scope=None)
    assert [r.headers["authorization"] for r in product.received] == ["Bearer token-1", "Bearer token-1"]


@pytest.mark.anyio
async def test_user_tokens_are_cached_per_user_and_scopes() -> None:
    with user_setup() as (product, token_server, tokens):
        for account_id, scopes in [
            (ACCOUNT_ID, ("READ",)),
            (ACCOUNT_ID, ("read",)),
            ("other-user", ("READ",)),
            (ACCOUNT_ID, ("READ", "WRITE")),
            (ACCOUNT_ID, ("READ",)),
        ]:
            async with user_client(product, tokens, account_id, scopes) as client:
                await client.get("/rest/api/3/myself")
    assert len(token_server.received) == 3
    assert [r.headers["authorization"] for r in product.received] == [
        "Bearer token-1",
        "Bearer token-1",
        "Bearer token-2",
        "Bearer token-3",
        "Bearer token-1",
    ]


@pytest.mark.anyio
async def test_a_token_the_product_rejects_is_not_reused() -> None:
    with user_setup() as (product, token_server, tokens):
        product.respond = lambda received: Reply(401 if received.path == "/revoked" else 200)
        async with user_client(product, tokens) as client:
            assert (await client.get("/revoked")).status_code == 401
            assert (await client.get("/fine")).status_code == 200
            assert (await client.get("/fine")).status_code == 200
    assert len(token_server.received) == 2
    assert [r.headers["authorization"] for r in product.received] == [
        "Bearer token-1",
        "Bearer token-2",
        "Bearer token-2",
    ]


@pytest.mark.anyio
async def test_a_different_secret_never_gets_a_cached_token() -> None:
    with user_setup() as (product, _, tokens):
        grant = tokens.grant(
            base_url=product.url, oauth_client_id=OAUTH_CLIENT_ID, shared_secret=SECRET, account_id=ACCOUNT_ID
        )
        other = tokens.grant(
            base_url=product.url, oauth_client_id=OAUTH_CLIENT_ID, shared_secret=SECRET + "x", account_id=ACCOUNT_ID
        )
        assert await tokens.access_token(grant) == "token-1"
        assert await tokens.access_token(other) == "token-2"


@pytest.mark.anyio
async def test_user_token_is_refreshed_shortly_before_it_expires() -> None:
    clock = FakeClock(time.time())
    with user_setup(FakeTokenEndpoint(expires_in=100), clock=clock) as (product, token_server, tokens):
        async with user_client(product, tokens) as client:
            await client.get("/one")
            clock.now += 69  # 31 s left: more than the 30 s margin
            await client.get("/two")
            clock.now += 2  # 29 s left
            await client.get("/three")
    assert len(token_server.received) == 2
    assert [r.headers["authorization"] for r in product.received] == [
        "Bearer token-1",
        "Bearer token-1",
        "Bearer token-2",
    ]


@pytest.mark.anyio
async def test_concurrent_callers_share_one_token_request() -> None:
    with user_setup(FakeTokenEndpoint(delay=0.2)) as (product, token_server, tokens):
        async with user_client(product, tokens) as client:
            responses = await asyncio.gather(*(client.get(f"/issue/{n}") for n in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert len(token_server.received) == 1
    assert {r.headers["authorization"] for r in product.received} == {"Bearer token-1"}


def test_concurrent_threads_share_one_token_request() -> None:
    with user_setup(FakeTokenEndpoint(delay=0.2)) as (product, token_server, tokens):
        auth = ConnectUserAuth(
            base_url=product.url,
            oauth_client_id=OAUTH_CLIENT_ID,
            shared_secret=SECRET,
            account_id=ACCOUNT_ID,
            tokens=tokens,
        )
        with httpx2.Client(base_url=product.url, auth=auth) as client:
            threads = [threading.Thread(target=client.get, args=(f"/issue/{n}",)) for n in range(10)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    assert len(token_server.received) == 1
    assert len(product.received) == 10
    assert {r.headers["authorization"] for r in product.received} == {"Bearer token-1"}


@pytest.mark.anyio
async def test_token_endpoint_errors_are_clear_and_hold_no_credentials(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    endpoint = FakeTokenEndpoint()
    with user_setup(endpoint) as (product, token_server, tokens):

        def refuse(received: Received) -> Reply:
            signature = received.form()["assertion"][0].rsplit(".", 1)[1]
            echoed = f"bad secret {SECRET} or signature {signature}\n"
            return Reply(400, {"error": "invalid_grant", "error_description": echoed})

        token_server.respond = refuse
        async with user_client(product, tokens) as client:
            with pytest.raises(TokenRequestError) as caught:
                await client.get("/rest/api/3/myself")
            token_server.respond = endpoint  # a failure is not cached: the next call asks again
            assert (await client.get("/rest/api/3/myself")).status_code == 200
    error = caught.value
    assert (error.status_code, error.error) == (400, "invalid_grant")
    message = str(error)
    assert "HTTP 400" in message
    assert "invalid_grant" in message
    assert ACCOUNT_ID in message
    assert "[redacted]" in message
    assertion = token_server.received[0].form()["assertion"][0]
    for secret in (assertion, SECRET):
        assert secret not in message
        assert secret not in caplog.text
    assert [r.path for r in product.received] == ["/rest/api/3/myself"]  # only the second call reached the product
    assert "token-1" not in caplog.text


@pytest.mark.anyio
@pytest.mark.parametrize(
    "reply",
    [Reply(200, {"token_type": "Bearer"}), Reply(200, {"access_token": "t", "expires_in": "soon"}), Reply(502, None)],
)
async def test_malformed_token_responses_are_errors(reply: Reply) -> None:
    endpoint = FakeTokenEndpoint()
    endpoint.error = reply
    with user_setup(endpoint) as (product, _, tokens):
        async with user_client(product, tokens) as client:
            with pytest.raises(TokenRequestError, match="authorization server"):
                await client.get("/x")
    assert product.received == []


@pytest.mark.anyio
async def test_injected_token_clients_are_used_and_refusals_raise_in_both_flavours() -> None:
    seen: list[httpx2.Request] = []

    def refuse(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(403, json={"error": "unauthorized_client"})

    transport = httpx2.MockTransport(refuse)
    async with httpx2.AsyncClient(transport=transport) as client:
        with httpx2.Client(transport=transport) as sync_client:
            tokens = UserTokenProvider(
                authorization_server="https://auth.example.test", client=client, sync_client=sync_client
            )
            grant = tokens.grant(
                base_url=TENANT, oauth_client_id=OAUTH_CLIENT_ID, shared_secret=SECRET, account_id=ACCOUNT_ID
            )
            with pytest.raises(TokenRequestError, match="unauthorized_client") as caught:
                tokens.access_token_sync(grant)
            assert caught.value.status_code == 403
            with pytest.raises(TokenRequestError, match="unauthorized_client"):
                await tokens.access_token(grant)
    assert [str(request.url) for request in seen] == ["https://auth.example.test/oauth2/token"] * 2


@pytest.mark.anyio
async def test_unreachable_token_endpoint_is_an_error_after_the_retries() -> None:
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    retries = RetryPolicy(async_sleep=wait, random=lambda: 0.5)
    with serve(product_replies()) as product:
        tokens = UserTokenProvider(authorization_server=f"http://127.0.0.1:{free_loopback_port()}", retries=retries)
        async with user_client(product, tokens) as client:
            with pytest.raises(TokenRequestError, match="Could not reach"):
                await client.get("/x")
    assert waits == [2.0, 4.0, 8.0, 16.0]  # a refused connection is retried like a 503
    assert product.received == []


@pytest.mark.anyio
async def test_user_auth_refuses_other_hosts_before_fetching_a_token() -> None:
    with user_setup() as (product, token_server, tokens):
        async with user_client(product, tokens) as client:
            with pytest.raises(UnsafeRequestError):
                await client.get("https://attacker.example/rest")
    assert token_server.received == []
    assert product.received == []


@pytest.mark.parametrize(
    ("base_url", "server"),
    [
        ("https://tenant.atlassian.net", "https://oauth-2-authorization-server.services.atlassian.com"),
        ("https://tenant.jira.com", "https://oauth-2-authorization-server.services.atlassian.com"),
        ("https://tenant.jira-dev.com", "https://oauth-2-authorization-server.stg.services.atlassian.com"),
        (
            "https://tenant.atlassian-us-gov-mod.net",
            "https://oauth-2-authorization-server.services.atlassian-us-gov-mod.com",
        ),
        (
            "https://tenant.atlassian-stg-fedm.net",
            "https://oauth-2-authorization-server.stg.services.atlassian-us-gov-mod.com",
        ),
        ("https://unknown.example", "https://oauth-2-authorization-server.services.atlassian.com"),
    ],
)
def test_authorization_server_follows_the_product_environment(base_url: str, server: str) -> None:
    assert authorization_server_for(base_url) == server
    grant = UserTokenProvider().grant(
        base_url=base_url, oauth_client_id=OAUTH_CLIENT_ID, shared_secret=SECRET, account_id=ACCOUNT_ID
    )
    assert grant.authorization_server == server


def test_factory_needs_the_oauth_client_id_for_users_and_owns_redirects() -> None:
    with pytest.raises(ValueError, match="oauth_client_id"):
        product_client(
            app_key=APP_KEY, client_key=CLIENT_KEY, base_url=TENANT, shared_secret=SECRET, as_user=ACCOUNT_ID
        )
    with pytest.raises(ValueError, match="follow_redirects"):
        product_client(
            app_key=APP_KEY, client_key=CLIENT_KEY, base_url=TENANT, shared_secret=SECRET, follow_redirects=True
        )


# --- context tokens -------------------------------------------------------------------------------------------------


def context_app(clock: Callable[[], float] = time.time) -> TestClient:
    tenants = {CLIENT_KEY: Credentials(shared_secret=SECRET)}
    connect = ConnectAuth(base_url="https://app.example.test", credentials_loader=tenants.get, clock=clock)
    app = FastAPI()
    connect.install(app)

    @app.get("/api/context")
    def by_context(call: Annotated[VerifiedRequest[Any], Depends(ConnectRequest(qsh="context"))]) -> dict[str, Any]:
        return {"client_key": call.client_key, "account_id": call.account_id}

    @app.get("/api/computed")
    def by_qsh(call: Annotated[VerifiedRequest[Any], Depends(ConnectRequest())]) -> dict[str, Any]:
        return {}

    return TestClient(app)


def test_context_token_is_accepted_by_a_context_route() -> None:
    token = context_token(
        client_key=CLIENT_KEY, shared_secret=SECRET, account_id=ACCOUNT_ID, context={"jira": {"x": 1}}
    )
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"require": ["iss", "sub", "iat", "exp", "qsh"]})
    assert claims["iss"] == CLIENT_KEY
    assert claims["sub"] == ACCOUNT_ID
    assert claims["qsh"] == "context-qsh"
    assert claims["context"] == {"jira": {"x": 1}, "user": {"accountId": ACCOUNT_ID}}
    assert 0 < claims["exp"] - claims["iat"] <= 300
    with context_app() as client:
        response = client.get("/api/context", headers={"Authorization": f"JWT {token}"})
        assert response.json() == {"client_key": CLIENT_KEY, "account_id": ACCOUNT_ID}
        refused = client.get("/api/computed", headers={"Authorization": f"JWT {token}"})
        assert refused.status_code == 401
        assert refused.json()["code"] == "INVALID_QSH"


def test_context_token_expires() -> None:
    token = context_token(
        client_key=CLIENT_KEY, shared_secret=SECRET, account_id=ACCOUNT_ID, lifetime=120, clock=lambda: NOW
    )
    with context_app(clock=lambda: NOW + 120 + 31) as client:
        response = client.get("/api/context", headers={"Authorization": f"JWT {token}"})
    assert response.status_code == 401
    assert response.json()["code"] == "TOKEN_EXPIRED"
