"""`FakeForge`: a simulated Forge platform that signs Forge Invocation Tokens and serves its JWKS and a product API.

Tokens are made with PyJWT directly from the documented claim shapes: a UI call
(`invokeRemote` from the frontend, or `requestRemote`), a backend `invokeRemote`,
a product event, a scheduled trigger and a lifecycle event, with the module
types Forge sends (the UI module of the fake's product, else `core:endpoint`).
The fake never reaches the network: its JWKS and product API answer through
`httpx2.MockTransport`, or on a loopback port. The product API is the Connect
kit's `FakeRestAPI`, checking Forge's tokens instead of Connect's JWTs.
"""

from __future__ import annotations

import json
import re
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
from .._forge._lifecycle import INSTALLATION_ARI_PREFIX, ForgeLifecycleEvent
from .._outbound._connect_property import CONNECT_CLIENT_KEY_PROPERTY
from ._keyserver import running
from ._profiles import DEFAULT_ACCOUNT_ID, ProductType
from ._restapi import APIRequest, FakeRestAPI, ProductAPICall, issue_route
from ._tenant import FakeTenant, generate_rsa_key

__all__ = [
    "FAKE_FORGE_JWKS_URL",
    "FAKE_FORGE_UI_ORIGIN",
    "ConnectProperty",
    "FakeForge",
    "FitShape",
    "ForgeAppDriver",
    "JwksServer",
    "RetryContextPlace",
    "RetryReason",
]

FAKE_FORGE_JWKS_URL = "https://forge.fake-cdn.test/.well-known/jwks.json"
"""Where `FakeForge.key_provider()` and `FakeForge.forge_auth()` look for keys; answered in-process."""
FAKE_FORGE_UI_ORIGIN = "https://fake-app.cdn.prod.atlassian-dev.net"
"""The `Origin` of the fake's `requestRemote` calls: a Forge UI iframe's (`*.cdn.prod.atlassian-dev.net`)."""

_INSTALLATION_DETAILS = re.compile(r"/forge/installation/v1/(?P<app>[^/]+)/(?P<env>[^/]+)/installation/(?P<id>[^/]+)")
_DETAILS_INTERVAL = 300.0

FitShape = Literal["ui", "request-remote", "backend", "event", "trigger", "lifecycle"]
"""The calls `FakeForge.mint_fit` signs a FIT for.

`ui` and `request-remote` (a UI call, proxied by Forge or straight from the browser)
carry a `principal` and a `context` and the product's UI module; `backend` (a Forge
function's `invokeRemote`), `event`, `trigger` and `lifecycle` carry neither, and the
module `core:endpoint` with the endpoint's key: `remote-resolver`, `forge-events`,
`hourly-sync` and `forge-lifecycle` unless `mint_fit(module_key=...)` names another.
"""

_FIT_LIFETIME = 25
_PRODUCT_TOKEN_LIFETIME = 3600
_SYSTEM_ACCOUNT = "app-system-user"
_UI_MODULES: dict[ProductType, tuple[str, str, dict[str, Any]]] = {
    "jira": (
        "jira:issuePanel",
        "issue-panel",
        {"issue": {"id": "10001", "key": "DEMO-1", "type": "Task"}, "project": {"id": "10000", "key": "DEMO"}},
    ),
    "confluence": (
        "xen:macro",
        "remote-macro",
        {"content": {"id": "5341185"}, "space": {"id": "65538", "key": "DEMO"}},
    ),
    "bitbucket": ("bitbucket:workspaceGlobalPage", "workspace-page", {}),
}
_ENDPOINT_KEYS: dict[str, str] = {
    "backend": "remote-resolver",
    "event": "forge-events",
    "trigger": "hourly-sync",
    "lifecycle": "forge-lifecycle",
}


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


@dataclass
class ConnectProperty:
    """How the fake product answers the reserved Connect `clientKey` property for its installation.

    `status` 200 answers `{"key", "value"}` with `value` as given (a clientKey string,
    `{"clientKey": …}`, or anything a test wants refused); any other status answers
    that status (`retry_after` adds `Retry-After`). `delay` seconds pass first (a slow product).
    """

    value: Any = None
    """The property's `value` (with status 200)."""
    status: int = 200
    """The status answered."""
    delay: float = 0.0
    """Seconds to wait before answering."""
    retry_after: float | None = None
    """`Retry-After` of a 429."""


