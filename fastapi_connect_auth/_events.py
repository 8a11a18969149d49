"""Rejection events: one structured record per refused call, logged with `extra=` fields and given to `on_rejection=`.

Everything in an event comes from the wire and is made safe before it is kept:
control characters replaced, each value truncated, trace ids kept only when they
have the form their standard gives them. The detail is the rejection's message,
which never holds a token or a secret; in `debug` mode a QSH mismatch adds the
canonical request computed, which holds the path and query but never the `jwt`.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ._errors import AuthError, AuthErrorCode

__all__ = ["RejectionCallback", "RejectionEvent", "RejectionKind", "call_details", "deliver", "safe_text", "trace_ids"]

logger = logging.getLogger("fastapi_connect_auth")

RejectionKind = Literal["install", "lifecycle", "request", "forge"]
"""What was refused: an `installed` callback, another lifecycle callback, a request (webhook, page, iframe),
or a Forge invocation."""

RejectionCallback = Callable[["RejectionEvent"], "Awaitable[object] | object"]
"""`on_rejection(event)`, sync or async; what it returns is ignored, and what it raises is logged, never raised."""

MAX_ID = 128
"""The longest issuer or installation id kept in an event (Atlassian's are far shorter)."""
MAX_ROUTE = 256
MAX_DETAIL = 2048
_B3_TRACE = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")
_B3_SPAN = re.compile(r"[0-9a-f]{16}")
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def safe_text(value: object, limit: int) -> str | None:
    """`value` as printable text of at most `limit` characters (`…` marks a cut); `None` for no value.

    Control characters (a forged line break in a log, an ANSI escape) become `?`.
    """
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    cut = text[: limit + 1]
    shown = cut if cut.isprintable() else "".join(char if char.isprintable() else "?" for char in cut)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


_TRACE_HEADERS = frozenset({b"traceparent", b"x-b3-traceid", b"x-b3-spanid"})


def call_details(scope: Mapping[str, Any] | None) -> tuple[str | None, dict[str, str]]:
    """The route's path template (`/issues/{key}`, else the path) and the trace headers of an ASGI scope.

    Read only for a refused call, so an accepted one never pays for it.
    """
    if scope is None:
        return None, {}
    route = getattr(scope.get("route"), "path", None)
    if not isinstance(route, str):
        path = scope.get("path")
        route = path if isinstance(path, str) else None
    headers = {
        name.decode("latin-1").lower(): value.decode("latin-1")
        for name, value in scope.get("headers") or ()
        if isinstance(name, bytes) and isinstance(value, bytes) and name.lower() in _TRACE_HEADERS
    }
    return route, headers


def _header(headers: Mapping[str, str], name: str, pattern: re.Pattern[str]) -> re.Match[str] | None:
    value = headers.get(name)
    return pattern.fullmatch(value.strip().lower()) if value and len(value) <= 128 else None


def trace_ids(headers: Mapping[str, str] | None) -> dict[str, str | None]:
    """The trace ids of a request: Zipkin B3 (`x-b3-traceid`, `x-b3-spanid`, as Forge sends) and W3C `traceparent`.

    A malformed header counts as absent. The all-zero W3C ids are invalid by the standard, and dropped.
    """
    ids: dict[str, str | None] = {"trace_id": None, "span_id": None, "b3_trace_id": None, "b3_span_id": None}
    if not headers:
        return ids
    if match := _header(headers, "x-b3-traceid", _B3_TRACE):
        ids["b3_trace_id"] = match[0]
    if match := _header(headers, "x-b3-spanid", _B3_SPAN):
        ids["b3_span_id"] = match[0]
    parent = _header(headers, "traceparent", _TRACEPARENT)
    if parent and parent[1].strip("0") and parent[2].strip("0"):
        ids["trace_id"], ids["span_id"] = parent[1], parent[2]
    return ids


@dataclass(frozen=True, slots=True, kw_only=True)
class RejectionEvent:
    """One refused call, as `on_rejection=` receives it and as the log record's `extra=` fields carry it.

    ```python
    def count(event: RejectionEvent) -> None:
        rejections.labels(code=event.code.value, kind=event.kind).inc()

    connect = ConnectAuth(base_url=..., credentials_loader=..., on_rejection=count)
    ```

    Every text field is printable and truncated; nothing in it is a token or a secret.
    """

    code: AuthErrorCode
    """Why the call was refused."""
    kind: RejectionKind
    """`install`, `lifecycle`, `request` or `forge`."""
    status_code: int
    """The status answered (401, 503, 400, 413)."""
    detail: str
    """The reason in words (the error's message; in debug mode, a QSH mismatch's canonical request too)."""
    route: str | None = None
    """The route's path template when known (`/issues/{key}`), else the path requested."""
    issuer: str | None = None
    """Connect: the token's `iss` (the tenant's `clientKey`, unverified), truncated."""
    installation_id: str | None = None
    """Forge: the FIT's `app.installationId` (unverified), truncated."""
    lifecycle_event: str | None = None
    """Lifecycle callbacks: `uninstalled`, `enabled` or `disabled`."""
    trace_id: str | None = None
    """W3C `traceparent`'s trace id."""
    span_id: str | None = None
    """W3C `traceparent`'s parent span id."""
    b3_trace_id: str | None = None
    """`x-b3-traceid` (Forge sends it)."""
    b3_span_id: str | None = None
    """`x-b3-spanid`."""

    @classmethod
    def of(
        cls,
        error: AuthError,
        kind: RejectionKind,
        *,
        route: str | None = None,
        headers: Mapping[str, str] | None = None,
        issuer: object = None,
        installation_id: object = None,
        lifecycle_event: str | None = None,
        debug_detail: str | None = None,
    ) -> RejectionEvent:
        """The event of `error`, every value from the wire made safe."""
        detail = error.message if debug_detail is None else f"{error.message} {debug_detail}"
        return cls(
            code=error.code,
            kind=kind,
            status_code=error.status_code,
            detail=safe_text(detail, MAX_DETAIL) or "",
            route=safe_text(route, MAX_ROUTE),
            issuer=safe_text(issuer, MAX_ID),
            installation_id=safe_text(installation_id, MAX_ID),
            lifecycle_event=lifecycle_event,
            **trace_ids(headers),
        )

    def log_fields(self) -> dict[str, Any]:
        """The `extra=` of the log record: each field prefixed `auth_` (`auth_code`, `auth_issuer`, …)."""
        fields = asdict(self)
        fields["code"] = self.code.value
        return {f"auth_{name}": value for name, value in fields.items()}


async def deliver(event: RejectionEvent, message: str, callback: RejectionCallback | None) -> None:
    """Log `event` as a warning with `message` and its `extra=` fields, then give it to `callback`.

    A callback that fails is logged and forgotten: the call is refused as it would
    have been, never turned into a 500.
    """
    logger.warning(message, extra=event.log_fields())
    if callback is None:
        return
    try:
        result = callback(event)
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        logger.error(
            "The on_rejection callback failed (%s); the call is refused all the same.",
            type(exc).__name__,
            exc_info=True,
        )
