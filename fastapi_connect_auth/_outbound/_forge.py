"""Calling the product with Forge's tokens: the bearer auth, a per-installation token store, offline user tokens.

A Forge Remote call brings an app system token (`x-forge-oauth-system`) and,
with a user in session, an app user token (`x-forge-oauth-user`). Both are sent
as `Authorization: Bearer` to the invocation's verified `app.apiBaseUrl` and
nowhere else (origin pinning and redirect refusal as for Connect's clients).
Forge has no refresh endpoint: keep tokens per installation until they expire
(`ForgeTokenStore`), and act as a user offline with the GraphQL mutation
`offlineUserAuthToken` (`OfflineUserTokens`).

Tokens are opaque: the only thing read from one is its `exp`, to know how long
it may be kept; identity always comes from the verified FIT.
"""

from __future__ import annotations

import asyncio
import binascii
import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import httpx2
from cachetools import LRUCache

from .._forge._flow import IC_LABEL
from .._forge._models import ForgeInvocation
from .._json import loads
from ._errors import ProductAPIError, TokenRequestError
from ._origin import TenantAuth
from ._retries import ATLASSIAN_RETRIES, AsyncRetryingClient, RetryPolicy, send_with_retries_async
from ._user_auth import _scrub

__all__ = [
    "FORGE_GRAPHQL_URL",
    "FORGE_GRAPHQL_URLS",
    "FORGE_TOKEN_MAX_LIFETIME",
    "ForgeBearerAuth",
    "ForgeStoredToken",
    "ForgeTokenStore",
    "InMemoryForgeTokenStore",
    "OfflineUserTokens",
    "forge_product_client",
    "remember_forge_tokens",
    "stored_forge_client",
    "token_expiry",
    "trusted_system_token",
]

logger = logging.getLogger("fastapi_connect_auth")

FORGE_GRAPHQL_URL = "https://api.atlassian.com/graphql"
"""Atlassian's GraphQL gateway, where `offlineUserAuthToken` is asked for (production)."""
FORGE_GRAPHQL_URLS: Mapping[str, str] = MappingProxyType(
    {"api.atlassian.com": FORGE_GRAPHQL_URL, "api.stg.atlassian.com": "https://api.stg.atlassian.com/graphql"}
)
"""The GraphQL gateway of each API host (an invocation's `app.apiBaseUrl`): production and staging.

Bitbucket (`api.bitbucket.org`) and Isolated Clouds have none here: configure them.
"""
FORGE_TOKEN_MAX_LIFETIME = 4 * 3600.0
"""The longest a Forge system or user token lives (CHANGE-2160): a longer announced lifetime is refused,
and no kept token outlives its receipt by more."""

_OFFLINE_MUTATION = (
    "mutation offlineUserAuthToken($input: OfflineUserAuthTokenInput!) {"
    " offlineUserAuthToken(input: $input) { success errors { message } authToken { token ttl } } }"
)


def token_expiry(token: str) -> float | None:
    """The `exp` of a JWT-shaped Forge token, read without verification (only to know how long to keep it).

    `None` if the token has no readable numeric `exp`: such a token is not kept.
    """
    parts = token.split(".")
    if len(parts) != 3 or len(parts[1]) > 8192:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(binascii.a2b_base64(padded.translate(str.maketrans("-_", "+/"))))
    except (ValueError, binascii.Error, RecursionError):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, bool) or not isinstance(exp, int | float) or exp != exp or exp in (float("inf"), float("-inf")):
        return None
    return float(exp)


@dataclass(frozen=True, slots=True)
class ForgeStoredToken:
    """A product token kept for an installation: where it may be sent, until when, and when it was received."""

    token: str = field(repr=False)
    """The product token; never shown in a repr."""
    api_base_url: str
    """The only base URL the token may be sent to."""
    expires_at: float
    """When the token expires, seconds since the epoch: its `exp`, capped at `received_at` plus 4 hours."""
    received_at: float = 0.0
    """When the invocation that brought it was received: of two tokens, the later received is kept."""


