"""Forge retries an event with the same FIT: `remember_forge_delivery` tells a retry from a replayed FIT.

`remember_forge_event` recognises a redelivery by its content instead, for calls
that carry no FIT (Forge Containers): the same installation and the same body once
Forge's `retryContext` is removed.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from .._json import loads
from .._redelivery import RedeliveryStore, body_fingerprint, remember_delivery
from ._models import ForgeInvocation

__all__ = ["remember_forge_delivery", "remember_forge_event"]


async def remember_forge_delivery(
    store: RedeliveryStore, invocation: ForgeInvocation, body: bytes | Any = None, *, leeway: float = 60.0
) -> bool:
    """`True` the first time a FIT's `jti` arrives, `False` when it comes again with the same body.

    The same `jti` with another body is refused (`DELIVERY_CONFLICT`, 409): the FIT
    does not sign the body, so it must not carry a second one. `body` defaults to
    the bytes the dependency read (`ForgeInvocation.raw_body`). The `jti` is
    kept until the FIT's `exp` plus `leeway` (at least the verifier's leeway): after
    that the FIT itself is refused as expired.

    ```python
    if not await remember_forge_delivery(deliveries, call):
        return  # a retry of an event already stored
    ```
    """
    return await remember_delivery(
        store,
        f"forge:{invocation.installation_id}:{invocation.jti}",
        (invocation.raw_body if invocation.raw_body is not None else invocation.body) if body is None else body,
        expires_at=invocation.claims.exp + leeway,
    )


def _without_retry_context(body: Any) -> Any:
    """The event as first sent: `retryContext` dropped at the top level and inside `payload`."""
    if isinstance(body, bytes | bytearray):
        try:
            body = loads(bytes(body))
        except ValueError:
            return bytes(body)
    if isinstance(body, BaseModel):
        body = body.model_dump(mode="json", by_alias=True)
    if not isinstance(body, dict):
        return body
    kept = {key: value for key, value in body.items() if key != "retryContext"}
    if isinstance(kept.get("payload"), dict):
        kept["payload"] = {key: value for key, value in kept["payload"].items() if key != "retryContext"}
    return kept


async def remember_forge_event(
    store: RedeliveryStore, call: Any, body: Any = None, *, retention: float = 3600.0
) -> bool:
    """`True` the first time an event arrives for an installation, `False` when the same event comes again.

    `call` is any object with `installation_id`, `raw_body` and `body` (a
    `ForgeContainerInvocation`, a `ForgeInvocation`). Without a FIT (Forge
    Containers) nothing names a delivery, so the event's content does: the installation and the body (`body`, else `call.raw_body`, else
    `call.body`) with Forge's `retryContext` removed, at the top level or inside
    `payload`. It is kept `retention` seconds (Forge retries within minutes).
    Two genuinely identical events within that time count as one.

    ```python
    if await remember_forge_event(deliveries, call):
        await events.add(call.installation_id, call.body)
    ```
    """
    content = _without_retry_context(
        body if body is not None else call.raw_body if call.raw_body is not None else call.body
    )
    key = f"forge-event:{call.installation_id}:{body_fingerprint(content)}"
    return await remember_delivery(store, key, content, expires_at=time.time() + retention)
