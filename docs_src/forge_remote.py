"""Forge Remote: verify every call from Forge, take each route's kind of call only,
read bodies after the token, keep tokens, call the product back as the app or the
user."""

from __future__ import annotations

from typing import Annotated, Any

import httpx2
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel

from fastapi_connect_auth import (
    ForgeAuth,
    ForgeInvocation,
    ForgeRequest,
    ForgeTokenStore,
    InMemoryForgeTokenStore,
    UnsafeRequestError,
    api_path,
    forge_product_client,
    remember_forge_tokens,
    stored_forge_client,
)


class IssueCreated(BaseModel):
    """The part of `avi:jira:created:issue` this app reads."""

    eventType: str
    issue: dict[str, Any]


# A UI call (`invokeRemote` from the frontend, or `requestRemote` from the browser).
UiCall = Annotated[ForgeInvocation, Depends(ForgeRequest(invocation="ui"))]
# A scheduled trigger: never a FIT that went through a browser.
Trigger = Annotated[ForgeInvocation, Depends(ForgeRequest(invocation="trigger"))]
# A product event, its body verified after the FIT: 401, then 413, then 422.
IssueEvent = Annotated[
    ForgeInvocation, Depends(ForgeRequest(invocation="event", body=IssueCreated))
]


def create_app(
    forge: ForgeAuth,
    tokens: ForgeTokenStore,
    product_transport: httpx2.AsyncBaseTransport | None = None,
) -> FastAPI:
    """`forge = ForgeAuth(app_id="ari:cloud:ecosystem::app/<uuid>")` in production;
    `product_transport` only in tests."""
    options: dict[str, Any] = (
        {"transport": product_transport} if product_transport else {}
    )
    app = FastAPI(lifespan=forge.lifespan)
    forge.install(app)

    @app.post("/forge/hourly", status_code=204)
    async def hourly(call: Trigger) -> None:
        """Keep a fresh system token for work done between invocations."""
        await remember_forge_tokens(tokens, call)

    @app.post("/forge/issue-created", status_code=204)
    async def issue_created(call: IssueEvent) -> None:
        """Comment on the new issue as the app: the key comes from the event's
        body, so `api_path` encodes it and refuses one that leaves its segment."""
        event: IssueCreated = call.body
        try:
            path = api_path(
                "/rest/api/3/issue/{key}/comment", key=str(event.issue.get("key", ""))
            )
        except UnsafeRequestError:
            raise HTTPException(422, "The event names no issue key.") from None
        async with forge_product_client(call, **options) as jira:
            response = await jira.post(path, json={"body": "Seen by the app"})
            response.raise_for_status()

    @app.get("/forge/me")
    async def me(call: UiCall) -> dict[str, Any]:
        """Act as the user in session, with the user token Forge sent."""
        async with forge_product_client(
            call, as_user=True, store=tokens, **options
        ) as jira:
            return dict((await jira.get("/rest/api/3/myself")).json())

    return app


async def sync(
    tokens: ForgeTokenStore, installation_id: str, **options: Any
) -> dict[str, Any]:
    """Work outside any invocation (a queue, a cron of your own).

    It uses the installation's kept system token. Raises `ProductAPIError` when no
    live token is kept: one comes with the next invocation.
    """
    async with await stored_forge_client(tokens, installation_id, **options) as jira:
        response = await jira.get("/rest/api/3/myself")
        response.raise_for_status()
        return dict(response.json())


tokens = InMemoryForgeTokenStore()
