"""`FakeForge`: a simulated Forge platform that signs Forge Invocation Tokens and serves its JWKS and a product API.

Tokens are made with PyJWT directly from the documented claim shapes (a UI call,
a product event, a scheduled trigger); the fake never reaches the network: its
JWKS and product API answer through `httpx2.MockTransport`, or on a loopback port.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .._forge._flow import ForgeAuth, forge_app_ari
from .._forge._jwks import JwksKeyProvider
from ._keyserver import running
from ._profiles import DEFAULT_ACCOUNT_ID
from ._tenant import generate_rsa_key

__all__ = ["FAKE_FORGE_JWKS_URL", "FakeForge", "ForgeAppDriver", "JwksServer"]

FAKE_FORGE_JWKS_URL = "https://forge.fake-cdn.test/.well-known/jwks.json"
"""Where `FakeForge.key_provider()` and `FakeForge.forge_auth()` look for keys; answered in-process."""

FitShape = Literal["ui", "event", "trigger"]

_FIT_LIFETIME = 25
_PRODUCT_TOKEN_LIFETIME = 3600


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Overrides win; a value of `None` removes the claim; nested dicts merge (how a test builds a bad token)."""
    merged = dict(base)
    for name, value in overrides.items():
        if value is None:
            merged.pop(name, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(name), dict):
            merged[name] = _merge(merged[name], value)
        else:
            merged[name] = value
    return merged


@dataclass
class JwksServer:
    """A running loopback JWKS server: point the app at `url`. `requests` counts the fetches."""

    url: str
    """The server's base URL (`http://127.0.0.1:<port>`)."""
    requests: int = 0
    """How many times the JWKS was fetched."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Guards `requests` across the server's threads."""