@runtime_checkable
class ForgeTokenStore(Protocol):
    """Where Forge's tokens are kept per installation, for calls made outside a Forge invocation.

    `account_id` is `None` for the app's system token, else the user's account id.
    Which tokens are kept, and until when, is decided once by `remember_forge_tokens`;
    a store only keeps the most recently received one per key.
    """

    async def get(self, installation_id: str, account_id: str | None) -> ForgeStoredToken | None:
        """A token that stays valid for a while yet, or `None`."""
        ...

    async def put(self, installation_id: str, account_id: str | None, token: ForgeStoredToken) -> None:
        """Keep `token` unless the one kept was received later (`received_at`); atomically."""
        ...

    async def discard(self, installation_id: str, account_id: str | None, token: str) -> None:
        """Forget `token` (the product answered 401 to it), if it is still the one kept."""
        ...


class InMemoryForgeTokenStore:
    """A process-local `ForgeTokenStore`: bounded, keeps the latest received token, never returns a nearly expired one.

    `leeway` seconds before expiry a token is no longer handed out, so a call does
    not start with a token that dies on the way.
    """

    def __init__(self, *, leeway: float = 60.0, max_size: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.leeway = leeway
        """Seconds before expiry from which a token is no longer handed out."""
        self.clock = clock
        """The clock expiries are checked against."""
        self._tokens: LRUCache[tuple[str, str | None], ForgeStoredToken] = LRUCache(max_size)

    async def get(self, installation_id: str, account_id: str | None) -> ForgeStoredToken | None:
        """A token that stays valid for `leeway` seconds yet, or `None`."""
        stored = self._tokens.get((installation_id, account_id))
        if stored is None or stored.expires_at - self.leeway <= self.clock():
            return None
        return stored

    async def put(self, installation_id: str, account_id: str | None, token: ForgeStoredToken) -> None:
        """Keep `token` unless the one kept was received later."""
        current = self._tokens.get((installation_id, account_id))
        if current is None or token.received_at >= current.received_at:
            self._tokens[(installation_id, account_id)] = token

    async def discard(self, installation_id: str, account_id: str | None, token: str) -> None:
        """Forget `token` if it is still the one kept."""
        current = self._tokens.get((installation_id, account_id))
        if current is not None and current.token == token:
            del self._tokens[(installation_id, account_id)]


async def remember_forge_tokens(
    store: ForgeTokenStore,
    invocation: ForgeInvocation,
    *,
    module_keys: Collection[str] | None = None,
    max_lifetime: float = FORGE_TOKEN_MAX_LIFETIME,
    clock: Callable[[], float] = time.time,
) -> bool:
    """Keep the invocation's system token for later calls, if it can be trusted to be Forge's; `True` if kept.

    The FIT signs neither the `x-forge-oauth-*` headers nor anything else about
    them, and a UI call's FIT (`requestRemote`) passes through the user's browser,
    which can resend it with a token of its choice. So a token is kept only:

    * from an invocation that cannot come from a browser (`browser_visible` is
      false: no `principal`, no `context`: events, triggers, backend calls);
    * when `module_keys` is given, from one of those modules only;
    * until its unverified `exp`, but never past `max_lifetime` (4 h) after it was
      received; the most recently received token replaces the kept one.

    User tokens come only with a user, so from browser-visible calls: they are
    never kept (ask `OfflineUserTokens` for a user's token instead).
    """
    value = trusted_system_token(invocation)
    module = invocation.module.key if invocation.module else None
    if value is None or (module_keys is not None and module not in module_keys):
        return False
    expires_at, received_at = token_expiry(value), clock()
    if expires_at is None or expires_at <= received_at:
        return False
    capped = min(expires_at, received_at + max_lifetime)
    await store.put(
        invocation.installation_id, None, ForgeStoredToken(value, invocation.api_base_url, capped, received_at)
    )
    return True


def trusted_system_token(invocation: ForgeInvocation) -> str | None:
    """The invocation's system token if it can be trusted to be Forge's: from a call no browser can have sent.

    A browser-visible FIT (`principal` or `context`) may come with any token its
    holder chose; only events, triggers, lifecycle events and backend calls count.
    """
    if invocation.browser_visible or invocation.system_token is None:
        return None
    return invocation.system_token.get_secret_value()


class ForgeBearerAuth(TenantAuth):
    """`Authorization: Bearer <Forge token>`, to the `api_base_url`'s origin only; redirects re-checked per hop.

    `on_unauthorized` runs when the product answers 401 (to drop the token from a store).
    """

    def __init__(
        self,
        *,
        api_base_url: str,
        token: str,
        on_unauthorized: Callable[[], Awaitable[None]] | None = None,
        follow_redirects: bool = True,
        max_redirects: int = 20,
    ) -> None:
        super().__init__(api_base_url, follow_redirects=follow_redirects, max_redirects=max_redirects)
        if not token:
            raise ValueError("token must be a non-empty string")
        self._authorization = f"Bearer {token}"
        self._on_unauthorized = on_unauthorized

    def __repr__(self) -> str:
        return f"ForgeBearerAuth(api_base_url={str(self.base_url)!r})"

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        """Send the request with the bearer token, to the pinned origin only."""
        yield from self._hops(request, lambda _: self._authorization)

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """Send the request with the bearer token, to the pinned origin only."""
        hops = self._hops(request, lambda _: self._authorization)
        request = next(hops)
        while True:
            response = yield request
            if response.status_code == 401 and self._on_unauthorized is not None:
                await self._on_unauthorized()
            try:
                request = hops.send(response)
            except StopIteration:
                return


def _client(
    api_base_url: str,
    token: str,
    on_unauthorized: Callable[[], Awaitable[None]] | None,
    retries: RetryPolicy | None,
    options: dict[str, Any],
) -> httpx2.AsyncClient:
    if options.pop("follow_redirects", False):
        raise ValueError("the Forge auth follows redirects itself, checking each hop: leave follow_redirects off")
    if "auth" in options or "base_url" in options:
        raise ValueError("auth and base_url are set by the factory")
    auth = ForgeBearerAuth(api_base_url=api_base_url, token=token, on_unauthorized=on_unauthorized)
    return AsyncRetryingClient(
        retries=retries, auth=auth, **{"timeout": 30.0, **options, "base_url": api_base_url.rstrip("/")}
    )


def _discarder(
    store: ForgeTokenStore | None, installation_id: str, account_id: str | None, token: str
) -> Callable[[], Awaitable[None]] | None:
    if store is None:
        return None

    async def discard() -> None:
        await store.discard(installation_id, account_id, token)

    return discard


def forge_product_client(
    invocation: ForgeInvocation,
    *,
    as_user: bool = False,
    store: ForgeTokenStore | None = None,
    retries: RetryPolicy | None = ATLASSIAN_RETRIES,
    **client_options: Any,
) -> httpx2.AsyncClient:
    """An `httpx2.AsyncClient` for the product of a verified invocation, as the app (system token) or the user.

    Paths are relative to `app.apiBaseUrl` (`/rest/api/3/myself`). With a
    `store`, a token the product answers 401 to is dropped from it.
    """
    secret = invocation.user_token if as_user else invocation.system_token
    if secret is None:
        header = "x-forge-oauth-user" if as_user else "x-forge-oauth-system"
        raise ProductAPIError(f"The invocation carries no {header} token (see the manifest's remotes auth settings).")
    token = secret.get_secret_value()
    account_id = invocation.principal if as_user else None
    on_unauthorized = _discarder(store, invocation.installation_id, account_id, token)
    return _client(invocation.api_base_url, token, on_unauthorized, retries, client_options)


async def stored_forge_client(
    store: ForgeTokenStore,
    installation_id: str,
    *,
    account_id: str | None = None,
    retries: RetryPolicy | None = ATLASSIAN_RETRIES,
    **client_options: Any,
) -> httpx2.AsyncClient:
    """A client with the installation's kept system token (or `account_id`'s user token), outside any invocation.

    Raises `ProductAPIError` when no live token is kept: Forge has no refresh
    endpoint, a new one arrives with the next invocation (an hourly scheduled
    trigger keeps one at hand).
    """
    stored = await store.get(installation_id, account_id)
    if stored is None:
        raise ProductAPIError("No live Forge token is kept for this installation; one comes with the next invocation.")
    on_unauthorized = _discarder(store, installation_id, account_id, stored.token)
    return _client(stored.api_base_url, stored.token, on_unauthorized, retries, client_options)


@dataclass(frozen=True, slots=True)
class _OfflineToken:
    token: str = field(repr=False)
    expires_at: float


_OfflineKey = tuple[str, str, str, tuple[str, ...]]  # gateway, installation, account, context ids


def _gateway_url(url: str) -> str:
    """`url` if a token may be sent there: https, or plain http to a loopback host (a test gateway)."""
    parts = httpx2.URL(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.host in ("127.0.0.1", "localhost", "::1")):
        return url
    raise ValueError(f"a GraphQL gateway is an https URL, not {url!r}")


class OfflineUserTokens:
    """Act as a user with no user in session: `offlineUserAuthToken`, cached per installation, account and contexts.

    Make one per app and share it. Tokens are asked for with the installation's
    system token at the GraphQL gateway of the invocation's environment: the
    host of its `app.apiBaseUrl` picks it from `graphql_urls` (production and
    staging by default, `FORGE_GRAPHQL_URLS`; Bitbucket and your own hosts when
    you add them), and Isolated Cloud invocations use `isolated_cloud_graphql_url`
    (a template with `{ic_label}`). An invocation of an environment with no known
    gateway is refused: its system token is never sent to another environment's.
    Redirects are not followed. Tokens are kept for their `ttl` less `leeway`, a
    `ttl` outside `0 < ttl <= max_ttl` (4 h) is refused, and concurrent callers
    wanting the same token share a single request, retried as `retries` says
    when the gateway is rate limited or unreachable.

    ```python
    tokens = OfflineUserTokens()
    async with await tokens.client(invocation, account_id, context_ids=[f"ari:cloud:jira::site/{cloud_id}"]) as jira:
        me = (await jira.get("/rest/api/3/myself")).json()
    ```
    """

    def __init__(
        self,
        *,
        client: httpx2.AsyncClient | None = None,
        graphql_urls: Mapping[str, str] | None = None,
        isolated_cloud_graphql_url: str | None = None,
        max_ttl: float = FORGE_TOKEN_MAX_LIFETIME,
        leeway: float = 60.0,
        max_size: int = 10_000,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        retries: RetryPolicy | None = ATLASSIAN_RETRIES,
    ) -> None:
        if isolated_cloud_graphql_url is not None and "{ic_label}" not in isolated_cloud_graphql_url:
            raise ValueError("isolated_cloud_graphql_url must contain '{ic_label}'")
        if not 0 < max_ttl < float("inf"):
            raise ValueError("max_ttl must be a positive number of seconds")
        self._client = client
        self.retries = retries
        """How a token request is retried when the gateway is rate limited or unreachable; `None`: never."""
        self.graphql_urls: Mapping[str, str] = MappingProxyType(
            {host.lower(): _gateway_url(url) for host, url in {**FORGE_GRAPHQL_URLS, **(graphql_urls or {})}.items()}
        )
        """The GraphQL gateway of each API host (`FORGE_GRAPHQL_URLS` and yours)."""
        self.isolated_cloud_graphql_url = (
            None if isolated_cloud_graphql_url is None else _gateway_url(isolated_cloud_graphql_url)
        )
        """A template with `{ic_label}` for Isolated Cloud gateways; `None`: Isolated Cloud invocations are refused."""
        self.max_ttl = max_ttl
        """The longest `ttl` accepted, in seconds (a longer one is refused, not cut)."""
        self.leeway = leeway
        """Seconds before expiry at which a cached token is replaced."""
        self.timeout = timeout
        """Seconds a token request may take."""
        self.clock = clock
        """The clock expiries are checked against."""
        self._tokens: LRUCache[_OfflineKey, _OfflineToken] = LRUCache(max_size)
        self._inflight: dict[_OfflineKey, asyncio.Future[_OfflineToken]] = {}

    def graphql_url(self, api_base_url: str, ic_label: str | None = None) -> str:
        """The gateway for an invocation with this `app.apiBaseUrl` (and `icLabel`); `TokenRequestError` if none."""
        if ic_label is not None:
            if self.isolated_cloud_graphql_url is None or IC_LABEL.fullmatch(ic_label) is None:
                raise TokenRequestError("No GraphQL gateway is configured for this Isolated Cloud invocation.")
            return self.isolated_cloud_graphql_url.format(ic_label=ic_label)
        host = (httpx2.URL(api_base_url).host or "").lower()
        url = self.graphql_urls.get(host)
        if url is None:
            raise TokenRequestError(
                f"No GraphQL gateway is configured for the API host {host[:64]!r}: add it to graphql_urls."
            )
        return url

    async def token(
        self,
        *,
        system_token: str,
        installation_id: str,
        account_id: str,
        context_ids: Sequence[str],
        api_base_url: str,
        ic_label: str | None = None,
    ) -> str:
        """A user token for `account_id` in the installation, from the cache or the environment's gateway.

        `api_base_url` and `ic_label` are the invocation's (they pick the gateway).
        """
        url = self.graphql_url(api_base_url, ic_label)
        key = (url, installation_id, account_id, tuple(sorted(set(context_ids))))
        cached = self._tokens.get(key)
        if cached is not None and cached.expires_at - self.leeway > self.clock():
            return cached.token
        inflight = self._inflight.get(key)
        if inflight is not None:
            return (await asyncio.shield(inflight)).token
        future: asyncio.Future[_OfflineToken] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            fetched = await self._fetch(url, system_token, account_id, key[3])
        except BaseException as exc:
            failure = (
                exc if isinstance(exc, TokenRequestError) else TokenRequestError("The token request was cancelled.")
            )
            future.set_exception(failure)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._inflight[key]
        self._tokens[key] = fetched
        future.set_result(fetched)
        return fetched.token

    def forget(self, installation_id: str, account_id: str) -> None:
        """Drop the cached user tokens of `account_id` in the installation (the product answered 401 to one)."""
        for key in [key for key in self._tokens if key[1:3] == (installation_id, account_id)]:
            self._tokens.pop(key, None)

    async def client(
        self,
        invocation: ForgeInvocation,
        account_id: str,
        *,
        context_ids: Sequence[str],
        retries: RetryPolicy | None = ATLASSIAN_RETRIES,
        **client_options: Any,
    ) -> httpx2.AsyncClient:
        """A client for the invocation's product acting as `account_id`; a 401 drops the cached token."""
        if invocation.system_token is None:
            raise ProductAPIError("Offline user tokens are asked for with the system token, which this call lacks.")
        token = await self.token(
            system_token=invocation.system_token.get_secret_value(),
            installation_id=invocation.installation_id,
            account_id=account_id,
            context_ids=context_ids,
            api_base_url=invocation.api_base_url,
            ic_label=invocation.ic_label,
        )

        async def forget() -> None:
            self.forget(invocation.installation_id, account_id)

        return _client(invocation.api_base_url, token, forget, retries, client_options)

    async def _fetch(self, url: str, system_token: str, account_id: str, context_ids: Sequence[str]) -> _OfflineToken:
        body = {
            "query": _OFFLINE_MUTATION,
            "variables": {"input": {"contextIds": list(context_ids), "userId": account_id}},
        }
        headers = {"Authorization": f"Bearer {system_token}"}

        async def attempt() -> httpx2.Response:
            if self._client is not None:
                return await self._client.post(
                    url, json=body, headers=headers, timeout=self.timeout, follow_redirects=False
                )
            async with httpx2.AsyncClient(timeout=self.timeout) as client:
                return await client.post(url, json=body, headers=headers, follow_redirects=False)

        try:
            # Asking again for a token is safe: the mutation counts as idempotent.
            response = await send_with_retries_async(
                self.retries,
                "POST",
                httpx2.URL(url).path,
                attempt,
                idempotent=True,
                raise_rate_limited=False,
            )
        except httpx2.HTTPError as exc:
            raise TokenRequestError(f"The GraphQL gateway could not be reached ({type(exc).__name__}).") from None
        return self._read(response, system_token)

    def _read(self, response: httpx2.Response, system_token: str) -> _OfflineToken:
        if response.status_code != 200:
            raise TokenRequestError(
                f"The GraphQL gateway answered {response.status_code} to offlineUserAuthToken.",
                status_code=response.status_code,
            )
        document: Any = None
        try:
            document = loads(response.content)
            result = document["data"]["offlineUserAuthToken"]
        except (ValueError, KeyError, TypeError):
            result = None
        if not isinstance(result, dict) or result.get("success") is not True:
            reason = _first_error(document if result is None else result, system_token)
            raise TokenRequestError(
                f"offlineUserAuthToken did not issue a token{': ' + reason if reason else ''}.", status_code=200
            )
        auth = result.get("authToken")
        token, ttl = (auth.get("token"), auth.get("ttl")) if isinstance(auth, dict) else (None, None)
        if not isinstance(token, str) or not token:
            raise TokenRequestError("offlineUserAuthToken's answer has no token.", status_code=200)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= self.max_ttl:
            raise TokenRequestError(
                f"offlineUserAuthToken's answer has no ttl between 0 and {self.max_ttl:g} seconds.", status_code=200
            )
        return _OfflineToken(token, self.clock() + float(ttl))


def _first_error(document: Any, secret: str) -> str | None:
    """The first error message of a GraphQL answer, safe to log: printable, short, no secret."""
    errors = document.get("errors") if isinstance(document, dict) else None
    first = errors[0] if isinstance(errors, list) and errors else None
    return _scrub(first.get("message") if isinstance(first, dict) else None, (secret,))
