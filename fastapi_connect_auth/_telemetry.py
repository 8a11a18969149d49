"""OpenTelemetry for verifications and outbound calls: optional, `opentelemetry-api` only (extra `otel`).

Inbound, it is opt-in (`ConnectAuth(telemetry=Telemetry())`, `ForgeAuth(...)`): a
verification then gets a span, its outcome a counter and its time a histogram;
without it the flows pay one `is not None` check. The span is recorded when the
verification ends, with the start time taken when it began, so the flows need
no context manager around their steps.

Outbound, product clients annotate each call (a span with the retry count and
the `RateLimit-Reason` of the last answer) through the global providers when
OpenTelemetry is installed, a no-op until the app configures an SDK.

Nothing recorded holds a token or a secret: a tenant's `clientKey` and a Forge
installation id are recorded (truncated) on spans, never on metrics, whose
attributes stay few (kind, code, outcome) so their series stay few.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._events import MAX_ID, safe_text

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

__all__ = ["Telemetry", "outbound_span"]

SCOPE = "fastapi_connect_auth"
"""The instrumentation scope of every tracer and meter: the package's name."""
INSTALL_HINT = "OpenTelemetry is not installed: pip install 'fastapi-connect-auth[otel]'"
_ATTR = "fastapi_connect_auth."


def _version() -> str:
    from . import __version__

    return __version__


@dataclass(slots=True)
class Verification:
    """One verification being timed: when it began, and how many key fetches the provider had made."""

    telemetry: Telemetry
    kind: str
    started_ns: int
    started: float
    fetches: int | None

    def end(
        self,
        *,
        code: str | None = None,
        tenant: object = None,
        installation_id: object = None,
        signed: bool = False,
        key_provider: object = None,
    ) -> None:
        """Record the span, the counter and the duration: accepted when `code` is `None`."""
        self.telemetry.record(self, code, tenant, installation_id, signed, key_provider)