class FakeForge:
    """A fake Forge platform for one app installed on one site.

    ```python
    forge = FakeForge()
    app = create_app(forge_auth=forge.forge_auth())
    with TestClient(app) as client:
        assert forge.drive(client).event("/forge/events", {"issue": "KEY-1"}).is_success
    ```

    It holds RSA signing keys (`rotate_key()` adds one, as Forge rotates) served
    as a JWKS, mints FITs (`mint_fit`), issues system and user tokens
    (`system_token`, `user_token`) that its product API (`api_transport`:
    `/ex/jira/{cloudId}/rest/api/3/myself` and the GraphQL `offlineUserAuthToken`
    mutation) accepts until they expire, and records what it answered.
    """

    def __init__(
        self,
        *,
        app_id: str | None = None,
        installation_id: str | None = None,
        cloud_id: str | None = None,
        api_base_url: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        private_key: rsa.RSAPrivateKey | None = None,
        kid: str = "forge-fit-key-1",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = forge_app_ari(app_id or str(uuid.uuid4()))
        """The app's id (an ARI)."""
        self.installation_id = installation_id or f"ari:cloud:ecosystem::installation/{uuid.uuid4()}"
        """The installation's id (an ARI)."""
        self.cloud_id = cloud_id or str(uuid.uuid4())
        """The site's cloud id."""
        self.api_base_url = (api_base_url or f"https://api.atlassian.com/ex/jira/{self.cloud_id}").rstrip("/")
        """Where the app calls the product (`app.apiBaseUrl` of the FITs)."""
        self.account_id = account_id
        """The user the FITs name as `principal` unless told otherwise."""
        self.kid = kid
        """The key id FITs are signed with now."""
        self.signing_keys: dict[str, rsa.RSAPrivateKey] = {kid: private_key or generate_rsa_key()}
        """`{kid: key}`: every key served in the JWKS."""
        self.clock = clock
        """The platform's clock: FITs and tokens are dated by it."""
        self.jwks_outage = False
        """While true, the JWKS answers 503."""
        self.jwks_requests = 0
        """How many times the JWKS was fetched in-process."""
        self.issued_tokens: dict[str, str] = {}
        """Product tokens this fake issued: token → `"system"`, `"user"` or `"offline"`."""
        self.api_calls: list[tuple[str, str, int]] = []
        """`(method, path, status)` of each call its product API answered."""
        self._token_secret = secrets.token_bytes(32)
        self.lock = threading.Lock()
        """Guards the counters and records across threads."""

    # -- keys -----------------------------------------------------------------------------

    def rotate_key(self, kid: str | None = None, private_key: rsa.RSAPrivateKey | None = None) -> str:
        """Add a signing key and sign with it from now on (the old one stays in the JWKS); returns its kid."""
        self.kid = kid or f"forge-fit-key-{len(self.signing_keys) + 1}"
        self.signing_keys[self.kid] = private_key or generate_rsa_key()
        return self.kid

    def jwks(self) -> dict[str, Any]:
        """The public keys as Forge's CDN serves them."""
        keys = []
        for kid, private_key in self.signing_keys.items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "RS256", "use": "sig"})
        return {"keys": keys}

    def _jwks_response(self) -> tuple[int, bytes]:
        with self.lock:
            self.jwks_requests += 1
        if self.jwks_outage:
            return 503, b"Service unavailable"
        return 200, json.dumps(self.jwks()).encode()

    @property
    def jwks_transport(self) -> httpx2.MockTransport:
        """An httpx2 transport answering every GET with the JWKS (503 while `jwks_outage` is set)."""

        def handle(request: httpx2.Request) -> httpx2.Response:
            status, body = self._jwks_response()
            return httpx2.Response(status, content=body, headers={"Content-Type": "application/json"})

        return httpx2.MockTransport(handle)

    def key_provider(self, **options: Any) -> JwksKeyProvider:
        """A `JwksKeyProvider` that gets this fake's JWKS in-process, through `jwks_transport`."""
        return JwksKeyProvider(client=httpx2.AsyncClient(transport=self.jwks_transport), **options)

    def forge_auth(self, **options: Any) -> ForgeAuth:
        """A `ForgeAuth` for this fake's app, keys fetched in-process; `options` go to `ForgeAuth`."""
        options.setdefault("key_provider", self.key_provider())
        return ForgeAuth(app_id=self.app_id, jwks_url=FAKE_FORGE_JWKS_URL, **options)

    @contextmanager
    def serve_jwks(self) -> Iterator[JwksServer]:
        """Serve the JWKS on 127.0.0.1 (for an app in another process): its `url` is the JWKS URL."""
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = forge._jwks_response()
                with state.lock:
                    state.requests += 1
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: `JwksServer.requests` counts the fetches."""

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        host, port = server.server_address[:2]
        state = JwksServer(url=f"http://{host!s}:{port}/.well-known/jwks.json")
        with running(server):
            yield state

    # -- tokens -----------------------------------------------------------------------------

    def fit_claims(self, shape: FitShape = "ui") -> dict[str, Any]:
        """The claims Forge sends for a UI call (`requestRemote`), a product event or a scheduled trigger."""
        now = int(self.clock())
        module = {
            "ui": {"type": "xen:macro", "key": "my-panel"},
            "event": {"type": "core:endpoint", "key": "remote-events"},
            "trigger": {"type": "scheduledTrigger", "key": "hourly-sync"},
        }[shape]
        claims: dict[str, Any] = {
            "iss": "forge/invocation-token",
            "aud": self.app_id,
            "iat": now,
            "nbf": now,
            "exp": now + _FIT_LIFETIME,
            "jti": str(uuid.uuid4()),
            "app": {
                "id": self.app_id,
                "installationId": self.installation_id,
                "apiBaseUrl": self.api_base_url,
                "appVersion": "2.4.0",
                "environment": {"type": "PRODUCTION", "id": str(uuid.uuid4())},
                "module": module,
                "installation": {
                    "id": self.installation_id,
                    "contexts": [{"name": "jira", "apiBaseUrl": self.api_base_url, "cloudId": self.cloud_id}],
                },
            },
        }
        if shape == "ui":
            claims["context"] = {
                "cloudId": self.cloud_id,
                "siteUrl": "https://fake-site.atlassian.net",
                "localId": "a1b2c3",
                "moduleKey": module["key"],
                "extension": {"type": module["type"]},
            }
            claims["principal"] = self.account_id
        return claims

    def mint_fit(
        self,
        shape: FitShape = "ui",
        *,
        headers: Mapping[str, Any] | None = None,
        key: Any = None,
        algorithm: str = "RS256",
        **overrides: Any,
    ) -> str:
        """A FIT of `shape` signed with the current key; claim `overrides` merge in (`None` removes a claim).

        `headers`, `key` and `algorithm` sign it otherwise (another kid, a forged key, `HS256`).
        """
        claims = _merge(self.fit_claims(shape), overrides)
        header = _merge({"kid": self.kid}, headers or {})
        return jwt.encode(claims, key if key is not None else self.signing_keys[self.kid], algorithm, header)

    def _product_token(self, kind: str, exp: float | None) -> str:
        now = int(self.clock())
        token = jwt.encode(
            {
                "iss": "fake-forge",
                "sub": self.app_id,
                "jti": secrets.token_hex(8),
                "iat": now,
                "exp": exp or now + _PRODUCT_TOKEN_LIFETIME,
            },
            self._token_secret,
            "HS256",
        )
        with self.lock:
            self.issued_tokens[token] = kind
        return token

    def system_token(self, *, exp: float | None = None) -> str:
        """An app system token (`x-forge-oauth-system`) that the fake product API accepts until `exp`."""
        return self._product_token("system", exp)

    def user_token(self, *, exp: float | None = None) -> str:
        """An app user token (`x-forge-oauth-user`) that the fake product API accepts until `exp`."""
        return self._product_token("user", exp)

    def revoke(self, token: str) -> None:
        """Make the product API refuse `token` from now on (what a 401 from Atlassian looks like)."""
        with self.lock:
            self.issued_tokens.pop(token, None)

    # -- the product API -------------------------------------------------------------------

    def _bearer_kind(self, request: httpx2.Request) -> str | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        kind = self.issued_tokens.get(token) if scheme == "Bearer" else None
        if kind is None:
            return None
        try:
            claims = jwt.decode(token, self._token_secret, algorithms=["HS256"], options={"verify_exp": False})
        except jwt.PyJWTError:
            return None
        return kind if claims["exp"] > self.clock() else None  # expiry by the fake's own clock

    def answer_api_request(self, request: httpx2.Request) -> httpx2.Response:
        """Answer one call to the product API (`api_transport`); 401 without a live token of this fake."""
        kind = self._bearer_kind(request)
        path = request.url.path
        if kind is None:
            response = httpx2.Response(401, json={"message": "Unauthorized"})
        elif path == "/graphql" and request.method == "POST":
            response = self._offline_token(request, kind)
        elif path.startswith(f"/ex/jira/{self.cloud_id}/rest/api/3/myself"):
            account = self.account_id if kind != "system" else "app-system-user"
            response = httpx2.Response(200, json={"accountId": account, "tokenKind": kind})
        elif path.startswith(f"/ex/jira/{self.cloud_id}/"):
            response = httpx2.Response(200, json={"path": path, "tokenKind": kind})
        else:
            response = httpx2.Response(404, json={"message": "Not found"})
        with self.lock:
            self.api_calls.append((request.method, path, response.status_code))
        return response

    def _offline_token(self, request: httpx2.Request, kind: str) -> httpx2.Response:
        body = json.loads(request.content or b"{}")
        variables = (body.get("variables") or {}).get("input") or {}
        if kind != "system" or "offlineUserAuthToken" not in str(body.get("query", "")):
            return httpx2.Response(200, json={"data": None, "errors": [{"message": "Not allowed"}]})
        if not variables.get("userId") or not variables.get("contextIds"):
            result = {
                "success": False,
                "errors": [{"message": "userId and contextIds are required"}],
                "authToken": None,
            }
        else:
            ttl = _PRODUCT_TOKEN_LIFETIME
            token = self._product_token("offline", self.clock() + ttl)
            result = {"success": True, "errors": None, "authToken": {"token": token, "ttl": ttl}}
        return httpx2.Response(200, json={"data": {"offlineUserAuthToken": result}})

    @property
    def api_transport(self) -> httpx2.MockTransport:
        """An httpx2 transport answering the product API (`https://api.atlassian.com/...`) in-process."""
        return httpx2.MockTransport(self.answer_api_request)

    # -- driving the app --------------------------------------------------------------------

    def drive(self, client: httpx2.Client) -> ForgeAppDriver:
        """Send Forge's calls to an app through `client` (a `TestClient`, or an `httpx2.Client` to a running app)."""
        return ForgeAppDriver(self, client)


