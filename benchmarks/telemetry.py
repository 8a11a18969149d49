"""What OpenTelemetry costs per request: `ConnectRequest` without telemetry against `telemetry=Telemetry(...)`.

The app called in-process, as `floor.py` does (same request, same rounds and
fastest-round rule): one one-route app per variant, interleaved.

* `off`: `ConnectAuth(...)` as in `floor.py` (no telemetry: one `is not None` check);
* `sdk`: `ConnectAuth(..., telemetry=Telemetry(...))` over the OpenTelemetry SDK, a
  `SimpleSpanProcessor` with an exporter that drops every span, and a `MeterProvider`
  with an in-memory reader (recording costs what it costs; nothing is exported).

    .venv/bin/python benchmarks/telemetry.py [--rounds 15 --number 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from app import BASE_URL, handle, load_tenant  # noqa: E402
from fastapi import Depends, FastAPI  # noqa: E402
from floor import PATH, measure  # noqa: E402
from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402

from fastapi_connect_auth import ConnectAuth, ConnectRequest, Telemetry, VerifiedRequest  # noqa: E402

VARIANTS = ("off", "sdk")


class DropSpans(SpanExporter):
    """An exporter that exports nothing: what is left is the SDK's own cost."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def sdk_telemetry() -> Telemetry:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(DropSpans()))
    return Telemetry(tracer_provider=tracer_provider, meter_provider=MeterProvider([InMemoryMetricReader()]))


def variant_app(kind: str) -> FastAPI:
    telemetry = sdk_telemetry() if kind == "sdk" else None
    config = ConnectAuth(
        base_url=BASE_URL, credentials_loader=load_tenant, sync_loader_in_thread=False, telemetry=telemetry
    )
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    config.install(app)

    @app.post(PATH)
    async def webhook(call: Annotated[VerifiedRequest[Any], Depends(ConnectRequest())]) -> dict[str, str]:
        return handle()

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--number", type=int, default=5000)
    args = parser.parse_args(argv)
    times = asyncio.run(measure(args.rounds, args.number, {kind: variant_app(kind) for kind in VARIANTS}))
    best = {kind: min(values) for kind, values in times.items()}
    print(f"fastest of {args.rounds} rounds x {args.number} calls, microseconds per request")
    for kind in VARIANTS:
        print(f"    {kind:4} {best[kind]:7.1f} us")
    print(f"OpenTelemetry SDK (spans dropped, metrics recorded): +{best['sdk'] - best['off']:.1f} us per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
