"""Redeliveries: the same delivery id with the same body is a retry to accept once; with another body, a forgery.

Forge retries an event with the same FIT (same `jti`) and Jira a webhook with the
same `X-Atlassian-Webhook-Identifier`. A route stores such a delivery once. A
delivery id that comes back with another body is refused (`DELIVERY_CONFLICT`,
409): a FIT covers neither the body nor the headers, so whoever holds a FIT must
not be able to replay it with a body of their choice.

`RedeliveryStore` is the seam: `InMemoryRedeliveryStore` for one process, the
library's stores (`fastapi_connect_auth.stores`) for several. Only a SHA-256 of
the body is kept, never the body, and each id only until it cannot come back.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from cachetools import LRUCache

from ._errors import AuthError, AuthErrorCode

__all__ = ["InMemoryRedeliveryStore", "RedeliveryStore", "body_fingerprint", "remember_delivery"]

MAX_DELIVERY_KEY = 512
"""The longest delivery key a store is given: namespace, tenant and id together."""


@runtime_checkable
class RedeliveryStore(Protocol):
    """Remembers delivery ids with the fingerprint of their body until they expire."""

    async def remember_delivery(self, key: str, fingerprint: str, expires_at: float) -> str | None:
        """Keep `key` → `fingerprint` until `expires_at` unless `key` is kept already; return the kept fingerprint.

        `None` means `key` was not kept (this delivery is new). It must be atomic: of
        concurrent calls with one `key`, exactly one gets `None`.
        """
        ...


class InMemoryRedeliveryStore:
    """A process-local `RedeliveryStore`: bounded (least recently used ids go first), expired ids forgotten."""

    def __init__(self, *, max_size: int = 100_000, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        """The clock expiries are checked against."""
        self._seen: LRUCache[str, tuple[str, float]] = LRUCache(max_size)

    async def remember_delivery(self, key: str, fingerprint: str, expires_at: float) -> str | None:
        """Keep `key` unless it is kept and unexpired; the kept fingerprint, or `None` for a new delivery."""
        kept = self._seen.get(key)
        if kept is not None and kept[1] > self.clock():
            return kept[0]
        self._seen[key] = (fingerprint, expires_at)
        return None


def body_fingerprint(body: bytes | Any) -> str:
    """The SHA-256 (hex) of a raw body, or of a parsed one as canonical JSON (sorted keys, no spaces)."""
    if not isinstance(body, bytes | bytearray):
        body = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(body).hexdigest()


async def remember_delivery(store: RedeliveryStore, key: str, body: bytes | Any, *, expires_at: float) -> bool:
    """`True` for a new delivery, `False` for a redelivery of the same body; `DELIVERY_CONFLICT` (409) otherwise.

    `key` names the delivery (`forge:<jti>`, `webhook:<clientKey>:<id>`), kept until
    `expires_at` (seconds since the epoch), when it can no longer come back.
    """
    if not key or len(key) > MAX_DELIVERY_KEY or not key.isprintable():
        raise AuthError(
            AuthErrorCode.FAILED_TO_DECODE, "The delivery id is not a printable id of at most 512 characters."
        )
    if not math.isfinite(expires_at):
        raise ValueError("expires_at must be a finite time")
    fingerprint = body_fingerprint(body)
    kept = await store.remember_delivery(key, fingerprint, expires_at)
    if kept is None:
        return True
    if kept == fingerprint:
        return False
    raise AuthError(
        AuthErrorCode.DELIVERY_CONFLICT,
        "This delivery id was already received with another body: refused.",
        status_code=409,
    )
