"""`SQLAlchemyStore` on SQLite and on a real PostgreSQL: the store contract, rotation, faults and its migrations."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path

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


@pytest.mark.anyio
async def test_installs_arriving_together_on_sqlite_resolve_in_arrival_order(tmp_path: Path) -> None:
    """One group commit: each install keeps its own result, as if committed one after the other as they arrived."""
    store = SQLAlchemyStore(f"sqlite:///{tmp_path / 'app.db'}", cipher=SecretCipher([KEY]))
    await store.create_tables()
    later = time.time() + 3600
    try:
        answers = await asyncio.gather(
            store.save_install(install_payload("same", "l" * 40), signed_at=200),
            store.save_install(install_payload("same", "e" * 40), signed_at=100),  # outranked by the one before
            store.save_install(install_payload("rising", "e" * 40), signed_at=100),
            store.save_install(install_payload("rising", "l" * 40), signed_at=200),  # outranks the one before
            store.save_install(install_payload("unsigned-first", "u" * 40)),
            store.save_install(install_payload("unsigned-first", "s" * 40), signed_at=later),
            store.save_install(install_payload("signed-first", "s" * 40), signed_at=later),
            store.save_install(install_payload("signed-first", "u" * 40)),  # the tenant is known: 401
            return_exceptions=True,
        )
        assert answers[:7] == [True, False, True, True, True, True, True]
        assert isinstance(answers[7], AuthError)
        assert answers[7].code is AuthErrorCode.UNAUTHORIZED_REQUEST
        kept = {key: await store.tenant(key) for key in ("same", "rising", "unsigned-first", "signed-first")}
        assert {key: tenant.shared_secret for key, tenant in kept.items() if tenant} == {
            "same": "l" * 40,
            "rising": "l" * 40,
            "unsigned-first": "s" * 40,
            "signed-first": "s" * 40,
        }
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_fault_in_a_group_of_installs_fails_each_of_them_and_writes_none(tmp_path: Path) -> None:
    """The database refusing one install of a group rolls the group back: every install of it is a 503."""
    path = tmp_path / "app.db"
    store = SQLAlchemyStore(f"sqlite:///{path}", cipher=SecretCipher([KEY]))
    await store.create_tables()
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON atlassian_tenants WHEN NEW.client_key = 'refused' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
    try:
        answers = await asyncio.gather(
            *(store.save_install(install_payload(key, "s" * 40), signed_at=1) for key in ("a", "refused", "b")),
            return_exceptions=True,
        )
        assert [(answer.code, answer.status_code) for answer in answers if isinstance(answer, AuthError)] == [
            (AuthErrorCode.STORE_UNAVAILABLE, 503)
        ] * 3
        with closing(sqlite3.connect(path)) as connection:
            assert connection.execute("SELECT COUNT(*) FROM atlassian_tenants").fetchone() == (0,)
        assert await store.save_install(install_payload("a", "s" * 40), signed_at=1)  # alone, it goes through
    finally:
        await store.close()


@pytest.mark.anyio
async def test_an_install_whose_caller_gave_up_while_queued_is_not_shadowed_by_the_cache(tmp_path: Path) -> None:
    """Written with its group after its request was cancelled, the install is still what `credentials` answers."""
    store = SQLAlchemyStore(f"sqlite:///{tmp_path / 'app.db'}", cipher=SecretCipher([KEY]))
    await store.create_tables()
    try:
        await store.save_install(install_payload("tenant", "old" * 12), signed_at=100)
        assert (await store.credentials("tenant")) is not None  # the old secret, now cached
        async with store.transaction():  # the write queue is busy: the next install waits in its group
            queued = asyncio.create_task(store.save_install(install_payload("tenant", "new" * 12), signed_at=200))
            for _ in range(3):
                await asyncio.sleep(0)
            queued.cancel()
        assert await store.save_install(install_payload("other", "s" * 40), signed_at=1)  # after that group
        assert queued.cancelled()
        credentials = await store.credentials("tenant")
        assert credentials is not None
        assert credentials.shared_secret == "new" * 12
    finally:
        await store.close()
