"""`FakeProduct`: a simulated Atlassian product (Jira by default) that signs what it sends like the real one.

Tokens are made with PyJWT directly, and query string hashes with the library's
`query_string_hash`, which is tested against Atlassian's published vectors.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .._keys import AtlassianKeyProvider
from .._qsh import CONTEXT_QSH, query_string_hash
from ._driver import ConnectAppDriver
from ._keyserver import KeyServer, serve_keys
from ._restapi import ProductAPICall, answer_api_request, serve_api

__all__ = ["DEFAULT_ACCOUNT_ID", "FAKE_KEYS_URL", "FakeProduct"]

FAKE_KEYS_URL = "https://install-keys.fake-product.test"
"""Where `FakeProduct.key_provider()` looks for keys; `key_transport` answers it in-process."""

DEFAULT_ACCOUNT_ID = "5b10ac8d82e05b22cc7d4ef5"
"""The user a fake product acts for unless told otherwise (an Atlassian account id)."""

_LIFETIME = 180


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    """A field or claim passed as `None` is left out: how a test builds a payload missing something."""
    return {name: value for name, value in values.items() if value is not None}


def generate_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key, the size Atlassian signs installs with."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeProduct:
    """A fake Atlassian product that installs a Connect app and calls it.

    It holds an RSA key pair and its `kid` (signed installs), the tenant's
    `client_key` and current `shared_secret`, and serves its public key both as
    an httpx transport (`key_transport`, `key_provider()`) and as a loopback
    HTTP server (`serve_keys()`). Its token builders take the method and URL of
    the request they will sign; URLs are relative to `app_base_url`, as the
    app's descriptor declares them.

    It also has a REST API for the app to call back (`GET /rest/api/3/issue/{key}`
    answers the summaries in `issues`), in-process (`api_transport`) or on a
    loopback port (`serve_api()`): it answers only a valid app JWT and records
    every call in `api_calls`.

    ```python
    product = FakeProduct()
    app = create_app(key_provider=product.key_provider())
    with TestClient(app) as client:
        jira = product.drive(client)
        assert jira.install().status_code == 204
    ```
    """

    def __init__(
        self,
        *,
        base_url: str = "https://fake-jira.atlassian.net",
        product_type: str = "jira",
        client_key: str | None = None,
        shared_secret: str | None = None,
        kid: str = "fake-jira/install-key-1",
        private_key: rsa.RSAPrivateKey | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.product_type = product_type
        self.client_key = client_key or f"fake-{product_type}-{secrets.token_hex(8)}"
        self.shared_secret = shared_secret or self.new_shared_secret()
        self.previous_shared_secrets: list[str] = []
        self.kid = kid
        self.private_key = private_key or generate_rsa_key()
        self.clock = clock
        self.app_key: str | None = None
        self.issues: dict[str, str] = {}
        self.api_calls: list[ProductAPICall] = []
        self.lock = threading.Lock()

    # -- keys -----------------------------------------------------------------------------

    @property
    def public_key_pem(self) -> bytes:
        """The public key as Atlassian's CDN serves it: a SubjectPublicKeyInfo PEM."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def key_transport(self) -> httpx.MockTransport:
        """An httpx transport that answers `GET <any base>/<kid>` with the public key, and 404 otherwise."""
        pem = self.public_key_pem

        def handle(request: httpx.Request) -> httpx.Response:
            if request.method == "GET" and request.url.path.endswith(f"/{self.kid}"):
                return httpx.Response(200, content=pem, headers={"Content-Type": "application/x-pem-file"})
            return httpx.Response(404, text="Not found")

        return httpx.MockTransport(handle)

    def key_provider(self, **options: Any) -> AtlassianKeyProvider:
        """An `AtlassianKeyProvider` that gets this product's key in-process, through `key_transport`."""
        client = httpx.AsyncClient(transport=self.key_transport)
        return AtlassianKeyProvider(client=client, base_url=FAKE_KEYS_URL, **options)

    @contextmanager
    def serve_keys(self) -> Iterator[KeyServer]:
        """Serve the public key on 127.0.0.1 (for an app in another process): its `url` is the keys base URL."""
        with serve_keys({self.kid: self.public_key_pem}) as server:
            yield server

    # -- tenant ---------------------------------------------------------------------------

    @staticmethod
    def new_shared_secret() -> str:
        """A random shared secret, as long as Atlassian's."""
        return secrets.token_urlsafe(32)

    def rotate_shared_secret(self, shared_secret: str | None = None) -> str:
        """Replace the tenant's shared secret (what an update does); the old one goes to `previous_shared_secrets`."""
        self.previous_shared_secrets.append(self.shared_secret)
        self.shared_secret = shared_secret or self.new_shared_secret()
        return self.shared_secret

    def lifecycle_payload(self, event: str, *, app_key: str = "connect-app", **fields: Any) -> dict[str, Any]:
        """The body of a lifecycle callback as Jira sends it (camelCase).

        `fields` override or add fields; a field passed as `None` is left out.
        """
        body: dict[str, Any] = {
            "key": app_key,
            "clientKey": self.client_key,
            "sharedSecret": self.shared_secret,
            "baseUrl": self.base_url,
            "displayUrl": self.base_url,
            "productType": self.product_type,
            "description": f"Atlassian {self.product_type.capitalize()} at {self.base_url}",
            "serverVersion": "100285",
            "pluginsVersion": "1001.0.0-SNAPSHOT",
            "eventType": event,
        }
        if event in ("enabled", "disabled"):
            del body["sharedSecret"]
        body.update(fields)
        return _without_none(body)

    def install_payload(self, *, app_key: str = "connect-app", **fields: Any) -> dict[str, Any]:
        """The body of an `installed` callback, carrying the current shared secret.

        The product now knows `app_key` as the installed app: its REST API accepts that app's tokens.
        """
        self.app_key = app_key
        return self.lifecycle_payload("installed", app_key=app_key, **fields)

    # -- tokens ---------------------------------------------------------------------------

    def _claims(self, qsh: str, lifetime: int, overrides: Mapping[str, Any]) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {"iss": self.client_key, "iat": now, "exp": now + lifetime, "qsh": qsh}
        claims.update(overrides)
        return _without_none(claims)

    def signed_token(
        self,
        method: str,
        url: str,
        *,
        app_base_url: str,
        private_key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
        lifetime: int = _LIFETIME,
        **claims: Any,
    ) -> str:
        """A signed lifecycle token (`installed`, `uninstalled`): RS256 with the `kid` header, `aud` the app.

        `private_key` signs with another key (a forgery); `claims` override claims
        (`iss`, `aud`, `qsh`, `exp`...), and a claim passed as `None` is left out.
        """
        defaults = {"aud": [app_base_url.rstrip("/")], "sub": None}
        payload = self._claims(query_string_hash(method, url, app_base_url), lifetime, {**defaults, **claims})
        return jwt.encode(payload, private_key or self.private_key, algorithm="RS256", headers={"kid": kid or self.kid})

    def shared_secret_token(
        self,
        method: str,
        url: str,
        *,
        app_base_url: str = "",
        shared_secret: str | None = None,
        account_id: str | None = None,
        lifetime: int = _LIFETIME,
        **claims: Any,
    ) -> str:
        """An HS256 token bound to `method` and `url` (webhooks, page loads, `enabled`/`disabled`).

        Signed with the current shared secret unless `shared_secret` is given;
        `account_id` adds `sub` and `context.user` (a user acting).
        """
        user: dict[str, Any] = {}
        if account_id is not None:
            user = {"sub": account_id, "context": {"user": {"accountId": account_id}}}
        payload = self._claims(query_string_hash(method, url, app_base_url), lifetime, {**user, **claims})
        return jwt.encode(payload, shared_secret or self.shared_secret, algorithm="HS256")

    def context_token(
        self,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        context: Mapping[str, Any] | None = None,
        shared_secret: str | None = None,
        lifetime: int = _LIFETIME,
        **claims: Any,
    ) -> str:
        """What `AP.context.getToken()` returns in the app's iframe: HS256, `qsh` `context-qsh`, the user.

        `context` adds members to the `context` claim beside `user`.
        """
        overrides = {"sub": account_id, "context": {**(context or {}), "user": {"accountId": account_id}}, **claims}
        payload = self._claims(CONTEXT_QSH, lifetime, overrides)
        return jwt.encode(payload, shared_secret or self.shared_secret, algorithm="HS256")

    def page_url(
        self,
        url: str,
        *,
        app_base_url: str = "",
        app_key: str = "connect-app",
        account_id: str = DEFAULT_ACCOUNT_ID,
        shared_secret: str | None = None,
        **params: str,
    ) -> str:
        """`url` with the query parameters Jira adds to a page's iframe URL, `jwt` last.

        The token's QSH covers every other parameter, as the product computes it.
        """
        query = {
            "xdm_e": self.base_url,
            "xdm_c": f"channel-{app_key}__page",
            "cp": urlsplit(self.base_url).path,
            "xdm_deprecated_addon_key_do_not_use": app_key,
            "lic": "none",
            "cv": "1001.0.0-SNAPSHOT",
            "tz": "Europe/Paris",
            "loc": "en-GB",
            **params,
        }
        separator = "&" if urlsplit(url).query else "?"
        unsigned = f"{url}{separator}{urlencode(query)}"
        token = self.shared_secret_token(
            "GET", unsigned, app_base_url=app_base_url, shared_secret=shared_secret, account_id=account_id
        )
        return f"{unsigned}&{urlencode({'jwt': token})}"

    # -- its REST API ---------------------------------------------------------------------

    def answer_api_request(self, request: httpx.Request) -> httpx.Response:
        """Answer a call to the product's REST API, as `api_transport` and `serve_api()` do.

        401 unless `Authorization: JWT` carries a token HS256-signed with the
        current shared secret, `iss` the installed `app_key`, `aud` the client key,
        unexpired, with the `qsh` of this request relative to `base_url`; then
        `GET /rest/api/3/issue/<key>` is 200 with the summary in `issues`, else 404.
        Each call is appended to `api_calls`.
        """
        return answer_api_request(self, request)

    @property
    def api_transport(self) -> httpx.MockTransport:
        """An httpx transport that answers the product's REST API in-process (`product_client(transport=...)`)."""
        return httpx.MockTransport(self.answer_api_request)

    @contextmanager
    def serve_api(self) -> Iterator[str]:
        """Serve the REST API on 127.0.0.1 (for an app in another process), yielding the product's new base URL.

        Within the block `base_url` is `http://127.0.0.1:<port>` (its path kept), so
        an install made there tells the app to call this server; it is restored after.
        """
        with serve_api(self) as base_url:
            yield base_url

    # -- driving an app -------------------------------------------------------------------

    def drive(self, client: httpx.Client, *, app_base_url: str | None = None) -> ConnectAppDriver:
        """A driver that sends this product's calls to the app behind `client` (a `TestClient` or `httpx.Client`)."""
        return ConnectAppDriver(self, client, app_base_url=app_base_url)
