"""The load benchmark (`benchmarks/load.py`) at CI size: correctness only, never speed.

Twenty tenants install the example app (running under uvicorn) at once and
send it 300 webhooks; nothing may be lost or filed under another tenant, and
the one signing key must be fetched once.
"""

from __future__ import annotations

import argparse

import anyio
import httpx2
import jwt
import pytest

from benchmarks.load import databases, read_back, run_load, summary
from fastapi_connect_auth.testing import FakeProduct

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]


def test_databases_alternated_are_two_different_known_ones() -> None:
    assert databases("sqlite, postgresql") == ("sqlite", "postgresql")
    for wrong in ("sqlite", "sqlite,sqlite", "sqlite,mysql", "sqlite,postgresql,sqlite"):
        with pytest.raises(argparse.ArgumentTypeError):
            databases(wrong)


def test_concurrent_installs_and_webhooks_for_many_tenants_lose_and_misfile_nothing() -> None:
    report = run_load(tenants=20, webhooks=300, concurrency=20)
    assert report.installs.failures == []
    assert report.deliveries.failures == []
    assert (report.installs.sent, report.deliveries.sent) == (20, 300)
    assert (report.lost, report.misattributed) == (0, 0)
    assert report.stored_rows == 300
    assert report.key_fetches == ["/fake-jira/install-key-1"]  # 20 concurrent installs, one kid, one fetch
    assert set(report.rss_kib) == {"start", "after installs", "after half the webhooks", "after all webhooks", "peak"}
    assert report.correct
    assert summary(report).endswith("PASS: nothing lost or misattributed, one key fetch")


def test_the_read_back_catches_lost_and_misattributed_events(fake_product: FakeProduct) -> None:
    """The check is not vacuous: an app that files one tenant's event under another is caught."""
    other = FakeProduct(private_key=fake_product.private_key)
    listed: dict[str, list[dict[str, str]]] = {
        fake_product.client_key: [],
        other.client_key: [{"webhook_summary": "LOAD-0"}],
    }

    def events_of(request: httpx2.Request) -> httpx2.Response:
        token = request.headers["Authorization"].removeprefix("JWT ")
        issuer = jwt.decode(token, options={"verify_signature": False})["iss"]
        return httpx2.Response(200, json=listed[issuer])

    async def check() -> tuple[int, int]:
        async with httpx2.AsyncClient(transport=httpx2.MockTransport(events_of)) as client:
            return await read_back(client, "http://app.test", [fake_product, other], {"LOAD-0": 0, "LOAD-1": 1})

    assert anyio.run(check) == (1, 1)  # LOAD-1 never listed; LOAD-0 listed under the wrong tenant


@pytest.mark.parametrize(("tenants", "webhooks"), [(0, 10), (2, 101), (3_000, 10)])
def test_the_load_is_bounded(tenants: int, webhooks: int) -> None:
    with pytest.raises(ValueError, match="tenant"):
        run_load(tenants=tenants, webhooks=webhooks)
