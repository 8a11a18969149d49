"""One route per QSH mode. Mount the router on an app that called
`connect.install(app)`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from fastapi_connect_auth import ConnectRequest, VerifiedRequest

router = APIRouter()

Signed = Annotated[
    VerifiedRequest, Depends(ConnectRequest())
]  # qsh="computed", the default
FromIframe = Annotated[VerifiedRequest, Depends(ConnectRequest(qsh="context"))]
Either = Annotated[VerifiedRequest, Depends(ConnectRequest(qsh="any"))]
Unbound = Annotated[VerifiedRequest, Depends(ConnectRequest(qsh="skip"))]
MaybeSigned = Annotated[
    VerifiedRequest | None, Depends(ConnectRequest(auto_error=False))
]


@router.post(
    "/webhooks/issue-updated"
)  # a webhook: the product signs this exact method and URL
async def issue_updated(call: Signed) -> dict[str, str]:
    return {"tenant": call.client_key}


@router.get(
    "/panel"
)  # a page module's iframe URL, also signed by the product with its query string
async def panel(call: Signed) -> dict[str, str]:
    return {"tenant": call.client_key}


@router.get(
    "/api/comments"
)  # fetch() from the iframe with a token from AP.context.getToken()
async def comments(call: FromIframe) -> dict[str, str | None]:
    return {"user": call.account_id}


@router.get("/api/search")  # called both by the iframe and by a product-signed URL
async def search(call: Either) -> dict[str, str]:
    return {"tenant": call.client_key}


@router.post(
    "/callbacks/report"
)  # a URL the product cannot know in advance: signature only
async def report(call: Unbound) -> dict[str, str]:
    return {"tenant": call.client_key}


@router.get(
    "/status"
)  # anonymous callers welcome; a token, when present, must still be valid
async def status(call: MaybeSigned) -> dict[str, str | None]:
    return {"tenant": call.client_key if call else None}
