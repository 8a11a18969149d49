"""atlassian-connect-auth idioms in fastapi-connect-auth."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from fastapi_connect_auth import (
    AuthError,
    AuthErrorCode,
    ConnectAuth,
    ConnectRequest,
    Credentials,
    RequestTarget,
    VerifiedRequest,
)

logger = logging.getLogger(__name__)
tenants: dict[str, Credentials[None]] = {}
# A dict lookup never blocks: it may run on the event loop (a sync loader otherwise runs
# in a thread).
connect = ConnectAuth(
    base_url="https://my-app.example.com",
    credentials_loader=tenants.get,
    sync_loader_in_thread=False,
)
app = FastAPI(lifespan=connect.lifespan)
connect.install(app)


class CustomJwtRequest(ConnectRequest):
    """`class MyAuthDataProvider extends ExpressReqAuthDataProvider` becomes an
    `extract_token` override."""

    def extract_token(self, request: Request) -> str | None:
        return request.headers.get("x-connect-jwt") or super().extract_token(request)


# Called by the app's own iframe, which sends AP.context.getToken() in X-Connect-JWT.
@app.get("/api/projects")
async def projects(
    call: Annotated[VerifiedRequest, Depends(CustomJwtRequest(qsh="context"))],
) -> dict[str, str | None]:
    # connectJwt.context?.user?.accountId ?? connectJwt.sub
    return {"accountId": call.account_id}


# Called by the product: the computed QSH (the default), never a context token.
@app.post("/api/hooks/jira/project/created", status_code=204)
async def project_created(
    call: Annotated[VerifiedRequest, Depends(ConnectRequest())],
) -> None: ...


async def verify_outside_fastapi(
    token: str | None, method: str, path: str, query: str
) -> str | None:
    """`verifyRequest({...})` for a queue consumer or another framework: no FastAPI
    request needed."""
    try:
        call = await connect.verify_request(
            token, RequestTarget(method, path, query), qsh="computed"
        )
    except AuthError as error:
        if error.code is AuthErrorCode.UNKNOWN_ISSUER:
            logger.info("Call from a tenant that is not installed")
        return None
    return call.client_key


async def plain_401(request: Request, error: AuthError) -> JSONResponse:
    """`res.sendStatus(401)` on every AuthError, if you prefer that to our JSON body
    with the code."""
    logger.warning("Rejected: %s", error)  # the message never holds a token or a secret
    return JSONResponse({}, status_code=error.status_code, headers=error.headers)


# Instead of connect.install(app): attach the config yourself and register your own
# handler.
quiet_app = FastAPI(lifespan=connect.lifespan)
quiet_app.state.connect_auth = connect
quiet_app.add_exception_handler(AuthError, plain_401)  # type: ignore[arg-type]


@quiet_app.post("/webhooks/issue-created")
async def quiet_issue_created(
    call: Annotated[VerifiedRequest, Depends(ConnectRequest())],
) -> None: ...
