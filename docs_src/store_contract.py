"""Check a store against the library's contract: here the SQLAlchemy store on SQLite.

Put a class like this in your tests (pytest collects `Test…` classes); for your own
store, open yours in `open_store`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from fastapi_connect_auth.stores import BaseStore, SecretCipher
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore
from fastapi_connect_auth.testing import StoreContract

KEY = SecretCipher.generate_key()


class TestMyStore(StoreContract):
    persistent = True  # a new store object on the same database sees everything

    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'store.db'}"

    @asynccontextmanager
    async def open_store(self) -> AsyncIterator[BaseStore]:
        """Each call: a new store object on this test's database."""
        store = SQLAlchemyStore(self.url, cipher=SecretCipher([KEY]))
        await store.create_tables()
        try:
            yield store
        finally:
            await store.close()
