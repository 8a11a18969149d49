"""An app under a path prefix behind a TLS-terminating proxy, and behind a dev tunnel.

Run it with the prefix and the proxy's address, so that URLs the app builds are right:

    uvicorn docs_src.proxies:app --root-path /jira-inbox \\
        --proxy-headers --forwarded-allow-ips 10.0.0.5
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI

from fastapi_connect_auth import (
    ConnectAuth,
    ConnectRequest,
    Credentials,
    VerifiedRequest,
)

tenants: dict[str, Credentials[None]] = {}

connect = ConnectAuth(
    # Every URL a descriptor of this app may name as its baseUrl; signed installs must
    # carry one as `aud`.
    base_url=["https://apps.example.com/jira-inbox", "https://my-tunnel.example.net"],
    credentials_loader=tenants.get,
)
app = FastAPI(lifespan=connect.lifespan)
connect.install(app)


@app.post("/webhooks/issue-created")
async def issue_created(
    call: Annotated[VerifiedRequest, Depends(ConnectRequest())],
) -> dict[str, str]:
    return {"tenant": call.client_key}