class ForgeAppDriver:
    """Delivers Forge's calls to an app: product events and triggers, and UI calls, with the headers Forge sends."""

    def __init__(self, forge: FakeForge, client: httpx2.Client) -> None:
        self.forge = forge
        """The fake Forge platform whose calls are sent."""
        self.client = client
        """The client that reaches the app."""

    def headers(self, fit: str, *, system_token: str | None = None, user_token: str | None = None) -> dict[str, str]:
        """The headers of a call from Forge: the FIT, trace ids, and the OAuth tokens when given."""
        headers = {
            "Authorization": f"Bearer {fit}",
            "x-b3-traceid": secrets.token_hex(16),
            "x-b3-spanid": secrets.token_hex(8),
        }
        if system_token is not None:
            headers["x-forge-oauth-system"] = system_token
        if user_token is not None:
            headers["x-forge-oauth-user"] = user_token
        return headers

    def event(
        self,
        path: str,
        payload: Mapping[str, Any],
        *,
        fit: str | None = None,
        shape: FitShape = "event",
        system_token: str | None = None,
    ) -> httpx2.Response:
        """POST a product event (or, with `shape="trigger"`, a scheduled trigger) as Forge delivers it."""
        fit = fit or self.forge.mint_fit(shape)
        return self.client.post(path, json=dict(payload), headers=self.headers(fit, system_token=system_token))

    def ui_call(
        self,
        path: str,
        *,
        method: str = "GET",
        fit: str | None = None,
        system_token: str | None = None,
        user_token: str | None = None,
        json_body: Any = None,
    ) -> httpx2.Response:
        """A call from the app's UI (`requestRemote`)."""
        fit = fit or self.forge.mint_fit("ui")
        headers = self.headers(fit, system_token=system_token, user_token=user_token)
        return self.client.request(method, path, headers=headers, json=json_body)
