"""Tenants in the library's SQLAlchemy store, shared secrets encrypted at rest."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI

from fastapi_connect_auth import (
    ConnectAuth,
    ConnectRequest,
    PublicKeyProvider,
    VerifiedRequest,
    lifecycle_router,
)
from fastapi_connect_auth.stores import SecretCipher, Tenant
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore

TenantCall = Annotated[VerifiedRequest[Tenant], Depends(ConnectRequest())]


def create_app(
    *,
    database_url: str,
    encryption_keys: list[bytes],
    base_url: str,
    key_provider: PublicKeyProvider | None = None,
) -> FastAPI:
    # The first key encrypts, every key decrypts: to rotate, put a new key first.
    cipher = SecretCipher(encryption_keys)
    store = SQLAlchemyStore(database_url, cipher=cipher)
    connect = ConnectAuth(base_url=base_url, store=store, key_provider=key_provider)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.create_tables()  # in production: the store's Alembic migrations
        async with connect.lifespan(app):
            yield
        await store.close()

    app = FastAPI(lifespan=lifespan)
    connect.install(app)
    # installed, uninstalled, enabled, disabled: verified, stored, answered 204
    app.include_router(lifecycle_router(connect, store))

    @app.post("/webhooks/issue-created")
    async def issue_created(call: TenantCall) -> dict[str, str]:
        tenant = call.stored_entity  # the store's record of the tenant
        return {"tenant": tenant.base_url if tenant else ""}

    return app
