"""`RedisStore` on a real `redis-server`: the store contract, rotation, round trips and an outage."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from redis.asyncio import Redis

from fastapi_connect_auth import AuthError, AuthErrorCode, ForgeStoredToken
from fastapi_connect_auth.stores import BaseStore, SecretCipher
from fastapi_connect_auth.stores.redis import RedisStore
from fastapi_connect_auth.testing import StoreContract, install_payload
from tests.redis_server import RedisServer, require_redis, running_redis

KEY = SecretCipher.generate_key()


class TestRedisStore(StoreContract):
    @pytest.fixture(autouse=True)
    def _redis(self, redis_url: str) -> None:
        self.url, self.prefix = redis_url, f"t{uuid.uuid4().hex[:10]}"

    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[BaseStore]:
        store = RedisStore(self.url, cipher=SecretCipher([KEY]), prefix=self.prefix)
        try:
            yield store
        finally:
            await store.close()


class CountingRedis(Redis):
    """A redis-py client that counts the commands it sends (each `execute_command` is one round trip)."""

    sent: list[str]

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        self.sent.append(str(args[0]))
        return await super().execute_command(*args, **options)


@pytest.mark.anyio
async def test_token_reads_and_delivery_checks_are_one_round_trip_each(redis_url: str) -> None:
    client = CountingRedis.from_url(redis_url)
    client.sent = []
    store = RedisStore(client, cipher=SecretCipher([KEY]), prefix=f"t{uuid.uuid4().hex[:10]}")
    now = time.time()
    await store.put(
        "ari:installation/1", None, ForgeStoredToken("t", "https://api.atlassian.com/ex/jira/c", now + 3600, now)
    )
    await store.get("ari:installation/1", None)  # warms nothing: every call below is counted from here
    client.sent.clear()
    assert await store.get("ari:installation/1", None) is not None
    assert len(client.sent) == 1
    client.sent.clear()
    assert await store.remember_delivery("forge:jti-1", "f", now + 60) is None
    assert await store.remember_delivery("forge:jti-1", "f", now + 60) == "f"
    assert client.sent == ["SET", "SET"]
    keys = [key.decode() for key in await client.keys(f"{store.prefix}:*")]
    assert all(key.startswith(f"{store.prefix}:") for key in keys)
    assert 0 < await client.pttl(f"{store.prefix}:delivery:forge:jti-1") <= 60_000  # the TTL came with the SET
    await client.aclose()


@pytest.mark.anyio
async def test_rotation_re_encrypts_secrets_and_tokens(redis_url: str) -> None:
    prefix, now = f"t{uuid.uuid4().hex[:10]}", time.time()
    old = RedisStore(redis_url, cipher=SecretCipher([KEY]), prefix=prefix)
    await old.save_install(install_payload("tenant-1", "secret-one-" * 4), signed_at=1)
    await old.put(
        "installation-1", None, ForgeStoredToken("tok", "https://api.atlassian.com/ex/jira/c", now + 3600, now)
    )
    raw = [value async for value in old.redis.scan_iter(match=f"{prefix}:*")]
    assert raw
    for key in raw:
        assert b"secret-one" not in (await old.redis.dump(key) or b"")
        assert b'tok"' not in (await old.redis.dump(key) or b"")
    await old.close()
    new_key = SecretCipher.generate_key()
    rotating = RedisStore(redis_url, cipher=SecretCipher([new_key, KEY]), prefix=prefix)
    assert await rotating.rotate() == 2
    await rotating.close()
    only_new = RedisStore(redis_url, cipher=SecretCipher([new_key]), prefix=prefix)
    credentials = await only_new.credentials("tenant-1")
    assert credentials is not None
    assert credentials.shared_secret == "secret-one-" * 4
    token = await only_new.get("installation-1", None)
    assert token is not None
    assert token.token == "tok"
    await only_new.close()


def test_redis_down_is_503_with_a_code_and_no_install_is_lost(tmp_path: Any) -> None:
    require_redis()  # a server of its own, stopped mid-test
    with running_redis(tmp_path) as server:
        url = server.url()
        down: RedisServer = server

        async def install_while_down() -> None:
            store = RedisStore(url, cipher=SecretCipher([KEY]), prefix="down")
            try:
                with pytest.raises(AuthError) as refused:
                    await store.save_install(install_payload("tenant", "s" * 40), signed_at=1)
                assert (refused.value.code, refused.value.status_code) == (AuthErrorCode.STORE_UNAVAILABLE, 503)
                with pytest.raises(AuthError) as forgetting:
                    await store.forget_delivery('["webhook","tenant","1"]', "f")
                assert (forgetting.value.code, forgetting.value.status_code) == (AuthErrorCode.STORE_UNAVAILABLE, 503)
            finally:
                await store.close()

        down.stop()
        asyncio.run(install_while_down())
    with running_redis(tmp_path) as server:  # the product retries the install once Redis is back

        async def retry() -> bool:
            store = RedisStore(server.url(), cipher=SecretCipher([KEY]), prefix="down")
            try:
                await store.save_install(install_payload("tenant", "s" * 40), signed_at=1)
                return await store.credentials("tenant") is not None
            finally:
                await store.close()

        assert asyncio.run(retry())
