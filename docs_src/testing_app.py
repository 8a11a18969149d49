"""An app built to be tested: `create_app` takes the key provider, so a test can hand
it a fake product's."""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse
from pydantic import BaseModel

from fastapi_connect_auth import (
    AtlassianKeyProvider,
    ConnectAuth,
    ConnectInstall,
    ConnectLifecycle,
    ConnectRequest,
    Credentials,
    PublicKeyProvider,
    VerifiedInstallation,
    VerifiedLifecycle,
    VerifiedRequest,
)

BASE_URL = "https://my-app.example.com"

# The page Jira frames: all.js gives it a context token to call the app's API with.
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <script src="https://connect-cdn.atl-paas.net/all.js"></script>
</head>
<body>
  <p id="user"></p>
  <ul id="issues"></ul>
  <script>
    AP.context.getToken().then(async (token) => {
      const headers = { Authorization: "JWT " + token };
      const answer = await (await fetch("api/created-issues", { headers })).json();
      document.getElementById("user").textContent = answer.user;
      for (const key of answer.issues) {
        const item = document.createElement("li");
        item.textContent = key;
        document.getElementById("issues").append(item);
      }
    });
  </script>
</body>
</html>
"""


class Issue(BaseModel):
    key: str


class IssueEvent(BaseModel):
    issue: Issue


def create_app(*, key_provider: PublicKeyProvider | None = None) -> FastAPI:
    """The app, with its own tenants: `key_provider` defaults to Atlassian's install-
    keys CDN."""
    tenants: dict[str, Credentials[None]] = {}
    created_issues: list[str] = []
    connect = ConnectAuth(
        base_url=BASE_URL, credentials_loader=tenants.get, key_provider=key_provider
    )
    app = FastAPI(lifespan=connect.lifespan)
    connect.install(app)

    @app.get("/atlassian-connect.json")
    def descriptor() -> dict[str, Any]:
        return {
            "key": "my-connect-app",
            "baseUrl": BASE_URL,
            "authentication": {"type": "jwt"},
            "apiMigrations": {"signed-install": True, "context-qsh": True},
            "lifecycle": {"installed": "/installed", "uninstalled": "/uninstalled"},
            "modules": {
                "webhooks": [
                    {"event": "jira:issue_created", "url": "/webhooks/issue-created"}
                ],
                "generalPages": [{"key": "created-issues", "url": "/created-issues"}],
            },
        }

    @app.post("/installed", status_code=204)
    async def installed(
        install: Annotated[VerifiedInstallation, Depends(ConnectInstall())],
    ) -> None:
        tenants[install.client_key] = Credentials(
            install.payload.shared_secret.get_secret_value()
        )

    @app.post("/uninstalled", status_code=204)
    async def uninstalled(
        event: Annotated[VerifiedLifecycle, Depends(ConnectLifecycle("uninstalled"))],
    ) -> None:
        tenants.pop(event.client_key, None)

    @app.post("/webhooks/issue-created", status_code=204)
    async def issue_created(
        call: Annotated[VerifiedRequest, Depends(ConnectRequest(body=IssueEvent))],
    ) -> None:
        created_issues.append(
            call.body.issue.key
        )  # the body, read and validated once the call was verified

    @app.get("/created-issues", response_class=HTMLResponse)
    async def created_issues_page(
        call: Annotated[VerifiedRequest, Depends(ConnectRequest())],
    ) -> str:
        return PAGE

    @app.get("/api/created-issues")
    async def list_created_issues(
        call: Annotated[VerifiedRequest, Depends(ConnectRequest(qsh="context"))],
    ) -> dict[str, Any]:
        return {"user": call.account_id, "issues": created_issues}

    return app


def key_provider_from_env() -> AtlassianKeyProvider:
    """Atlassian's CDN, unless CONNECT_KEYS_URL names a mirror (in tests: a fake
    product's key server)."""
    return AtlassianKeyProvider(base_url=os.environ.get("CONNECT_KEYS_URL") or None)


app = create_app(
    key_provider=key_provider_from_env()
)  # uvicorn docs_src.testing_app:app
