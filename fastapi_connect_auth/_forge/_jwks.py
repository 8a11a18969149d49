"""Forge's signing keys: a key-provider protocol and an httpx2 JWKS implementation.

One fetch of a JWKS serves every kid in it. The set is kept for `cache_ttl`;
concurrent callers share one fetch; an unknown kid triggers one refetch (a key
rotation), after which fetches wait `refetch_cooldown`, so a stream of junk kids
cannot make the app hammer the endpoint. When a refetch fails, the last good
keys keep serving for `max_stale` seconds; an outage with no good keys is 503.

What a hostile stream of tokens could grow is bounded: at most `max_key_sets`
key sets are kept (least recently used first out), each made only from a fetch
that succeeded; every failure (an error answer, an oversized, compressed or
malformed set, a timeout, a cancelled fetch) holds that URL back for
`refetch_cooldown`; and all URLs together get `fetch_budget` fetches per
`fetch_budget_window` seconds, however many URLs tokens make the flow name.
The answer is read uncompressed (`Accept-Encoding: identity`) and capped on the
bytes received. Keys are parsed by PyJWT one by one; only RSA keys of 2048 bits
or more, for RS256 signatures, with a kid that is a non-empty string, are kept.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import anyio
import httpx2
import jwt
from cachetools import LRUCache, TTLCache
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .._errors import AuthError, AuthErrorCode
from .._json import loads
from .._tokens import MAX_KID_LENGTH
from .._wiring import IDENTITY_ENCODING, OwnedClient, read_raw

__all__ = ["FORGE_JWKS_URL", "FORGE_STAGING_JWKS_URL", "ForgeKeyProvider", "JwksKeyProvider"]

logger = logging.getLogger("fastapi_connect_auth")

FORGE_JWKS_URL = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"
"""Where Forge publishes the keys that sign production FITs."""
FORGE_STAGING_JWKS_URL = "https://forge.cdn.stg.atlassian-dev.net/.well-known/jwks.json"
"""Where Forge publishes the keys that sign staging FITs."""

_MAX_JWKS_BYTES = 64 * 1024
_MAX_KEYS = 64
_MIN_RSA_BITS = 2048


@runtime_checkable
class ForgeKeyProvider(Protocol):
    """Resolves the RSA public key a Forge Invocation Token was signed with.

    Raise `AuthError(FAILED_TO_OBTAIN_PUBLIC_KEY)`: 401 for a kid the JWKS does
    not have, 503 when the keys cannot be had at all.
    """

    async def get_signing_key(self, kid: str, jwks_url: str) -> RSAPublicKey:
        """The RSA key for `kid` from the JWKS at `jwks_url`; raises `AuthError` when it cannot."""
        ...


class _Unavailable(Exception):
    """The JWKS could not be fetched or read (an outage as far as callers are concerned)."""


@dataclass(slots=True)
class _KeySet:
    """The keys of one successful fetch, and until when they serve."""

    keys: dict[str, RSAPublicKey]
    fresh_until: float
    usable_until: float
    next_fetch_at: float


class _Budget:
    """A token bucket: `capacity` fetches, refilled evenly over `window` seconds."""

    def __init__(self, capacity: int, window: float, clock: Callable[[], float]) -> None:
        self._capacity, self._rate, self._clock = float(capacity), capacity / window, clock
        self._tokens, self._updated = float(capacity), clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class JwksKeyProvider(OwnedClient):
    """Fetches and caches JSON Web Key Sets (Forge's, by default) with httpx2.

    Pass your own `httpx2.AsyncClient`, or open the provider's with `async with
    provider:` (`ForgeAuth.lifespan` does it for you). `clock` is monotonic
    seconds, injectable for tests.

    * `cache_ttl`: how long a fetched set is used without asking again (1 h).
    * `refetch_cooldown`: the wait after a fetch before an unknown kid may
      trigger another, and after a failure before that URL is asked again (30 s).
    * `max_stale`: how long the last good set serves while refetches fail (6 h).
    * `max_key_sets`: how many sets are kept (16: production, staging and your
      Isolated Clouds need a handful).
    * `fetch_budget`, `fetch_budget_window`: fetches allowed across all URLs
      (10 per 60 s); past it, a URL with no usable keys answers 503.
    """

    def __init__(
        self,
        *,
        client: httpx2.AsyncClient | None = None,
        timeout: float = 3.0,
        cache_ttl: float = 3600.0,
        refetch_cooldown: float = 30.0,
        max_stale: float = 6 * 3600.0,
        max_key_sets: int = 16,
        fetch_budget: int = 10,
        fetch_budget_window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_key_sets < 1 or fetch_budget < 1 or fetch_budget_window <= 0:
            raise ValueError("max_key_sets, fetch_budget and fetch_budget_window must be positive")
        self._client = client
        self._owns_client = False
        self._timeout = timeout
        self._cache_ttl = cache_ttl
        self._cooldown = refetch_cooldown
        self._max_stale = max_stale
        self._clock = clock
        self._sets: LRUCache[str, _KeySet] = LRUCache(max_key_sets)
        self._latest: tuple[str, _KeySet] | None = None  # the set the last call served: see get_signing_key
        self._failures: TTLCache[str, str] = TTLCache(maxsize=1024, ttl=refetch_cooldown, timer=clock)
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._budget = _Budget(fetch_budget, fetch_budget_window, clock)
        self.fetches = 0
        """How many JWKS fetches were attempted (for monitoring and tests)."""

    @property
    def key_sets(self) -> int:
        """How many key sets are kept now (at most `max_key_sets`)."""
        return len(self._sets)

    async def get_signing_key(self, kid: str, jwks_url: str) -> RSAPublicKey:
        """The key for `kid` from the JWKS at `jwks_url`: cached, refetched at most once per unknown kid.

        The set the last call served is read without the LRU (every call of a
        production app asks for the one URL) while it is the most recently used
        one: a look-up of another URL, or any change to the sets (a fetch),
        forgets it, so the LRU keeps the same order and evicts the same sets.
        """
        latest = self._latest
        if latest is not None and latest[0] == jwks_url:
            key_set: _KeySet | None = latest[1]
        else:
            self._latest = None
            key_set = self._sets.get(jwks_url)
        key = key_set.keys.get(kid) if key_set is not None else None
        if key_set is not None and key is not None and self._clock() < key_set.fresh_until:
            self._latest = (jwks_url, key_set)
            return key
        failure = self._failures.get(jwks_url)
        may_fetch = failure is None and (key_set is None or self._clock() >= key_set.next_fetch_at)
        if jwks_url in self._inflight or may_fetch:
            try:
                await self._refresh(jwks_url)
            except _Unavailable as exc:  # the last good keys may still serve: decided below
                failure = str(exc)
            key_set = self._sets.get(jwks_url)
            key = key_set.keys.get(kid) if key_set is not None else None
        if key_set is not None and key is not None and self._clock() < key_set.usable_until:
            return key
        if failure is not None:
            raise AuthError(
                AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY,
                f"Could not obtain Forge's signing keys: {failure}.",
                status_code=503,
            )
        raise AuthError(
            AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY,
            "The JWT's kid is not one of Forge's signing keys.",
            status_code=401,
        )

    async def _refresh(self, url: str) -> None:
        """Fetch `url` once for every concurrent caller; raise `_Unavailable` if it fails."""
        inflight = self._inflight.get(url)
        if inflight is not None:
            await asyncio.shield(inflight)
            return
        if not self._budget.take():
            raise _Unavailable("the JWKS fetch budget is spent; retry shortly")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[url] = future
        try:
            self.fetches += 1
            keys = await self._fetch(url)
        except BaseException as exc:  # every failure, a cancelled fetch included, holds the URL back
            failure = exc if isinstance(exc, _Unavailable) else _Unavailable("the fetch was cancelled")
            self._failures[url] = str(failure)
            logger.warning("Forge JWKS unavailable at %s: %s", url[:256], failure)
            future.set_exception(failure)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._inflight[url]
        now = self._clock()
        self._latest = None
        self._sets[url] = _KeySet(
            keys,
            fresh_until=now + self._cache_ttl,
            usable_until=now + self._cache_ttl + self._max_stale,
            next_fetch_at=now + self._cooldown,
        )
        self._failures.pop(url, None)
        future.set_result(None)

    async def _fetch(self, url: str) -> dict[str, RSAPublicKey]:
        try:
            with anyio.fail_after(self._timeout):
                if (client := self._open_client()) is not None:
                    body = await self._read(client, url)
                else:
                    async with httpx2.AsyncClient(timeout=self._timeout) as client:
                        body = await self._read(client, url)
        except TimeoutError:
            raise _Unavailable("the JWKS endpoint timed out") from None
        return _parse_jwks(body)

    @staticmethod
    async def _read(client: httpx2.AsyncClient, url: str) -> bytes:
        try:
            async with client.stream("GET", url, headers=IDENTITY_ENCODING, follow_redirects=False) as response:
                if response.status_code != 200:
                    raise _Unavailable(f"the JWKS endpoint answered {response.status_code}")
                return await read_raw(response, _MAX_JWKS_BYTES)
        except ValueError as exc:
            raise _Unavailable(f"the JWKS endpoint's answer is refused: {exc}") from None
        except httpx2.HTTPError as exc:
            raise _Unavailable(f"the JWKS endpoint could not be reached ({type(exc).__name__})") from exc


def _key(entry: Any) -> tuple[str, RSAPublicKey] | None:
    """One usable key of a JWKS: `(kid, key)`, or `None` to skip the entry."""
    if not isinstance(entry, dict):
        return None
    kid = entry.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH or entry.get("use", "sig") != "sig":
        return None
    try:
        jwk = jwt.PyJWK(entry)
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError):
        return None
    key = jwk.key
    if not isinstance(key, RSAPublicKey) or key.key_size < _MIN_RSA_BITS or jwk.algorithm_name != "RS256":
        return None
    return kid, key


def _parse_jwks(body: bytes) -> dict[str, RSAPublicKey]:
    """The usable keys of a JWKS document: RSA, 2048 bits or more, for RS256 signatures, with a string kid."""
    try:
        document = loads(body)
    except ValueError as exc:
        raise _Unavailable("the JWKS is not a valid key set") from exc
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise _Unavailable("the JWKS is not a valid key set")
    keys = dict(filter(None, map(_key, entries[:_MAX_KEYS])))
    if not keys:
        raise _Unavailable("the JWKS has no RSA signing key of 2048 bits or more")
    return keys
