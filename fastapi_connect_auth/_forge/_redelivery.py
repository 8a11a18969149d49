"""Forge retries an event with the same FIT: `remember_forge_delivery` tells a retry from a replayed FIT."""

from __future__ import annotations

from typing import Any

from .._redelivery import RedeliveryStore, remember_delivery
from ._models import ForgeInvocation

__all__ = ["remember_forge_delivery"]


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
