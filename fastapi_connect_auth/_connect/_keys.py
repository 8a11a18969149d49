"""Atlassian's public keys for signed installs: a provider protocol and an httpx2 implementation.

The default provider checks the `kid` before building any URL, tries the
environment's primary CDN and then its fallback, bounds every fetch in time,
keeps keys in a bounded TTL cache, remembers outages briefly and unknown kids
for a few seconds at first (then longer each time they are still unknown), and
lets concurrent requests for one kid share a single fetch.

Anyone can POST a forged install naming a random kid, and must not turn the app
into an amplifier against Atlassian's CDN (nor get its address rate-limited
there), nor keep genuine installs out. So fetches of kids never seen valid are
rate-limited per environment and per *kid shape*: each of Atlassian's published
kid formats has its own token bucket, and kids of any other shape share a
smaller one. A flood of forged kids drains only its own shape's bucket; a kid
that was ever valid is refreshed outside every bucket.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import anyio
from cachetools import LRUCache, TTLCache

from .._errors import AuthError, AuthErrorCode
from .._tokens import check_kid
from .._wiring import IDENTITY_ENCODING, OwnedClient, read_raw
from ._environments import INSTALL_KEYS_URLS, ConnectEnvironment

if TYPE_CHECKING:  # httpx2 and cryptography are imported at the first fetch: an app that is never installed skips them
    import httpx2
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

__all__ = ["ATLASSIAN_KID_FORMATS", "AtlassianKeyProvider", "PublicKeyProvider"]

logger = logging.getLogger("fastapi_connect_auth")

_MAX_KEY_BYTES = 16 * 1024
_MIN_RSA_BITS = 2048

_CacheKey = tuple[ConnectEnvironment, str]
_ASKS_WINDOW = 60.0
"""Seconds over which the asks for a kid are counted: a kid asked for more often gets the next fetch first."""

ATLASSIAN_KID_FORMATS: tuple[re.Pattern[str], ...] = (
    # Until 17 November 2024: a UUID, e.g. `123e4567-e89b-12d3-a456-426614174000`.
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    # Since: a key path, e.g. `generic-keypair/cs-migrations/installation-key-pair--r0d6u65570m0lc8n`.
    re.compile(r"(?:[a-z0-9-]+/)+[a-z0-9-]+--[a-z0-9]+"),
)
"""The shapes of the kids Atlassian signs installs with, each given its own fetch budget.

A kid of another shape is still fetched (Atlassian changed the format once and
may again), from a smaller budget of its own. Sources: docs/public-keys.md.
"""


@runtime_checkable
class PublicKeyProvider(Protocol):
    """Resolves the RSA public key Atlassian signed a lifecycle callback with.

    Raise `AuthError(FAILED_TO_OBTAIN_PUBLIC_KEY)` when the key cannot be had.
    """

    async def get_public_key(self, kid: str, environment: ConnectEnvironment) -> RSAPublicKey:
        """Atlassian's RSA public key for `kid` in `environment`; raises `AuthError` when it cannot."""
        ...


class _KeyUnavailable(Exception):
    def __init__(self, reason: str, *, outage: bool) -> None:
        super().__init__(reason)
        self.outage = outage


class _RateLimited(_KeyUnavailable):
    def __init__(self) -> None:
        super().__init__("too many new key ids were asked for; retry shortly", outage=True)


class _Waiter:
    """The one fetch waiting for a budget's next token; `priority()` is how often its kid is being asked for."""

    __slots__ = ("priority", "turn")

    def __init__(self, priority: Callable[[], int], turn: asyncio.Future[bool]) -> None:
        self.priority = priority
        self.turn = turn


