"""Quickstart: a Connect app whose installs, uninstalls, webhooks and iframe calls
are all verified."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from pydantic import BaseModel

from fastapi_connect_auth import (
    ConnectAuth,
    ConnectInstall,
    ConnectLifecycle,
    ConnectRequest,
    Credentials,
    VerifiedInstallation,
    VerifiedLifecycle,
    VerifiedRequest,
)

# where Atlassian reaches the app (an https tunnel in development)
BASE_URL = "https://my-app.example.com"

tenants: dict[
    str, Credentials[None]
] = {}  # in memory for the quickstart; see "Storing installations"

connect = ConnectAuth(base_url=BASE_URL, credentials_loader=tenants.get)
app = FastAPI(
    lifespan=connect.lifespan
)  # opens the HTTP client that fetches Atlassian's install keys
connect.install(
    app
)  # config on app.state, and AuthErrors answered as JSON 401s with a code


@app.get("/atlassian-connect.json")
def descriptor() -> dict[str, Any]:
    """The app descriptor: paste this URL into "Upload app" in Jira's "Manage apps"."""
    return {
        "key": "my-connect-app",
        "name": "My Connect app",
        "baseUrl": BASE_URL,
        "authentication": {"type": "jwt"},
        "apiMigrations": {"signed-install": True, "context-qsh": True, "gdpr": True},
        "lifecycle": {"installed": "/installed", "uninstalled": "/uninstalled"},
        "scopes": ["READ"],
        "modules": {
            "webhooks": [
                {"event": "jira:issue_created", "url": "/webhooks/issue-created"}
            ]
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


class Issue(BaseModel):
    key: str


class IssueEvent(BaseModel):
    webhookEvent: str
    issue: Issue


# The body is read only once the token is verified, at most max_body_size bytes, then
# validated:
# an unsigned call gets 401 before a byte of it is read. Never take a webhook body as a
# route parameter.
IssueWebhook = Annotated[VerifiedRequest, Depends(ConnectRequest(body=IssueEvent))]


@app.post("/webhooks/issue-created", status_code=204)
async def issue_created(call: IssueWebhook) -> None:
    event: IssueEvent = call.body
    print(f"New issue {event.issue.key} in {call.client_key}")


@app.get("/api/me")
async def me(
    call: Annotated[VerifiedRequest, Depends(ConnectRequest(qsh="context"))],
) -> dict[str, str | None]:
    return {"tenant": call.client_key, "user": call.account_id}
