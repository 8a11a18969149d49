"""Checking the store from a sync `TestClient` test: the store's coroutines run on the
app's event loop, through the client's portal, where its engine and connections live."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from docs_src.storage_own_tables import create_app, issues
from fastapi_connect_auth.stores import SecretCipher
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore
from fastapi_connect_auth.testing import FakeProduct

BASE_URL = "https://issue-log.example.com"
T = TypeVar("T")


@pytest.fixture
def client(tmp_path: Path, fake_product: FakeProduct) -> Iterator[TestClient]:
    app = create_app(
        database_url=f"sqlite:///{tmp_path / 'app.db'}",
        base_url=BASE_URL,
        encryption_key=SecretCipher.generate_key(),  # a fresh key per test
        key_provider=fake_product.key_provider(),
    )
    with TestClient(app, base_url=BASE_URL) as client:  # `with`: the lifespan runs
        yield client


def run(client: TestClient, function: Callable[..., Awaitable[T]], *args: Any) -> T:
    """`await function(*args)` on the app's event loop (not `asyncio.run`: another
    loop cannot use the engine's connections)."""
    assert client.portal is not None, "inside `with TestClient(app) as client:` only"
    return client.portal.call(function, *args)


async def logged_issues(store: SQLAlchemyStore, client_key: str) -> list[str]:
    async with store.engine.connect() as connection:
        query = select(issues.c.issue_key).where(issues.c.client_key == client_key)
        return list((await connection.scalars(query)).all())


def test_the_store_and_your_table_after_each_call(
    client: TestClient, fake_product: FakeProduct
) -> None:
    jira = fake_product.drive(client)
    store: SQLAlchemyStore = client.app.state.store  # type: ignore[attr-defined]

    assert jira.install().status_code == 204
    tenant = run(client, store.tenant, fake_product.client_key)
    assert tenant is not None
    assert (tenant.base_url, tenant.installed) == (fake_product.base_url, True)

    assert jira.webhook("jira:issue_created").status_code == 204
    assert run(client, logged_issues, store, fake_product.client_key) == ["DEMO-1"]

    assert jira.uninstall().status_code == 204
    tenant = run(client, store.tenant, fake_product.client_key)
    assert tenant is not None
    assert tenant.installed is False
