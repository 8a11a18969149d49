"""`add_health_route`: the route Forge's health checks call, with no authentication and no I/O of its own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.responses import JSONResponse

__all__ = ["add_health_route"]


def add_health_route(
    app: FastAPI, path: str = "/healthz", *, check: Callable[[], Awaitable[bool]] | None = None
) -> None:
    """Answer `GET path` with 200 `{"status": "ok"}` (the manifest's `health.route.path`), no header needed.

    Forge's checks send no headers and give each 3 seconds: keep `check` (your own
    readiness test, `False` → 503) cheap. The route is left out of the OpenAPI schema.
    """

    async def health() -> JSONResponse:
        if check is not None and not await check():
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ok"})

    app.add_api_route(path, health, methods=["GET"], include_in_schema=False)
