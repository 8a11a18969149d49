"""The app's own tables (webhook events, Forge events) in SQLAlchemy; tenants live in the library's store.

`open_stores` opens the library's `SQLAlchemyStore` (tenants, Forge installations,
and tokens and delivery ids unless `REDIS_URL` puts those in a `RedisStore`) and
this app's `Store` of events on the same engine.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import DateTime, String, UniqueConstraint, insert, inspect, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import JSON

from fastapi_connect_auth import AuthErrorCode
from fastapi_connect_auth.stores import BaseStore, Batcher, SecretCipher
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore
from fastapi_connect_auth.stores.sqlalchemy import async_database_url as async_database_url
from fastapi_connect_auth.stores.sqlalchemy import create_engine as store_engine
from fastapi_connect_auth.stores.sqlalchemy import metadata as store_metadata

from .settings import Settings

logger = logging.getLogger("example_app")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Event(Base):
    """A verified webhook, stored for its tenant."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_key: Mapped[str] = mapped_column(String(255), index=True)
    """The tenant's clientKey (`atlassian_tenants.client_key` in the library's store)."""
    event: Mapped[str] = mapped_column(String(255))
    issue_key: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ForgeEvent(Base):
    """A verified Forge product event or trigger; `delivery_key` (its FIT's jti and body) makes a replayed FIT a no-op.

    Forge's retries come with new FITs: the route recognises them first (`remember_forge_event`).
    """

    __tablename__ = "forge_events"
    __table_args__ = (UniqueConstraint("delivery_key", name="uq_forge_events_delivery_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    installation_id: Mapped[str] = mapped_column(String(255), index=True)
    delivery_key: Mapped[str] = mapped_column(String(64))
    module_key: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


def create_engine(database_url: str) -> AsyncEngine:
    """The engine the library's store makes (async driver, fixed pool, parameters hidden), for tools and tests."""
    return store_engine(database_url)


MIGRATIONS = Path(__file__).with_name("alembic.ini")
FIRST_REVISION = "0001"
"""The schema that `Base.metadata.create_all` made before the app had migrations."""
METADATA = [Base.metadata, store_metadata]
"""What the migrations build: this app's tables and the library store's (its own branch, `fastapi_connect_auth`)."""


def migrations_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the app's migrations and the store's; with `connection`, they run on it."""
    config = Config(MIGRATIONS)
    config.attributes["connection"] = connection
    return config


def upgrade_schema(connection: Connection) -> None:
    """Apply every migration not yet applied; a database made before migrations existed is adopted first.

    `heads`: the app's branch and the library store's; the app's revision 0004 moves
    the tenants of its old `installations` table into the store's.
    """
    tables = set(inspect(connection).get_table_names())
    if "installations" in tables and "alembic_version" not in tables:
        command.stamp(migrations_config(connection), FIRST_REVISION)
    command.upgrade(migrations_config(connection), "heads")


def load_cipher(secret_encryption_key: str | None, database_url: str) -> SecretCipher:
    """The keys from the settings (comma-separated, the first encrypting), else a development key file beside SQLite.

    The key file is made once, mode 0600; it is refused if it is a symlink, not the
    running user's, or readable by others.
    """
    if secret_encryption_key:
        return SecretCipher([key.strip() for key in secret_encryption_key.split(",") if key.strip()])
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        raise RuntimeError("Set SECRET_ENCRYPTION_KEY: a development key file is only made beside a SQLite file.")
    key_file = Path(f"{url.database}.key")
    try:
        cipher = SecretCipher.from_key_file(key_file, create=True)
    except PermissionError as exc:
        raise RuntimeError(str(exc)) from None
    logger.warning("SECRET_ENCRYPTION_KEY is not set: using the development key in %s. Set it in production.", key_file)
    return cipher


DATABASE_OUTAGES: tuple[type[Exception], ...] = (OperationalError, InterfaceError, PoolTimeoutError, ConnectionError)
"""Errors that mean the database cannot be reached or written now (locked, down, pool exhausted), not a bug.

`ConnectionError`: asyncpg's refused or reset connections reach the app unwrapped.
"""
OUTAGE_SQLSTATES = ("08", "53", "57", "55P03", "40001", "40P01")
"""PostgreSQL's codes (classes or codes) for the same: connection lost, out of resources, shut down or
cancelled (`statement_timeout`), lock not available (`lock_timeout`), serialization failure, deadlock."""


def is_outage(exc: Exception) -> bool:
    """Whether `exc` is a database outage the product can retry, rather than a bug."""
    if isinstance(exc, DATABASE_OUTAGES):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None) if isinstance(exc, DBAPIError) else None
    return isinstance(sqlstate, str) and sqlstate.startswith(OUTAGE_SQLSTATES)


async def database_error(request: Request, exc: Exception) -> JSONResponse:
    """A 503 the product can retry for an outage: each write is one transaction, so a failed one left nothing.

    Any other database error is a bug: a 500. Either way the log names the error's
    class and SQLSTATE only: SQLAlchemy's message quotes the statement, and the URL's
    query may hold a JWT.
    """
    orig = exc.orig if isinstance(exc, DBAPIError) else None
    sqlstate = getattr(orig, "sqlstate", None)
    cause = type(orig).__name__ + (f", SQLSTATE {sqlstate}" if isinstance(sqlstate, str) else "") if orig else "none"
    outage = is_outage(exc)
    what = "unavailable" if outage else "error"
    logger.error(
        "Database %s during %s %s: %s (cause: %s)", what, request.method, request.url.path, type(exc).__name__, cause
    )
    if not outage:
        return JSONResponse({"detail": "Internal Server Error"}, status_code=500)
    return JSONResponse(  # the library store's own answer to its faults: one contract for both
        {"detail": "The app's store is unavailable; try again later.", "code": AuthErrorCode.STORE_UNAVAILABLE.value},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def answer_database_outages(app: FastAPI) -> None:
    """Answer database errors with `database_error` (a 503 for outages) instead of a bare 500 and a traceback."""
    for error in (DBAPIError, PoolTimeoutError, ConnectionError):
        app.add_exception_handler(error, database_error)


def storable_text(value: object, limit: int = 255) -> str:
    """`value` as text any database keeps: no NUL, no lone surrogate (PostgreSQL refuses both), `limit` long."""
    text = str(value).replace("\x00", "")
    return text.encode("utf-8", "replace").decode("utf-8")[:limit]


class Store:
    """The app's own tables: webhook events and Forge events, on the library store's engine and write queue.

    Under a burst of webhooks the events that arrive together are inserted in one
    transaction (`Batcher`); each request still waits for its own commit. Writes go
    through `SQLAlchemyStore.transaction()`, which on SQLite queues this process's
    writers (the store's and these) on one lock instead of inside SQLite.
    """

    def __init__(self, store: SQLAlchemyStore) -> None:
        self.engine = store.engine
        self.sessions = async_sessionmaker(store.engine, expire_on_commit=False)
        self._transaction = store.transaction
        self._new_events = Batcher(self._insert_events)

    async def migrate(self) -> None:
        """Bring the schema (this app's tables and the library store's) up to date.

        In production run the migrations once per release instead
        (`alembic -c example_app/alembic.ini upgrade heads`) and start with `MIGRATE_ON_START=0`.
        """
        async with self.engine.begin() as connection:
            await connection.run_sync(upgrade_schema)

    async def _insert_events(self, events: list[dict[str, Any]]) -> list[DBAPIError | None]:
        """Insert `events` in one transaction; if the database refuses one of them, insert each on its own.

        A payload PostgreSQL's `json` refuses must fail its own webhook, not those it was batched with.
        """
        try:
            async with self._transaction() as connection:
                await connection.execute(insert(Event), events)
        except DBAPIError as exc:
            if len(events) == 1 or is_outage(exc):
                raise
            return [await self._insert_alone(event) for event in events]
        return [None] * len(events)

    async def _insert_alone(self, event: dict[str, Any]) -> DBAPIError | None:
        try:
            async with self._transaction() as connection:
                await connection.execute(insert(Event), [event])
        except DBAPIError as exc:  # this event's own outcome: those stored before it stay stored
            return exc
        return None

    async def add_event(self, client_key: str, payload: dict[str, Any]) -> None:
        """Store a verified webhook; returns once it is committed."""
        issue = payload.get("issue")
        issue_key = issue.get("key") if isinstance(issue, dict) else None
        await self._new_events.submit(
            {
                "client_key": client_key,
                "event": storable_text(payload.get("webhookEvent", "unknown")),
                "issue_key": storable_text(issue_key) if issue_key is not None else None,
                "payload": payload,
            }
        )

    async def events(self, client_key: str, limit: int = 50) -> list[Event]:
        """The tenant's events, newest first."""
        query = select(Event).where(Event.client_key == client_key).order_by(Event.id.desc()).limit(limit)
        async with self.sessions() as session:
            return list(await session.scalars(query))

    async def add_forge_event(
        self, installation_id: str, delivery_key: str, module_key: str | None, payload: Any
    ) -> bool:
        """Store a verified Forge event once per delivery key; `False` if it was already stored (a redelivery)."""
        event = insert(ForgeEvent).values(
            installation_id=installation_id, delivery_key=delivery_key, module_key=module_key, payload=payload
        )
        try:
            async with self._transaction() as connection:
                await connection.execute(event)
        except IntegrityError:
            return False
        return True

    async def forge_events(
        self, installation_id: str, *, newest_first: bool = False, limit: int = 50
    ) -> list[ForgeEvent]:
        """The installation's Forge events, oldest first (newest first with `newest_first`), at most `limit`."""
        order = ForgeEvent.id.desc() if newest_first else ForgeEvent.id
        query = select(ForgeEvent).where(ForgeEvent.installation_id == installation_id).order_by(order).limit(limit)
        async with self.sessions() as session:
            return list(await session.scalars(query))


@dataclass
class Stores:
    """What the app keeps, opened in its lifespan: the library's stores and this app's events."""

    tenants: SQLAlchemyStore
    """Connect tenants and Forge installations (and tokens and delivery ids without Redis)."""
    forge: BaseStore
    """Forge tokens and delivery ids: a `RedisStore` when `REDIS_URL` is set, else `tenants`."""
    events: Store
    """This app's own tables."""


@asynccontextmanager
async def open_stores(settings: Settings, tenants: SQLAlchemyStore) -> AsyncIterator[Stores]:
    """The app's stores for its lifetime: migrated first (`MIGRATE_ON_START`), closed at the end."""
    forge: BaseStore = tenants
    try:
        events = Store(tenants)
        if settings.migrate_on_start:
            await events.migrate()
        if settings.redis_url:
            from fastapi_connect_auth.stores.redis import RedisStore

            forge = RedisStore(settings.redis_url, cipher=tenants.cipher, prefix=settings.redis_prefix)
        yield Stores(tenants, forge, events)
    finally:
        if forge is not tenants:
            await forge.close()
        await tenants.close()