class _FetchBudget:
    """A token bucket of key fetches for one environment and kid shape: `burst` at once, then `rate` a second.

    A fetch that finds the bucket empty waits for the next token if it comes within
    `wait` seconds and no other fetch waits, or if the other waits for a kid asked for
    less often (which is then refused); any other is refused at once. So a burst of
    forged installs costs the CDN at most `burst` plus `rate` fetches a second, and a
    genuine kid, asked again (a retried install, or the next tenant's), gets the next
    token ahead of forged kids asked once each.
    """

    def __init__(self, burst: int, rate: float, wait: float, clock: Callable[[], float]) -> None:
        self._burst = float(burst)
        self._rate = rate
        self._wait = wait
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._waiter: _Waiter | None = None

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    async def take(self, priority: Callable[[], int]) -> bool:
        """Take a token, waiting for one as described above; `False` if refused."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        delay = (1 - self._tokens) / self._rate if self._rate > 0 else float("inf")
        waiter = self._waiter
        if waiter is not None and (waiter.turn.done() or waiter.priority() >= priority()):
            return False  # the waiting kid keeps its place (or its token came already)
        if delay > self._wait:
            return False
        if waiter is not None:
            waiter.turn.set_result(False)  # a kid asked for more often takes its place
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(delay, turn.set_result, True)
        self._waiter = _Waiter(priority, turn)
        try:
            if not await turn:
                return False
        finally:
            timer.cancel()
            if self._waiter is not None and self._waiter.turn is turn:
                self._waiter = None
        self._refill()
        self._tokens = max(self._tokens - 1, 0.0)
        return True


class _Unknown:
    """A kid every host answered 404 for: refused without a fetch until `retry_at`; `strikes` 404s in a row."""

    __slots__ = ("error", "retry_at", "strikes")

    def __init__(self, error: _KeyUnavailable, retry_at: float, strikes: int) -> None:
        self.error = error
        self.retry_at = retry_at
        self.strikes = strikes


class AtlassianKeyProvider(OwnedClient):
    """Fetches install keys from Atlassian's CDN of the install's environment.

    Pass your own `httpx2.AsyncClient`, or open the provider's with `async with
    provider:` (`ConnectAuth.lifespan` does it for you). Without an open client a
    short-lived one serves each fetch, which the cache makes rare.

    `base_url` replaces every environment's CDN (a mirror, or a test key server).

    * `failure_ttl`: seconds an outage (timeout, 5xx, bad answer) is remembered.
    * `unknown_kid_ttl`: seconds a kid every host answered 404 for is refused
      without a fetch; each further 404 in a row doubles it, up to
      `unknown_kid_max_ttl` (up to `unknown_kid_cache_size` kids are remembered).
      A kid asked for just before Atlassian published it is found seconds later;
      a forged kid asked again and again costs ever fewer fetches.
    * `new_kid_burst`, `new_kid_rate`: fetches of kids never seen valid, per
      environment and per shape in `kid_formats` (Atlassian's by default):
      `new_kid_burst` at once, then `new_kid_rate` a second. Kids of no listed
      shape share `other_kid_burst` and `other_kid_rate`. Beyond that an install
      is answered 503 (`FAILED_TO_OBTAIN_PUBLIC_KEY`) without a fetch, except the
      one per bucket that can wait at most `new_kid_wait` seconds for the next
      slot: a kid asked for more often in the last minute takes that slot from
      one asked for less. A kid whose key was fetched before is refreshed
      outside every budget.
      Each fetch asks at most two hosts (primary and fallback).
    * `clock`: monotonic seconds, for every cache and budget.
    """

    def __init__(
        self,
        *,
        client: httpx2.AsyncClient | None = None,
        base_url: str | None = None,
        timeout: float = 3.0,
        cache_ttl: float = 3600.0,
        cache_size: int = 256,
        failure_ttl: float = 5.0,
        unknown_kid_ttl: float = 5.0,
        unknown_kid_max_ttl: float = 600.0,
        unknown_kid_cache_size: int = 4096,
        kid_formats: Sequence[re.Pattern[str]] = ATLASSIAN_KID_FORMATS,
        new_kid_burst: int = 10,
        new_kid_rate: float = 1.0,
        other_kid_burst: int = 3,
        other_kid_rate: float = 0.2,
        new_kid_wait: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._owns_client = False
        self._base_url = base_url.rstrip("/") if base_url else None
        self._timeout = timeout
        self._clock = clock
        self._keys: TTLCache[_CacheKey, RSAPublicKey] = TTLCache(cache_size, cache_ttl, timer=clock)
        self._known: LRUCache[_CacheKey, bool] = LRUCache(cache_size)
        self._failures: TTLCache[_CacheKey, _KeyUnavailable] = TTLCache(cache_size, failure_ttl, timer=clock)
        self._unknown: TTLCache[_CacheKey, _Unknown] = TTLCache(
            unknown_kid_cache_size, 2 * unknown_kid_max_ttl, timer=clock
        )
        self._unknown_ttl = (unknown_kid_ttl, unknown_kid_max_ttl)
        self._asks: TTLCache[_CacheKey, int] = TTLCache(unknown_kid_cache_size, _ASKS_WINDOW, timer=clock)
        self._formats = tuple(kid_formats)
        shapes = [(new_kid_burst, new_kid_rate)] * len(self._formats) + [(other_kid_burst, other_kid_rate)]
        self._budgets = {
            (environment, shape): _FetchBudget(burst, rate, new_kid_wait, clock)
            for environment in ConnectEnvironment
            for shape, (burst, rate) in enumerate(shapes)
        }
        self._inflight: dict[_CacheKey, asyncio.Future[RSAPublicKey]] = {}
        self.fetches = 0
        """How many key fetches were made (for monitoring; telemetry's `key.cached` reads it)."""

    def shape_of(self, kid: str) -> int:
        """The budget `kid` draws on: the index of the first of `kid_formats` it matches, else the other kids'."""
        matches = (index for index, pattern in enumerate(self._formats) if pattern.fullmatch(kid))
        return next(matches, len(self._formats))

    def urls_for(self, kid: str, environment: ConnectEnvironment) -> list[str]:
        """The URLs tried for `kid`, in order."""
        bases = (self._base_url,) if self._base_url else INSTALL_KEYS_URLS[environment]
        return [f"{base}/{kid}" for base in bases]

    async def get_public_key(
        self, kid: str, environment: ConnectEnvironment = ConnectEnvironment.PRODUCTION
    ) -> RSAPublicKey:
        """Atlassian's key for `kid` in `environment`: cached, fetched once for concurrent callers."""
        cache_key = (environment, check_kid(kid))
        key = self._keys.get(cache_key)
        if key is not None:
            return key
        self._refuse_if_remembered(kid, cache_key)
        self._asks[cache_key] = self._asks.get(cache_key, 0) + 1
        inflight = self._inflight.get(cache_key)
        if inflight is not None:
            return await asyncio.shield(inflight)
        future: asyncio.Future[RSAPublicKey] = asyncio.get_running_loop().create_future()
        self._inflight[cache_key] = future
        try:
            key = await self._budgeted_fetch(kid, environment)
        except _KeyUnavailable as exc:
            self._remember(cache_key, exc)
            error = self._error(kid, exc)
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise error from None
        except BaseException as exc:  # cancelled: let waiters try again themselves
            future.set_exception(AuthError(AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY, "The key fetch was cancelled."))
            future.exception()
            raise exc
        finally:
            del self._inflight[cache_key]
        self._keys[cache_key] = key
        self._known[cache_key] = True
        self._unknown.pop(cache_key, None)
        future.set_result(key)
        return key

    def _refuse_if_remembered(self, kid: str, cache_key: _CacheKey) -> None:
        """Refuse, without a fetch, a kid whose outage is remembered or that is unknown until its re-check."""
        failure = self._failures.get(cache_key)
        if failure is not None:
            raise self._error(kid, failure)
        unknown = self._unknown.get(cache_key)
        if unknown is not None and self._clock() < unknown.retry_at:
            raise self._error(kid, unknown.error)

    async def _budgeted_fetch(self, kid: str, environment: ConnectEnvironment) -> RSAPublicKey:
        """Fetch `kid`'s key; a kid never seen valid first takes a token from its shape's budget (by how often it is asked)."""
        cache_key = (environment, kid)
        if cache_key not in self._known:
            budget = self._budgets[environment, self.shape_of(kid)]
            if not await budget.take(lambda: self._asks.get(cache_key, 0)):
                raise _RateLimited()
        self.fetches += 1
        return await self._fetch(kid, environment)

    def _remember(self, cache_key: _CacheKey, failure: _KeyUnavailable) -> None:
        """Remember an outage for `failure_ttl`, an unknown kid until a re-check that backs off; not our refusals."""
        if isinstance(failure, _RateLimited):  # says nothing about the kid
            return
        if failure.outage:
            self._failures[cache_key] = failure
            return
        previous = self._unknown.get(cache_key)
        strikes = previous.strikes + 1 if previous is not None else 1
        first, longest = self._unknown_ttl
        wait = min(first * 2.0 ** min(strikes - 1, 32), longest)
        self._unknown[cache_key] = _Unknown(failure, self._clock() + wait, strikes)
        self._known.pop(cache_key, None)  # a key Atlassian withdrew makes its kid a new one again

    @staticmethod
    def _error(kid: str, failure: _KeyUnavailable) -> AuthError:
        return AuthError(
            AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY,
            f"Could not obtain Atlassian's public key {kid!r}: {failure}.",
            status_code=503 if failure.outage else 401,
        )

    async def _fetch(self, kid: str, environment: ConnectEnvironment) -> RSAPublicKey:
        failures: list[_KeyUnavailable] = []
        for url in self.urls_for(kid, environment):
            try:
                with anyio.fail_after(self._timeout):
                    return await self._fetch_one(url)
            except TimeoutError:
                failures.append(_KeyUnavailable("the key server timed out", outage=True))
            except _KeyUnavailable as exc:
                failures.append(exc)
            logger.warning("Install key unavailable at %s: %s", url, failures[-1])
        # An outage if any host was down; a plain "no such key" only if every host said so.
        reasons = "; ".join(dict.fromkeys(str(failure) for failure in failures))
        raise _KeyUnavailable(reasons, outage=any(failure.outage for failure in failures))

    async def _fetch_one(self, url: str) -> RSAPublicKey:
        if (client := self._open_client()) is not None:
            return await self._read_key(client, url)
        import httpx2

        async with httpx2.AsyncClient(timeout=self._timeout) as client:
            return await self._read_key(client, url)

    @staticmethod
    async def _read_key(client: httpx2.AsyncClient, url: str) -> RSAPublicKey:
        import httpx2
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            async with client.stream("GET", url, headers=IDENTITY_ENCODING, follow_redirects=False) as response:
                if response.status_code != 200:
                    outage = response.status_code >= 500 or response.status_code == 429
                    raise _KeyUnavailable(f"the key server answered {response.status_code}", outage=outage)
                body = await read_raw(response, _MAX_KEY_BYTES)
        except ValueError as exc:  # compressed, or past the cap on the bytes received
            raise _KeyUnavailable(f"the key server's answer is refused: {exc}", outage=True) from None
        except httpx2.HTTPError as exc:
            raise _KeyUnavailable(f"the key server could not be reached ({type(exc).__name__})", outage=True) from exc
        try:
            key = load_pem_public_key(body.strip())
        except (ValueError, TypeError) as exc:
            raise _KeyUnavailable("the key server's answer is not a PEM public key", outage=True) from exc
        if not isinstance(key, RSAPublicKey) or key.key_size < _MIN_RSA_BITS:
            raise _KeyUnavailable("the key server's answer is not an RSA public key of 2048 bits or more", outage=True)
        return key
