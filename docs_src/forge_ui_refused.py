"""A UI route acting as the user: when the product refuses the user's token or
access, the route answers a clean 4xx the frontend can show, never a 500."""

from __future__ import annotations

from typing import Annotated, Any

import httpx2
from fastapi import Depends, FastAPI, HTTPException

from fastapi_connect_auth import (
    ForgeAuth,
    ForgeInvocation,
    ForgeRequest,
    ForgeTokenStore,
    UnsafeRequestError,
    api_path,
    forge_product_client,
)

UiCall = Annotated[ForgeInvocation, Depends(ForgeRequest(invocation="ui"))]


def create_app(
    forge: ForgeAuth,
    tokens: ForgeTokenStore,
    product_transport: httpx2.AsyncBaseTransport | None = None,
) -> FastAPI:
    options: dict[str, Any] = (
        {"transport": product_transport} if product_transport else {}
    )
    app = FastAPI(lifespan=forge.lifespan)
    forge.install(app)

    @app.get("/forge/issues/{key}")
    async def issue(key: str, call: UiCall) -> dict[str, str]:
        try:
            path = api_path("/rest/api/3/issue/{key}", key=key)
        except UnsafeRequestError:
            raise HTTPException(422, "Not an issue key.") from None
        async with forge_product_client(
            call, as_user=True, store=tokens, **options
        ) as jira:
            response = await jira.get(path)
        # The user's token was refused (401: revoked, consent withdrawn) or the user
        # may not do this (403): the user's problem to fix, not the app's failure.
        # `response.raise_for_status()` here would make it a 500.
        if response.status_code in (401, 403):
            raise HTTPException(
                403, "Jira refused this for your account: check your access."
            )
        if response.status_code == 404:  # missing, or hidden from this user
            raise HTTPException(404, "No such issue, or you cannot see it.")
        response.raise_for_status()  # anything else is unexpected: the app's 5xx
        return {"key": key, "summary": response.json()["fields"]["summary"]}

    return app
