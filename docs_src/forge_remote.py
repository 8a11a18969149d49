"""Forge Remote: verify every call from Forge, keep its tokens, call the product back
as the app or the user."""

from __future__ import annotations

from typing import Annotated, Any

import httpx2
from fastapi import Depends, FastAPI

from fastapi_connect_auth import (
    ForgeAuth,
    ForgeInvocation,
    ForgeRequest,
    ForgeTokenStore,
    InMemoryForgeTokenStore,
    forge_product_client,
    remember_forge_tokens,
    stored_forge_client,
)

ForgeCall = Annotated[ForgeInvocation, Depends(ForgeRequest())]


def create_app(
    forge: ForgeAuth,
    tokens: ForgeTokenStore,
    product_transport: httpx2.AsyncBaseTransport | None = None,
) -> FastAPI:
    """`forge = ForgeAuth(app_id="ari:cloud:ecosystem::app/<uuid>")` in production;
    `transport` only in tests."""
    options: dict[str, Any] = (
        {"transport": product_transport} if product_transport else {}
    )
    app = FastAPI(lifespan=forge.lifespan)
    forge.install(app)

    @app.post("/forge/hourly", status_code=204)
    async def hourly(call: ForgeCall) -> None:
        """A scheduled trigger: keep a fresh system token for work done between
        invocations."""
        await remember_forge_tokens(tokens, call)

    @app.get("/forge/me")
    async def me(call: ForgeCall) -> dict[str, Any]:
        """A UI call: act as the user in session, with the user token Forge sent."""
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
