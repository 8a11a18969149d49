"""Two replicas of the example app (two uvicorn processes) on one PostgreSQL database, as docs/replicas.md runs them.

Each replica is a real process with its own connection pool; the only thing they
share is the database. Whatever one replica writes (an install, an update's new
secret, an uninstall), the other must act on at its very next request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx2
import pytest
from cryptography.fernet import Fernet

from example_app.demo import run_app
from fastapi_connect_auth.testing import ConnectAppDriver, FakeProduct
from tests.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://connect-app.example.test"
"""The one base URL both replicas answer for, as behind a load balancer."""


@pytest.fixture
def replicas(postgres: PostgresServer, tmp_path: Path) -> Iterator[tuple[ConnectAppDriver, ConnectAppDriver, str]]:
    """Drivers of one tenant's Jira talking to replica A and to replica B, and the database's name."""
    name = postgres.create_database()
    env = {
        "DATABASE_URL": postgres.url(name),
        "SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),  # the same key on every replica
        "CONNECT_BASE_URL": PUBLIC_URL,
        "CONNECT_PRODUCT_API_TIMEOUT": "0",
        "MIGRATE_ON_START": "0",  # production: migrated once, before the replicas start
    }
    migrate = [sys.executable, "-m", "alembic", "-c", "example_app/alembic.ini", "upgrade", "head"]
    subprocess.run(migrate, cwd=ROOT, env={**os.environ, **env}, check=True, capture_output=True, timeout=60)  # noqa: S603
    product = FakeProduct()
    with ExitStack() as stack:
        keys = stack.enter_context(product.serve_keys())
        drivers = []
        for replica in ("a", "b"):
            folder = tmp_path / replica
            folder.mkdir()
            url, _ = stack.enter_context(run_app(folder, keys.url, env=env))
            client = stack.enter_context(httpx2.Client(base_url=url, timeout=10.0))
            drivers.append(product.drive(client, app_base_url=PUBLIC_URL))
        yield drivers[0], drivers[1], name


def code_of(response: httpx2.Response) -> tuple[int, str | None]:
    return response.status_code, response.json().get("code") if response.status_code >= 400 else None


def test_two_replicas_on_one_postgresql_act_on_each_others_writes_at_once(
    replicas: tuple[ConnectAppDriver, ConnectAppDriver, str], postgres: PostgresServer
) -> None:
    a, b, database = replicas

    assert code_of(a.install()) == (204, None)
    for event in ("jira:issue_created", "jira:issue_updated", "jira:issue_created"):
        assert code_of(b.webhook(event)) == (204, None)
    stored = postgres.execute("SELECT event FROM events ORDER BY id", database=database)[0]
    assert stored == [("jira:issue_created",), ("jira:issue_updated",), ("jira:issue_created",)]  # each once

    old_secret = a.product.shared_secret
    assert code_of(b.update()) == (204, None)
    assert code_of(a.webhook("jira:issue_created", shared_secret=old_secret)) == (401, "INVALID_SIGNATURE")
    assert code_of(a.webhook("jira:issue_created")) == (204, None)

    assert code_of(a.uninstall()) == (204, None)
    assert code_of(b.webhook("jira:issue_created")) == (401, "UNKNOWN_ISSUER")
    assert code_of(b.context_call("GET", "/api/events")) == (401, "UNKNOWN_ISSUER")
    assert postgres.execute("SELECT count(*) FROM events", database=database)[0] == [(4,)]
