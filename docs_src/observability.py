"""Rejections as events and JSON log fields, verifications as OpenTelemetry spans and
metrics."""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Annotated

from fastapi import Depends, FastAPI

from fastapi_connect_auth import (
    ConnectAuth,
    ConnectRequest,
    Credentials,
    RejectionEvent,
    Telemetry,
    VerifiedRequest,
)

TENANTS = {"client-key-acme": Credentials("shh-secret-cat-" + "x" * 24)}
rejections: Counter[tuple[str, str]] = Counter()


def count_rejection(event: RejectionEvent) -> None:
    """Called once per refused call: count it (a Prometheus counter, a
    Sentry breadcrumb...). An exception here is logged, never raised."""
    rejections[event.kind, event.code.value] += 1


class JsonLines(logging.Formatter):
    """One JSON object per record, with the `auth_*` fields of a rejection."""

    def format(self, record: logging.LogRecord) -> str:
        fields = {k: v for k, v in vars(record).items() if k.startswith("auth_")}
        return json.dumps({"message": record.getMessage(), **fields})


handler = logging.StreamHandler()
handler.setFormatter(JsonLines())
logging.getLogger("fastapi_connect_auth").addHandler(handler)

connect = ConnectAuth(
    base_url="https://my-app.example.com",
    credentials_loader=TENANTS.get,
    on_rejection=count_rejection,
    telemetry=Telemetry(),  # the app's OpenTelemetry SDK: spans, counters, histogram
)
app = FastAPI(lifespan=connect.lifespan)
connect.install(app)


@app.post("/webhooks/issue-updated")
async def issue_updated(
    call: Annotated[VerifiedRequest, Depends(ConnectRequest())],
) -> dict[str, str]:
    return {"tenant": call.client_key}
