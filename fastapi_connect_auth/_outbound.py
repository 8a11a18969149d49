"""Calling a tenant's Jira or Confluence REST API: as the app, as a user, and tokens for the app's own pages.

```python
async with product_client(app_key="my-app", client_key=key, base_url=url, shared_secret=secret) as jira:
    me = (await jira.get("/rest/api/3/myself")).json()
```

* `ConnectAppAuth` signs each request with a short-lived HS256 JWT whose `qsh`
  covers the request's method, path (relative to the tenant's base URL) and
  query, computed by `fastapi_connect_auth._qsh` like inbound verification.
* `ConnectUserAuth` sends `Authorization: Bearer <token>` with an access token
  from the OAuth 2.0 JWT bearer grant (user impersonation), which a shared
  `UserTokenProvider` fetches once per tenant, user and scopes and caches.
* `context_token()` makes the context token an app hands to its own iframe.

Credentials never leave the tenant: a request whose scheme, host and port are
not the tenant's base URL's is refused before it is sent, and so is any base
URL on plain http other than localhost. Both auths follow same-origin redirects
themselves, signing each hop afresh, and refuse to follow a redirect to another
origin or from https to http (atlassian-connect-express leaked credentials that
way: CVE-2023-28155). Keep `follow_redirects=False` (httpx's default) on the
client: with it on, httpx would follow redirects with the first hop's token.

Exception tree:

```
Exception
└── ProductAPIError            a call to a product's REST API could not be made
    ├── UnsafeRequestError     refused before sending: credentials would reach another host or plain http
    │   └── UnsafeRedirectError   the product redirected to another origin, or from https to http
    └── TokenRequestError      the authorization server did not issue a user's access token
```

No message contains a token, an assertion or a shared secret.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from cachetools import LRUCache

from ._environments import ConnectEnvironment, ProductHosts
from ._qsh import CONTEXT_QSH, query_string_hash

__all__ = [
    "AUTHORIZATION_SERVERS",
    "JWT_BEARER_GRANT_TYPE",
    "ConnectAppAuth",
    "ConnectUserAuth",
    "ProductAPIError",
    "TokenRequestError",
    "UnsafeRedirectError",
    "UnsafeRequestError",
    "UserGrant",
    "UserTokenProvider",
    "authorization_server_for",
    "context_token",
    "product_client",
    "sync_product_client",
]

logger = logging.getLogger("fastapi_connect_auth")

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""The only hosts credentials may be sent to over plain http (a local test product)."""

AUTHORIZATION_SERVERS: Mapping[ConnectEnvironment, str] = {
    ConnectEnvironment.PRODUCTION: "https://oauth-2-authorization-server.services.atlassian.com",
    ConnectEnvironment.STAGING: "https://oauth-2-authorization-server.stg.services.atlassian.com",
    ConnectEnvironment.FEDRAMP: "https://oauth-2-authorization-server.services.atlassian-us-gov-mod.com",
    ConnectEnvironment.FEDRAMP_STAGING: "https://oauth-2-authorization-server.stg.services.atlassian-us-gov-mod.com",
}
"""Atlassian's OAuth 2.0 authorization server for user impersonation, per environment."""

JWT_BEARER_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"

APP_TOKEN_LIFETIME = 180.0
"""Seconds an app JWT is valid: atlassian-connect-express's default of 3 minutes."""

ASSERTION_LIFETIME = 60
"""Seconds a user-grant assertion is valid, as Atlassian's own libraries sign it."""

_DEFAULT_PORTS = {"http": 80, "https": 443}
_EVERY_ENVIRONMENT = ProductHosts.of(environments=list(ConnectEnvironment))
_BITBUCKET_HOSTS = frozenset({"bitbucket.org", "api.bitbucket.org"})
_MAX_ERROR_TEXT = 200


# -- errors ---------------------------------------------------------------------------------------------------------


class ProductAPIError(Exception):
    """A call to a product's REST API could not be made. The message never holds a credential."""


class UnsafeRequestError(ProductAPIError):
    """Refused before sending: the request would carry a tenant's credentials to another origin or over plain http."""


class UnsafeRedirectError(UnsafeRequestError):
    """The product redirected to another origin, or from https to http; the redirect was not followed.

    `location` is where it pointed (to fetch it yourself without credentials,
    e.g. an attachment on a media host).
    """

    def __init__(self, message: str, *, location: str) -> None:
        super().__init__(message)
        self.location = location


