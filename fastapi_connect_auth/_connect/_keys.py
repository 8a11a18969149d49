"""Atlassian's public keys for signed installs: a provider protocol and an httpx2 implementation.

The default provider checks the `kid` before building any URL, tries the
environment's primary CDN and then its fallback, bounds every fetch in time,
keeps keys in a bounded TTL cache, remembers outages briefly and unknown kids
for minutes, lets concurrent requests for one kid share a single fetch, and
rate-limits fetches of new kids per environment: anyone can POST a forged
install naming a random kid, and must not turn the app into an amplifier
against Atlassian's CDN (nor get its address rate-limited there).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import anyio
import httpx2
from cachetools import TTLCache
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from .._errors import AuthError, AuthErrorCode
from .._tokens import check_kid
from .._wiring import IDENTITY_ENCODING, OwnedClient, read_raw
from ._environments import INSTALL_KEYS_URLS, ConnectEnvironment

__all__ = ["AtlassianKeyProvider", "PublicKeyProvider"]

logger = logging.getLogger("fastapi_connect_auth")

_MAX_KEY_BYTES = 16 * 1024
_MIN_RSA_BITS = 2048


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


class _FetchBudget:
    """A token bucket of key fetches for one environment: `burst` at once, then `rate` a second.

    A fetch that finds the bucket empty waits for the next token only if no other
    fetch is already waiting and the token comes within `wait` seconds; any other is
    refused at once. So a burst of forged installs costs the CDN at most `burst` plus
    `rate` fetches a second, and a genuine install after the burst waits at most
    `1 / rate` seconds for its fetch.
    """

    def __init__(self, burst: int, rate: float, wait: float, clock: Callable[[], float]) -> None:
        self._burst = float(burst)
        self._rate = rate
        self._wait = wait
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()
        self._waiting = False

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    async def take(self) -> bool:
        """Take a token, waiting for one as described above; `False` if refused."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        delay = (1 - self._tokens) / self._rate if self._rate > 0 else float("inf")
        if self._waiting or delay > self._wait:
            return False
        self._waiting = True
        try:
            await asyncio.sleep(delay)
        finally:
            self._waiting = False
        self._refill()
        self._tokens = max(self._tokens - 1, 0.0)
        return True


class AtlassianKeyProvider(OwnedClient):
    """Fetches install keys from Atlassian's CDN of the install's environment.

    Pass your own `httpx2.AsyncClient`, or open the provider's with `async with
    provider:` (`ConnectAuth.lifespan` does it for you). Without an open client a
    short-lived one serves each fetch, which the cache makes rare.

    `base_url` replaces every environment's CDN (a mirror, or a test key server).

    * `failure_ttl`: seconds an outage (timeout, 5xx, bad answer) is remembered.
    * `unknown_kid_ttl`: seconds a kid every host answered 404 for is remembered
      (up to `unknown_kid_cache_size` of them): a forged kid, asked again, costs nothing.
    * `new_kid_burst`, `new_kid_rate`: fetches of kids not in the cache, per
      environment: `new_kid_burst` at once, then `new_kid_rate` a second. Beyond
      that an install is answered 503 (`FAILED_TO_OBTAIN_PUBLIC_KEY`) without a
      fetch, except the one that can wait at most `new_kid_wait` seconds for the
      next slot. Each fetch asks at most two hosts (primary and fallback).
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
        unknown_kid_ttl: float = 600.0,
        unknown_kid_cache_size: int = 4096,
        new_kid_burst: int = 10,
        new_kid_rate: float = 1.0,
        new_kid_wait: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._owns_client = False
        self._base_url = base_url.rstrip("/") if base_url else None
        self._timeout = timeout
        self._keys: TTLCache[tuple[ConnectEnvironment, str], RSAPublicKey] = TTLCache(cache_size, cache_ttl)
        self._failures: TTLCache[tuple[ConnectEnvironment, str], _KeyUnavailable] = TTLCache(cache_size, failure_ttl)
        self._unknown: TTLCache[tuple[ConnectEnvironment, str], _KeyUnavailable] = TTLCache(
            unknown_kid_cache_size, unknown_kid_ttl
        )
        self._budgets = {
            environment: _FetchBudget(new_kid_burst, new_kid_rate, new_kid_wait, clock)
            for environment in ConnectEnvironment
        }
        self._inflight: dict[tuple[ConnectEnvironment, str], asyncio.Future[RSAPublicKey]] = {}

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
        failure = self._failures.get(cache_key) or self._unknown.get(cache_key)
        if failure is not None:
            raise self._error(kid, failure)
        inflight = self._inflight.get(cache_key)
        if inflight is not None:
            return await asyncio.shield(inflight)
        future: asyncio.Future[RSAPublicKey] = asyncio.get_running_loop().create_future()
        self._inflight[cache_key] = future
        try:
            if not await self._budgets[environment].take():
                raise _RateLimited()
            key = await self._fetch(kid, environment)
        except _KeyUnavailable as exc:
            if not isinstance(exc, _RateLimited):  # a refusal of ours says nothing about the kid
                (self._failures if exc.outage else self._unknown)[cache_key] = exc
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
        future.set_result(key)
        return key

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
        if self._client is not None:
            return await self._read_key(self._client, url)
        async with httpx2.AsyncClient(timeout=self._timeout) as client:
            return await self._read_key(client, url)

    @staticmethod
    async def _read_key(client: httpx2.AsyncClient, url: str) -> RSAPublicKey:
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
