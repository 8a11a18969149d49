"""Bounded request bodies: read through `request.stream()`, refused as soon as they pass a cap or a deadline.

`request.body()` buffers everything before anyone can look at its size, and a
chunked body declares none, so every body the library reads comes through here.
A body dripped a byte at a time would hold a connection (and its worker slot)
for as long as the client likes, so the whole read has a deadline; and a client
that hangs up mid-body is an everyday event, logged in one line, not a traceback.
`read_kept` then keeps what it read where Starlette keeps `request.body()`, so
the body can be read again on the same request, by another dependency or the route.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import anyio
from starlette.requests import ClientDisconnect, Request

from ._errors import AuthError, AuthErrorCode

__all__ = ["DEFAULT_BODY_TIMEOUT", "BodySource", "declared_length", "read_capped", "read_kept", "too_large"]

logger = logging.getLogger("fastapi_connect_auth")

DEFAULT_BODY_TIMEOUT = 20.0
"""Seconds a body may take to arrive, whole. Atlassian's senders give up sooner: a Forge event after
5 s, a Forge UI call after 25 s with the answer included (docs/troubleshooting.md#body_timeout)."""

BodySource = Callable[[], Awaitable[bytes]]
"""Reads the body when a flow needs it: after the checks that do not depend on it."""


def too_large(limit: int) -> AuthError:
    """The `PAYLOAD_TOO_LARGE` (413) rejection of a body over `limit` bytes."""
    return AuthError(AuthErrorCode.PAYLOAD_TOO_LARGE, f"The body exceeds {limit} bytes.")


def declared_length(value: str | None) -> int | None:
    """The `Content-Length` value as a number, if it is one: ASCII digits only (`str.isdigit` admits `²`)."""
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return int(value)


# The deadline: asyncio's own `timeout` where the app runs on asyncio (Python 3.11 and later), which costs
# about a third of anyio's cancel scope on every body read (`benchmarks/breakdown.py`); anyio's elsewhere.
_asyncio_timeout = getattr(asyncio, "timeout", None)


def _on_asyncio() -> bool:
    """Whether an asyncio loop runs this task (not Trio, which anyio also serves)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _stream_into(body: bytearray, request: Request, limit: int) -> None:
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)


async def read_capped(request: Request, limit: int, *, time_limit: float | None = DEFAULT_BODY_TIMEOUT) -> bytes:
    """The body of `request`, streamed; `PAYLOAD_TOO_LARGE` as soon as it passes `limit` bytes.

    A declared length over the limit is refused before reading; a smaller or
    missing one is not trusted, the count of bytes received decides. A body not
    whole within `time_limit` seconds (`None`: no deadline) is `BODY_TIMEOUT` (408,
    `Connection: close`). A client that disconnects mid-body is logged at INFO
    and answered `CLIENT_DISCONNECTED` (400), which nobody is left to read.
    """
    declared = declared_length(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise too_large(limit)
    body = bytearray()
    try:
        if time_limit is None:
            await _stream_into(body, request, limit)
        elif _asyncio_timeout is not None and _on_asyncio():
            async with _asyncio_timeout(time_limit):
                await _stream_into(body, request, limit)
        else:
            with anyio.fail_after(time_limit):
                await _stream_into(body, request, limit)
    except TimeoutError:
        raise AuthError(AuthErrorCode.BODY_TIMEOUT, f"The body did not arrive within {time_limit:g} seconds.") from None
    except ClientDisconnect:
        logger.info(
            "The client disconnected after %d bytes of the body of %s %r.", len(body), request.method, request.url.path
        )
        raise AuthError(AuthErrorCode.CLIENT_DISCONNECTED, "The client disconnected before sending the body.") from None
    return bytes(body)


async def read_kept(request: Request, limit: int, *, time_limit: float = DEFAULT_BODY_TIMEOUT) -> bytes:
    """`read_capped`, then kept on the request: read again, by any dependency or the route, it is the same bytes.

    A request's stream can be consumed once; Starlette's `request.body()` keeps
    what it read and every later `body()`, `json()` or `stream()` serves that.
    Keeping ours in the same place means two dependencies reading one body, or
    a dependency followed by the route's own `await request.body()`, both work,
    in either order. A body already streamed away by other code (`request.stream()`,
    which keeps nothing) cannot be had again: that is a `RuntimeError` naming the fix.
    """
    try:
        body = await read_capped(request, limit, time_limit=time_limit)
    except RuntimeError as exc:  # Starlette's "Stream consumed"
        raise RuntimeError(
            "The request body was consumed through request.stream() before this dependency read it;"
            " read it with `await request.body()`, which keeps it for the next reader."
        ) from exc
    request._body = body  # where Starlette's `body()` keeps it
    return body
