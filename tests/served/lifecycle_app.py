"""A Connect app with lifecycle and page routes, for tests that run it under a real uvicorn process.

No tenant is installed: every lifecycle callback is refused, which is what those tests send.
Bodies may take 2 s to arrive (20 s by default), so that a slow-body test takes seconds; the
library's log goes to stderr from INFO up, as an app that configures logging would have it.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from fastapi_connect_auth import (
    ConnectAuth,
    ConnectInstall,
    ConnectLifecycle,
    ConnectRequest,
    VerifiedInstallation,
    VerifiedLifecycle,
    VerifiedRequest,
    redact_access_logs,
)

BODY_TIMEOUT = 2.0

connect = ConnectAuth(
    base_url="http://127.0.0.1", credentials_loader=lambda client_key: None, body_timeout=BODY_TIMEOUT
)
_handler = logging.StreamHandler()
_handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
logging.getLogger("fastapi_connect_auth").addHandler(_handler)
logging.getLogger("fastapi_connect_auth").setLevel(logging.INFO)
app = FastAPI(lifespan=connect.lifespan)
connect.install(app)
redact_access_logs()


@app.post("/installed", status_code=204)
async def installed(install: Annotated[VerifiedInstallation[Any], Depends(ConnectInstall())]) -> None:
    """Never reached: no test sends a valid install."""


def lifecycle_route(event: Any) -> None:
    verified = Depends(ConnectLifecycle(event))

    async def endpoint(result: VerifiedLifecycle[Any] = verified) -> None:
        """Never reached: no tenant is installed."""

    app.add_api_route(f"/{event}", endpoint, methods=["POST"], status_code=204)


for _event in ("uninstalled", "enabled", "disabled"):
    lifecycle_route(_event)


@app.get("/page")
async def page(call: Annotated[VerifiedRequest[Any], Depends(ConnectRequest())]) -> None:
    """Never reached: the page load's tenant is unknown."""


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
