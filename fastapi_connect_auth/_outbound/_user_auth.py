"""Acting as a user: the OAuth 2.0 JWT bearer grant, its token cache (`UserTokenProvider`) and `ConnectUserAuth`."""

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

import httpx2
from cachetools import LRUCache

from .._connect._environments import ConnectEnvironment, ProductHosts
from ._app_auth import sign_hs256
from ._errors import TokenRequestError
from ._origin import TenantAuth, required, safe_base_url
from ._retries import ATLASSIAN_RETRIES, RetryPolicy, send_with_retries, send_with_retries_async

logger = logging.getLogger("fastapi_connect_auth")


AUTHORIZATION_SERVERS: Mapping[ConnectEnvironment, str] = {
    ConnectEnvironment.PRODUCTION: "https://oauth-2-authorization-server.services.atlassian.com",
    ConnectEnvironment.STAGING: "https://oauth-2-authorization-server.stg.services.atlassian.com",
    ConnectEnvironment.FEDRAMP: "https://oauth-2-authorization-server.services.atlassian-us-gov-mod.com",
    ConnectEnvironment.FEDRAMP_STAGING: "https://oauth-2-authorization-server.stg.services.atlassian-us-gov-mod.com",
}
"""Atlassian's OAuth 2.0 authorization server for user impersonation, per environment."""

JWT_BEARER_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"


ASSERTION_LIFETIME = 60
"""Seconds a user-grant assertion is valid, as Atlassian's own libraries sign it."""


_EVERY_ENVIRONMENT = ProductHosts.of(environments=list(ConnectEnvironment))
_MAX_ERROR_TEXT = 200


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
    """The token endpoint's base URL."""
    base_url: str
    """The product's base URL (the token's audience)."""
    oauth_client_id: str
    """The app's OAuth client id, from the install payload."""
    account_id: str
    """The user to act as."""
    scopes: tuple[str, ...]
    """The scopes asked for, sorted."""
    secret_digest: bytes = field(repr=False)
    """A digest of the shared secret: part of the cache key, never the secret."""
    shared_secret: str = field(repr=False, compare=False)
    """The tenant's shared secret, which signs the grant; left out of comparisons."""


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
    * `client` / `sync_client`: httpx2 clients to reach the token endpoint (you
      close them); by default a short-lived client is opened per token request.
    * `retries`: how a rate-limited or unreachable token endpoint is retried
      (each attempt with a fresh assertion); asking again for a token is safe,
      so the request counts as idempotent. `None`: never.
    """

    def __init__(
        self,
        *,
        authorization_server: str | None = None,
        client: httpx2.AsyncClient | None = None,
        sync_client: httpx2.Client | None = None,
        timeout: float = 10.0,
        refresh_margin: float = 30.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.time,
        retries: RetryPolicy | None = ATLASSIAN_RETRIES,
    ) -> None:
        self.authorization_server = (
            str(safe_base_url(authorization_server, "authorization_server")) if authorization_server else None
        )
        """The token endpoint's base URL when overridden, else `None` (Atlassian's)."""
        self.client = client
        """The httpx2 client for async token requests, if given."""
        self.sync_client = sync_client
        """The httpx2 client for sync token requests, if given."""
        self.timeout = timeout
        """Seconds a token request may take."""
        self.refresh_margin = refresh_margin
        """Seconds before expiry at which a cached token is replaced."""
        self.clock = clock
        """The clock expiries are checked against."""
        self.retries = retries
        """When a token request is sent again (Atlassian's numbers by default)."""
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
        base = str(safe_base_url(base_url, "base_url"))
        secret = required(shared_secret, "shared_secret")
        return UserGrant(
            authorization_server=self.authorization_server or authorization_server_for(base),
            base_url=base,
            oauth_client_id=required(oauth_client_id, "oauth_client_id"),
            account_id=required(account_id, "account_id"),
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
        sent: list[tuple[float, dict[str, str]]] = []

        async def attempt() -> httpx2.Response:
            requested_at, url, form = self._token_request(grant)  # a fresh assertion for every attempt
            sent.append((requested_at, form))
            if self.client is not None:
                return await self.client.post(url, data=form, headers=_ACCEPT_JSON, follow_redirects=False)
            async with httpx2.AsyncClient(timeout=self.timeout, follow_redirects=False) as client:
                return await client.post(url, data=form, headers=_ACCEPT_JSON)

        try:
            response = await send_with_retries_async(
                self.retries, "POST", "/oauth2/token", attempt, idempotent=True, raise_rate_limited=False
            )
        except httpx2.HTTPError as exc:
            raise _unreachable(grant, exc) from None
        return self._store(grant, sent[-1][0], response, sent[-1][1]["assertion"])

    def _fetch_sync(self, grant: UserGrant) -> str:
        sent: list[tuple[float, dict[str, str]]] = []

        def attempt() -> httpx2.Response:
            requested_at, url, form = self._token_request(grant)
            sent.append((requested_at, form))
            if self.sync_client is not None:
                return self.sync_client.post(url, data=form, headers=_ACCEPT_JSON, follow_redirects=False)
            with httpx2.Client(timeout=self.timeout, follow_redirects=False) as client:
                return client.post(url, data=form, headers=_ACCEPT_JSON)

        try:
            response = send_with_retries(
                self.retries, "POST", "/oauth2/token", attempt, idempotent=True, raise_rate_limited=False
            )
        except httpx2.HTTPError as exc:
            raise _unreachable(grant, exc) from None
        return self._store(grant, sent[-1][0], response, sent[-1][1]["assertion"])

    def _token_request(self, grant: UserGrant) -> tuple[float, str, dict[str, str]]:
        """The time, URL and form of a token request; the assertion is valid for `ASSERTION_LIFETIME` seconds."""
        now = self.clock()
        issued_at = int(now)
        assertion = sign_hs256(
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

    def _store(self, grant: UserGrant, requested_at: float, response: httpx2.Response, assertion: str) -> str:
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


def _unreachable(grant: UserGrant, exc: httpx2.HTTPError) -> TokenRequestError:
    return TokenRequestError(
        f"Could not reach the authorization server {grant.authorization_server} "
        f"for user {grant.account_id} on {grant.base_url}: {type(exc).__name__}."
    )


def _parse_token_response(grant: UserGrant, response: httpx2.Response, secrets: tuple[str, ...]) -> tuple[str, float]:
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


class ConnectUserAuth(TenantAuth):
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
        """The provider the user's access tokens come from."""
        self._grant = self.tokens.grant(
            base_url=str(self.base_url),
            oauth_client_id=oauth_client_id,
            shared_secret=shared_secret,
            account_id=account_id,
            scopes=scopes,
        )

    def __repr__(self) -> str:
        return f"ConnectUserAuth(base_url={str(self.base_url)!r}, account_id={self._grant.account_id!r})"

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        """Send the request with the user's bearer token (fetched or cached)."""
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

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """Send the request with the user's bearer token (fetched or cached)."""
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

    def _seen(self, response: httpx2.Response) -> httpx2.Response:
        """Forget a token the product rejected (revoked, or the user lost access), so the next call asks anew."""
        if response.status_code == 401:
            self.tokens.forget(self._grant)
        return response
