"""The example app's store under concurrent webhooks: batched, yet each webhook stands or falls alone."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy.exc import DBAPIError

from example_app.db import Store
from fastapi_connect_auth import InstallPayload
from tests.postgres import Database

CLIENT_KEY = "jira:store-test"


async def _store_concurrently(database: Database, payloads: list[dict[str, Any]]) -> list[BaseException | None]:
    store = Store(database.url, Fernet.generate_key().decode())
    await store.open()
    try:
        install = {"key": "app", "clientKey": CLIENT_KEY, "sharedSecret": "s" * 40, "eventType": "installed"}
        await store.save_installation(InstallPayload.model_validate({**install, "baseUrl": "https://x.atlassian.net"}))
        results = await asyncio.gather(
            *(store.add_event(CLIENT_KEY, payload) for payload in payloads), return_exceptions=True
        )
        return [result if isinstance(result, BaseException) else None for result in results]
    finally:
        await store.close()


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
