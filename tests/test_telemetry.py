"""OpenTelemetry (integration): spans, counters and the duration histogram read with the SDK's in-memory exporter and reader.

Verifications record to the providers given to `Telemetry`; outbound product calls
to the global tracer provider, set here once for the whole run (OpenTelemetry
allows one) with an in-memory exporter that each test clears.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from fastapi_connect_auth import ForgeAuth, RetryPolicy, Telemetry, sync_product_client
from fastapi_connect_auth._telemetry import outbound_span
from tests.conftest import (
    CLIENT_KEY,
    ConnectAppFactory,
    KeyServer,
    TenantStore,
    Tokens,
    install_body,
    qsh_for,
)
from tests.test_rejection_events import APP_ARI, StaticKeys, fit, forge_client

_GLOBAL_SPANS = InMemorySpanExporter()
SCOPE = "fastapi_connect_auth"


def ours(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.instrumentation_scope.name == SCOPE]


@pytest.fixture(scope="session")
def global_spans() -> InMemorySpanExporter:
    """The global tracer provider's spans: set once per process (OpenTelemetry refuses a second one)."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_GLOBAL_SPANS))
        trace.set_tracer_provider(provider)
    return _GLOBAL_SPANS


class Recorded:
    """A `Telemetry` over an SDK tracer and meter of its own, and what they recorded."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.telemetry = Telemetry(tracer_provider=tracer_provider, meter_provider=MeterProvider([self.reader]))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[tuple[dict[str, Any], Any]]:
        """`(attributes, value)` of each data point of metric `name` (a sum's value, a histogram's count)."""
        data = self.reader.get_metrics_data()
        found: list[tuple[dict[str, Any], Any]] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                assert scope.scope.name == "fastapi_connect_auth"
                for metric in scope.metrics:
                    if metric.name == name:
                        for point in metric.data.data_points:
                            value = getattr(point, "value", None)
                            found.append((dict(point.attributes or {}), value if value is not None else point.count))
        return found


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


def test_each_verification_is_a_span_with_kind_code_and_tenant(
    make_connect_app: ConnectAppFactory, tokens: Tokens, tenants: TenantStore, recorded: Recorded
) -> None:
    tenants.add()
    app = make_connect_app(telemetry=recorded.telemetry)
    before = time.time_ns()

    accepted = app.get("/computed", tokens.hs256(qsh_for("GET", "/computed")))
    rejected = app.get("/computed", tokens.hs256(qsh_for("GET", "/elsewhere")))

    assert (accepted.status_code, rejected.status_code) == (200, 401)
    ok, refused = recorded.spans()
    assert ok.name == refused.name == "fastapi_connect_auth.verify request"
    assert ok.kind is refused.kind is SpanKind.INTERNAL
    assert dict(ok.attributes or {}) == {
        "fastapi_connect_auth.kind": "request",
        "fastapi_connect_auth.tenant": CLIENT_KEY,
    }
    assert ok.status.status_code is StatusCode.UNSET
    assert dict(refused.attributes or {}) == {
        "fastapi_connect_auth.kind": "request",
        "fastapi_connect_auth.tenant": CLIENT_KEY,
        "fastapi_connect_auth.code": "INVALID_QSH",
        "error.type": "INVALID_QSH",
    }
    assert refused.status.status_code is StatusCode.ERROR
    for span in (ok, refused):
        assert span.start_time is not None
        assert span.end_time is not None
        assert before <= span.start_time <= span.end_time <= time.time_ns()


def test_counters_by_code_and_the_duration_histogram(
    make_connect_app: ConnectAppFactory, tokens: Tokens, tenants: TenantStore, recorded: Recorded
) -> None:
    tenants.add()
    app = make_connect_app(telemetry=recorded.telemetry)
    for _ in range(3):
        app.get("/computed", tokens.hs256(qsh_for("GET", "/computed")))
    app.get("/computed", tokens.hs256(qsh_for("GET", "/elsewhere")))
    app.get("/computed", tokens.hs256(qsh_for("GET", "/computed"), exp=1))
    app.get("/computed", tokens.hs256(qsh_for("GET", "/computed"), exp=1))

    assert recorded.points("fastapi_connect_auth.accepted") == [({"fastapi_connect_auth.kind": "request"}, 3)]
    assert sorted(recorded.points("fastapi_connect_auth.rejected"), key=str) == [
        ({"fastapi_connect_auth.kind": "request", "fastapi_connect_auth.code": "INVALID_QSH"}, 1),
        ({"fastapi_connect_auth.kind": "request", "fastapi_connect_auth.code": "TOKEN_EXPIRED"}, 2),
    ]
    assert sorted(recorded.points("fastapi_connect_auth.verification.duration"), key=str) == [
        ({"fastapi_connect_auth.kind": "request", "fastapi_connect_auth.outcome": "accepted"}, 3),
        ({"fastapi_connect_auth.kind": "request", "fastapi_connect_auth.outcome": "rejected"}, 3),
    ]


def test_signed_installs_and_lifecycle_record_whether_the_key_was_cached(
    make_connect_app: ConnectAppFactory, tokens: Tokens, recorded: Recorded, key_server: KeyServer
) -> None:
    """The shipped `AtlassianKeyProvider` (its CDN answered by the key server): one fetch, then the cache."""
    app = make_connect_app(telemetry=recorded.telemetry)

    first = app.install(install_body(), tokens.rs256(qsh_for("POST", "/installed")))
    second = app.install(install_body(), tokens.rs256(qsh_for("POST", "/installed")))
    refused = app.lifecycle("enabled", tokens.hs256(qsh_for("POST", "/enabled"), secret="wrong-" * 8))

    assert (first.status_code, second.status_code, refused.status_code) == (200, 200, 401)
    assert len(key_server.requests) == 1
    spans = recorded.spans()
    assert [span.name for span in spans] == [
        "fastapi_connect_auth.verify install",
        "fastapi_connect_auth.verify install",
        "fastapi_connect_auth.verify lifecycle",
    ]
    assert [(span.attributes or {}).get("fastapi_connect_auth.key.cached") for span in spans] == [False, True, None]
    assert (spans[2].attributes or {})["fastapi_connect_auth.code"] == "INVALID_SIGNATURE"


def test_forge_spans_carry_the_installation_and_the_key_cache(recorded: Recorded) -> None:
    class Cached(StaticKeys):
        async def get_signing_key(self, kid: str, jwks_url: str) -> RSAPublicKey:
            if not self.fetches:
                self.fetches = 1
            return await super().get_signing_key(kid, jwks_url)

    config = ForgeAuth(app_id=APP_ARI, key_provider=Cached(), telemetry=recorded.telemetry)
    client = forge_client(config)
    for token in (fit(), fit(), fit(iss="nobody")):
        client.post("/forge/events", headers={"Authorization": f"Bearer {token}"})

    spans = recorded.spans()
    assert [dict(span.attributes or {}) for span in spans] == [
        {
            "fastapi_connect_auth.kind": "forge",
            "fastapi_connect_auth.installation_id": "ari:cloud:ecosystem::installation/1",
            "fastapi_connect_auth.key.cached": cached,
        }
        for cached in (False, True)
    ] + [
        {
            "fastapi_connect_auth.kind": "forge",
            "fastapi_connect_auth.installation_id": "ari:cloud:ecosystem::installation/1",
            "fastapi_connect_auth.key.cached": True,
            "fastapi_connect_auth.code": "WRONG_ISSUER",
            "error.type": "WRONG_ISSUER",
        }
    ]
    assert recorded.points("fastapi_connect_auth.rejected") == [
        ({"fastapi_connect_auth.kind": "forge", "fastapi_connect_auth.code": "WRONG_ISSUER"}, 1)
    ]


def test_without_telemetry_nothing_is_recorded(
    make_connect_app: ConnectAppFactory, tokens: Tokens, global_spans: InMemorySpanExporter
) -> None:
    global_spans.clear()
    app = make_connect_app()

    app.get("/computed", tokens.hs256(qsh_for("GET", "/computed")))

    assert app.connect.telemetry is None
    ours = [span for span in global_spans.get_finished_spans() if span.instrumentation_scope.name == SCOPE]
    assert ours == []  # FastAPI's own spans (FastAPI 0.16x records them) are its business


# -- outbound calls --------------------------------------------------------------------------------------------


class Product:
    """Answers 429 with a rate-limit reason, then 200."""

    def __init__(self, *statuses: int) -> None:
        self.statuses: Iterator[int] = iter(statuses)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        status = next(self.statuses, 200)
        headers = {"Retry-After": "1", "RateLimit-Reason": "jira-burst-based"} if status == 429 else {}
        return httpx2.Response(status, headers=headers, json={})


def jira(answer: Callable[[httpx2.Request], httpx2.Response], retries: RetryPolicy) -> httpx2.Client:
    return sync_product_client(
        app_key="com.example.app",
        client_key=CLIENT_KEY,
        base_url="https://tenant.atlassian.net",
        shared_secret="a-shared-secret-of-at-least-thirty-two-bytes",
        transport=httpx2.MockTransport(answer),
        retries=retries,
    )


NO_WAIT = RetryPolicy(sleep=lambda seconds: None, max_retries=2)


def test_an_outbound_call_is_a_client_span_with_its_retries_and_rate_limit_reason(
    global_spans: InMemorySpanExporter,
) -> None:
    global_spans.clear()
    with jira(Product(429), NO_WAIT) as client:
        assert client.get("/rest/api/3/myself").status_code == 200

    (span,) = ours(global_spans)
    assert (span.name, span.kind) == ("GET", SpanKind.CLIENT)
    assert dict(span.attributes or {}) == {
        "http.request.method": "GET",
        "url.path": "/rest/api/3/myself",
        "fastapi_connect_auth.rate_limit.reason": "jira-burst-based",
        "http.request.resend_count": 1,
        "http.response.status_code": 200,
    }
    assert [(event.name, dict(event.attributes or {})) for event in span.events] == [
        ("retry", {"http.response.status_code": 429, "fastapi_connect_auth.retry": 0})
    ]
    assert span.status.status_code is StatusCode.UNSET


def test_an_outbound_call_still_rate_limited_is_an_error_span(global_spans: InMemorySpanExporter) -> None:
    global_spans.clear()
    with jira(Product(429, 429, 429), NO_WAIT) as client, pytest.raises(Exception, match="rate limited"):
        client.get("/rest/api/3/search")

    (span,) = ours(global_spans)
    attributes = dict(span.attributes or {})
    assert (attributes["http.request.resend_count"], attributes["http.response.status_code"]) == (2, 429)
    assert attributes["error.type"] == "429"
    assert span.status.status_code is StatusCode.ERROR


def test_an_outbound_transport_error_is_an_error_span(global_spans: InMemorySpanExporter) -> None:
    global_spans.clear()

    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("refused", request=request)

    with jira(refuse, RetryPolicy(max_retries=0)) as client, pytest.raises(httpx2.ConnectError):
        client.get("/rest/api/3/myself")

    (span,) = ours(global_spans)
    assert dict(span.attributes or {})["error.type"] == "transport_error"


# -- without OpenTelemetry -------------------------------------------------------------------------------------


def test_without_opentelemetry_telemetry_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, key_server: KeyServer
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # what `import opentelemetry` meets where it is missing

    with pytest.raises(ModuleNotFoundError, match=r"pip install 'fastapi-connect-auth\[otel\]'"):
        Telemetry()
    assert outbound_span("GET", "/rest/api/3/myself") is None
