"""Forge redeliveries: a replayed FIT by its `jti` (`remember_forge_delivery`), a retried event by its content.

Forge retries an event that was not answered 2xx within 5 s up to 4 times, 60 s
apart, each time with a new FIT (a FIT lives about 25 s: the first one has expired
by the first retry) and with `retryContext` added to the body. No event id is
documented. So a retry is recognised by what it says (`remember_forge_event`):
the same installation and the same body once `retryContext` is taken out.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

from pydantic_core import to_jsonable_python

from .._json import loads
from .._redelivery import (
    Delivery,
    ForgettingRedeliveryStore,
    RedeliveryStore,
    canonical_json,
    delivery_key,
    delivery_once,
    remember_delivery,
)
from ._models import ForgeInvocation

__all__ = [
    "FORGE_EVENT_RETENTION",
    "ForgeEventSource",
    "event_fingerprint",
    "forge_event_once",
    "remember_forge_delivery",
    "remember_forge_event",
]

FORGE_EVENT_RETENTION = 3600.0
"""Seconds an event is remembered by its content: Forge's 4 retries, 60 s apart, end within 5 minutes
of the first try; an hour leaves room for a delayed queue and clocks that disagree."""
RETRY_CONTEXT = "retryContext"
"""What Forge adds to a retried event's body: `{retryCount, retryReason, retryData}`."""


class ForgeEventSource(Protocol):
    """What `remember_forge_event` reads of a verified call: its installation and its body.

    `ForgeInvocation` is one; any other verified call (a Forge Containers invocation) may be.
    """

    @property
    def installation_id(self) -> str:
        """The verified installation the event is for."""
        ...

    @property
    def raw_body(self) -> bytes | None:
        """The body's bytes as received, if read."""
        ...

    @property
    def body(self) -> Any:
        """The body as the route read it: a validated model, parsed JSON or bytes."""
        ...


def _without_retry_context(document: Any) -> Any:
    """`document` without Forge's `retryContext`, at the top level and inside a top-level `payload` object."""
    if not isinstance(document, dict):
        return document
    stripped = {name: value for name, value in document.items() if name != RETRY_CONTEXT}
    payload = stripped.get("payload")
    if isinstance(payload, dict) and RETRY_CONTEXT in payload:
        stripped["payload"] = {name: value for name, value in payload.items() if name != RETRY_CONTEXT}
    return stripped


def event_fingerprint(body: bytes | Any) -> str:
    """The SHA-256 (hex) of an event as canonical JSON (sorted keys, no spaces) without its `retryContext`.

    `body` is the raw bytes, parsed JSON or a pydantic model. Bytes that are not
    strict JSON are fingerprinted as they are (no `retryContext` can be taken out).
    """
    if isinstance(body, bytes | bytearray):
        try:
            document = loads(bytes(body))
        except ValueError:
            return hashlib.sha256(body).hexdigest()
    else:
        document = to_jsonable_python(body)
    return hashlib.sha256(canonical_json(_without_retry_context(document))).hexdigest()


async def remember_forge_event(
    store: RedeliveryStore,
    call: ForgeEventSource,
    body: bytes | Any = None,
    *,
    retention: float = FORGE_EVENT_RETENTION,
    clock: Callable[[], float] = time.time,
) -> bool:
    """`True` the first time an event arrives for its installation, `False` for Forge's retry of it.

    "The same event" is the same installation (the verified one) and the same body
    once `retryContext` is removed, at the top level or inside a top-level
    `payload` object, compared as canonical JSON: key order and spacing do not
    count, every other field does (an issue event's `timestamp` tells two edits
    apart). It is kept `retention` seconds (an hour: see `FORGE_EVENT_RETENTION`).
    `body` defaults to the bytes the dependency read (`raw_body`), else `body`;
    a call whose body was not read is a `ValueError`. The key is the content, so
    there is no conflict to refuse: an event is new or seen. The event stays
    remembered if the app then fails to store it: `forge_event_once` forgets it then.

    Keep the `jti` guard (`remember_forge_delivery`) too: it refuses a FIT replayed
    with another body. A scheduled trigger may send the same body every run: do
    not dedupe a trigger by content unless its body differs between runs.

    ```python
    @app.post("/forge/events", status_code=204)
    async def events(call: Annotated[ForgeInvocation, Depends(ForgeRequest(invocation="event", body=dict))]):
        await remember_forge_delivery(deliveries, call)
        if await remember_forge_event(deliveries, call):
            await save(call.installation_id, call.body)
    ```
    """
    key, fingerprint = _forge_event(call, body)
    return await remember_delivery(store, key, fingerprint, expires_at=clock() + retention)


def _forge_event(call: ForgeEventSource, body: bytes | Any) -> tuple[str, bytes]:
    """The event's delivery key and what is fingerprinted of it (its content's own fingerprint)."""
    if body is None:
        body = call.raw_body if call.raw_body is not None else call.body
    if body is None:  # every event of the installation would be one "null" event: all but the first dropped
        raise ValueError("remember_forge_event needs the event's body: ForgeRequest(body=...), or pass body=")
    fingerprint = event_fingerprint(body)
    return delivery_key("forge-event", call.installation_id, fingerprint), fingerprint.encode()


@asynccontextmanager
async def forge_event_once(
    store: ForgettingRedeliveryStore,
    call: ForgeEventSource,
    body: bytes | Any = None,
    *,
    retention: float = FORGE_EVENT_RETENTION,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Delivery]:
    """`remember_forge_event` for a block: if the block raises, the event is forgotten and Forge's retry stored.

    Forge retries an event answered non-2xx; had it stayed remembered, that retry
    would be taken as seen and the event lost. Arguments as for
    `remember_forge_event`; the block runs for a retry too, with `new` `False`
    (see `delivery_once`).

    ```python
    @app.post("/forge/events", status_code=204)
    async def events(call: Annotated[ForgeInvocation, Depends(ForgeRequest(invocation="event", body=dict))]):
        await remember_forge_delivery(deliveries, call)
        async with forge_event_once(deliveries, call) as event:
            if event.new:
                await save(call.installation_id, call.body)  # raises: forgotten, Forge's retry is stored
    ```
    """
    key, fingerprint = _forge_event(call, body)
    async with delivery_once(store, key, fingerprint, expires_at=clock() + retention) as delivery:
        yield delivery


async def remember_forge_delivery(
    store: RedeliveryStore, invocation: ForgeInvocation, body: bytes | Any = None, *, leeway: float = 60.0
) -> bool:
    """`True` the first time a FIT's `jti` arrives, `False` when it comes again with the same body.

    This guards one token, not one event: Forge retries an event with a new FIT
    (`remember_forge_event` recognises those). The same `jti` with another body is
    refused (`DELIVERY_CONFLICT`, 409): the FIT does not sign the body, so it must
    not carry a second one. `body` defaults to the bytes the dependency read
    (`ForgeInvocation.raw_body`). The `jti` is kept until the FIT's `exp` plus
    `leeway` (at least the verifier's leeway): after that the FIT itself is
    refused as expired.

    ```python
    await remember_forge_delivery(deliveries, call)  # 409 for a replayed FIT with another body
    ```
    """
    return await remember_delivery(
        store,
        delivery_key("forge", invocation.installation_id, invocation.jti),
        (invocation.raw_body if invocation.raw_body is not None else invocation.body) if body is None else body,
        expires_at=invocation.claims.exp + leeway,
    )