class TokenRequestError(ProductAPIError):
    """The authorization server did not issue an access token for a user.

    `status_code` is the token endpoint's HTTP status (`None` if it could not be
    reached) and `error` its OAuth error code (such as `invalid_grant`), if any.
    """

    def __init__(self, message: str, *, status_code: int | None = None, error: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error


# -- URLs and signing -----------------------------------------------------------------------------------------------


_Origin = tuple[str, str, int]


def _origin(url: httpx.URL) -> _Origin:
    return (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 0))


def _origin_text(url: httpx.URL) -> str:
    scheme, host, port = _origin(url)
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"


def _safe_base_url(base_url: str, what: str) -> httpx.URL:
    """`base_url` without its trailing slash, if credentials may be sent there; else raise."""
    try:
        url = httpx.URL(base_url.rstrip("/"))
    except httpx.InvalidURL as exc:
        raise ValueError(f"{what} is not a valid URL") from exc
    if url.scheme not in _DEFAULT_PORTS or not url.host or url.userinfo or url.query or url.fragment:
        raise ValueError(f"{what} must be an absolute http(s) URL without credentials, query or fragment")
    if url.scheme == "http" and url.host not in LOOPBACK_HOSTS:
        raise UnsafeRequestError(
            f"Refused to send credentials over plain http to {_origin_text(url)}: only https, "
            f"or http to {', '.join(sorted(LOOPBACK_HOSTS))}, is allowed."
        )
    return url


def _required(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    return value


def _sign_hs256(claims: Mapping[str, Any], secret: str) -> str:
    """A compact HS256 JWT of `claims`, signed with the tenant's `secret` by PyJWT."""
    return jwt.encode(dict(claims), secret, algorithm="HS256")


# -- auth flows -----------------------------------------------------------------------------------------------------


class _TenantAuth(httpx.Auth):
    """What both auths share: only the tenant's origin gets credentials, and redirects are re-signed."""

    def __init__(self, base_url: str, *, follow_redirects: bool, max_redirects: int) -> None:
        self.base_url = _safe_base_url(base_url, "base_url")
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self._origin = _origin(self.base_url)

    def check_destination(self, url: httpx.URL) -> None:
        """Raise `UnsafeRequestError` unless `url` has the scheme, host and port of the tenant's base URL."""
        if _origin(url) != self._origin:
            raise UnsafeRequestError(
                f"Refused to send the tenant's credentials to {_origin_text(url)}: "
                f"only {_origin_text(self.base_url)} (the tenant's baseUrl) may receive them."
            )

    def _hops(
        self, request: httpx.Request, authorize: Callable[[httpx.Request], str]
    ) -> Generator[httpx.Request, httpx.Response, None]:
        """Send `request` with `Authorization: authorize(request)`, then each same-origin redirect likewise."""
        for _ in range(self.max_redirects + 1):
            self.check_destination(request.url)
            request.headers["Authorization"] = authorize(request)
            response = yield request
            if response.request is not request:
                raise ProductAPIError(
                    "The HTTP client followed a redirect with a stale token: create it with "
                    "follow_redirects=False and let the Connect auth follow redirects, signing each hop."
                )
            next_request = response.next_request
            if not self.follow_redirects or next_request is None:
                return
            if _origin(next_request.url) != self._origin:
                raise UnsafeRedirectError(
                    f"Not following the product's redirect to {_origin_text(next_request.url)}: only "
                    f"{_origin_text(self.base_url)} may receive the tenant's credentials.",
                    location=str(next_request.url),
                )
            request = next_request
        raise httpx.TooManyRedirects(f"Exceeded {self.max_redirects} redirects.", request=request)


class ConnectAppAuth(_TenantAuth):
    """Sign each request to a tenant's REST API as the app: `Authorization: JWT <token>`.

    The token is HS256 with the tenant's shared secret, `iss` the app key, a
    `qsh` over this very request (relative to the tenant's base URL, so
    `https://x.atlassian.net/wiki` and `/wiki/rest/api/space` hash
    `/rest/api/space`), `aud` the tenant's client key (`sub` on Bitbucket), and a
    lifetime of `token_lifetime` seconds. Every send, redirect hop and retry is
    signed afresh. Works with `httpx.Client` and `httpx.AsyncClient`; no I/O.
    """

    def __init__(
        self,
        *,
        app_key: str,
        client_key: str,
        base_url: str,
        shared_secret: str,
        token_lifetime: float = APP_TOKEN_LIFETIME,
        clock: Callable[[], float] = time.time,
        follow_redirects: bool = True,
        max_redirects: int = 20,
    ) -> None:
        super().__init__(base_url, follow_redirects=follow_redirects, max_redirects=max_redirects)
        self.app_key = _required(app_key, "app_key")
        self.client_key = _required(client_key, "client_key")
        self._shared_secret = _required(shared_secret, "shared_secret")
        self.token_lifetime = token_lifetime
        self.clock = clock
        self._tenant_claim = "sub" if self.base_url.host in _BITBUCKET_HOSTS else "aud"

    def __repr__(self) -> str:
        return f"ConnectAppAuth(app_key={self.app_key!r}, base_url={str(self.base_url)!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield from self._hops(request, self._authorization)

    def token_for(self, method: str, url: httpx.URL | str) -> str:
        """The app JWT for a request of `method` to `url` (which must be on the tenant's origin)."""
        url = httpx.URL(url)
        self.check_destination(url)
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": self.app_key,
            "iat": now,
            "exp": now + int(self.token_lifetime),
            "qsh": query_string_hash(method, url.raw_path.decode("ascii"), str(self.base_url)),
            self._tenant_claim: [self.client_key] if self._tenant_claim == "aud" else self.client_key,
        }
        return _sign_hs256(claims, self._shared_secret)

    def _authorization(self, request: httpx.Request) -> str:
        return "JWT " + self.token_for(request.method, request.url)


