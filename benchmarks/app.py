"""The benchmark app and its tokens, shared by `run.py` and the uvicorn process it starts.

Four POST routes with the same handler body: `/webhook` (verified by this
library), `/webhook-open` (no authentication), `/webhook-floor` (a no-op
`SecurityBase` dependency taking `Request`: what FastAPI charges for any such
dependency before it does any work) and `/webhook-naive` (the usual hand-written
FastAPI + PyJWT dependency), so the load test compares like with like.
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlsplit

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.security.base import SecurityBase

from fastapi_connect_auth import ConnectAuth, ConnectRequest, Credentials, VerifiedRequest

SECRET = "bench-shared-secret-0123456789abcdef-0123456789"  # >= 32 bytes, as Atlassian's are
CLIENT_KEY = "jira:7c6a1f3e-1b2d-4c5e-9f80-1a2b3c4d5e6f"
BASE_URL = "https://bench-app.example.com"
QUERY = "a=1&b=x+y"
BODY = b'{"timestamp":1700000000000,"webhookEvent":"jira:issue_updated","issue":{"id":"10001","key":"BENCH-1"}}'
"""The webhook body every route is sent (none of them reads it)."""
TENANTS = {CLIENT_KEY: Credentials(shared_secret=SECRET, stored_entity={"tenant": "bench"})}


def webhook_token(path: str, query: str = QUERY, method: str = "POST", lifetime: float = 3600.0) -> str:
    """A Jira webhook token for `method path?query`, valid for `lifetime` seconds.

    The QSH is computed independently of the library: the canonical request is
    written out by hand for the benchmark's fixed query (`a=1&b=x+y` -> `a=1&b=x%20y`).
    """
    assert query == QUERY, "the hand-written canonical query below covers only QUERY"
    canonical = f"{method}&{path}&a=1&b=x%20y"
    now = int(time.time())
    claims = {
        "iss": CLIENT_KEY,
        "iat": now,
        "exp": now + int(lifetime),
        "qsh": hashlib.sha256(canonical.encode()).hexdigest(),
        "sub": "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077",
        "context": {
            "user": {
                "accountId": "557058:f58131cb-b67d-43c7-b30d-6b58d40bd077",
                "accountType": "atlassian",
                "userKey": "admin",
                "username": "admin",
            }
        },
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


def load_tenant(client_key: str) -> Credentials[dict[str, str]] | None:
    """The in-memory credentials loader."""
    return TENANTS.get(client_key)


connect = ConnectAuth(base_url=BASE_URL, credentials_loader=load_tenant, sync_loader_in_thread=False)


def naive_qsh(method: str, url: str) -> str:
    """The QSH as a typical hand-written dependency computes it (urlsplit, parse_qsl, sort, quote)."""
    parts = urlsplit(url)
    pairs = sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "jwt")
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)
    canonical = f"{method.upper()}&{parts.path or '/'}&{query}"
    return hashlib.sha256(canonical.encode()).hexdigest()


def naive_verify(token: str, method: str, url: str) -> dict[str, Any]:
    """The naive verification: decode unverified for `iss`, load the secret, decode verified, compute the QSH."""
    try:
        issuer = jwt.decode(token, options={"verify_signature": False})["iss"]
        credentials = load_tenant(issuer)
        if credentials is None:
            raise HTTPException(401, "unknown issuer")
        claims: dict[str, Any] = jwt.decode(token, credentials.shared_secret, algorithms=["HS256"])
    except jwt.PyJWTError as exc:
        raise HTTPException(401, "invalid token") from exc
    if claims.get("qsh") != naive_qsh(method, url):
        raise HTTPException(401, "invalid qsh")
    return claims


async def naive_dependency(request: Request) -> dict[str, Any]:
    """A typical FastAPI + PyJWT dependency, for context."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "jwt" or not token:
        raise HTTPException(401, "missing token")
    return naive_verify(token, request.method, str(request.url))


class FloorDependency(SecurityBase):
    """A security dependency that takes `Request` and does nothing: the floor under `ConnectRequest`."""

    def __init__(self) -> None:
        self.model = ConnectRequest().model
        self.scheme_name = "Floor"

    async def __call__(self, request: Request) -> None:
        return None


def handle() -> dict[str, str]:
    """The one handler body all three routes share."""
    return {"status": "ok"}


def create_app() -> FastAPI:
    app = FastAPI(lifespan=connect.lifespan)
    connect.install(app)

    @app.post("/webhook")
    async def webhook(call: Annotated[VerifiedRequest[Any], Depends(ConnectRequest())]) -> dict[str, str]:
        return handle()

    @app.post("/webhook-open")
    async def webhook_open() -> dict[str, str]:
        return handle()

    @app.post("/webhook-floor")
    async def webhook_floor(call: Annotated[None, Depends(FloorDependency())]) -> dict[str, str]:
        return handle()

    @app.post("/webhook-naive")
    async def webhook_naive(claims: Annotated[dict[str, Any], Depends(naive_dependency)]) -> dict[str, str]:
        return handle()

    return app


app = create_app()
