"""Retries stored once: a Jira webhook by its identifier, a Forge event by its content."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI

from fastapi_connect_auth import (
    ConnectAuth,
    ConnectRequest,
    ForgeAuth,
    ForgeInvocation,
    ForgeRequest,
    ForgettingRedeliveryStore,
    VerifiedRequest,
    forge_event_once,
    remember_forge_delivery,
    webhook_once,
)

# The body through the dependency: it keeps the bytes and the webhook's identifier too.
Webhook = Annotated[VerifiedRequest, Depends(ConnectRequest(body=dict[str, Any]))]
ForgeEvent = Annotated[
    ForgeInvocation, Depends(ForgeRequest(invocation="event", body=dict[str, Any]))
]


def create_app(
    connect: ConnectAuth,
    forge: ForgeAuth,
    deliveries: ForgettingRedeliveryStore,
    stored: list[tuple[str, dict[str, Any]]],
) -> FastAPI:
    """`deliveries`: the app's store (`SQLAlchemyStore`, `RedisStore`) with several
    processes, `InMemoryRedeliveryStore()` with one."""
    app = FastAPI(lifespan=forge.lifespan)
    connect.install(app)
    forge.install(app)

    @app.post("/webhooks", status_code=204)
    async def webhook(call: Webhook) -> None:
        """Jira's retry (same identifier, same body, new token) is not stored again;
        the same identifier with another body is a 422, which Jira does not retry.
        If storing raises, the webhook is forgotten: Jira's retry stores it."""
        async with webhook_once(deliveries, call) as delivery:
            if delivery.new:
                stored.append((call.client_key, call.body))

    @app.post("/forge/events", status_code=204)
    async def forge_event(call: ForgeEvent) -> None:
        """Forge retries with a new FIT and `retryContext` added: the same event."""
        await remember_forge_delivery(deliveries, call)  # 409: a FIT with a 2nd body
        async with forge_event_once(deliveries, call) as event:
            if event.new:  # if storing raises, forgotten: Forge's retry stores it
                stored.append((call.installation_id, call.body))

    return app