class ConnectUserAuth(_TenantAuth):
    """Act as a user: `Authorization: Bearer <access token>` from the OAuth 2.0 JWT bearer grant.

    The token comes from `tokens` (share one `UserTokenProvider` across the app so
    the cache is shared), fetched once per tenant, user and scopes. The app must
    declare the `ACT_AS_USER` scope; `oauth_client_id` is the `oauthClientId` of
    the tenant's `installed` callback. The destination is checked before any token
    is fetched; a token the product answers 401 to is dropped from the cache.
    """

    def __init__(
        self,
        *,
        base_url: str,
        oauth_client_id: str,
        shared_secret: str,
        account_id: str,
        scopes: Iterable[str] = (),
        tokens: UserTokenProvider | None = None,
        follow_redirects: bool = True,
        max_redirects: int = 20,
    ) -> None:
        super().__init__(base_url, follow_redirects=follow_redirects, max_redirects=max_redirects)
        self.tokens = tokens or default_user_tokens
        self._grant = self.tokens.grant(
            base_url=str(self.base_url),
            oauth_client_id=oauth_client_id,
            shared_secret=shared_secret,
            account_id=account_id,
            scopes=scopes,
        )

    def __repr__(self) -> str:
        return f"ConnectUserAuth(base_url={str(self.base_url)!r}, account_id={self._grant.account_id!r})"

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.check_destination(request.url)
        authorization = "Bearer " + self.tokens.access_token_sync(self._grant)
        hops = self._hops(request, lambda _: authorization)
        request = next(hops)
        while True:
            response = yield request
            try:
                request = hops.send(self._seen(response))
            except StopIteration:
                return

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        self.check_destination(request.url)
        authorization = "Bearer " + await self.tokens.access_token(self._grant)
        hops = self._hops(request, lambda _: authorization)
        request = next(hops)
        while True:
            response = yield request
            try:
                request = hops.send(self._seen(response))
            except StopIteration:
                return

    def _seen(self, response: httpx.Response) -> httpx.Response:
        """Forget a token the product rejected (revoked, or the user lost access), so the next call asks anew."""
        if response.status_code == 401:
            self.tokens.forget(self._grant)
        return response


# -- user impersonation tokens ----------------------------------------------------------------------------------------


def authorization_server_for(base_url: str) -> str:
    """Atlassian's authorization server for a product at `base_url`: by its environment, else production."""
    environment = _EVERY_ENVIRONMENT.environment_of(base_url) or ConnectEnvironment.PRODUCTION
    return AUTHORIZATION_SERVERS[environment]


