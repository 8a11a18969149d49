"""Redeliveries: the same delivery id with the same body is a retry to accept once; with another body, a forgery.

Jira retries a webhook with the same `X-Atlassian-Webhook-Identifier`; a FIT's
`jti` names one token, which whoever holds it may send again. A route stores such
a delivery once. A delivery id that comes back with another body is refused
(`DELIVERY_CONFLICT`): a FIT covers neither the body nor the headers, so whoever
holds a FIT must not be able to replay it with a body of their choice. Forge
retries an event with a new FIT: `_forge/_redelivery.py` recognises those by content.

`RedeliveryStore` is the seam: `InMemoryRedeliveryStore` for one process, the
library's stores (`fastapi_connect_auth.stores`) for several. A delivery is
remembered before the app stores it (so that of two concurrent copies only one is
stored); `delivery_once` forgets it again if the app's write fails, so the
sender's retry is stored instead of taken as seen (`ForgettingRedeliveryStore`). Only a SHA-256 of
the body is kept, never the body, and each id only until it cannot come back.
Delivery keys (`delivery_key`) are JSON lists, so no tenant's id can spell another's.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, runtime_checkable

import anyio
from cachetools import TLRUCache
from pydantic_core import to_jsonable_python

from ._errors import AuthError, AuthErrorCode

__all__ = [
    "Delivery",
    "ForgettingRedeliveryStore",
    "InMemoryRedeliveryStore",
    "RedeliveryStore",
    "body_fingerprint",
    "canonical_json",
    "delivery_key",
    "delivery_once",
    "remember_delivery",
]

logger = logging.getLogger("fastapi_connect_auth")

MAX_DELIVERY_KEY = 512
"""The longest delivery key a store is given: namespace, tenant and id together."""
STORE_FULL_RETRY_AFTER = 60
"""Seconds a refused delivery is asked to wait (`Retry-After`) when an in-memory store is full of live ids."""


@runtime_checkable
class RedeliveryStore(Protocol):
    """Remembers delivery ids with the fingerprint of their body until they expire."""

    async def remember_delivery(self, key: str, fingerprint: str, expires_at: float) -> str | None:
        """Keep `key` → `fingerprint` until `expires_at` unless `key` is kept already; return the kept fingerprint.

        `None` means `key` was not kept (this delivery is new). It must be atomic: of
        concurrent calls with one `key`, exactly one gets `None`.
        """
        ...


@runtime_checkable
class ForgettingRedeliveryStore(RedeliveryStore, Protocol):
    """A `RedeliveryStore` that can also forget a delivery: what `delivery_once` needs.

    A protocol of its own, so a `RedeliveryStore` written before it keeps working
    with `remember_delivery` and the `remember_*` functions.
    """

    async def forget_delivery(self, key: str, fingerprint: str) -> bool:
        """Forget `key` if it is still kept with `fingerprint`, atomically; `True` if it was forgotten.

        Compare-and-delete: a key kept with another fingerprint (it expired and
        another delivery took it) is left as it is.
        """
        ...


def _expiry(key: str, kept: tuple[str, float], now: float) -> float:
    return kept[1]


class InMemoryRedeliveryStore:
    """A process-local `RedeliveryStore`: bounded, expired ids dropped first, live ids never evicted.

    Forgetting a live id would turn its replay (a FIT's `jti` with another body)
    into a new delivery, so when `max_size` unexpired ids are kept a new one is
    refused instead: `DELIVERY_STORE_FULL` (503, `Retry-After`), which Atlassian
    retries. Choose `max_size` above the most deliveries the app receives within
    their retention: the busiest hour's events for `remember_forge_event` (kept an
    hour), a FIT's lifetime plus a minute of them for `remember_forge_delivery`,
    a day of webhooks for `remember_webhook_delivery`. An id costs a few hundred
    bytes: the default 100,000 is tens of MB at most. Several processes need a
    shared store (`fastapi_connect_auth.stores`) anyway.
    """

    def __init__(self, *, max_size: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        if max_size <= 0:
            raise ValueError("max_size must be a positive number of delivery ids")
        self.clock = clock
        """The clock expiries are checked against."""
        self.max_size = max_size
        """The most unexpired ids kept; past it, new ones are refused (`DELIVERY_STORE_FULL`)."""
        self._seen: TLRUCache[str, tuple[str, float]] = TLRUCache(max_size, ttu=_expiry, timer=clock)

    async def remember_delivery(self, key: str, fingerprint: str, expires_at: float) -> str | None:
        """Keep `key` unless it is kept and unexpired; the kept fingerprint, or `None` for a new delivery."""
        kept = self._seen.get(key)
        if kept is not None:
            return kept[0]
        self._seen.expire()
        if len(self._seen) >= self.max_size:
            error = AuthError(
                AuthErrorCode.DELIVERY_STORE_FULL,
                "Too many deliveries to remember right now; try again later.",
                status_code=503,
            )
            error.headers = {"Retry-After": str(STORE_FULL_RETRY_AFTER)}
            raise error
        self._seen[key] = (fingerprint, expires_at)
        return None

    async def forget_delivery(self, key: str, fingerprint: str) -> bool:
        """Forget `key` if it is kept with `fingerprint`; `True` if it was forgotten."""
        kept = self._seen.get(key)
        if kept is None or kept[0] != fingerprint:
            return False
        del self._seen[key]
        return True


def delivery_key(namespace: str, *parts: str) -> str:
    """The key of a delivery: `namespace` and its parts (tenant, id) as one JSON list.

    A list keeps the parts apart whatever they hold: joined with `:`, tenant
    `acme` with id `x:42` and tenant `acme:x` with id `42` would be one key. Each
    part must be printable and not empty (`FAILED_TO_DECODE` otherwise).
    """
    if not all(part and part.isprintable() for part in parts):
        raise AuthError(AuthErrorCode.FAILED_TO_DECODE, "The delivery id is not a printable id.")
    return json.dumps([namespace, *parts], separators=(",", ":"), ensure_ascii=False)


def canonical_json(document: Any) -> bytes:
    """`document` (parsed JSON, a pydantic model, any value pydantic serialises) as JSON with sorted keys, no spaces."""
    return json.dumps(to_jsonable_python(document), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


def body_fingerprint(body: bytes | Any) -> str:
    """The SHA-256 (hex) of a raw body, or of a parsed one (a dict, a pydantic model, `None`) as canonical JSON."""
    if not isinstance(body, bytes | bytearray):
        body = canonical_json(body)
    return hashlib.sha256(body).hexdigest()


async def _remember(
    store: RedeliveryStore, key: str, body: bytes | Any, expires_at: float, conflict_status: int
) -> tuple[bool, str]:
    """`remember_delivery`'s answer and the fingerprint it kept (or found)."""
    if not key or len(key) > MAX_DELIVERY_KEY or not key.isprintable():
        raise AuthError(
            AuthErrorCode.FAILED_TO_DECODE, "The delivery id is not a printable id of at most 512 characters."
        )
    if not math.isfinite(expires_at):
        raise ValueError("expires_at must be a finite time")
    fingerprint = body_fingerprint(body)
    kept = await store.remember_delivery(key, fingerprint, expires_at)
    if kept is None:
        return True, fingerprint
    if kept == fingerprint:
        return False, fingerprint
    raise AuthError(
        AuthErrorCode.DELIVERY_CONFLICT,
        "This delivery id was already received with another body: refused.",
        status_code=conflict_status,
    )


