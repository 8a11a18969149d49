"""The example app's store under concurrent webhooks: batched, yet each webhook stands or falls alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from example_app.db import Store
from fastapi_connect_auth.stores import SecretCipher
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore
from tests.postgres import Database

CLIENT_KEY = "jira:store-test"


async def _store_concurrently(database: Database, payloads: list[dict[str, Any]]) -> list[BaseException | None]:
    tenants = SQLAlchemyStore(database.url, cipher=SecretCipher([SecretCipher.generate_key()]))
    store = Store(tenants)
    await store.migrate()
    try:
        results = await asyncio.gather(
            *(store.add_event(CLIENT_KEY, payload) for payload in payloads), return_exceptions=True
        )
        return [result if isinstance(result, BaseException) else None for result in results]
    finally:
        await tenants.close()


def test_a_webhook_the_database_refuses_fails_alone(database: Database) -> None:
    """PostgreSQL's `json` refuses NaN (which JSON parsers accept): that webhook fails, not the others batched with it."""
    payloads: list[dict[str, Any]] = [{"webhookEvent": "ok", "issue": {"key": f"K-{index}"}} for index in range(20)]
    payloads[7] = {"webhookEvent": "bad", "issue": {"key": "K-7"}, "value": float("nan")}
    outcomes = asyncio.run(_store_concurrently(database, payloads))
    stored = {key for (key,) in database.rows("SELECT issue_key FROM events")}
    good = {f"K-{index}" for index in range(20) if index != 7}
    if database.server is None:  # SQLite keeps NaN as text
        assert outcomes == [None] * 20
        assert stored == good | {"K-7"}
    else:
        assert isinstance(outcomes[7], DBAPIError)
        assert outcomes[:7] + outcomes[8:] == [None] * 19
        assert stored == good


@pytest.mark.parametrize("count", [1, 50])
def test_concurrent_webhooks_are_all_stored_once(database: Database, count: int) -> None:
    payloads = [{"webhookEvent": "ok", "issue": {"key": f"K-{index}"}} for index in range(count)]
    assert asyncio.run(_store_concurrently(database, payloads)) == [None] * count
    assert sorted(key for (key,) in database.rows("SELECT issue_key FROM events")) == sorted(
        f"K-{index}" for index in range(count)
    )
