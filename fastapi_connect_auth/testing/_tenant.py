"""`FakeTenant`: what every part of the test kit shares: a tenant's identity, keys, tokens and payloads.

The driver and the fake REST API use it; `FakeProduct` adds its REST API and
its driver on top. Nothing here imports the rest of the kit, so the kit's
modules import one another in one direction only.

Tokens are made with PyJWT directly, and query string hashes with the library's
`query_string_hash`, which is tested against Atlassian's published vectors.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx2
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .._connect._keys import AtlassianKeyProvider
from .._connect._qsh import CONTEXT_QSH, query_string_hash
from ._keyserver import KeyServer, serve_keys
from ._profiles import DEFAULT_ACCOUNT_ID, ProductType, profile_of

__all__ = ["FAKE_KEYS_URL", "FakeTenant", "generate_rsa_key"]

FAKE_KEYS_URL = "https://install-keys.fake-product.test"
"""Where `FakeProduct.key_provider()` looks for keys; `key_transport` answers it in-process."""


def _without_none(values: Mapping[str, Any]) -> dict[str, Any]:
    """A field or claim passed as `None` is left out: how a test builds a payload missing something."""
    return {name: value for name, value in values.items() if value is not None}


def generate_rsa_key() -> rsa.RSAPrivateKey:
    """A fresh 2048-bit RSA key, the size Atlassian signs installs with."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class FakeTenant:
    """One tenant of a fake Atlassian product: its identity, its keys, and the tokens and payloads it sends.

    Its builders have no side effects: building an install payload installs
    nothing. `app_key` names the app the tenant has installed (its REST API
    accepts that app's tokens); the driver sets it when an install succeeds.
    """

    def __init__(
        self,
        *,
        product_type: ProductType = "jira",
        base_url: str | None = None,
        client_key: str | None = None,
        shared_secret: str | None = None,
        kid: str | None = None,
        private_key: rsa.RSAPrivateKey | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.profile = profile_of(product_type)
        """What differs between products: default base URL, install signing, webhook bodies."""
        self.product_type: ProductType = product_type
        """`jira`, `confluence` or `bitbucket`."""
        self.base_url = (base_url or self.profile.base_url).rstrip("/")
        """The product's base URL, as its install payload says it."""
        self.client_key = client_key or f"fake-{product_type}-{secrets.token_hex(8)}"
        """The tenant's client key: the `iss` of the product's tokens."""
        self.shared_secret = shared_secret or self.new_shared_secret()
        """The tenant's current shared secret."""
        self.previous_shared_secrets: list[str] = []
        """Secrets replaced by `rotate_shared_secret`, oldest first."""
        self.kid = kid or f"fake-{product_type}/install-key-1"
        """The key id of the product's install key."""
        self.private_key = private_key or generate_rsa_key()
        """The RSA key that signs installs."""
        self.clock = clock
        """The product's clock: tokens are dated by it and the REST API checks `exp` with it."""
        self.app_key: str | None = None
        """The app the tenant has installed (`None` before): its REST API accepts only this app."""
        self.oauth_client_id = f"fake-oauth-client-{secrets.token_hex(8)}"
        """The app's OAuth client id on this tenant (`oauthClientId` of installs): the `iss` of user grants."""

    # -- keys -----------------------------------------------------------------------------

    @property
    def public_key_pem(self) -> bytes:
        """The public key as Atlassian's CDN serves it: a SubjectPublicKeyInfo PEM."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def key_transport(self) -> httpx2.MockTransport:
        """An httpx2 transport that answers `GET <any base>/<kid>` with the public key, and 404 otherwise."""
        pem = self.public_key_pem

        def handle(request: httpx2.Request) -> httpx2.Response:
            if request.method == "GET" and request.url.path.endswith(f"/{self.kid}"):
                return httpx2.Response(200, content=pem, headers={"Content-Type": "application/x-pem-file"})
            return httpx2.Response(404, text="Not found")

        return httpx2.MockTransport(handle)

    def key_provider(self, **options: Any) -> AtlassianKeyProvider:
        """An `AtlassianKeyProvider` that gets this product's key in-process, through `key_transport`."""
        client = httpx2.AsyncClient(transport=self.key_transport)
        return AtlassianKeyProvider(client=client, base_url=FAKE_KEYS_URL, **options)

    @contextmanager
    def serve_keys(self) -> Iterator[KeyServer]:
        """Serve the public key on 127.0.0.1 (for an app in another process): its `url` is the keys base URL."""
        with serve_keys({self.kid: self.public_key_pem}) as server:
            yield server

    # -- tenant ---------------------------------------------------------------------------

    @property
    def signs_installs(self) -> bool:
        """Whether `installed`/`uninstalled` are RS256-signed (Jira, Confluence) or HS256 (Bitbucket Cloud)."""
        return self.profile.signs_installs

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
        """The body of a lifecycle callback as this product sends it (camelCase).

        `fields` override or add fields; a field passed as `None` is left out.
        """
        body: dict[str, Any] = {
            "key": app_key,
            "clientKey": self.client_key,
            "sharedSecret": self.shared_secret,
            "baseUrl": self.base_url,
            "displayUrl": self.base_url,
            "productType": self.product_type,
            "oauthClientId": self.oauth_client_id,
            "description": f"Atlassian {self.profile.name} at {self.base_url}",
            **self.profile.payload_fields,
            "eventType": event,
        }
        if event in ("enabled", "disabled"):
            del body["sharedSecret"]
        body.update(fields)
        return _without_none(body)

    def install_payload(self, *, app_key: str = "connect-app", **fields: Any) -> dict[str, Any]:
        """The body of an `installed` callback, carrying the current shared secret. It installs nothing."""
        return self.lifecycle_payload("installed", app_key=app_key, **fields)

    def webhook_body(self, event: str, *, account_id: str = DEFAULT_ACCOUNT_ID) -> dict[str, Any]:
        """A body for webhook `event` shaped as this product sends it (a Jira issue, a Confluence page, a push)."""
        return self.profile.webhook_body(event, int(self.clock() * 1000), account_id)

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
        lifetime: int = 180,
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
        lifetime: int = 180,
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
        lifetime: int = 180,
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
        """`url` with the query parameters the product adds to a page's iframe URL, `jwt` last.

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
