"""Bounded request bodies: read through `request.stream()` and refused as soon as they pass a cap.

`request.body()` buffers everything before anyone can look at its size, and a
chunked body declares none, so every body the library reads comes through here.
`read_kept` then keeps what it read where Starlette keeps `request.body()`, so
the body can be read again on the same request, by another dependency or the route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request

from ._errors import AuthError, AuthErrorCode

__all__ = ["BodySource", "declared_length", "read_capped", "read_kept", "too_large"]

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


async def read_capped(request: Request, limit: int) -> bytes:
    """The body of `request`, streamed; `PAYLOAD_TOO_LARGE` as soon as it passes `limit` bytes.

    A declared length over the limit is refused before reading; a smaller or
    missing one is not trusted, the count of bytes received decides.
    """
    declared = declared_length(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large(limit)
    return bytes(body)


async def read_kept(request: Request, limit: int) -> bytes:
    """`read_capped`, then kept on the request: read again, by any dependency or the route, it is the same bytes.

    A request's stream can be consumed once; Starlette's `request.body()` keeps
    what it read and every later `body()`, `json()` or `stream()` serves that.
    Keeping ours in the same place means two dependencies reading one body, or
    a dependency followed by the route's own `await request.body()`, both work,
    in either order. A body already streamed away by other code (`request.stream()`,
    which keeps nothing) cannot be had again: that is a `RuntimeError` naming the fix.
    """
    try:
        body = await read_capped(request, limit)
    except RuntimeError as exc:  # Starlette's "Stream consumed"
        raise RuntimeError(
            "The request body was consumed through request.stream() before this dependency read it;"
            " read it with `await request.body()`, which keeps it for the next reader."
        ) from exc
    request._body = body  # where Starlette's `body()` keeps it
    return body
