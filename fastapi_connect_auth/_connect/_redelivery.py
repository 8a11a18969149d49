"""Jira retries a webhook with the same `X-Atlassian-Webhook-Identifier`: store it once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._redelivery import RedeliveryStore, remember_delivery
from ._models import VerifiedRequest

__all__ = ["WEBHOOK_IDENTIFIER_HEADER", "remember_webhook_delivery"]

WEBHOOK_IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"
"""The header Jira sends with each webhook, the same on every retry of it."""


async def remember_webhook_delivery(
    store: RedeliveryStore,
    call: VerifiedRequest[Any],
    identifier: str | None,
    body: bytes | Any = None,
    *,
    retention: float = 24 * 3600.0,
    clock: Callable[[], float] = time.time,
) -> bool:
    """`True` for a webhook not seen before (or one without an identifier), `False` for a retry of the same body.

    `identifier` is the `X-Atlassian-Webhook-Identifier` header; it is kept per tenant
    (the verified `iss`) for `retention` seconds, longer than Jira retries. The same
    identifier with another body is refused (`DELIVERY_CONFLICT`, 409). `body`
    defaults to the validated body of `ConnectRequest(body=...)`.

    ```python
    identifier = request.headers.get(WEBHOOK_IDENTIFIER_HEADER)
    if await remember_webhook_delivery(deliveries, call, identifier):
        await save(call.body)
    ```
    """
    if identifier is None:
        return True
    return await remember_delivery(
        store,
        f"webhook:{call.client_key}:{identifier}",
        call.body if body is None else body,
        expires_at=clock() + retention,
    )
