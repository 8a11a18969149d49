"""Forge lifecycle events: installed, upgraded and preUninstall, each verified and
bound to its FIT's installation; the permission lag answered with a retry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Response

from fastapi_connect_auth import (
    ForgeAuth,
    ForgeLifecycle,
    VerifiedForgeLifecycle,
    forge_product_client,
)

Installed = Annotated[VerifiedForgeLifecycle, Depends(ForgeLifecycle("installed"))]
Upgraded = Annotated[VerifiedForgeLifecycle, Depends(ForgeLifecycle("upgraded"))]
PreUninstall = Annotated[
    VerifiedForgeLifecycle, Depends(ForgeLifecycle("pre-uninstall"))
]

MAX_DELIVERIES = 5  # the first delivery and Forge's 4 retries, 60 s apart


def create_app(
    forge: ForgeAuth, installations: dict[str, dict[str, Any]], **client_options: Any
) -> FastAPI:
    """`installations` stands for your database, keyed by the FIT's installation id;
    `client_options` go to the product client (a `transport=` in tests)."""
    app = FastAPI(lifespan=forge.lifespan)
    forge.install(app)

    @app.post("/forge/lifecycle/installed", status_code=204)
    async def installed(event: Installed, response: Response) -> None:
        """Record the installation, then call the product as the app. Right after an
        install the app's permissions may not have propagated yet (minutes on large
        sites): a 401 or 403 then is expected, so answer 503 and Forge delivers the
        event again 60 s later."""
        call = event.invocation
        installations[event.installation_id] = {
            "state": "installed",
            "sites": [context.cloud_id for context in call.installation_contexts],
        }
        async with forge_product_client(call, retries=None, **client_options) as jira:
            answer = await jira.get("/rest/api/3/myself")
        retry = event.retry_context
        deliveries = 1 + (retry.retry_count if retry else 0)
        if answer.status_code in (401, 403) and deliveries < MAX_DELIVERIES:
            response.status_code = 503  # not yet: deliver it again
            return
        installations[event.installation_id]["app_user"] = answer.json().get(
            "accountId"
        )

    @app.post("/forge/lifecycle/upgraded", status_code=204)
    async def upgraded(event: Upgraded) -> None:
        """A new major version (minor and patch upgrades send no event)."""
        installations.setdefault(event.installation_id, {})["state"] = "installed"

    @app.post("/forge/lifecycle/pre-uninstall", status_code=204)
    async def pre_uninstall(event: PreUninstall) -> None:
        """An uninstall has started: 55 s to clean up, then product calls may fail.
        Failures are ignored by Forge: the uninstall goes on anyway."""
        installations.setdefault(event.installation_id, {})["state"] = "uninstalling"

    return app
