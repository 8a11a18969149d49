"""Shared fixtures: real RSA keys, a MockTransport install-keys CDN, independent tokens and a small Connect app.

Tokens are made with PyJWT (`jwt.encode`) and query string hashes with `hashlib`
from canonical strings written out here or in the tests, never with the library
under test, so a test fails if the library's canonicalisation or checks break.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

import anyio
import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from hypothesis import settings
from jwt.utils import base64url_encode

from fastapi_connect_auth import (
    AtlassianKeyProvider,
    AuthorizationMethod,
    ConnectAuth,
    ConnectInstall,
    ConnectLifecycle,
    ConnectRequest,
    Credentials,
    ProductHosts,
    PublicKeyProvider,
    VerifiedInstallation,
    VerifiedLifecycle,
    VerifiedRequest,
)

# Speed is measured in benchmarks, never asserted in tests: Hypothesis' per-example deadline failed
# property tests on a loaded machine (CI shares its cores), so no test here has one.
settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")

pytest_plugins = [
    "tests.postgres",
    "tests.redis_server",
    "tests.browser",
]  # real PostgreSQL and Redis servers and a real browser, on request

BASE_URL = "https://test.example.com"
PRODUCT_BASE_URL = "https://tenant.atlassian.net"
CLIENT_KEY = "client-key"
# The Node library's test secret, repeated: PyJWT warns (an error here) on HMAC keys under 32 bytes.
SHARED_SECRET = "shh-secret-cat-" * 3
NEW_SHARED_SECRET = "a-fresh-shared-secret-from-the-update-" * 2
# Atlassian's kids are key paths, with `/`, since November 2024 (the shape is in docs/public-keys.md).
KID = "generic-keypair/cs-migrations/installation-key-pair--t3stk3y0000000001"
NOW = 1_700_000_000
"""The fixed time of every `ConnectAuth` built here (its `clock`), so token times are exact."""

Entity = dict[str, str]
LoaderKind = Literal["sync", "async"]


def hash_canonical(canonical: str) -> str:
    """The QSH of a canonical request written out by hand, e.g. `"GET&/page&a=1,10,3&b=2"`."""
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def qsh_for(method: str, path: str) -> str:
    """The QSH of a request without query parameters: its canonical form is `METHOD&path&`."""
    return hash_canonical(f"{method}&{path}&")


def public_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _b64url(data: bytes) -> str:
    return base64url_encode(data).decode("ascii")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """The async tests run on asyncio, as FastAPI under uvicorn does (anyio would add trio when installed)."""
    return "asyncio"


# -- keys ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def signing_key() -> rsa.RSAPrivateKey:
    """Atlassian's install-signing key, as far as these tests know: generated once per session."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def foreign_key() -> rsa.RSAPrivateKey:
    """A second RSA key that Atlassian's CDN does not serve: signatures made with it must fail."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class KeyServer:
    """Atlassian's install-keys CDN, stood in for by `httpx2.MockTransport` on every host.

    Serves `pems[kid]` at `/{kid}` (the raw path, so no decoding can smuggle a
    path past it) and records the full URL of every request it receives.
    """

    pems: dict[str, bytes]
    requests: list[str] = field(default_factory=list)
    outage_status: int | None = None
    """When set, every request is answered with this status (a CDN outage)."""

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(str(request.url))
        if self.outage_status is not None:
            return httpx2.Response(self.outage_status, text="Unavailable")
        pem = self.pems.get(request.url.raw_path.decode("ascii").removeprefix("/"))
        return httpx2.Response(200, content=pem) if pem is not None else httpx2.Response(404, text="Not found")


@pytest.fixture
def key_server(signing_key: rsa.RSAPrivateKey) -> KeyServer:
    return KeyServer({KID: public_pem(signing_key)})


@pytest.fixture
def key_provider(key_server: KeyServer) -> Iterator[AtlassianKeyProvider]:
    """The real key provider with its default CDN URLs, its HTTP answered by `key_server`."""
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(key_server.handle))
    yield AtlassianKeyProvider(client=client)
    anyio.run(client.aclose)


# -- tokens -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tokens:
    """Connect JWTs made independently with PyJWT. A claim passed as `None` is left out."""

    signing_key: rsa.RSAPrivateKey
    foreign_key: rsa.RSAPrivateKey

    @staticmethod
    def claims(qsh: str | None, **overrides: Any) -> dict[str, Any]:
        claims: dict[str, Any] = {"iss": CLIENT_KEY, "sub": "account-1", "iat": NOW, "exp": NOW + 180, "qsh": qsh}
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def hs256(self, qsh: str | None, *, secret: str = SHARED_SECRET, **overrides: Any) -> str:
        """What the product sends to webhooks, page loads, `enabled`/`disabled` and legacy installs."""
        return jwt.encode(self.claims(qsh, **overrides), secret, algorithm="HS256")

    def rs256(
        self,
        qsh: str | None,
        *,
        kid: str | None = KID,
        key: rsa.RSAPrivateKey | None = None,
        aud: Any = (BASE_URL,),
        **overrides: Any,
    ) -> str:
        """A signed-install token (`installed`/`uninstalled`): RS256, `kid` header, `aud` our base URL."""
        claims = self.claims(qsh, aud=list(aud) if isinstance(aud, tuple) else aud, **overrides)
        headers = {"kid": kid} if kid is not None else None
        return jwt.encode(claims, key or self.signing_key, algorithm="RS256", headers=headers)

    def context(self, **overrides: Any) -> str:
        """A context token from `AP.context.getToken()`: HS256 with the fixed qsh `context-qsh`."""
        return self.hs256("context-qsh", **overrides)

    @staticmethod
    def hand_signed(header: dict[str, Any], claims: dict[str, Any], hmac_key: bytes | None) -> str:
        """A token PyJWT refuses to make: HMAC with any bytes (a PEM, say), or no signature at all."""
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        if hmac_key is None:
            return signing_input + "."
        return signing_input + "." + _b64url(hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest())


@pytest.fixture
def tokens(signing_key: rsa.RSAPrivateKey, foreign_key: rsa.RSAPrivateKey) -> Tokens:
    return Tokens(signing_key, foreign_key)


def auth_header(token: str) -> dict[str, str]:
    return {"Authorization": f"JWT {token}"}


# -- tenants ------------------------------------------------------------------------------


@dataclass
class TenantStore:
    """The app's tenant table in memory; `load`/`load_async` are the credentials loaders."""

    tenants: dict[str, Credentials[Entity]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    """Every client key the loaders were called with."""

    def add(
        self, client_key: str = CLIENT_KEY, shared_secret: str = SHARED_SECRET, base_url: str = PRODUCT_BASE_URL
    ) -> Entity:
        entity = {"client_key": client_key, "base_url": base_url}
        self.tenants[client_key] = Credentials(shared_secret, entity, base_url)
        return entity

    def uninstall(self, client_key: str = CLIENT_KEY) -> None:
        """Keep the tenant, marked uninstalled: the loader contract's "known but uninstalled"."""
        self.tenants[client_key] = replace(self.tenants[client_key], installed=False)

    def secret_of(self, client_key: str = CLIENT_KEY) -> str | None:
        credentials = self.tenants.get(client_key)
        return credentials.shared_secret if credentials else None

    def load(self, client_key: str) -> Credentials[Entity] | None:
        self.asked.append(client_key)
        return self.tenants.get(client_key)

    async def load_async(self, client_key: str) -> Credentials[Entity] | None:
        await anyio.lowlevel.checkpoint()
        self.asked.append(client_key)
        return self.tenants.get(client_key)


@pytest.fixture
def tenants() -> TenantStore:
    return TenantStore()


# -- bodies -------------------------------------------------------------------------------


def lifecycle_body(event: str, **overrides: Any) -> dict[str, Any]:
    """A lifecycle callback body as Jira sends it (camelCase). A field passed as `None` is left out."""
    body: dict[str, Any] = {
        "key": "my-connect-app",
        "clientKey": CLIENT_KEY,
        "baseUrl": PRODUCT_BASE_URL,
        "displayUrl": PRODUCT_BASE_URL,
        "productType": "jira",
        "description": "Atlassian JIRA at https://tenant.atlassian.net",
        "eventType": event,
        "serverVersion": "100270",
        "pluginsVersion": "1001.0.0-SNAPSHOT",
    }
    body.update(overrides)
    return {name: value for name, value in body.items() if value is not None}


def install_body(**overrides: Any) -> dict[str, Any]:
    return lifecycle_body("installed", **{"sharedSecret": SHARED_SECRET, **overrides})


# -- the app ------------------------------------------------------------------------------


def _call_json(call: VerifiedRequest[Entity] | None) -> dict[str, Any] | None:
    if call is None:
        return None
    return {"client_key": call.client_key, "account_id": call.account_id, "stored_entity": call.stored_entity}


def add_request_routes(app: FastAPI, *, config: ConnectAuth | None = None) -> None:
    """Routes verified with `ConnectRequest` in each QSH mode; `config` bypasses `app.state`."""

    def route(path: str, dependency: ConnectRequest, method: str = "GET") -> None:
        # In a closure the dependency is a default value: a string annotation cannot see `dependency`.
        verified = Depends(dependency)

        async def endpoint(call: VerifiedRequest[Entity] | None = verified) -> Any:
            return _call_json(call)

        app.add_api_route(path, endpoint, methods=[method])

    route("/webhook", ConnectRequest(config=config), "POST")
    route("/other-webhook", ConnectRequest(config=config), "POST")
    route("/computed", ConnectRequest(config=config))
    route("/items/{item}", ConnectRequest(config=config))
    route("/context", ConnectRequest(qsh="context", config=config))
    route("/any", ConnectRequest(qsh="any", config=config))
    route("/skip", ConnectRequest(qsh="skip", config=config))
    route("/optional", ConnectRequest(auto_error=False, config=config))
    route("/signed", ConnectRequest(authorization_method="publicKey", config=config))
    route("/signed-skip", ConnectRequest(qsh="skip", authorization_method="publicKey", config=config))
    route("/either", ConnectRequest(authorization_method="any", config=config))


def add_lifecycle_routes(app: FastAPI, tenants: TenantStore) -> None:
    """`installed` saves the payload (replacing any shared secret); `uninstalled` marks the tenant uninstalled."""

    @app.post("/installed")
    async def installed(result: Annotated[VerifiedInstallation[Entity], Depends(ConnectInstall())]) -> Any:
        payload = result.payload
        tenants.add(payload.client_key, payload.shared_secret.get_secret_value(), payload.base_url)
        return {
            "type": result.type.value,
            "client_key": result.client_key,
            "stored_entity": result.stored_entity,
            "signed_with": result.claims.alg if result.claims else None,
        }

    def lifecycle_route(event: Literal["uninstalled", "enabled", "disabled"]) -> None:
        dependency = Depends(ConnectLifecycle(event))

        async def endpoint(result: VerifiedLifecycle[Entity] = dependency) -> Any:
            if result.event == "uninstalled":
                tenants.uninstall(result.client_key)
            return {"event": result.event, "client_key": result.client_key, "stored_entity": result.stored_entity}

        app.add_api_route(f"/{event}", endpoint, methods=["POST"])

    for event in ("uninstalled", "enabled", "disabled"):
        lifecycle_route(event)

    @app.get("/public")
    async def public() -> dict[str, str]:
        return {"hello": "anyone"}


@dataclass
class ConnectApp:
    """A running test app: its client, configuration, tenants, key server and token maker."""

    client: TestClient
    connect: ConnectAuth
    tenants: TenantStore
    key_server: KeyServer
    tokens: Tokens
    prefix: str = ""

    def send(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        content: str | None = None,
    ) -> httpx2.Response:
        """Send a request under the app's prefix, with `Authorization: JWT <token>` when a token is given."""
        all_headers = {**(auth_header(token) if token is not None else {}), **(headers or {})}
        response: httpx2.Response = self.client.request(
            method, f"{self.prefix}{path}", headers=all_headers, content=content
        )
        return response

    def install(
        self, body: dict[str, Any], token: str | None = None, *, headers: dict[str, str] | None = None
    ) -> httpx2.Response:
        return self.send("POST", "/installed", token, headers=headers, content=json.dumps(body))

    def lifecycle(self, event: str, token: str | None, body: dict[str, Any] | None = None) -> httpx2.Response:
        return self.send("POST", f"/{event}", token, content=json.dumps(body or lifecycle_body(event)))

    def get(self, path: str, token: str | None = None, *, headers: dict[str, str] | None = None) -> httpx2.Response:
        return self.send("GET", path, token, headers=headers)

    def post(self, path: str, token: str | None = None) -> httpx2.Response:
        return self.send("POST", path, token)


ConnectAppFactory = Callable[..., ConnectApp]


@pytest.fixture
def make_connect_app(
    tenants: TenantStore, key_server: KeyServer, key_provider: PublicKeyProvider, tokens: Tokens
) -> Iterator[ConnectAppFactory]:
    """Build a `ConnectApp`; keyword arguments go to `ConnectAuth`, plus these of the app itself.

    * `loader`: `"sync"` or `"async"` credentials loader;
    * `mount_at`: mount the Connect app under this prefix of a parent app;
    * `root_path`: the `root_path` a proxy would pass (`TestClient(root_path=...)`);
    * `extra_routes`: a function adding a test's own routes to the Connect app.
    """
    with ExitStack() as stack:

        def build(
            *,
            loader: LoaderKind = "sync",
            mount_at: str = "",
            root_path: str = "",
            authorization_method: AuthorizationMethod = "publicKey",
            base_url: str | list[str] = BASE_URL,
            product_hosts: ProductHosts | None = None,
            extra_routes: Callable[[FastAPI], None] | None = None,
            **options: Any,
        ) -> ConnectApp:
            connect = ConnectAuth(
                base_url=base_url,
                credentials_loader=tenants.load if loader == "sync" else tenants.load_async,
                key_provider=options.pop("key_provider", key_provider),
                authorization_method=authorization_method,
                product_hosts=product_hosts,
                clock=lambda: NOW,
                **options,
            )
            app = FastAPI(lifespan=connect.lifespan)
            connect_app = app
            if mount_at:
                connect_app = FastAPI()
                app.mount(mount_at, connect_app)
            connect.install(connect_app)
            add_lifecycle_routes(connect_app, tenants)
            add_request_routes(connect_app)
            if extra_routes is not None:
                extra_routes(connect_app)
            client = stack.enter_context(TestClient(app, base_url=BASE_URL, root_path=root_path))
            return ConnectApp(client, connect, tenants, key_server, tokens, mount_at)

        yield build


@pytest.fixture
def connect_app(make_connect_app: ConnectAppFactory) -> ConnectApp:
    """The default app: signed installs (`publicKey`), base URL `https://test.example.com`."""
    return make_connect_app()


@pytest.fixture
def legacy_app(make_connect_app: ConnectAppFactory) -> ConnectApp:
    """An app verifying installs the legacy way (`authorization_method="sharedSecret"`)."""
    return make_connect_app(authorization_method="sharedSecret")


# -- at the ASGI level: what the app pulled from the connection ------------------------------

MIB = 1024 * 1024

# JSON no body should ever be: each must be a 422 (after the token is verified), never a 500.
HOSTILE_JSON = {
    "NaN": b'{"eventType": "x", "weight": NaN}',
    "Infinity": b'{"eventType": "x", "weight": Infinity}',
    "-Infinity": b'{"eventType": "x", "weight": -Infinity}',
    "1e400": b'{"eventType": "x", "weight": 1e400}',
    "-1e400": b'{"eventType": "x", "issue": {"n": -1e400}}',
    "65 levels": b'{"eventType": "x", "issue": {"a": ' + b"[" * 64 + b"]" * 64 + b"}}",
    "100,000 levels": b'{"eventType": "x", "issue": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}",
    "an int of 5,000 digits": b'{"eventType": "x", "issue": {"n": ' + b"9" * 5000 + b"}}",
    "not UTF-8": b'{"eventType": "\xff"}',
    "truncated": b'{"eventType": "x"',
}


class Upload:
    """An ASGI `receive` serving `total` bytes in 1 MiB chunks, lazily, counting the chunks pulled; or `body`."""

    def __init__(self, total: int, body: bytes | None = None) -> None:
        self.remaining = total
        self.body = body
        self.pulled = 0

    async def receive(self) -> dict[str, Any]:
        if self.body is not None:
            body, self.body = self.body, None
            self.pulled += 1
            return {"type": "http.request", "body": body, "more_body": False}
        if self.remaining <= 0:
            await anyio.sleep_forever()
        chunk = min(MIB, self.remaining)
        self.remaining -= chunk
        self.pulled += 1
        return {"type": "http.request", "body": b" " * chunk, "more_body": self.remaining > 0}


def asgi_post(app: ConnectApp, path: str, headers: dict[str, str], upload: Upload) -> tuple[int, dict[str, Any]]:
    """POST `upload` (chunked: no Content-Length unless `headers` has one) to the app; its status and JSON."""
    status, _, answer = asgi_exchange(app, path, headers, upload.receive)
    return status, answer


def asgi_exchange(
    app: ConnectApp, path: str, headers: dict[str, str], receive: Callable[[], Awaitable[dict[str, Any]]]
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST to the app, the request's messages coming from `receive`; the status, headers and JSON answered."""
    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "https",
        "server": ("test.example.com", 443),
        "client": ("127.0.0.1", 1234),
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(name.lower().encode(), value.encode("latin-1")) for name, value in headers.items()],
        "state": {},
    }

    async def run() -> None:
        await app.client.app(scope, receive, send)  # type: ignore[arg-type]

    anyio.run(run)
    start = next(message for message in messages if message["type"] == "http.response.start")
    body = b"".join(message.get("body", b"") for message in messages if message["type"] == "http.response.body")
    answer_headers = {name.decode(): value.decode() for name, value in start["headers"]}
    return start["status"], answer_headers, json.loads(body)