class _ForgeRestAPI(FakeRestAPI):
    """The fake product's REST API behind Forge: Bearer tokens that `FakeForge` issued, and the GraphQL gateway."""

    def __init__(self, forge: FakeForge, tenant: FakeTenant) -> None:
        super().__init__(tenant)
        self.forge = forge

    def _verified_claims(self, request: httpx2.Request) -> dict[str, Any] | str:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            return "no Authorization: Bearer header"
        return self.forge.token_claims(token) or "not a live token of this fake Forge"

    def _token_kind(self, request: httpx2.Request, claims: dict[str, Any]) -> str:
        return str(claims["kind"])

    def answer(self, request: httpx2.Request) -> httpx2.Response:
        details = _INSTALLATION_DETAILS.fullmatch(request.url.path) if request.method == "GET" else None
        if (request.url.path != "/graphql" or request.method != "POST") and details is None:
            return super().answer(request)
        claims = self._verified_claims(request)
        if isinstance(claims, str):
            response = httpx2.Response(401, json={"message": "Unauthorized"})
        elif details is not None:
            response = self.forge.answer_installation_details(details["app"], details["env"], details["id"], claims)
        else:
            response = self.forge.answer_offline_token(request, claims)
        call = ProductAPICall(
            request.method,
            request.url.raw_path.decode("ascii"),
            response.status_code,
            claims=None if isinstance(claims, str) else claims,
            refusal=claims if isinstance(claims, str) else None,
            token_kind=None if isinstance(claims, str) else claims["kind"],
        )
        with self.lock:
            self.calls.append(call)
        return response


