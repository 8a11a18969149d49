"""Forge lifecycle events: installed, upgraded and preUninstall at the manifest's one
lifecycle endpoint, each verified and bound to its FIT's installation; the permission
lag answered with a retry."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Response

from fastapi_connect_auth import (
    ForgeAuth,
    ForgeLifecycle,
    VerifiedForgeLifecycle,
    forge_product_client,
)

# The manifest's endpoint `forge-lifecycle` (route /forge/lifecycle) receives all three.
Lifecycle = Annotated[
    VerifiedForgeLifecycle,
    Depends(ForgeLifecycle("any", module_keys={"forge-lifecycle"})),
]

MAX_DELIVERIES = 5  # the first delivery and Forge's 4 retries, 60 s apart


def create_app(
    forge: ForgeAuth, installations: dict[str, dict[str, Any]], **client_options: Any
) -> FastAPI:
    """`installations` stands for your database, keyed by the FIT's installation id;
    `client_options` go to the product client (a `transport=` in tests)."""
    app = FastAPI(lifespan=forge.lifespan)
    forge.install(app)

    @app.post("/forge/lifecycle", status_code=204)
    async def lifecycle(event: Lifecycle, response: Response) -> None:
        """Which event it is, `ForgeLifecycle("any")` found in the payload."""
        if event.event == "installed":
            await installed(event, response)
        elif event.event == "upgraded":
            upgraded(event)
        else:
            pre_uninstall(event)

    async def installed(event: VerifiedForgeLifecycle, response: Response) -> None:
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

    def upgraded(event: VerifiedForgeLifecycle) -> None:
        """A new major version (minor and patch upgrades send no event)."""
        installations.setdefault(event.installation_id, {})["state"] = "installed"

    def pre_uninstall(event: VerifiedForgeLifecycle) -> None:
        """An uninstall has started: 55 s to clean up, then product calls may fail.
        Failures are ignored by Forge: the uninstall goes on anyway."""
        installations.setdefault(event.installation_id, {})["state"] = "uninstalling"

    return app
