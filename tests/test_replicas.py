"""Two replicas of the example app (two uvicorn processes) on one PostgreSQL and one Redis, as docs/replicas.md runs them.

Each replica is a real process with its own connection pool and its own credentials
cache; what they share is the database (tenants) and Redis (Forge tokens and delivery
ids). A replica acts on its own writes at once and on the other's within the cache's
TTL (CREDENTIALS_CACHE_TTL, 1 s here; 5 s by default).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx2
import pytest
from cryptography.fernet import Fernet

from example_app.demo import run_app
from fastapi_connect_auth.testing import ConnectAppDriver, FakeForge, FakeProduct, ForgeAppDriver
from tests.postgres import PostgresServer
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://connect-app.example.test"
"""The one base URL both replicas answer for, as behind a load balancer."""
CACHE_TTL = 1.0

Replicas = tuple[ConnectAppDriver, ConnectAppDriver, ForgeAppDriver, ForgeAppDriver, str]


@pytest.fixture
def replicas(postgres: PostgresServer, redis_server: RedisServer, tmp_path: Path) -> Iterator[Replicas]:
    """Drivers of one tenant's Jira and of Forge talking to replica A and to replica B, and the database's name."""
    name = postgres.create_database()
    forge = FakeForge()
    env = {
        "DATABASE_URL": postgres.url(name),
        "SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),  # the same key on every replica
        "CONNECT_BASE_URL": PUBLIC_URL,
        "CONNECT_PRODUCT_API_TIMEOUT": "0",
        "MIGRATE_ON_START": "0",  # production: migrated once, before the replicas start
        "REDIS_URL": redis_server.url(),
        "REDIS_PREFIX": name,
        "CREDENTIALS_CACHE_TTL": str(CACHE_TTL),
        "FORGE_APP_ID": forge.app_id,
    }
    migrate = [sys.executable, "-m", "alembic", "-c", "example_app/alembic.ini", "upgrade", "heads"]
    subprocess.run(migrate, cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True, timeout=60)  # noqa: S603
    product = FakeProduct()
    with ExitStack() as stack:
        keys = stack.enter_context(product.serve_keys())
        jwks = stack.enter_context(forge.serve_jwks())
        drivers, forge_drivers = [], []
        for replica in ("a", "b"):
            folder = tmp_path / replica
            folder.mkdir()
            url, _ = stack.enter_context(run_app(folder, keys.url, env={**env, "FORGE_JWKS_URL": jwks.url}))
            client = stack.enter_context(httpx2.Client(base_url=url, timeout=10.0))
            drivers.append(product.drive(client, app_base_url=PUBLIC_URL))
            forge_drivers.append(forge.drive(client))
        yield drivers[0], drivers[1], forge_drivers[0], forge_drivers[1], name


def code_of(response: httpx2.Response) -> tuple[int, str | None]:
    return response.status_code, response.json().get("code") if response.status_code >= 400 else None


def within_the_ttl(check: Callable[[], bool]) -> float:
    """Seconds until `check()` holds, polled; it must within the cache's TTL (plus a second for slow machines)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < CACHE_TTL + 1.0, "the other replica's write was not honoured in time"
        time.sleep(0.05)
    return time.monotonic() - started


def test_two_replicas_on_one_postgresql_and_redis_act_on_each_others_writes_within_the_ttl(
    replicas: Replicas, postgres: PostgresServer
) -> None:
    a, b, forge_a, forge_b, database = replicas

    assert code_of(a.install()) == (204, None)
    for event in ("jira:issue_created", "jira:issue_updated", "jira:issue_created"):
        assert code_of(b.webhook(event)) == (204, None)
    stored = postgres.execute("SELECT event FROM events ORDER BY id", database=database)[0]
    assert stored == [("jira:issue_created",), ("jira:issue_updated",), ("jira:issue_created",)]  # each once

    old_secret = a.product.shared_secret
    assert code_of(a.context_call("GET", "/api/events")) == (200, None)  # A has the old secret cached now
    assert code_of(b.update()) == (204, None)
    assert code_of(b.webhook("jira:issue_created", shared_secret=old_secret)) == (401, "INVALID_SIGNATURE")  # at once
    within_the_ttl(
        lambda: code_of(a.context_call("GET", "/api/events", shared_secret=old_secret)) == (401, "INVALID_SIGNATURE")
    )
    assert code_of(a.webhook("jira:issue_created")) == (204, None)

    assert code_of(b.uninstall()) == (204, None)
    assert code_of(b.webhook("jira:issue_created")) == (401, "UNKNOWN_ISSUER")  # at once, on the replica that wrote
    within_the_ttl(lambda: code_of(a.context_call("GET", "/api/events")) == (401, "UNKNOWN_ISSUER"))
    assert code_of(a.webhook("jira:issue_created")) == (401, "UNKNOWN_ISSUER")
    assert postgres.execute("SELECT count(*) FROM events", database=database)[0] == [(4,)]

    fit = forge_a.forge.mint_fit("event")
    assert code_of(forge_a.event("/forge/events", {"issue": {"key": "F-1"}}, fit=fit)) == (204, None)
    assert code_of(forge_b.event("/forge/events", {"issue": {"key": "F-1"}}, fit=fit)) == (204, None)  # redelivered
    assert code_of(forge_b.event("/forge/events", {"issue": {"key": "F-2"}}, fit=fit)) == (409, "DELIVERY_CONFLICT")
    assert postgres.execute("SELECT count(*) FROM forge_events", database=database)[0] == [(1,)]
    assert postgres.execute("SELECT count(*) FROM atlassian_deliveries", database=database)[0] == [(0,)]  # in Redis


def test_a_retry_reaching_the_other_replica_is_stored_once(replicas: Replicas, postgres: PostgresServer) -> None:
    """Jira's retry of a webhook, and Forge's retry of an event (a new FIT), on the other replica: one row each."""
    a, b, forge_a, forge_b, database = replicas
    assert code_of(a.install()) == (204, None)
    first = a.webhook("jira:issue_created")
    assert code_of(first) == (204, None)
    within_the_ttl(lambda: code_of(b.retry_webhook(first)) == (204, None))  # b knows the tenant within the TTL
    changed = b.retry_webhook(first, body={"webhookEvent": "jira:issue_deleted"})
    assert code_of(changed) == (422, "DELIVERY_CONFLICT")
    event = forge_a.event("/forge/events", {"eventType": "avi:jira:created:issue", "timestamp": 1})
    assert code_of(event) == (204, None)
    assert code_of(forge_b.retry_event(event, retry_reason="TIMEOUT_ERROR")) == (204, None)
    assert postgres.execute("SELECT count(*) FROM events", database=database)[0] == [(1,)]
    assert postgres.execute("SELECT count(*) FROM forge_events", database=database)[0] == [(1,)]
