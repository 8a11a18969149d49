"""One route, on Forge Remote and on Forge Containers: only the dependency changes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI

from fastapi_connect_auth import (
    ForgeAuth,
    ForgeContainerInvocation,
    ForgeContainerRequest,
    ForgeContainers,
    ForgeInvocation,
    ForgeRequest,
)

RemoteCall = Annotated[ForgeInvocation, Depends(ForgeRequest(invocation="ui"))]
ContainerCall = Annotated[
    ForgeContainerInvocation, Depends(ForgeContainerRequest(invocation="ui"))
]


def whoami(call: ForgeInvocation | ForgeContainerInvocation) -> dict[str, Any]:
    return {
        "installation": call.installation_id,
        "site": call.cloud_id,
        "user": call.principal,
    }


def remote_app(forge: ForgeAuth) -> FastAPI:
    app = FastAPI(lifespan=forge.lifespan)
    forge.install(app)

    @app.get("/whoami")
    async def route(call: RemoteCall) -> dict[str, Any]:
        return whoami(call)

    return app


def container_app(containers: ForgeContainers) -> FastAPI:
    app = FastAPI(lifespan=containers.lifespan)
    containers.install(app)

    @app.get("/whoami")
    async def route(call: ContainerCall) -> dict[str, Any]:
        return whoami(call)

    return app
