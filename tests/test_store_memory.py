"""`MemoryStore` passes the store contract (all but the restart: it keeps nothing past its object)."""

from __future__ import annotations

import subprocess
import sys
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


def test_the_core_import_loads_neither_sqlalchemy_nor_redis() -> None:
    probe = (
        "import sys, fastapi_connect_auth, fastapi_connect_auth.stores, fastapi_connect_auth.testing;"
        "print(sorted(name for name in ('sqlalchemy', 'redis', 'alembic') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)  # noqa: S603
    assert result.stdout.strip() == "[]"
