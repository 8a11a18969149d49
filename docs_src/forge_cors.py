"""`requestRemote`: the app's UI calls the remote straight from the user's browser,
cross-origin. Starlette's CORS middleware answers the preflight, for Forge's UI
origins only; the call itself still needs its FIT."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from starlette.middleware.cors import CORSMiddleware

from fastapi_connect_auth import ForgeAuth, ForgeInvocation, ForgeRequest

# Forge serves Custom UI and UI Kit from a subdomain of its CDN per app, the origin
# of every requestRemote call; staging apps: .cdn.stg.atlassian-dev.net.
FORGE_UI_ORIGINS = r"https://[a-z0-9-]{1,63}\.cdn\.prod\.atlassian-dev\.net"

UiCall = Annotated[ForgeInvocation, Depends(ForgeRequest(invocation="ui"))]


def create_app(forge: ForgeAuth) -> FastAPI:
    app = FastAPI(lifespan=forge.lifespan)
    forge.install(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origin_regex=FORGE_UI_ORIGINS,  # matched in full, never a prefix
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=["Authorization", "Content-Type"],
        allow_credentials=False,  # the FIT is the credential, no cookies
        max_age=600,
    )

    @app.post("/forge/tasks")
    async def add_task(call: UiCall) -> dict[str, Any]:
        """A requestRemote call: no OAuth tokens come with it, and its FIT can be read
        and resent by the user: answer for them, keep nothing on its word."""
        return {"user": call.principal, "site": call.cloud_id}

    return app
