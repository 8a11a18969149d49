"""Jira retries a webhook with the same `X-Atlassian-Webhook-Identifier`: store it once."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from .._redelivery import (
    Delivery,
    ForgettingRedeliveryStore,
    RedeliveryStore,
    delivery_key,
    delivery_once,
    remember_delivery,
)
from ._models import WEBHOOK_IDENTIFIER_HEADER, WEBHOOK_RETRY_HEADER, VerifiedRequest

__all__ = [
    "WEBHOOK_CONFLICT_STATUS",
    "WEBHOOK_IDENTIFIER_HEADER",
    "WEBHOOK_RETRY_HEADER",
    "remember_webhook_delivery",
    "webhook_once",
]

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
    the bytes when the route reads the body itself. The webhook stays remembered
    if the app then fails to store it: `webhook_once` forgets it then.

    ```python
    @app.post("/webhooks", status_code=204)
    async def webhook(call: Annotated[VerifiedRequest, Depends(ConnectRequest(body=IssueEvent))]) -> None:
        if await remember_webhook_delivery(deliveries, call):
            await save(call.body)
    ```
    """
    key, body = _webhook(call, identifier, body)
    if key is None:
        return True
    return await remember_delivery(
        store, key, body, expires_at=clock() + retention, conflict_status=WEBHOOK_CONFLICT_STATUS
    )


def _webhook(call: VerifiedRequest[Any], identifier: str | None, body: bytes | Any) -> tuple[str | None, Any]:
    """The webhook's delivery key (`None` without an identifier) and the body to fingerprint."""
    identifier = call.webhook_identifier if identifier is None else identifier
    if identifier is None:
        return None, body
    if body is None:
        body = call.raw_body if call.raw_body is not None else call.body
    return delivery_key("webhook", call.client_key, identifier), body


@asynccontextmanager
async def webhook_once(
    store: ForgettingRedeliveryStore,
    call: VerifiedRequest[Any],
    identifier: str | None = None,
    body: bytes | Any = None,
    *,
    retention: float = 24 * 3600.0,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Delivery]:
    """`remember_webhook_delivery` for a block: if the block raises, the webhook is forgotten and Jira's retry stored.

    Jira retries a webhook answered 5xx; had it stayed remembered, that retry
    would be taken as seen and the webhook lost. Arguments and refusals as for
    `remember_webhook_delivery`; the block runs for a retry too, with `new` `False`
    (see `delivery_once`).

    ```python
    @app.post("/webhooks", status_code=204)
    async def webhook(call: Annotated[VerifiedRequest, Depends(ConnectRequest(body=IssueEvent))]) -> None:
        async with webhook_once(deliveries, call) as delivery:
            if delivery.new:
                await save(call.body)  # the database down: a 503, forgotten, and Jira's retry is stored
    ```
    """
    key, body = _webhook(call, identifier, body)
    async with delivery_once(
        store, key, body, expires_at=clock() + retention, conflict_status=WEBHOOK_CONFLICT_STATUS
    ) as delivery:
        yield delivery
