"""`MemoryStore` passes the store contract (all but the restart: it keeps nothing past its object)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import pytest

from fastapi_connect_auth.stores import BaseStore, MemoryStore, Tenant
from fastapi_connect_auth.testing import StoreContract, install_payload


class TestMemoryStore(StoreContract):
    persistent = False

    @pytest.fixture(autouse=True)
    def _store(self) -> None:
        self.store = MemoryStore()

    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[BaseStore]:
        yield self.store


def test_the_core_import_loads_neither_sqlalchemy_nor_redis() -> None:
    probe = (
        "import sys, fastapi_connect_auth, fastapi_connect_auth.stores, fastapi_connect_auth.testing;"
        "print(sorted(name for name in ('sqlalchemy', 'redis', 'alembic') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)  # noqa: S603
    assert result.stdout.strip() == "[]"


class CountingStore(MemoryStore):
    """A `MemoryStore` that records each batched read it is asked for."""

    reads: list[list[str]]

    async def _get_tenants(self, client_keys: Sequence[str]) -> Mapping[str, Tenant]:
        self.reads.append(list(client_keys))
        await asyncio.sleep(0.01)  # the next callers arrive while this read is in flight
        return await super()._get_tenants(client_keys)


@pytest.mark.anyio
async def test_misses_that_arrive_together_share_one_read_and_hits_read_nothing() -> None:
    store = CountingStore(cache_ttl=60)
    store.reads = []
    for key in ("a", "b"):
        await store.save_install(install_payload(key, key * 40), signed_at=1)
    found = await asyncio.gather(*(store.credentials(key) for key in ["a", "b", "a", "zz"] * 10))
    assert [credentials.shared_secret if credentials else None for credentials in found[:4]] == [
        "a" * 40,
        "b" * 40,
        "a" * 40,
        None,
    ]
    assert len(store.reads) <= 2
    assert sorted(store.reads[0]) == ["a", "b", "zz"]  # each key once
    store.reads.clear()
    await asyncio.gather(*(store.credentials(key) for key in ["a", "b", "zz"] * 10))
    assert store.reads == []
    assert store.cache_stats.hit_rate > 0.4
