"""Installations in SQLAlchemy, shared secrets encrypted at rest with Fernet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from cryptography.fernet import Fernet, MultiFernet
from fastapi import Depends, FastAPI
from sqlalchemy import JSON, String, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fastapi_connect_auth import (
    ConnectAuth,
    ConnectInstall,
    ConnectLifecycle,
    ConnectRequest,
    Credentials,
    PublicKeyProvider,
    VerifiedInstallation,
    VerifiedLifecycle,
    VerifiedRequest,
)


class Base(DeclarativeBase):
    pass


class Installation(Base):
    __tablename__ = "installations"

    client_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    base_url: Mapped[str] = mapped_column(String(2048))
    encrypted_shared_secret: Mapped[bytes]
    installed: Mapped[bool]
    install: Mapped[dict[str, Any]] = mapped_column(
        JSON
    )  # the latest install body, secret left out


class InstallationStore:
    """Loads and saves tenants; the loader is what `ConnectAuth` calls for every
    request."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], cipher: MultiFernet
    ) -> None:
        self.sessions = sessions
        # MultiFernet: encrypt with the first key, decrypt with any (key rotation)
        self.cipher = cipher

    async def load(self, client_key: str) -> Credentials[Installation] | None:
        async with self.sessions() as session:
            row = await session.get(Installation, client_key)
        if row is None:
            return None  # never installed
        secret = self.cipher.decrypt(row.encrypted_shared_secret).decode()
        # installed=False: its calls are refused, and its clientKey can only be
        # installed again signed
        return Credentials(
            secret, stored_entity=row, base_url=row.base_url, installed=row.installed
        )

    async def save(self, install: VerifiedInstallation[Installation]) -> None:
        record = (
            install.payload.dump_for_storage()
        )  # not model_dump_json: that masks the secret
        secret = record.pop("sharedSecret").encode()
        row = Installation(
            client_key=install.client_key,
            base_url=record["baseUrl"],
            encrypted_shared_secret=self.cipher.encrypt(secret),
            installed=True,
            install=record,
        )
        async with self.sessions.begin() as session:
            await session.merge(row)  # an update replaces the secret at once

    async def uninstall(self, client_key: str) -> None:
        async with self.sessions.begin() as session:
            await session.execute(
                update(Installation)
                .where(Installation.client_key == client_key)
                .values(installed=False)
            )


def create_app(
    *,
    database_url: str,
    encryption_keys: list[bytes],
    base_url: str,
    key_provider: PublicKeyProvider | None = None,
) -> FastAPI:
    engine = create_async_engine(
        database_url, hide_parameters=True
    )  # no secret in an error's message
    store = InstallationStore(
        async_sessionmaker(engine),
        MultiFernet([Fernet(key) for key in encryption_keys]),
    )
    connect = ConnectAuth(
        base_url=base_url, credentials_loader=store.load, key_provider=key_provider
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(
                Base.metadata.create_all
            )  # use migrations (Alembic) in production
        async with connect.lifespan(app):
            yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)
    connect.install(app)

    @app.post("/installed", status_code=204)
    async def installed(
        install: Annotated[VerifiedInstallation, Depends(ConnectInstall())],
    ) -> None:
        await store.save(install)

    @app.post("/uninstalled", status_code=204)
    async def uninstalled(
        event: Annotated[VerifiedLifecycle, Depends(ConnectLifecycle("uninstalled"))],
    ) -> None:
        await store.uninstall(event.client_key)

    @app.post("/webhooks/issue-created")
    async def issue_created(
        call: Annotated[VerifiedRequest[Installation], Depends(ConnectRequest())],
    ) -> dict[str, str]:
        installation = call.stored_entity  # the row the loader returned
        return {"tenant": installation.base_url if installation else ""}

    return app