@dataclass(frozen=True, slots=True)
class UserGrant:
    """Everything that decides a user's access token; its own cache key.

    The secret is left out of comparisons and reprs; its digest is kept, so a
    caller with a different secret never receives a token cached for another.
    """

    authorization_server: str
    base_url: str
    oauth_client_id: str
    account_id: str
    scopes: tuple[str, ...]
    secret_digest: bytes = field(repr=False)
    shared_secret: str = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class _AccessToken:
    value: str = field(repr=False)
    refresh_at: float


class UserTokenProvider:
    """Access tokens for acting as users (the OAuth 2.0 JWT bearer grant), cached and fetched once.

    Make one per app and share it: a token is reused for the same tenant, user
    and scopes until `refresh_margin` seconds before it expires, and concurrent
    callers wanting the same token share a single request to the token endpoint.

    * `authorization_server`: override Atlassian's (chosen by the product host's
      environment), e.g. for a local fake in tests; https, or http to localhost.
    * `client` / `sync_client`: httpx clients to reach the token endpoint (you
      close them); by default a short-lived client is opened per token request.
    """

    def __init__(
        self,
        *,
        authorization_server: str | None = None,
        client: httpx.AsyncClient | None = None,
        sync_client: httpx.Client | None = None,
        timeout: float = 10.0,
        refresh_margin: float = 30.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.authorization_server = (
            str(_safe_base_url(authorization_server, "authorization_server")) if authorization_server else None
        )
        self.client = client
        self.sync_client = sync_client
        self.timeout = timeout
        self.refresh_margin = refresh_margin
        self.clock = clock
        self._cache: LRUCache[UserGrant, _AccessToken] = LRUCache(maxsize=cache_size)
        self._cache_lock = threading.Lock()
        self._pending: dict[UserGrant, asyncio.Task[str]] = {}
        self._pending_sync: dict[UserGrant, concurrent.futures.Future[str]] = {}

    def grant(
        self, *, base_url: str, oauth_client_id: str, shared_secret: str, account_id: str, scopes: Iterable[str] = ()
    ) -> UserGrant:
        """The grant for `account_id` on the tenant at `base_url`; scopes are upper-cased, deduplicated and sorted."""
        if isinstance(scopes, str):
            raise TypeError("scopes must be an iterable of scope names, not a string")
        base = str(_safe_base_url(base_url, "base_url"))
        secret = _required(shared_secret, "shared_secret")
        return UserGrant(
            authorization_server=self.authorization_server or authorization_server_for(base),
            base_url=base,
            oauth_client_id=_required(oauth_client_id, "oauth_client_id"),
            account_id=_required(account_id, "account_id"),
            scopes=tuple(sorted({scope.upper() for scope in scopes})),
            secret_digest=hashlib.sha256(secret.encode("utf-8")).digest(),
            shared_secret=secret,
        )

    async def access_token(self, grant: UserGrant) -> str:
        """A valid access token for `grant`: cached, or fetched once for all concurrent callers."""
        token = self._cached(grant)
        if token is not None:
            return token
        loop = asyncio.get_running_loop()
        task = self._pending.get(grant)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._fetch(grant))
            self._pending[grant] = task
            task.add_done_callback(functools.partial(self._settled, grant))
        # Shielded: a caller that gives up does not cancel the request the others wait for.
        return await asyncio.shield(task)

    def access_token_sync(self, grant: UserGrant) -> str:
        """`access_token` for threads: one request per grant, however many threads ask at once."""
        with self._cache_lock:
            token = self._cached_locked(grant)
            if token is not None:
                return token
            future = self._pending_sync.get(grant)
            fetching = future is None
            if future is None:
                future = self._pending_sync[grant] = concurrent.futures.Future()
        if not fetching:
            return future.result()
        try:
            token = self._fetch_sync(grant)
            future.set_result(token)
            return token
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._cache_lock:
                del self._pending_sync[grant]

    def forget(self, grant: UserGrant) -> None:
        """Drop the cached token of `grant` (e.g. after the product rejected it)."""
        with self._cache_lock:
            self._cache.pop(grant, None)

    # -- internals ------------------------------------------------------------------------------------------------

    def _cached(self, grant: UserGrant) -> str | None:
        with self._cache_lock:
            return self._cached_locked(grant)

    def _cached_locked(self, grant: UserGrant) -> str | None:
        entry = self._cache.get(grant)
        if entry is None:
            return None
        if self.clock() >= entry.refresh_at:
            del self._cache[grant]
            return None
        return entry.value

    def _settled(self, grant: UserGrant, task: asyncio.Task[str]) -> None:
        if self._pending.get(grant) is task:
            del self._pending[grant]
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody awaited is not reported as unhandled

    async def _fetch(self, grant: UserGrant) -> str:
        requested_at, url, form = self._token_request(grant)
        try:
            if self.client is not None:
                response = await self.client.post(url, data=form, headers=_ACCEPT_JSON, follow_redirects=False)
            else:
                async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
                    response = await client.post(url, data=form, headers=_ACCEPT_JSON)
        except httpx.HTTPError as exc:
            raise _unreachable(grant, exc) from None
        return self._store(grant, requested_at, response, form["assertion"])

    def _fetch_sync(self, grant: UserGrant) -> str:
        requested_at, url, form = self._token_request(grant)
        try:
            if self.sync_client is not None:
                response = self.sync_client.post(url, data=form, headers=_ACCEPT_JSON, follow_redirects=False)
            else:
                with httpx.Client(timeout=self.timeout, follow_redirects=False) as client:
                    response = client.post(url, data=form, headers=_ACCEPT_JSON)
        except httpx.HTTPError as exc:
            raise _unreachable(grant, exc) from None
        return self._store(grant, requested_at, response, form["assertion"])

    def _token_request(self, grant: UserGrant) -> tuple[float, str, dict[str, str]]:
        """The time, URL and form of a token request; the assertion is valid for `ASSERTION_LIFETIME` seconds."""
        now = self.clock()
        issued_at = int(now)
        assertion = _sign_hs256(
            {
                "iss": f"urn:atlassian:connect:clientid:{grant.oauth_client_id}",
                "sub": f"urn:atlassian:connect:useraccountid:{grant.account_id}",
                "tnt": grant.base_url,
                "aud": grant.authorization_server,
                "iat": issued_at,
                "exp": issued_at + ASSERTION_LIFETIME,
            },
            grant.shared_secret,
        )
        form = {"grant_type": JWT_BEARER_GRANT_TYPE, "assertion": assertion}
        if grant.scopes:
            form["scope"] = " ".join(grant.scopes)
        return now, grant.authorization_server + "/oauth2/token", form

    def _store(self, grant: UserGrant, requested_at: float, response: httpx.Response, assertion: str) -> str:
        token, expires_in = _parse_token_response(grant, response, (assertion, grant.shared_secret))
        # Timed from before the request was sent, so the token is never kept past its real expiry.
        entry = _AccessToken(token, requested_at + expires_in - self.refresh_margin)
        with self._cache_lock:
            self._cache[grant] = entry
        logger.debug(
            "Obtained an access token for user %s on %s (expires in %ss).", grant.account_id, grant.base_url, expires_in
        )
        return token


