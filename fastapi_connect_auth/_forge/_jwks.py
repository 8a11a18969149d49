"""Forge's signing keys: a key-provider protocol and an httpx2 JWKS implementation.

One fetch of a JWKS serves every kid in it. The set is kept for `cache_ttl`;
concurrent callers share one fetch; an unknown kid triggers one refetch (a key
rotation), after which fetches wait `refetch_cooldown`, so a stream of junk kids
cannot make the app hammer the endpoint. When a refetch fails, the last good
keys keep serving for `max_stale` seconds; an outage with no good keys is 503.
Keys are parsed by PyJWT (`jwt.PyJWKSet`); only RSA keys of 2048 bits or more,
for signatures with RS256, are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import anyio
import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from .._errors import AuthError, AuthErrorCode
from .._wiring import OwnedClient

__all__ = ["FORGE_JWKS_URL", "FORGE_STAGING_JWKS_URL", "ForgeKeyProvider", "JwksKeyProvider"]

logger = logging.getLogger("fastapi_connect_auth")

FORGE_JWKS_URL = "https://forge.cdn.prod.atlassian-dev.net/.well-known/jwks.json"
"""Where Forge publishes the keys that sign production FITs."""
FORGE_STAGING_JWKS_URL = "https://forge.cdn.stg.atlassian-dev.net/.well-known/jwks.json"
"""Where Forge publishes the keys that sign staging FITs."""

_MAX_JWKS_BYTES = 64 * 1024
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
    keys: dict[str, RSAPublicKey] = field(default_factory=dict)
    failure: str | None = None
    fresh_until: float = 0.0
    usable_until: float = 0.0
    next_fetch_at: float = 0.0
    inflight: asyncio.Future[None] | None = None


class JwksKeyProvider(OwnedClient):
    """Fetches and caches JSON Web Key Sets (Forge's, by default) with httpx2.

    Pass your own `httpx2.AsyncClient`, or open the provider's with `async with
    provider:` (`ForgeAuth.lifespan` does it for you). `clock` is monotonic
    seconds, injectable for tests.
    """

    def __init__(
        self,
        *,
        client: httpx2.AsyncClient | None = None,
        timeout: float = 3.0,
        cache_ttl: float = 3600.0,
        refetch_cooldown: float = 30.0,
        max_stale: float = 6 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._owns_client = False
        self._timeout = timeout
        self._cache_ttl = cache_ttl
        self._cooldown = refetch_cooldown
        self._max_stale = max_stale
        self._clock = clock
        self._sets: dict[str, _KeySet] = {}
        self.fetches = 0
        """How many JWKS fetches were attempted (for monitoring and tests)."""

    async def get_signing_key(self, kid: str, jwks_url: str) -> RSAPublicKey:
        """The key for `kid` from the JWKS at `jwks_url`: cached, refetched at most once per unknown kid."""
        key_set = self._sets.get(jwks_url)
        if key_set is None:
            key_set = self._sets[jwks_url] = _KeySet()
        key = key_set.keys.get(kid)
        if key is not None and self._clock() < key_set.fresh_until:
            return key
        if key_set.inflight is not None or self._clock() >= key_set.next_fetch_at:
            with contextlib.suppress(_Unavailable):  # the last good keys may still serve: decided below
                await self._refresh(jwks_url, key_set)
            key = key_set.keys.get(kid)
        if key is not None and self._clock() < key_set.usable_until:
            return key
        if key_set.failure is not None:
            raise AuthError(
                AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY,
                f"Could not obtain Forge's signing keys: {key_set.failure}.",
                status_code=503,
            )
        raise AuthError(
            AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY,
            "The JWT's kid is not one of Forge's signing keys.",
            status_code=401,
        )

    async def _refresh(self, url: str, key_set: _KeySet) -> None:
        """Fetch `url` once for every concurrent caller; raise `_Unavailable` if it fails."""
        if key_set.inflight is not None:
            await asyncio.shield(key_set.inflight)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        key_set.inflight = future
        try:
            self.fetches += 1
            keys = await self._fetch(url)
        except _Unavailable as exc:
            key_set.failure = str(exc)
            key_set.next_fetch_at = self._clock() + self._cooldown
            logger.warning("Forge JWKS unavailable at %s: %s", url, exc)
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        except BaseException:  # cancelled: waiters fail this once, the next caller fetches again
            future.set_exception(_Unavailable("the fetch was cancelled"))
            future.exception()
            raise
        finally:
            key_set.inflight = None
        now = self._clock()
        key_set.keys, key_set.failure = keys, None
        key_set.fresh_until = now + self._cache_ttl
        key_set.usable_until = now + self._cache_ttl + self._max_stale
        key_set.next_fetch_at = now + self._cooldown
        future.set_result(None)

    async def _fetch(self, url: str) -> dict[str, RSAPublicKey]:
        try:
            with anyio.fail_after(self._timeout):
                if self._client is not None:
                    body = await self._read(self._client, url)
                else:
                    async with httpx2.AsyncClient(timeout=self._timeout) as client:
                        body = await self._read(client, url)
        except TimeoutError:
            raise _Unavailable("the JWKS endpoint timed out") from None
        return _parse_jwks(body)

    @staticmethod
    async def _read(client: httpx2.AsyncClient, url: str) -> bytes:
        try:
            async with client.stream("GET", url, follow_redirects=False) as response:
                if response.status_code != 200:
                    raise _Unavailable(f"the JWKS endpoint answered {response.status_code}")
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_JWKS_BYTES:
                        raise _Unavailable("the JWKS is too large")
                return body
        except httpx2.HTTPError as exc:
            raise _Unavailable(f"the JWKS endpoint could not be reached ({type(exc).__name__})") from exc


def _parse_jwks(body: bytes) -> dict[str, RSAPublicKey]:
    """The usable keys of a JWKS document: RSA, 2048 bits or more, for RS256 signatures, with a kid."""
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise TypeError("not a JSON object")
        key_set = jwt.PyJWKSet.from_dict(document)
    except (ValueError, TypeError, AttributeError, RecursionError, jwt.PyJWTError) as exc:
        raise _Unavailable("the JWKS is not a valid key set") from exc
    keys: dict[str, RSAPublicKey] = {}
    for jwk in key_set.keys:
        key = jwk.key
        usable = (
            isinstance(key, RSAPublicKey)
            and key.key_size >= _MIN_RSA_BITS
            and jwk.key_id
            and jwk.algorithm_name == "RS256"
            and jwk.public_key_use in (None, "sig")
        )
        if usable and isinstance(key, RSAPublicKey) and jwk.key_id:
            keys[jwk.key_id] = key
    if not keys:
        raise _Unavailable("the JWKS has no RSA signing key of 2048 bits or more")
    return keys
