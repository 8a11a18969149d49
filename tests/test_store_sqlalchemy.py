"""`SQLAlchemyStore` on SQLite and on a real PostgreSQL: the store contract, rotation, faults and its migrations."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from fastapi_connect_auth import AuthError, AuthErrorCode
from fastapi_connect_auth.stores import BaseStore, SecretCipher
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore
from fastapi_connect_auth.testing import StoreContract, install_payload
from tests.postgres import Database

KEY = SecretCipher.generate_key()


@pytest.fixture
def migrated(database: Database) -> Database:
    async def create() -> None:
        store = SQLAlchemyStore(database.url, cipher=SecretCipher([KEY]))
        await store.create_tables()
        await store.close()

    asyncio.run(create())
    return database


class TestSQLAlchemyStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _database(self, migrated: Database) -> None:
        self.database = migrated

    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[BaseStore]:
        store = SQLAlchemyStore(self.database.url, cipher=SecretCipher([KEY]))
        try:
            yield store
        finally:
            await store.close()


def test_secrets_are_encrypted_at_rest_and_rotate_re_encrypts_every_row(migrated: Database) -> None:
    async def install() -> None:
        old = SQLAlchemyStore(migrated.url, cipher=SecretCipher([KEY]))
        for number in range(3):
            await old.save_install(install_payload(f"tenant-{number}", f"secret-{number}-" * 4), signed_at=1)
        await old.close()

    asyncio.run(install())
    stored = migrated.rows("SELECT encrypted_shared_secret FROM atlassian_tenants")
    assert len(stored) == 3
    assert all(b"secret-" not in bytes(row[0]) for row in stored)
    new_key = SecretCipher.generate_key()

    async def rotate() -> int:
        rotated = SQLAlchemyStore(migrated.url, cipher=SecretCipher([new_key, KEY]))
        try:
            return await rotated.rotate()
        finally:
            await rotated.close()

    assert asyncio.run(rotate()) == 3
    assert {bytes(row[0]) for row in migrated.rows("SELECT encrypted_shared_secret FROM atlassian_tenants")}.isdisjoint(
        {bytes(row[0]) for row in stored}
    )

    async def read(keys: list[str]) -> list[str]:
        store = SQLAlchemyStore(migrated.url, cipher=SecretCipher(keys))
        try:
            found = [await store.credentials(f"tenant-{number}") for number in range(3)]
            return [credentials.shared_secret for credentials in found if credentials is not None]
        finally:
            await store.close()

    assert asyncio.run(read([new_key])) == [f"secret-{number}-" * 4 for number in range(3)]
    with pytest.raises(AuthError) as refused:
        asyncio.run(read([KEY]))  # the old key was dropped: its rows were all rewritten
    assert (refused.value.code, refused.value.status_code) == (AuthErrorCode.STORE_UNAVAILABLE, 503)


@pytest.mark.anyio
async def test_a_database_that_is_gone_answers_503_with_a_code(tmp_path: object) -> None:
    store = SQLAlchemyStore("postgresql://nobody:hunter2@127.0.0.1:9/none", cipher=SecretCipher([KEY]))
    try:
        with pytest.raises(AuthError) as refused:
            await store.save_install(install_payload("tenant", "s" * 40), signed_at=1)
        assert (refused.value.code, refused.value.status_code) == (AuthErrorCode.STORE_UNAVAILABLE, 503)
        assert refused.value.headers == {"Retry-After": "5"}
        assert "hunter2" not in str(refused.value)
        assert refused.value.__cause__ is None
        with pytest.raises(AuthError) as forgetting:  # the app's write failed too: the forget is a 503 as well
            await store.forget_delivery('["webhook","tenant","1"]', "f")
        assert (forgetting.value.code, forgetting.value.status_code) == (AuthErrorCode.STORE_UNAVAILABLE, 503)
    finally:
        await store.close()
