"""FastAPI dependency `ForgeRequest`: verify a call from Forge to a remote backend.

A `SecurityBase` with an HTTP bearer scheme (`ForgeInvocationToken` in
OpenAPI); it reads the headers Forge sends and hands them to the
framework-free `ForgeAuth.verify_invocation`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from pydantic import TypeAdapter

from .._bodies import read_capped
from .._errors import AuthError
from .._events import route_path
from .._openapi import DocumentedDependency
from ._flow import ForgeAuth
from ._models import ForgeInvocation

__all__ = ["ForgeRequest"]

_SCHEME_NAME = "ForgeInvocationToken"
_DESCRIPTION = "A Forge Invocation Token (FIT), sent by Forge as `Authorization: Bearer <token>`."


class ForgeRequest(SecurityBase, DocumentedDependency):
    """Verify a Forge Remote call (UI call, product event, scheduled trigger); returns a `ForgeInvocation`.

    ```python
    @app.post("/forge/events")
    async def events(call: Annotated[ForgeInvocation, Depends(ForgeRequest())]): ...
    ```

    A rejected call is answered 401 with `WWW-Authenticate: Bearer` (503 when
    Forge's keys cannot be had), with `{"detail", "code"}` once
    `ForgeAuth.install(app)` has run.

    `read_body=True` puts the raw body in `ForgeInvocation.body`, read only once
    the token is verified, streamed and capped at `max_body_size` bytes (413 above).
    """

    def __init__(
        self,
        *,
        read_body: bool = False,
        max_body_size: int = 1024 * 1024,
        scheme_name: str | None = None,
        description: str | None = None,
        config: ForgeAuth | None = None,
    ) -> None:
        self.model = HTTPBearerModel(bearerFormat="JWT", description=description or _DESCRIPTION)
        """The OpenAPI security scheme: a JWT bearer token."""
        self.scheme_name = scheme_name or _SCHEME_NAME
        """The scheme's name in OpenAPI."""
        self.read_body = read_body
        """Whether the body is read (after the token is verified) and kept on the invocation."""
        self.max_body_size = max_body_size
        """The largest body read, in bytes."""
        self.config = config
        """The `ForgeAuth` to use; `None` takes the one installed on the app."""

    def openapi_statuses(self, app: FastAPI) -> set[int]:
        """401, 503 (Forge's keys unavailable), and 413 when it reads the body."""
        return {401, 503} | ({413} if self.read_body else set())

    def openapi_body(self) -> TypeAdapter[Any] | None:
        """The body is read as bytes, for the route to parse: it declares none."""
        return None

    @staticmethod
    def extract_token(request: Request) -> str | None:
        """The FIT from `Authorization: Bearer <token>` (scheme case-insensitive); `None` for anything else."""
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return credentials.strip() or None

    async def __call__(self, request: Request) -> ForgeInvocation:
        headers = request.headers
        config = self.config or ForgeAuth.of(request)
        try:
            invocation = await config.verify_invocation(
                self.extract_token(request),
                system_token=headers.get("x-forge-oauth-system"),
                user_token=headers.get("x-forge-oauth-user"),
                trace_id=headers.get("x-b3-traceid"),
                span_id=headers.get("x-b3-spanid"),
                route=route_path(request),
                headers=headers,
            )
        except AuthError as exc:
            if exc.status_code == 401:
                exc.headers = {"WWW-Authenticate": "Bearer"}
            raise
        if not self.read_body:
            return invocation
        return dataclasses.replace(invocation, body=await read_capped(request, self.max_body_size))
