"""The example app as a Forge Containers service: `python -m example_app.container`.

Forge runs the image on its own infrastructure; the sidecar vouches for each
invocation (`x-forge-invocation-id`) and carries every outbound call. The app reads
`FORGE_EGRESS_PROXY_URL`, `FORGE_APP_ARI`, `FORGE_ENV_ARI`, `SERVER_PORT` and `HOST`
(default `0.0.0.0`), and keeps its data in `DATABASE_URL` (the example app's tables).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Annotated

import httpx2
from fastapi import Depends, FastAPI, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from fastapi_connect_auth import (
    AuthErrorCode,
    ForgeContainerInvocation,
    ForgeContainerRequest,
    ForgeContainers,
    ProductAPIError,
    add_health_route,
    forge_event_once,
    redact_access_logs,
)
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore

from .db import Stores, answer_database_outages, load_cipher, open_stores
from .settings import Settings

logger = logging.getLogger(__name__)

MAX_EVENT_BYTES = 1024 * 1024
"""The largest product event read."""
GRACEFUL_SHUTDOWN = 60
"""Seconds uvicorn gives requests in flight after SIGTERM (Forge waits 5 minutes before SIGKILL)."""

WhoCall = Annotated[ForgeContainerInvocation, Depends(ForgeContainerRequest(web_trigger=True))]
"""Any invocation, web triggers included (they answer with no user)."""
UserCall = Annotated[ForgeContainerInvocation, Depends(ForgeContainerRequest(require_user=True))]
"""An invocation with a user, to act as them."""
AppCall = Annotated[ForgeContainerInvocation, Depends(ForgeContainerRequest())]
"""Any invocation but a web trigger."""


class ContainerEvent(BaseModel):
    """A product event as Forge delivers it to a trigger's endpoint: its type, and whatever else it carries."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    event_type: str = Field(alias="eventType", min_length=1, max_length=255)


EventCall = Annotated[
    ForgeContainerInvocation,
    Depends(ForgeContainerRequest(body=ContainerEvent, max_body_size=MAX_EVENT_BYTES)),
]
"""A product event (never a web trigger), its body read once the sidecar vouched for the invocation."""


class WhoAmI(BaseModel):
    """Who the sidecar says the invocation is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    installation_id: str
    cloud_id: str | None
    account_id: str | None
    environment_type: str | None
    module_key: str | None


class StoredEvent(BaseModel):
    """An event kept for the installation."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    id: int
    event_type: str | None
    module_key: str | None
    received_at: datetime


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail, "code": AuthErrorCode.SIDECAR_UNAVAILABLE.value}, status_code=503)


def create_container_app(settings: Settings | None = None, *, containers: ForgeContainers | None = None) -> FastAPI:
    """The container app: `containers` reaches the sidecar (by default `ForgeContainers()`, from the environment)."""
    settings = settings or Settings.from_env()
    containers = containers or ForgeContainers()
    tenants = SQLAlchemyStore(
        settings.database_url,
        cipher=lambda: load_cipher(settings.secret_encryption_key, settings.database_url),
        cache_ttl=settings.credentials_cache_ttl,
    )
    stores: list[Stores] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_stores(settings, tenants) as opened, AsyncExitStack() as stack:
            stores[:] = [opened]
            await stack.enter_async_context(containers.lifespan(app))
            yield

    app = FastAPI(title="FastAPI Connect example (Forge Containers)", lifespan=lifespan)
    containers.install(app)
    answer_database_outages(app)
    redact_access_logs()
    add_health_route(app)

    @app.get("/container/whoami")
    async def whoami(call: WhoCall) -> WhoAmI:
        """Who the sidecar says called; never a tenant id from the request itself."""
        return WhoAmI(
            installation_id=call.installation_id,
            cloud_id=call.cloud_id,
            account_id=call.account_id,
            environment_type=call.environment.type if call.environment else None,
            module_key=call.module_key,
        )

    @app.get("/container/myself")
    async def myself(call: UserCall) -> Response:
        """Jira's `/rest/api/3/myself`, as the invocation's user, through the egress proxy."""
        try:
            async with containers.product_client(call, as_user=True, timeout=10.0) as jira:
                answer = await jira.get("/rest/api/3/myself")
        except (httpx2.HTTPError, ProductAPIError) as exc:
            logger.warning("Jira through the egress proxy failed: %s", type(exc).__name__)
            return _unavailable("Jira could not be reached through the egress proxy.")
        if answer.status_code >= 500:
            return _unavailable(f"Jira answered {answer.status_code} through the egress proxy.")
        return Response(answer.content, status_code=answer.status_code, media_type="application/json")

    @app.post("/container/events", status_code=204)
    async def container_event(call: EventCall) -> None:
        """A product event, stored once: a redelivery (the same body but its `retryContext`) is a no-op."""
        opened = stores[0]
        async with forge_event_once(opened.forge, call) as once:  # a failed write is forgotten: retried, stored
            if not once.new:
                return
            event: ContainerEvent = call.body
            payload = event.model_dump(mode="json", by_alias=True)
            canonical = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
            delivery = hashlib.sha256(call.installation_id.encode() + b"\0" + canonical).hexdigest()
            await opened.events.add_forge_event(call.installation_id, delivery, call.module_key, payload)

    @app.get("/container/events")
    async def container_events(call: AppCall) -> list[StoredEvent]:
        """The events kept for the invocation's installation (the sidecar's, never one the request names)."""
        events = await stores[0].events.forge_events(call.installation_id)
        return [
            StoredEvent(
                id=event.id,
                event_type=event.payload.get("eventType") if isinstance(event.payload, dict) else None,
                module_key=event.module_key,
                received_at=event.received_at,
            )
            for event in events
        ]

    return app


def main() -> None:
    """Serve the container app with uvicorn on `HOST`:`SERVER_PORT`; SIGTERM drains requests in flight."""
    import uvicorn

    containers = ForgeContainers()  # one clear error now if the environment is incomplete
    uvicorn.run(
        create_container_app(containers=containers),
        host=os.environ.get("HOST", "0.0.0.0"),  # noqa: S104 - Forge routes to the container's port
        port=containers.settings.server_port,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        proxy_headers=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