class Telemetry:
    """The tracer and instruments a `ConnectAuth` or `ForgeAuth` records its verifications with.

    ```python
    connect = ConnectAuth(base_url=..., credentials_loader=..., telemetry=Telemetry())
    ```

    `tracer_provider` and `meter_provider` default to the global ones (those the
    app's OpenTelemetry SDK sets up). Each verification gets:

    * a span `fastapi_connect_auth.verify <kind>` with `fastapi_connect_auth.kind`
      (`request`, `install`, `lifecycle`, `forge`), `fastapi_connect_auth.code` and
      `error.type` when refused, `fastapi_connect_auth.tenant` (a Connect
      `clientKey`) or `fastapi_connect_auth.installation_id` (Forge), and
      `fastapi_connect_auth.key.cached` (RS256: no key fetch was made for it);
    * `fastapi_connect_auth.accepted` and `fastapi_connect_auth.rejected` counters
      by kind (and code);
    * `fastapi_connect_auth.verification.duration`, a histogram in seconds, by kind
      and outcome.

    Raises `ModuleNotFoundError` saying how to install the extra when
    `opentelemetry-api` is missing.
    """

    def __init__(
        self, *, tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
    ) -> None:
        try:
            from opentelemetry import metrics, trace
        except ModuleNotFoundError as exc:
            raise ModuleNotFoundError(INSTALL_HINT, name=exc.name) from exc
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self._span_kind = SpanKind.INTERNAL
        self._status, self._error = Status, StatusCode.ERROR
        self._tracer = trace.get_tracer(SCOPE, _version(), tracer_provider=tracer_provider)
        meter = metrics.get_meter(SCOPE, _version(), meter_provider=meter_provider)
        self._accepted = meter.create_counter(
            "fastapi_connect_auth.accepted", unit="{call}", description="Calls whose token was accepted."
        )
        self._rejected = meter.create_counter(
            "fastapi_connect_auth.rejected", unit="{call}", description="Calls refused, by AuthErrorCode."
        )
        self._duration = meter.create_histogram(
            "fastapi_connect_auth.verification.duration", unit="s", description="Time spent verifying a call."
        )

    def start(self, kind: str, key_provider: object = None) -> Verification:
        """Begin timing a verification of `kind`."""
        fetches = getattr(key_provider, "fetches", None)
        return Verification(
            self, kind, time.time_ns(), time.perf_counter(), fetches if isinstance(fetches, int) else None
        )

    def record(
        self,
        verification: Verification,
        code: str | None,
        tenant: object,
        installation_id: object,
        signed: bool,
        key_provider: object,
    ) -> None:
        """The span, counter and histogram of a verification that ended (use `Verification.end`)."""
        elapsed = time.perf_counter() - verification.started
        kind = verification.kind
        attributes: dict[str, Any] = {_ATTR + "kind": kind}
        if tenant is not None:
            attributes[_ATTR + "tenant"] = safe_text(tenant, MAX_ID)
        if installation_id is not None:
            attributes[_ATTR + "installation_id"] = safe_text(installation_id, MAX_ID)
        fetches = getattr(key_provider, "fetches", None)
        if signed and verification.fetches is not None and isinstance(fetches, int):
            attributes[_ATTR + "key.cached"] = fetches == verification.fetches
        if code is not None:
            attributes[_ATTR + "code"] = code
            attributes["error.type"] = code
        span = self._tracer.start_span(
            f"fastapi_connect_auth.verify {kind}",
            kind=self._span_kind,
            start_time=verification.started_ns,
            attributes=attributes,
        )
        if code is not None:
            span.set_status(self._status(self._error, code))
        span.end(end_time=verification.started_ns + int(elapsed * 1e9))
        if code is None:
            self._accepted.add(1, {_ATTR + "kind": kind})
            self._duration.record(elapsed, {_ATTR + "kind": kind, _ATTR + "outcome": "accepted"})
        else:
            self._rejected.add(1, {_ATTR + "kind": kind, _ATTR + "code": code})
            self._duration.record(elapsed, {_ATTR + "kind": kind, _ATTR + "outcome": "rejected"})


class OutboundSpan:
    """The span of one outbound product call across its attempts: ended when the retry loop stops."""

    def __init__(self, span: Span) -> None:
        self._span = span
        self._ended = False

    def attempt(self, status_code: int | None, headers: Mapping[str, str] | None, retries: int, stop: bool) -> None:
        """Note one attempt's outcome (`status_code` `None` for a transport error); end the span at the last one."""
        if self._ended:
            return
        reason = safe_text(headers.get("RateLimit-Reason"), 64) if headers is not None else None
        if reason:
            self._span.set_attribute(_ATTR + "rate_limit.reason", reason)
        if not stop:
            self._span.add_event("retry", {"http.response.status_code": status_code or 0, _ATTR + "retry": retries})
            return
        if retries:
            self._span.set_attribute("http.request.resend_count", retries)
        if status_code is not None:
            self._span.set_attribute("http.response.status_code", status_code)
        if status_code is None or status_code >= 400:
            from opentelemetry.trace import Status, StatusCode

            error = str(status_code) if status_code is not None else "transport_error"
            self._span.set_attribute("error.type", error)
            self._span.set_status(Status(StatusCode.ERROR, error))
        self._span.end()
        self._ended = True


def outbound_span(method: str, path: str) -> OutboundSpan | None:
    """A client span for a product call, from the global tracer provider; `None` without OpenTelemetry."""
    try:
        from opentelemetry import trace
    except ModuleNotFoundError:
        return None
    from opentelemetry.trace import SpanKind

    tracer = trace.get_tracer(SCOPE, _version())
    span = tracer.start_span(
        method.upper(),
        kind=SpanKind.CLIENT,
        attributes={"http.request.method": method.upper(), "url.path": safe_text(path, 512) or "/"},
    )
    return OutboundSpan(span)