_ACCEPT_JSON = {"Accept": "application/json"}


def _unreachable(grant: UserGrant, exc: httpx.HTTPError) -> TokenRequestError:
    return TokenRequestError(
        f"Could not reach the authorization server {grant.authorization_server} "
        f"for user {grant.account_id} on {grant.base_url}: {type(exc).__name__}."
    )


def _parse_token_response(grant: UserGrant, response: httpx.Response, secrets: tuple[str, ...]) -> tuple[str, float]:
    """The access token and its lifetime, or a `TokenRequestError` with the server's reason (scrubbed)."""
    context = f"for user {grant.account_id} on {grant.base_url}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    if response.status_code != 200:
        error = _scrub(body.get("error"), secrets)
        description = _scrub(body.get("error_description"), secrets)
        reason = ": ".join(part for part in (error, description) if part) or "no reason given"
        raise TokenRequestError(
            f"The authorization server refused an access token {context} (HTTP {response.status_code}): {reason}.",
            status_code=response.status_code,
            error=error,
        )
    token, expires_in = body.get("access_token"), body.get("expires_in")
    if (
        not isinstance(token, str)
        or not token
        or isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
    ):
        raise TokenRequestError(
            f"The authorization server's answer {context} has no access_token and numeric expires_in.",
            status_code=response.status_code,
        )
    return token, float(expires_in)


