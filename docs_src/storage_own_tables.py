"""The store's engine serves your own tables: each issue a webhook announces, logged
for its tenant beside the tenants themselves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from sqlalchemy import Column, Integer, MetaData, String, Table, insert

from fastapi_connect_auth import (
    ConnectAuth,
    ConnectRequest,
    PublicKeyProvider,
    VerifiedRequest,
    lifecycle_router,
)
from fastapi_connect_auth.stores import SecretCipher, Tenant
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore

metadata = MetaData()  # your tables; the store's are in stores.sqlalchemy.metadata
issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("client_key", String(255), nullable=False, index=True),
    Column("issue_key", String(255), nullable=False),
)

WebhookCall = Annotated[
    VerifiedRequest[Tenant], Depends(ConnectRequest(body=dict[str, Any]))
]


def create_app(
    *,
    database_url: str,
    base_url: str,
    encryption_key: str,
    key_provider: PublicKeyProvider | None = None,
) -> FastAPI:
    store = SQLAlchemyStore(database_url, cipher=SecretCipher([encryption_key]))
    connect = ConnectAuth(base_url=base_url, store=store, key_provider=key_provider)
    lifecycle = lifecycle_router(connect, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await store.create_tables()  # in production: Alembic, yours and the store's
        async with store.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        async with connect.lifespan(app):
            yield
        await store.close()

    app = FastAPI(lifespan=lifespan)
    app.state.store = store  # for tests (see storage_testing.py)
    connect.install(app)
    app.include_router(lifecycle)

    @app.get("/atlassian-connect.json")
    async def descriptor() -> dict[str, Any]:
        return {
            "key": "issue-log",
            "baseUrl": base_url,
            "authentication": {"type": "jwt"},
            "lifecycle": lifecycle.lifecycle_urls,
            "apiMigrations": {"signed-install": True},
            "modules": {
                "webhooks": [
                    {"event": "jira:issue_created", "url": "/webhooks/issue-created"}
                ]
            },
        }

    @app.post("/webhooks/issue-created", status_code=204)
    async def issue_created(call: WebhookCall) -> None:
        issue_key = str(call.body.get("issue", {}).get("key", ""))
        # The store's engine and pool, your table: one database, one set of connections.
        async with store.engine.begin() as connection:
            await connection.execute(
                insert(issues).values(client_key=call.client_key, issue_key=issue_key)
            )

    return app


if __name__ == "__main__":
    # Make a key once (`python -m docs_src.storage_own_tables`), keep it in your
    # secrets, give it to the app as a setting: SECRET_ENCRYPTION_KEY=...
    print(SecretCipher.generate_key())
