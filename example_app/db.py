"""Installations and webhook events in SQLAlchemy; shared secrets encrypted at rest with Fernet."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from cryptography.fernet import Fernet, InvalidToken
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import DateTime, ForeignKey, String, UniqueConstraint, insert, inspect, or_, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.event import listen
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import JSON

from fastapi_connect_auth import Credentials, InstallPayload

from .batching import Batcher

logger = logging.getLogger("example_app")

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Installation(Base):
    """A tenant. Uninstalling keeps the row (and its events) but stops it authenticating."""

    __tablename__ = "installations"

    client_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    base_url: Mapped[str] = mapped_column(String(2048))
    encrypted_shared_secret: Mapped[bytes]
    installed: Mapped[bool] = mapped_column(default=True)
    enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now, onupdate=_now)
    installation_id: Mapped[str | None] = mapped_column(String(255), index=True)
    """Connect on Forge: the Forge installation (`installationId` of `installed`), as FITs name it."""
    cloud_id: Mapped[str | None] = mapped_column(String(255), index=True)
    oauth_client_id: Mapped[str | None] = mapped_column(String(255))
    """The app's OAuth client id on this tenant (`oauthClientId` of `installed`): needed to act as a user."""


class Event(Base):
    """A verified webhook, stored for its tenant."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    client_key: Mapped[str] = mapped_column(ForeignKey("installations.client_key"), index=True)
    event: Mapped[str] = mapped_column(String(255))
    issue_key: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


class ForgeEvent(Base):
    """A verified Forge product event or trigger; `delivery_key` (its FIT's jti and body) makes a redelivery a no-op."""

    __tablename__ = "forge_events"
    __table_args__ = (UniqueConstraint("delivery_key", name="uq_forge_events_delivery_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    installation_id: Mapped[str] = mapped_column(String(255), index=True)
    delivery_key: Mapped[str] = mapped_column(String(64))
    module_key: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)


def async_database_url(url: str) -> str:
    """`sqlite:///…` and `postgresql://…` with their async drivers (aiosqlite, asyncpg); others unchanged."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False) if driver else url


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """WAL, so reads never wait for the writer, and `synchronous=NORMAL`, which WAL makes safe.

    In WAL mode `NORMAL` syncs at checkpoints instead of at every commit: the database
    cannot be corrupted, though the last commits before a power cut may be rolled back.
    """
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def create_engine(database_url: str) -> AsyncEngine:
    """The app's one engine for `database_url` (`sqlite:///…` or `postgresql://…`).

    `hide_parameters`: a database error's message never quotes the statement's
    parameters, which include encrypted shared secrets and tenants' payloads.
    """
    url = make_url(async_database_url(database_url))
    # A fixed pool: with overflow connections, a burst opens and closes a connection (for aiosqlite, a thread)
    # per request beyond the pool. In-memory SQLite has a single connection of its own.
    on_file = url.get_backend_name() != "sqlite" or url.database not in (None, "", ":memory:")
    pool = {"pool_size": 10, "max_overflow": 0} if on_file else {}
    engine = create_async_engine(url, hide_parameters=True, **pool)
    if engine.dialect.name == "sqlite":
        listen(engine.sync_engine, "connect", _tune_sqlite)
    return engine


MIGRATIONS = Path(__file__).with_name("alembic.ini")
FIRST_REVISION = "0001"
"""The schema that `Base.metadata.create_all` made before the app had migrations."""


def migrations_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration for the app's migrations; with `connection`, they run on it."""
    config = Config(MIGRATIONS)
    config.attributes["connection"] = connection
    return config


def upgrade_schema(connection: Connection) -> None:
    """Apply every migration not yet applied; a database made before migrations existed is adopted first."""
    tables = set(inspect(connection).get_table_names())
    if "installations" in tables and "alembic_version" not in tables:
        command.stamp(migrations_config(connection), FIRST_REVISION)
    command.upgrade(migrations_config(connection), "head")


def load_cipher(secret_encryption_key: str | None, database_url: str) -> Fernet:
    """The Fernet key from the settings, else a development key kept in a file beside the SQLite database."""
    if secret_encryption_key:
        return Fernet(secret_encryption_key)
    url = make_url(database_url)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        raise RuntimeError("Set SECRET_ENCRYPTION_KEY: a development key file is only made beside a SQLite file.")
    key_file = Path(f"{url.database}.key")
    try:  # created once, readable by its owner only; another worker may have just made it
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "wb") as file:
            file.write(Fernet.generate_key())
    logger.warning("SECRET_ENCRYPTION_KEY is not set: using the development key in %s. Set it in production.", key_file)
    return Fernet(read_key_file(key_file))


def read_key_file(key_file: Path) -> bytes:
    """The development key, refused if it is a symlink (planted elsewhere) or others could read it."""
    try:
        descriptor = os.open(key_file, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RuntimeError(f"The development key file {key_file} is a symlink: refusing it.") from None
        raise
    with os.fdopen(descriptor, "rb") as file:
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode) or status.st_mode & 0o077:
            raise RuntimeError(
                f"The development key file {key_file} must be a regular file readable by its owner only "
                f"(chmod 600 {key_file}); it is mode {stat.S_IMODE(status.st_mode):o}."
            )
        return file.read()


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
    return JSONResponse(
        {"detail": "The database is unavailable; try again later.", "code": "DATABASE_UNAVAILABLE"},
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
    """Tenants and their events. `credentials` is the library's credentials loader.

    One engine for the app's lifetime, one short transaction per write. Under a burst
    of webhooks, the tenants wanted at the same moment are read in one query and the
    events that arrive together are inserted in one transaction (`Batcher`); each
    request still waits for its own read or commit. SQLite takes one writer at a
    time, so on SQLite this process's writes queue on an asyncio lock: waiting there
    costs nothing, while writers colliding inside SQLite back off in its busy
    handler's sleeps (seconds at the tail, under a burst).
    """

    def __init__(self, database_url: str, secret_encryption_key: str | None) -> None:
        self.database_url = database_url
        self.secret_encryption_key = secret_encryption_key
        self._engine: AsyncEngine | None = None
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._cipher: Fernet | None = None
        self._write_lock: asyncio.Lock | None = None
        self._installations = Batcher(self._load_installations)
        self._new_events = Batcher(self._insert_events)

    async def open(self, *, migrate: bool = True) -> None:
        """Load the encryption key, connect and, with `migrate`, bring the schema up to date.

        In production run the migrations once per release instead
        (`alembic -c example_app/alembic.ini upgrade head`) and start with `MIGRATE_ON_START=0`.
        """
        self._cipher = load_cipher(self.secret_encryption_key, self.database_url)
        self._engine = create_engine(self.database_url)
        if self._engine.dialect.name == "sqlite":
            self._write_lock = asyncio.Lock()
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)
        if migrate:
            async with self._engine.begin() as connection:
                await connection.run_sync(upgrade_schema)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        if self._sessions is None:
            raise RuntimeError("The store is not open: it opens in the app's lifespan.")
        return self._sessions

    @property
    def cipher(self) -> Fernet:
        if self._cipher is None:
            raise RuntimeError("The store is not open: it opens in the app's lifespan.")
        return self._cipher

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in one write transaction, committed at the end (after the SQLite write lock, if any)."""
        if self._write_lock is None:
            async with self.sessions.begin() as session:
                yield session
            return
        async with self._write_lock, self.sessions.begin() as session:
            yield session

    async def _load_installations(self, client_keys: list[str]) -> list[Installation | None]:
        query = select(Installation).where(Installation.client_key.in_(set(client_keys)))
        async with self.sessions() as session:
            rows = {row.client_key: row for row in await session.scalars(query)}
        return [rows.get(client_key) for client_key in client_keys]

    async def _insert_events(self, events: list[dict[str, Any]]) -> list[DBAPIError | None]:
        """Insert `events` in one transaction; if the database refuses one of them, insert each on its own.

        A payload PostgreSQL's `json` refuses (a NaN) must fail its own webhook, not those it was batched with.
        """
        try:
            async with self._transaction() as session:
                await session.execute(insert(Event), events)
        except DBAPIError as exc:
            if len(events) == 1 or is_outage(exc):
                raise
            return [await self._insert_alone(event) for event in events]
        return [None] * len(events)

    async def _insert_alone(self, event: dict[str, Any]) -> DBAPIError | None:
        try:
            async with self._transaction() as session:
                await session.execute(insert(Event), [event])
        except DBAPIError as exc:  # this event's own outcome: those stored before it stay stored
            return exc
        return None

    async def credentials(self, client_key: str) -> Credentials[Installation] | None:
        """The tenant's credentials, `installed=False` once it uninstalled; `None` if never seen.

        An uninstalled tenant is still known: the library refuses its calls, and a new
        install for its clientKey must be signed (never accepted unsigned as a newcomer).
        """
        row = await self._installations.submit(client_key)
        if row is None:
            return None
        try:
            secret = self.cipher.decrypt(row.encrypted_shared_secret).decode()
        except InvalidToken:
            logger.error("Cannot decrypt the shared secret of a tenant: was SECRET_ENCRYPTION_KEY changed?")
            return None  # refused as unknown; this app takes signed installs only, so none is re-claimed unsigned
        return Credentials(secret, stored_entity=row, base_url=row.base_url, installed=row.installed)

    async def save_installation(self, payload: InstallPayload) -> None:
        """Insert or update the tenant; its new shared secret replaces the old one at once."""
        record = payload.dump_for_storage()  # the secret in clear, to encrypt (model_dump_json masks it)
        secret = self.cipher.encrypt(record["sharedSecret"].encode())
        async with self._transaction() as session:
            row = await session.get(Installation, payload.client_key)
            if row is None:
                row = Installation(client_key=payload.client_key)
                session.add(row)
            row.base_url, row.encrypted_shared_secret = record["baseUrl"], secret
            row.installation_id, row.cloud_id = payload.installation_id, payload.cloud_id
            row.oauth_client_id = payload.oauth_client_id
            row.installed = row.enabled = True

    async def set_state(self, client_key: str, *, installed: bool | None = None, enabled: bool | None = None) -> None:
        async with self._transaction() as session:
            row = await session.get(Installation, client_key)
            if row is not None:
                row.installed = row.installed if installed is None else installed
                row.enabled = row.enabled if enabled is None else enabled

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

    async def connect_tenant(self, installation_id: str, cloud_id: str | None) -> Installation | None:
        """The installed Connect tenant of a Forge invocation: by installation id, else by cloud id."""
        match = Installation.installation_id == installation_id
        if cloud_id:
            match = or_(match, Installation.cloud_id == cloud_id)
        query = select(Installation).where(match, Installation.installed)
        async with self.sessions() as session:
            rows = list(await session.scalars(query))
        return next((row for row in rows if row.installation_id == installation_id), rows[0] if rows else None)

    async def add_forge_event(
        self, installation_id: str, delivery_key: str, module_key: str | None, payload: Any
    ) -> bool:
        """Store a verified Forge event once per delivery key; `False` if it was already stored (a redelivery)."""
        event = ForgeEvent(
            installation_id=installation_id, delivery_key=delivery_key, module_key=module_key, payload=payload
        )
        try:
            async with self._transaction() as session:
                session.add(event)
        except IntegrityError:
            return False
        return True

    async def forge_events(self, installation_id: str) -> list[ForgeEvent]:
        query = select(ForgeEvent).where(ForgeEvent.installation_id == installation_id).order_by(ForgeEvent.id)
        async with self.sessions() as session:
            return list(await session.scalars(query))
