"""Bounded request bodies: read through `request.stream()` and refused as soon as they pass a cap.

`request.body()` buffers everything before anyone can look at its size, and a
chunked body declares none, so every body the library reads comes through here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request

from ._errors import AuthError, AuthErrorCode

__all__ = ["BodySource", "declared_length", "read_capped", "too_large"]

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
