"""Jira retries a webhook with the same `X-Atlassian-Webhook-Identifier`: store it once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._redelivery import RedeliveryStore, delivery_key, remember_delivery
from ._models import WEBHOOK_IDENTIFIER_HEADER, WEBHOOK_RETRY_HEADER, VerifiedRequest

__all__ = ["WEBHOOK_CONFLICT_STATUS", "WEBHOOK_IDENTIFIER_HEADER", "WEBHOOK_RETRY_HEADER", "remember_webhook_delivery"]

WEBHOOK_CONFLICT_STATUS = 422
"""A webhook identifier seen with another body is answered 422: a status Jira does not retry.

Jira retries 408, 409, 425, 429 and 5xx: a 409 would bring the same refused
body back for half an hour. 422 says the request is well-formed but cannot be
accepted as it is, which is the case: its identifier names another body.
"""


async def remember_webhook_delivery(
    store: RedeliveryStore,
    call: VerifiedRequest[Any],
    identifier: str | None = None,
    body: bytes | Any = None,
    *,
    retention: float = 24 * 3600.0,
    clock: Callable[[], float] = time.time,
) -> bool:
    """`True` for a webhook not seen before (or one without an identifier), `False` for a retry of the same body.

    `identifier` defaults to the `X-Atlassian-Webhook-Identifier` that
    `ConnectRequest(body=...)` saw (`call.webhook_identifier`); it is kept per
    tenant (the verified `iss`) for `retention` seconds, longer than Jira retries
    (up to about 30 minutes). The same identifier with another body is refused
    (`DELIVERY_CONFLICT`, 422: see `WEBHOOK_CONFLICT_STATUS`). `body` defaults to
    the bytes the dependency read (`call.raw_body`), else the validated body; pass
    the bytes when the route reads the body itself.

    ```python
    @app.post("/webhooks", status_code=204)
    async def webhook(call: Annotated[VerifiedRequest, Depends(ConnectRequest(body=IssueEvent))]) -> None:
        if await remember_webhook_delivery(deliveries, call):
            await save(call.body)
    ```
    """
    identifier = call.webhook_identifier if identifier is None else identifier
    if identifier is None:
        return True
    if body is None:
        body = call.raw_body if call.raw_body is not None else call.body
    return await remember_delivery(
        store,
        delivery_key("webhook", call.client_key, identifier),
        body,
        expires_at=clock() + retention,
        conflict_status=WEBHOOK_CONFLICT_STATUS,
    )
