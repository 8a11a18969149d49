"""`MemoryStore` passes the store contract (all but the restart: it keeps nothing past its object)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from fastapi_connect_auth.stores import BaseStore, MemoryStore
from fastapi_connect_auth.testing import StoreContract


class TestMemoryStore(StoreContract):
    persistent = False

    @pytest.fixture(autouse=True)
    def _store(self) -> None:
        self.store = MemoryStore()

    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[BaseStore]:
        yield self.store