async def remember_delivery(
    store: RedeliveryStore, key: str, body: bytes | Any, *, expires_at: float, conflict_status: int = 409
) -> bool:
    """`True` for a new delivery, `False` for a redelivery of the same body; `DELIVERY_CONFLICT` otherwise.

    `key` names the delivery (`delivery_key("forge", installation, jti)`), kept until
    `expires_at` (seconds since the epoch), when it can no longer come back. The
    conflict is answered `conflict_status` (409 unless the sender retries a 409).
    The delivery stays remembered even if the app then fails to store it: use
    `delivery_once` to forget it then.
    """
    new, _ = await _remember(store, key, body, expires_at, conflict_status)
    return new


class Delivery:
    """What `delivery_once` yields: whether the delivery is `new`, and `forget()` to take it back."""

    def __init__(self, store: ForgettingRedeliveryStore, key: str | None, fingerprint: str, *, new: bool) -> None:
        self.new = new
        """`True` the first time the delivery arrives: store it; `False` for a retry of one remembered already."""
        self._store = store
        self._key = key
        self._fingerprint = fingerprint
        self._forgotten = False

    def __repr__(self) -> str:
        return f"Delivery(new={self.new})"

    async def forget(self) -> bool:
        """Forget this delivery, so its retry is new again; `True` if it was forgotten.

        Only a new delivery is forgotten (a retry's memory is the first copy's), once,
        and only while the store still keeps what this one wrote. `delivery_once`
        calls it when its block raises; call it yourself when the app answers a
        failure without raising.
        """
        if not self.new or self._key is None or self._forgotten:
            return False
        self._forgotten = True
        return await self._store.forget_delivery(self._key, self._fingerprint)


def _forgetting(store: RedeliveryStore) -> ForgettingRedeliveryStore:
    if not isinstance(store, ForgettingRedeliveryStore):
        raise TypeError(
            f"{type(store).__name__} cannot forget a delivery: give delivery_once a store with forget_delivery"
        )
    return store


@asynccontextmanager
async def delivery_once(
    store: ForgettingRedeliveryStore,
    key: str | None,
    body: bytes | Any,
    *,
    expires_at: float,
    conflict_status: int = 409,
) -> AsyncIterator[Delivery]:
    """Remember a delivery for the block, and forget it again if the block raises: the retry is then new.

    `remember_delivery` keeps a delivery whatever the app does next, so a retry of
    one whose write failed (the database down, a 503) would be taken as seen and
    the delivery lost. Here the block stores it; if it raises (or is cancelled),
    the delivery is forgotten (only if the store still keeps this one's
    fingerprint: compare-and-delete) and the error goes on, answered as before.
    Remembering first still keeps two concurrent copies from both being stored.
    `key` `None` is a delivery without an id: always new, nothing kept. If the
    forget itself fails (the store is down too) it is logged and the retry is
    taken as seen: keep deliveries in a store that fails apart from the app's
    write, or make the write idempotent, where that matters.

    ```python
    async with delivery_once(deliveries, key, body, expires_at=time.time() + 3600) as delivery:
        if delivery.new:
            await save(body)  # raises: forgotten, and the sender's retry is stored
    ```
    """
    store = _forgetting(store)
    if key is None:
        new, fingerprint = True, ""
    else:
        new, fingerprint = await _remember(store, key, body, expires_at, conflict_status)
    delivery = Delivery(store, key, fingerprint, new=new)
    try:
        yield delivery
    except BaseException:
        with anyio.CancelScope(shield=True):  # a cancelled request still forgets what it did not store
            try:
                await delivery.forget()
            except Exception as exc:  # the block's own error is the answer; this one is only logged
                logger.error(
                    "A delivery the app failed to store could not be forgotten (%s): its retry will be taken as seen",
                    type(exc).__name__,
                )
        raise
