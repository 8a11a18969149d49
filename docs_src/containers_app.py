"""A Forge Containers service: UI calls as the user, product events, a web trigger."""

from __future__ import annotations

import hmac
import logging
import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from pydantic import BaseModel

from fastapi_connect_auth import (
    AuthError,
    AuthErrorCode,
    ForgeContainerInvocation,
    ForgeContainerRequest,
    ForgeContainers,
    ForgeInvocationLogFilter,
    InMemoryRedeliveryStore,
    add_health_route,
    remember_forge_event,
)

UiCall = Annotated[
    ForgeContainerInvocation, Depends(ForgeContainerRequest(require_user=True))
]


class IssueEvent(BaseModel):
    eventType: str
    issue: dict[str, Any]


EventCall = Annotated[
    ForgeContainerInvocation,
    Depends(ForgeContainerRequest(invocation="event", body=IssueEvent)),
]
WebTrigger = Annotated[
    ForgeContainerInvocation,
    Depends(ForgeContainerRequest(invocation="webtrigger", web_trigger=True)),
]


def create_app(
    containers: ForgeContainers | None = None, *, hook_secret: str | None = None
) -> FastAPI:
    containers = containers or ForgeContainers()  # from FORGE_* in the environment
    secret = (hook_secret or os.environ["HOOK_SECRET"]).encode()  # forge variables
    app = FastAPI(lifespan=containers.lifespan)
    containers.install(app)
    add_health_route(app)  # the manifest's health.route.path: no auth, no I/O
    handler = logging.StreamHandler()
    handler.addFilter(ForgeInvocationLogFilter())  # record.forge_invocation
    logging.getLogger("app").addHandler(handler)
    deliveries = InMemoryRedeliveryStore()  # one replica; use a library store for more
    seen: list[str] = []

    @app.get("/issue-panel")
    async def panel(call: UiCall) -> dict[str, Any]:
        async with containers.product_client(call, as_user=True) as jira:
            me = (await jira.get("/rest/api/3/myself")).json()
        return {"site": call.cloud_id, "me": me["accountId"]}

    @app.post("/events", status_code=204)
    async def issue_event(call: EventCall) -> None:
        if await remember_forge_event(deliveries, call):  # a retry is a no-op
            seen.append(call.body.issue["key"])

    @app.post("/hook")
    async def hook(call: WebTrigger, request: Request) -> dict[str, str]:
        # Anyone can call a web trigger URL: check a secret of your own.
        sent = request.headers.get("x-hook-secret", "")
        if not hmac.compare_digest(sent.encode(), secret):
            raise AuthError(AuthErrorCode.WRONG_INVOCATION, "Unknown caller.")
        return {"installation": call.installation_id}

    app.state.seen = seen
    return app