def _scrub(value: object, secrets: tuple[str, ...]) -> str | None:
    """Untrusted text from the token endpoint, safe to log: printable, short, no secret or assertion."""
    if not isinstance(value, str) or not value:
        return None
    for secret in secrets:
        value = value.replace(secret, "[redacted]")
    text = "".join(char if char.isprintable() else "?" for char in value)
    return text[:_MAX_ERROR_TEXT]


default_user_tokens = UserTokenProvider()
"""The token provider `ConnectUserAuth` and `product_client` share when given none."""


# -- tokens for the app's own pages ---------------------------------------------------------------------------------


def context_token(
    *,
    client_key: str,
    shared_secret: str,
    account_id: str,
    lifetime: float = 180.0,
    context: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> str:
    """A context token for the app's own iframe, accepted by `ConnectRequest(qsh="context")`.

    HS256 with the tenant's shared secret, `iss` the tenant's client key, `sub`
    and `context.user.accountId` the user, `qsh` `"context-qsh"`, valid for
    `lifetime` seconds. `context` adds other members to the `context` claim.
    """
    now = int(clock())
    user = {"accountId": _required(account_id, "account_id")}
    return _sign_hs256(
        {
            "iss": _required(client_key, "client_key"),
            "sub": account_id,
            "iat": now,
            "exp": now + int(lifetime),
            "qsh": CONTEXT_QSH,
            "context": {**(context or {}), "user": user},
        },
        _required(shared_secret, "shared_secret"),
    )


# -- ready clients --------------------------------------------------------------------------------------------------


def _product_auth(
    *,
    app_key: str,
    client_key: str,
    base_url: str,
    shared_secret: str,
    as_user: str | None,
    oauth_client_id: str | None,
    scopes: Iterable[str],
    tokens: UserTokenProvider | None,
) -> httpx.Auth:
    if as_user is None:
        return ConnectAppAuth(app_key=app_key, client_key=client_key, base_url=base_url, shared_secret=shared_secret)
    if not oauth_client_id:
        raise ValueError("as_user needs the tenant's oauth_client_id (from its installed callback)")
    return ConnectUserAuth(
        base_url=base_url,
        oauth_client_id=oauth_client_id,
        shared_secret=shared_secret,
        account_id=as_user,
        scopes=scopes,
        tokens=tokens,
    )


def _client_options(base_url: str, options: dict[str, Any]) -> dict[str, Any]:
    if options.pop("follow_redirects", False):
        raise ValueError("the Connect auth follows redirects itself, re-signing each hop: leave follow_redirects off")
    if "auth" in options or "base_url" in options:
        raise ValueError("auth and base_url are set by the factory")
    return {"timeout": 30.0, **options, "base_url": base_url.rstrip("/")}


def product_client(
    *,
    app_key: str,
    client_key: str,
    base_url: str,
    shared_secret: str,
    as_user: str | None = None,
    oauth_client_id: str | None = None,
    scopes: Iterable[str] = (),
    tokens: UserTokenProvider | None = None,
    **client_options: Any,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` for a tenant's REST API, as the app or (with `as_user`) as that user.

    Paths are relative to the tenant's `base_url` (`/rest/api/3/myself`). With
    `as_user` (an account id), `oauth_client_id` and the `scopes` to request
    (e.g. `["READ", "WRITE"]`) are needed; tokens come from `tokens`, else a
    process-wide provider. Other keyword arguments go to `httpx.AsyncClient`.
    """
    auth = _product_auth(
        app_key=app_key,
        client_key=client_key,
        base_url=base_url,
        shared_secret=shared_secret,
        as_user=as_user,
        oauth_client_id=oauth_client_id,
        scopes=scopes,
        tokens=tokens,
    )
    return httpx.AsyncClient(auth=auth, **_client_options(base_url, client_options))


def sync_product_client(
    *,
    app_key: str,
    client_key: str,
    base_url: str,
    shared_secret: str,
    as_user: str | None = None,
    oauth_client_id: str | None = None,
    scopes: Iterable[str] = (),
    tokens: UserTokenProvider | None = None,
    **client_options: Any,
) -> httpx.Client:
    """`product_client` as a blocking `httpx.Client`."""
    auth = _product_auth(
        app_key=app_key,
        client_key=client_key,
        base_url=base_url,
        shared_secret=shared_secret,
        as_user=as_user,
        oauth_client_id=oauth_client_id,
        scopes=scopes,
        tokens=tokens,
    )
    return httpx.Client(auth=auth, **_client_options(base_url, client_options))