class FakeForge:
    """A fake Forge platform for one app installed in one product of one site (or Bitbucket workspace).

    ```python
    forge = FakeForge()
    app = create_app(forge_auth=forge.forge_auth())
    with TestClient(app) as client:
        assert forge.drive(client).event("/forge/events", {"issue": "KEY-1"}).is_success
        assert forge.drive(client).lifecycle("/forge/lifecycle/installed", "installed").is_success
    ```

    It holds RSA signing keys (`rotate_key()` adds one, as Forge rotates) served
    as a JWKS (`jwks_transport`, or `serve_jwks()` on loopback), mints FITs
    (`mint_fit`), and issues system and user tokens (`system_token`,
    `user_token`) that its product API accepts until they expire. The product
    API (`api`, a `FakeRestAPI`: in-process through `api_transport`, or
    `serve_api()` on loopback) answers `GET /rest/api/3/myself` and, for Jira,
    `GET /rest/api/{2,3}/issue/{key}` with the summaries in `issues`, per user
    (`api.restrict(key, *account_ids)`); add routes with `api.route(...)`, make it
    answer 429 with `api.throttle(...)`; `api_calls` records each call with the
    kind of token it carried (`system`, `user`, `offline`). It is also the GraphQL
    gateway of `offlineUserAuthToken`, serves the reserved Connect `clientKey` property
    (`serve_connect_client_key`: a value, a status, a delay; 404 until set) and the
    Installation Details API (rate limited by the fake's clock; `installed = False`: 404).
    """

    def __init__(
        self,
        *,
        app_id: str | None = None,
        installation_id: str | None = None,
        cloud_id: str | None = None,
        product: ProductType = "jira",
        api_base_url: str | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        private_key: rsa.RSAPrivateKey | None = None,
        kid: str = "forge-fit-key-1",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = forge_app_ari(app_id or str(uuid.uuid4()))
        """The app's id (an ARI)."""
        self.installation_id = installation_id or f"{INSTALLATION_ARI_PREFIX}{uuid.uuid4()}"
        """The installation's id (an ARI)."""
        self.product: ProductType = product
        """The product the app is installed in: `jira`, `confluence` or `bitbucket`."""
        self.cloud_id = cloud_id or str(uuid.uuid4())
        """The site's cloud id (Jira and Confluence)."""
        self.workspace_id = "{" + str(uuid.uuid4()) + "}"
        """The workspace's id (Bitbucket)."""
        self.environment_id = f"ari:cloud:ecosystem::environment/{self.app_id.rsplit('/', 1)[1]}/{uuid.uuid4()}"
        """The app's environment (`PRODUCTION`)."""
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
        self.issues: dict[str, str] = {}
        """`{issue key: summary}` that a Jira product API's `GET /rest/api/3/issue/{key}` answers."""
        default_base = (
            "https://api.bitbucket.org"
            if product == "bitbucket"
            else f"https://api.atlassian.com/ex/{product}/{self.cloud_id}"
        )
        tenant = FakeTenant(
            product_type=product,
            base_url=api_base_url or default_base,
            private_key=self.signing_keys[kid],
            clock=clock,
        )
        self.api: FakeRestAPI = _ForgeRestAPI(self, tenant)
        """The product's REST API: add routes with `api.route(method, path)`, answers with `api.throttle(...)`."""
        self.api.add_route("GET", "/rest/api/3/myself", self._myself)
        if product == "jira":
            self.api.add_route("GET", "/rest/api/{version}/issue/{key}", issue_route(self.issues, self.api.viewers))
        self.connect_key: str | None = None
        """The app's Connect key: when set, the reserved property is served for it only (404 for any
        other); `None` serves it for any key (read the asked one from `api_calls`)."""
        self.connect_property = ConnectProperty(status=404)
        """The reserved Connect `clientKey` property's answer: 404 (no Connect history) until a test sets it."""
        self.installed = True
        """While false, the Installation Details API answers 404 (the installation is gone)."""
        self._details_asked: dict[str, float] = {}
        if product in ("jira", "confluence"):
            prefix = "/wiki" if product == "confluence" else ""
            path = prefix + "/rest/atlassian-connect/1/addons/{key}/properties/{property}"
            self.api.add_route("GET", path, self._connect_property)
        self._token_secret = secrets.token_bytes(32)
        self._token_accounts: dict[str, str] = {}
        self.lock = threading.Lock()
        """Guards the counters and records across threads."""

    @property
    def api_base_url(self) -> str:
        """Where the app calls the product (`app.apiBaseUrl` of the FITs); on loopback inside `serve_api()`."""
        return self.api.tenant.base_url

    @property
    def installation_uuid(self) -> str:
        """The installation's bare UUID, as lifecycle payloads name it."""
        return self.installation_id.removeprefix(INSTALLATION_ARI_PREFIX)

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
        """A `ForgeAuth` for this fake's app, keys fetched in-process; `options` go to `ForgeAuth`.

        It trusts this fake's keys: for tests only, never in production.
        """
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

    def _installation_context(self) -> dict[str, Any]:
        if self.product == "bitbucket":
            return {"name": "bitbucket", "apiBaseUrl": self.api_base_url, "workspaceId": self.workspace_id}
        return {"name": self.product, "apiBaseUrl": self.api_base_url, "cloudId": self.cloud_id}

    def fit_claims(self, shape: FitShape = "ui", *, module_key: str | None = None) -> dict[str, Any]:
        """The claims Forge sends for a call of `shape` (see `FitShape`); `module_key` names the module or endpoint."""
        now = int(self.clock())
        ui = shape in ("ui", "request-remote")
        module_type, ui_key, extension = _UI_MODULES[self.product]
        ui_key = module_key or ui_key
        endpoint = module_key or _ENDPOINT_KEYS.get(shape, "")
        module = {"type": module_type, "key": ui_key} if ui else {"type": "core:endpoint", "key": endpoint}
        claims: dict[str, Any] = {
            "iss": "forge/invocation-token",
            "aud": self.app_id,
            "iat": now,
            "nbf": now,
            "exp": now + _FIT_LIFETIME,
            "jti": secrets.token_hex(20),
            "app": {
                "id": self.app_id,
                "installationId": self.installation_id,
                "apiBaseUrl": self.api_base_url,
                "appVersion": "2.4.0",
                "environment": {"type": "PRODUCTION", "id": self.environment_id},
                "module": module,
                "installation": {"id": self.installation_id, "contexts": [self._installation_context()]},
            },
        }
        if ui:
            site = {"workspaceId": self.workspace_id} if self.product == "bitbucket" else {"cloudId": self.cloud_id}
            claims["context"] = {
                **site,
                "siteUrl": "https://fake-site.atlassian.net",
                "localId": str(uuid.uuid4()),
                "moduleKey": ui_key,
                "extension": {"type": module_type, **extension},
            }
            claims["principal"] = self.account_id
        return claims

    def mint_fit(
        self,
        shape: FitShape = "ui",
        *,
        module_key: str | None = None,
        headers: Mapping[str, Any] | None = None,
        key: Any = None,
        algorithm: str = "RS256",
        **overrides: Any,
    ) -> str:
        """A FIT of `shape` signed with the current key; claim `overrides` merge in (`None` removes a claim).

        `module_key` is the `app.module.key` (the manifest endpoint, `core:endpoint`,
        for calls other than UI ones). `headers`, `key` and `algorithm` sign it
        otherwise (another kid, a forged key, `HS256`). A FIT minted now and sent
        later is a late delivery, as long as it has not expired.
        """
        claims = _merge(self.fit_claims(shape, module_key=module_key), overrides)
        header = _merge({"kid": self.kid}, headers or {})
        return jwt.encode(claims, key if key is not None else self.signing_keys[self.kid], algorithm, header)

    def _product_token(self, kind: str, exp: float | None, account_id: str | None) -> str:
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
            if account_id is not None:
                self._token_accounts[token] = account_id
        return token

    def system_token(self, *, exp: float | None = None) -> str:
        """An app system token (`x-forge-oauth-system`) that the fake product API accepts until `exp`."""
        return self._product_token("system", exp, None)

    def user_token(self, *, exp: float | None = None, account_id: str | None = None) -> str:
        """An app user token (`x-forge-oauth-user`) for `account_id` (the fake's user by default), live until `exp`."""
        return self._product_token("user", exp, account_id or self.account_id)

    def revoke(self, token: str) -> None:
        """Make the product API refuse `token` from now on (what a 401 from Atlassian looks like)."""
        with self.lock:
            self.issued_tokens.pop(token, None)

    def token_claims(self, token: str) -> dict[str, Any] | None:
        """What the product knows of `token` if it is live: `kind`, `sub` (the user, `None` for the app), `exp`."""
        with self.lock:
            kind, account = self.issued_tokens.get(token), self._token_accounts.get(token)
        if kind is None:
            return None
        try:
            # Times by the fake's own clock, not PyJWT's: a test may move it ahead of the real one.
            claims = jwt.decode(
                token,
                self._token_secret,
                algorithms=["HS256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
            )
        except jwt.PyJWTError:
            return None
        if claims["exp"] <= self.clock():  # expiry by the fake's own clock
            return None
        return {"kind": kind, "sub": account, "exp": claims["exp"]}

    # -- lifecycle payloads -----------------------------------------------------------------

    def installed_payload(self, **overrides: Any) -> dict[str, Any]:
        """`avi:forge:installed:app` as Forge sends it for this installation; `overrides` merge in (`None` removes)."""
        payload = {
            "eventType": "avi:forge:installed:app",
            "id": self.installation_uuid,
            "installerAccountId": self.account_id,
            "app": {"id": self.app_id.rsplit("/", 1)[1], "version": "2.4.0", "name": "Fake Forge app"},
            "environment": {"id": self.environment_id.rsplit("/", 1)[1]},
        }
        return _merge(payload, overrides)

    def upgraded_payload(self, **overrides: Any) -> dict[str, Any]:
        """`avi:forge:upgraded:app` (a new major version); `overrides` merge in (`None` removes)."""
        payload = self.installed_payload(
            eventType="avi:forge:upgraded:app", installerAccountId=None, upgraderAccountId=self.account_id
        )
        return _merge({**payload, "permissions": {"scopes": ["read:jira-work", "read:app-system-token"]}}, overrides)

    def pre_uninstall_payload(self, **overrides: Any) -> dict[str, Any]:
        """The preUninstall module's payload, with Atlassian's opaque `contextToken`; `overrides` merge in."""
        context_token = jwt.encode(
            {"iss": "forge/context-token", "aud": "forge", "context": {"cloudId": self.cloud_id}},
            self._token_secret,
            "HS256",
        )
        payload = {"context": {"cloudId": self.cloud_id, "moduleKey": "pre-uninstall"}, "contextToken": context_token}
        return _merge(payload, overrides)

    # -- the product API -------------------------------------------------------------------

    @staticmethod
    def _myself(call: APIRequest) -> httpx2.Response:
        """`GET /rest/api/3/myself`: who the token acts as (the app's system user for a system token)."""
        account = call.account_id or _SYSTEM_ACCOUNT
        return httpx2.Response(200, json={"accountId": account, "tokenKind": call.claims["kind"]})

    def serve_connect_client_key(
        self, value: Any = None, *, status: int = 200, delay: float = 0.0, retry_after: float | None = None
    ) -> None:
        """Answer the reserved property with `value` (a clientKey, or an object), or with `status` (404, 403, 429…)."""
        self.connect_property = ConnectProperty(value, status, delay, retry_after)

    def _connect_property(self, call: APIRequest) -> httpx2.Response:
        """`GET …/addons/{key}/properties/{property}`: the reserved property, for the app's Connect key, as the app."""
        answer = self.connect_property
        wrong_key = self.connect_key is not None and call.params["key"] != self.connect_key
        if wrong_key or call.params["property"] != CONNECT_CLIENT_KEY_PROPERTY:
            return httpx2.Response(404, json={"message": "Property not found."})
        if call.claims["kind"] != "system":
            return httpx2.Response(403, json={"message": "Only the app can read this property."})
        if answer.delay:
            time.sleep(answer.delay)
        if answer.status != 200:
            headers = {"Retry-After": f"{answer.retry_after:g}"} if answer.retry_after is not None else {}
            return httpx2.Response(answer.status, headers=headers, json={"message": f"Answered {answer.status}."})
        return httpx2.Response(200, json={"key": CONNECT_CLIENT_KEY_PROPERTY, "value": answer.value})

    def installation_details(self) -> dict[str, Any]:
        """What the Installation Details API answers for this installation."""
        site = f"ari:cloud:{self.product}::site/{self.cloud_id}"
        return {
            "version": "2.4.0",
            "installationContext": {"id": site},
            "secondaryInstallationContexts": [],
            "permissions": {
                "scopes": ["read:jira-work", "read:app-system-token"],
                "external": {"fetch": {"backend": ["https://connect-app.example.test"], "client": []}},
            },
            "isSandbox": False,
        }

    def answer_installation_details(
        self, app_id: str, environment_id: str, installation_id: str, claims: Mapping[str, Any]
    ) -> httpx2.Response:
        """`GET /forge/installation/v1/{appId}/{envId}/installation/{installationId}`, rate limited as Atlassian's.

        The system token's installation must be the one named; one request per
        5 minutes per installation (by the fake's clock), else 429 with `Retry-After`.
        """
        ours = (
            self.app_id.rsplit("/", 1)[1],
            self.environment_id.rsplit("/", 1)[1],
            self.installation_uuid,
        )
        if claims["kind"] != "system" or (app_id, environment_id, installation_id) != ours:
            return httpx2.Response(
                401, json={"type": "AuthorizationError", "code": 401, "message": "Authorization failed"}
            )
        now = self.clock()
        with self.lock:
            last = self._details_asked.get(installation_id)
            if last is not None and now - last < _DETAILS_INTERVAL:
                wait = _DETAILS_INTERVAL - (now - last)
                return httpx2.Response(
                    429,
                    headers={"Retry-After": str(int(wait) + 1)},
                    json={"type": "RateLimitError", "code": 429, "message": "Rate limit exceeded"},
                )
            self._details_asked[installation_id] = now
        if not self.installed:
            return httpx2.Response(
                404, json={"type": "NotFoundError", "code": 404, "message": "Installation not found"}
            )
        return httpx2.Response(200, json=self.installation_details())

    @property
    def api_calls(self) -> list[ProductAPICall]:
        """Every call the product API and the GraphQL gateway received, in order (`api.calls`)."""
        return self.api.calls

    def answer_api_request(self, request: httpx2.Request) -> httpx2.Response:
        """Answer one call to the product API (as `api_transport` does); 401 without a live token of this fake."""
        return self.api.answer(request)

    def answer_offline_token(self, request: httpx2.Request, claims: Mapping[str, Any]) -> httpx2.Response:
        """The GraphQL gateway's answer to `offlineUserAuthToken`, asked with a verified token of `claims`."""
        body = json.loads(request.content or b"{}")
        variables = (body.get("variables") or {}).get("input") or {}
        if claims["kind"] != "system" or "offlineUserAuthToken" not in str(body.get("query", "")):
            return httpx2.Response(200, json={"data": None, "errors": [{"message": "Not allowed"}]})
        if not variables.get("userId") or not variables.get("contextIds"):
            result = {
                "success": False,
                "errors": [{"message": "userId and contextIds are required"}],
                "authToken": None,
            }
        else:
            ttl = _PRODUCT_TOKEN_LIFETIME
            token = self._product_token("offline", self.clock() + ttl, str(variables["userId"]))
            result = {"success": True, "errors": None, "authToken": {"token": token, "ttl": ttl}}
        return httpx2.Response(200, json={"data": {"offlineUserAuthToken": result}})

    @property
    def api_transport(self) -> httpx2.MockTransport:
        """An httpx2 transport answering the product API (`https://api.atlassian.com/...`) in-process."""
        return self.api.transport

    @contextmanager
    def serve_api(self) -> Iterator[str]:
        """Serve the product API and the GraphQL gateway on 127.0.0.1, yielding the new `api_base_url`.

        Within the block FITs name `http://127.0.0.1:<port>/ex/<product>/<cloudId>` as
        their `apiBaseUrl` (allow it with `ForgeAuth(api_hosts=["127.0.0.1"])`), and
        the gateway answers at `http://127.0.0.1:<port>/graphql`.
        """
        with self.api.serve() as base_url:
            yield base_url

    # -- driving the app --------------------------------------------------------------------

    def drive(self, client: httpx2.Client) -> ForgeAppDriver:
        """Send Forge's calls to an app through `client` (a `TestClient`, or an `httpx2.Client` to a running app)."""
        return ForgeAppDriver(self, client)


_LIFECYCLE_PAYLOADS: dict[ForgeLifecycleEvent, str] = {
    "installed": "installed_payload",
    "upgraded": "upgraded_payload",
    "pre-uninstall": "pre_uninstall_payload",
}


RetryReason = Literal["INVALID_REMOTE_INVOCATION_ERROR", "TIMEOUT_ERROR", "INVALID_FORGE_INVOCATION_TOKEN"]
"""Why Forge retried a remote event: a non-2xx answer or a broken contract, no answer within 5 s, a 401."""
RetryContextPlace = Literal["auto", "payload", "top"]
"""Where a retry's `retryContext` goes: inside a top-level `payload` object (`auto` when there is one), or on top."""


def _retry_context(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The `retryContext` of a sent event, at the top level or inside its `payload`."""
    payload = body.get("payload")
    found = payload.get("retryContext") if isinstance(payload, Mapping) else None
    return found or body.get("retryContext")


def _with_retry_context(
    body: dict[str, Any], count: int, reason: RetryReason, place: RetryContextPlace
) -> dict[str, Any]:
    """`body` as Forge's `count`-th retry sends it: any earlier `retryContext` replaced, the rest unchanged."""
    context = {"retryCount": count, "retryReason": reason, "retryData": None}
    body.pop("retryContext", None)
    payload = body.get("payload")
    if place == "payload" and not isinstance(payload, Mapping):
        raise ValueError("This event has no top-level payload object to put the retryContext in.")
    if place != "top" and isinstance(payload, Mapping):
        body["payload"] = {**{k: v for k, v in payload.items() if k != "retryContext"}, "retryContext": context}
    else:
        body["retryContext"] = context
    return body


class ForgeAppDriver:
    """Delivers Forge's calls to an app: events, triggers, lifecycle events, UI and backend calls, with Forge's headers."""

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
        retry_count: int | None = None,
        retry_reason: RetryReason = "INVALID_REMOTE_INVOCATION_ERROR",
        retry_context_in: RetryContextPlace = "auto",
    ) -> httpx2.Response:
        """POST a product event (or, with `shape="trigger"`, a scheduled trigger) as Forge delivers it.

        Each call has a FIT of its own (a new `jti`), as each of Forge's deliveries
        has. `retry_count=n` sends it as Forge's n-th retry: the same body with
        `retryContext: {retryCount, retryReason, retryData: null}` added where
        `retry_context_in` says: `"auto"` inside a top-level `payload` object if the
        body has one (as Forge's docs show it), else at the top level; or
        `"payload"` or `"top"`. `retry_event(response)` retries a sent event.
        """
        body = dict(payload)
        if retry_count is not None:
            body = _with_retry_context(body, retry_count, retry_reason, retry_context_in)
        fit = fit or self.forge.mint_fit(shape)
        return self.client.post(path, json=body, headers=self.headers(fit, system_token=system_token))

    def retry_event(
        self,
        sent: httpx2.Response,
        *,
        retry_count: int | None = None,
        retry_reason: RetryReason = "INVALID_REMOTE_INVOCATION_ERROR",
        retry_context_in: RetryContextPlace = "auto",
        shape: FitShape = "event",
        system_token: str | None = None,
    ) -> httpx2.Response:
        """Send the event whose answer was `sent` again, as Forge retries it: a new FIT, the same body, `retryContext`.

        `retry_count` defaults to one more than the sent event's (1 for a first retry);
        its `retryContext`, if any, is replaced. `retry_reason` is one Forge sends:
        `INVALID_REMOTE_INVOCATION_ERROR` (a non-2xx answer), `TIMEOUT_ERROR`, or
        `INVALID_FORGE_INVOCATION_TOKEN` (the app answered 401).
        """
        request = sent.request
        body = json.loads(request.content)
        last = _retry_context(body)
        count = retry_count if retry_count is not None else (last["retryCount"] + 1 if last else 1)
        return self.event(
            request.url.raw_path.decode("ascii"),
            body,
            shape=shape,
            system_token=system_token,
            retry_count=count,
            retry_reason=retry_reason,
            retry_context_in=retry_context_in,
        )

    def lifecycle(
        self,
        path: str,
        event: ForgeLifecycleEvent,
        payload: Mapping[str, Any] | None = None,
        *,
        fit: str | None = None,
        module_key: str | None = None,
        system_token: str | None = None,
        retry_count: int | None = None,
        retry_reason: str = "INVALID_REMOTE_INVOCATION_ERROR",
    ) -> httpx2.Response:
        """POST a lifecycle event (`installed`, `upgraded`, `pre-uninstall`) with a lifecycle FIT and a system token.

        `path` is any route: the one a manifest's single lifecycle endpoint names
        (`/forge/lifecycle`, `ForgeLifecycle("any")`), or the event's own.
        `payload` defaults to the fake's own (`installed_payload()`...) and is
        sent as it is: `event` only picks that default. Each call mints a fresh FIT (for
        the endpoint `module_key`, `forge-lifecycle` by default) unless `fit` is
        given: one minted earlier is a late delivery. `retry_count` (with
        `retry_reason`) adds the `retryContext` of Forge's redelivery: a fresh FIT,
        the same body otherwise. Events out of order are calls in that order (an
        `installed` after a `pre-uninstall` of the same installation).
        """
        body = dict(payload if payload is not None else getattr(self.forge, _LIFECYCLE_PAYLOADS[event])())
        if retry_count is not None:
            body["retryContext"] = {"retryCount": retry_count, "retryReason": retry_reason, "retryData": None}
        fit = fit or self.forge.mint_fit("lifecycle", module_key=module_key)
        headers = self.headers(fit, system_token=system_token)
        headers.setdefault("x-forge-oauth-system", self.forge.system_token())
        return self.client.post(path, json=body, headers=headers)

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
        """A call from the app's UI through Forge (a frontend `invokeRemote`), with the OAuth tokens given."""
        fit = fit or self.forge.mint_fit("ui")
        headers = self.headers(fit, system_token=system_token, user_token=user_token)
        return self.client.request(method, path, headers=headers, json=json_body)

    def request_remote(
        self, path: str, *, method: str = "GET", fit: str | None = None, json_body: Any = None
    ) -> httpx2.Response:
        """A `requestRemote` call: straight from the user's browser, with the FIT, no OAuth tokens, an `Origin`."""
        fit = fit or self.forge.mint_fit("request-remote")
        headers = {"Authorization": f"Bearer {fit}", "Origin": FAKE_FORGE_UI_ORIGIN}
        return self.client.request(method, path, headers=headers, json=json_body)

    def backend_call(
        self,
        path: str,
        *,
        method: str = "POST",
        fit: str | None = None,
        system_token: str | None = None,
        json_body: Any = None,
    ) -> httpx2.Response:
        """A Forge function's `invokeRemote`: no `principal`, no `context`; body and query are the caller's."""
        fit = fit or self.forge.mint_fit("backend")
        return self.client.request(method, path, headers=self.headers(fit, system_token=system_token), json=json_body)
