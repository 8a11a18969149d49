"""`SQLAlchemyStore`: the library's store on SQLAlchemy 2's asyncio engine (extra `fastapi-connect-auth[sqlalchemy]`).

SQLite through aiosqlite and PostgreSQL through asyncpg (other dialects with an
async driver and `INSERT … ON CONFLICT` may work). Shared secrets and Forge
tokens are encrypted at rest (`SecretCipher`); a statement's parameters never
reach a log or an error (`hide_parameters`). Every write is one atomic statement
or one short transaction, so two replicas on one database agree.

The schema is `metadata` (five tables prefixed `atlassian_`). Create it with
Alembic: add `MIGRATIONS` (`fastapi_connect_auth.stores:migrations`) to your
`version_locations` and `metadata` to your env's `target_metadata`, then
`alembic upgrade heads`; or, in tests and demos, `await store.create_tables()`.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    case,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.event import listen
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

from .._outbound._forge import ForgeStoredToken
from ._base import BaseStore
from ._batching import Batcher
from ._records import (
    ConnectLink,
    ForgeInstallationRecord,
    InstallationState,
    Tenant,
    installation_values,
    link_values,
)
from ._secrets import CipherSource, Encrypting

__all__ = ["MIGRATIONS", "SQLAlchemyStore", "async_database_url", "metadata"]

MIGRATIONS = "fastapi_connect_auth.stores:migrations"
"""The store's Alembic migrations, as a `version_locations` entry (branch label `fastapi_connect_auth`)."""

metadata = MetaData()
"""The store's tables: include it in your Alembic env's `target_metadata`."""

tenants = Table(
    "atlassian_tenants",
    metadata,
    Column("client_key", String(255), primary_key=True),
    Column("base_url", String(2048), nullable=False),
    Column("encrypted_shared_secret", LargeBinary, nullable=False),
    Column("signed_at", Double, nullable=False),
    Column("signed_rank", Integer, nullable=False, server_default="0"),
    Column("installed", Boolean, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("enabled_at", Double, nullable=False, server_default="0"),
    Column("product_type", String(2048)),
    Column("installation_id", String(255), index=True),
    Column("cloud_id", String(255), index=True),
    Column("oauth_client_id", String(2048)),
    Column("payload", JSON, nullable=False),
    Column("installed_at", Double),
    Column("uninstalled_at", Double),
)
installations = Table(
    "atlassian_forge_installations",
    metadata,
    Column("installation_id", String(255), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("contexts", JSON, nullable=False),
    Column("api_base_url", String(2048)),
    Column("app_version", String(2048)),
    Column("installed_at", Double),
    Column("updated_at", Double, nullable=False),
    Column("uninstalled_at", Double),
)
tokens = Table(
    "atlassian_forge_tokens",
    metadata,
    Column("installation_id", String(255), primary_key=True),
    Column("account_id", String(255), primary_key=True),
    Column("encrypted_token", LargeBinary, nullable=False),
    Column("token_hash", String(64), nullable=False),
    Column("api_base_url", String(2048), nullable=False),
    Column("expires_at", Double, nullable=False, index=True),
    Column("received_at", Double, nullable=False),
)
deliveries = Table(
    "atlassian_deliveries",
    metadata,
    Column("key", String(512), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("expires_at", Double, nullable=False),
    Index("ix_atlassian_deliveries_expires_at", "expires_at"),
)
connect_links = Table(
    "atlassian_connect_links",
    metadata,
    Column("installation_id", String(255), primary_key=True),
    Column("client_key", String(255)),
    Column("source", String(16)),
    Column("linked_at", Double),
    Column("attempts", Integer, nullable=False),
    Column("last_outcome", String(32)),
    Column("next_attempt_at", Double, nullable=False),
)

_ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
_SYSTEM = ""
"""`account_id` of the system token in `atlassian_forge_tokens` (a key column cannot be NULL)."""


def async_database_url(url: str) -> str:
    """`sqlite:///…` and `postgresql://…` with their async drivers (aiosqlite, asyncpg); others unchanged."""
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver).render_as_string(hide_password=False) if driver else url


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """WAL, so reads never wait for the writer, and `synchronous=NORMAL`, which WAL makes safe."""
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def create_engine(database_url: str) -> AsyncEngine:
    """An engine for `database_url` as the store wants it: async driver, fixed pool, parameters hidden."""
    url = make_url(async_database_url(database_url))
    on_file = url.get_backend_name() != "sqlite" or url.database not in (None, "", ":memory:")
    pool = {"pool_size": 10, "max_overflow": 0} if on_file else {}
    engine = create_async_engine(url, hide_parameters=True, **pool)
    if engine.dialect.name == "sqlite":
        listen(engine.sync_engine, "connect", _tune_sqlite)
    return engine


class SQLAlchemyStore(BaseStore, Encrypting):
    """The library's store in a SQL database.

    ```python
    store = SQLAlchemyStore("postgresql://…", cipher=SecretCipher([key]))
    connect = ConnectAuth(base_url=…, store=store)
    ```

    * `database`: a URL (`sqlite:///…`, `postgresql://…`; the async driver is
      chosen) or your own `AsyncEngine` (then yours to dispose of).
    * `cipher`: the keys shared secrets and tokens are encrypted with (a
      `SecretCipher`, or a function making one at first use).
    * `purge_every`: expired delivery ids and tokens are deleted every that many writes.
    * Options as for `BaseStore` (`cache_ttl`, …).

    Database faults (down, locked, pool exhausted) answer `STORE_UNAVAILABLE`
    (503); nothing is half written. `engine` is the store's engine, for the app's
    own tables.
    """

    faults: ClassVar[tuple[type[BaseException], ...]] = (SQLAlchemyError, OSError, asyncio.TimeoutError)
    """SQLAlchemy's errors, and the driver's connection errors that reach the app unwrapped."""

    def __init__(
        self, database: str | AsyncEngine, *, cipher: CipherSource, purge_every: int = 1000, **options: Any
    ) -> None:
        BaseStore.__init__(self, **options)
        Encrypting.__init__(self, cipher)
        self._owns_engine = isinstance(database, str)
        self.engine: AsyncEngine = create_engine(database) if isinstance(database, str) else database
        """The store's engine (for the app's own tables too)."""
        self._dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        self._write_lock = asyncio.Lock() if self.engine.dialect.name == "sqlite" else None
        self._installs: Batcher[tuple[str, Executable], bool] | None = (
            Batcher(self._put_tenants) if self._write_lock is not None else None
        )
        self._writes_since_purge = 0
        self.purge_every = purge_every
        """Every that many token and delivery writes, the expired ones are deleted."""

    def __repr__(self) -> str:
        return f"SQLAlchemyStore({self.engine.url.render_as_string(hide_password=True)!r})"

    async def create_tables(self) -> None:
        """Create the store's tables if missing (tests, demos; use the migrations in production)."""
        async with self._reaching("creating the tables"), self.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)

    async def close(self) -> None:
        """Dispose of the engine, if the store made it."""
        if self._owns_engine:
            await self.engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction on the store's engine, for the app's own tables too.

        On SQLite, which takes one writer at a time, this process's writers (the store's
        and the app's) queue on one asyncio lock: waiting there costs nothing, while
        writers colliding inside SQLite back off in its busy handler's sleeps.
        """
        if self._write_lock is None:
            async with self.engine.begin() as connection:
                yield connection
            return
        async with self._write_lock, self.engine.begin() as connection:
            yield connection

    # -- tenants -------------------------------------------------------------------------------

    def _tenant(self, row: Any, *, decrypt: bool = True) -> Tenant:
        return Tenant(
            client_key=row.client_key,
            base_url=row.base_url,
            shared_secret=self.cipher.decrypt(row.encrypted_shared_secret) if decrypt else "",
            signed_at=row.signed_at,
            signed_rank=row.signed_rank,
            installed=row.installed,
            enabled=row.enabled,
            enabled_at=row.enabled_at,
            product_type=row.product_type,
            installation_id=row.installation_id,
            cloud_id=row.cloud_id,
            oauth_client_id=row.oauth_client_id,
            payload=row.payload or {},
            installed_at=row.installed_at,
            uninstalled_at=row.uninstalled_at,
        )

    async def _get_tenant(self, client_key: str) -> Tenant | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(select(tenants).where(tenants.c.client_key == client_key))).first()
        return self._tenant(row) if row is not None else None

    async def _get_tenants(self, client_keys: Sequence[str]) -> Mapping[str, Tenant]:
        """The tenants of `client_keys` in one query."""
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(tenants).where(tenants.c.client_key.in_(client_keys)))).all()
        return {row.client_key: self._tenant(row) for row in rows}

    async def _put_tenant(self, tenant: Tenant, *, create_only: bool = False) -> bool:
        values = {
            "client_key": tenant.client_key,
            "base_url": tenant.base_url,
            "encrypted_shared_secret": self.cipher.encrypt(tenant.shared_secret),
            "signed_at": tenant.signed_at,
            "signed_rank": tenant.signed_rank,
            "installed": tenant.installed,
            "enabled": tenant.enabled,
            "enabled_at": tenant.enabled_at,
            "product_type": tenant.product_type,
            "installation_id": tenant.installation_id,
            "cloud_id": tenant.cloud_id,
            "oauth_client_id": tenant.oauth_client_id,
            "payload": dict(tenant.payload),
            "installed_at": tenant.installed_at,
            "uninstalled_at": tenant.uninstalled_at,
        }
        insert = self._dialect.insert(tenants).values(values)
        if create_only:
            statement = insert.on_conflict_do_nothing(index_elements=[tenants.c.client_key])
        else:
            kept = ("client_key", "installed_at", "uninstalled_at", "enabled", "enabled_at")
            changed: dict[str, Any] = {name: insert.excluded[name] for name in values if name not in kept}
            enabled_later = tenants.c.enabled_at > insert.excluded.signed_at  # the SET reads the kept row
            changed["enabled"] = case((enabled_later, tenants.c.enabled), else_=insert.excluded.enabled)
            changed["enabled_at"] = case((enabled_later, tenants.c.enabled_at), else_=insert.excluded.enabled_at)
            statement = insert.on_conflict_do_update(
                index_elements=[tenants.c.client_key],
                set_=changed,
                where=_not_outranked(insert.excluded.signed_at, insert.excluded.signed_rank),
            )
        statement = statement.returning(tenants.c.client_key)
        if self._installs is not None:
            return await self._installs.submit((tenant.client_key, statement))
        async with self.transaction() as connection:
            return (await connection.execute(statement)).first() is not None

    async def _put_tenants(self, installs: list[tuple[str, Executable]]) -> list[bool]:
        """Run the installs that arrived together in one transaction, in arrival order: group commit on SQLite.

        SQLite takes one writer at a time, so installs one transaction each queue on
        the write lock, every one paying its own begin, commit and thread hops. Run in
        order in one transaction, each upsert sees the ones before it as if they had
        committed first (two installs of one tenant resolve as they would one after
        the other), and keeps its own result; a fault rolls back the whole group and
        fails each of its installs (503), so none is half written. The cache forgets each
        tenant here, once committed, even if its caller has since given up.
        """
        async with self.transaction() as connection:
            written = [(await connection.execute(statement)).first() is not None for _, statement in installs]
        for client_key, _ in installs:
            self._forget(client_key)
        return written

    async def _uninstall_tenant(self, client_key: str, signed_at: float, rank: int, now: float) -> bool:
        statement = (
            update(tenants)
            .where(tenants.c.client_key == client_key, _not_outranked(signed_at, rank))
            .values(installed=False, uninstalled_at=now, signed_at=signed_at, signed_rank=rank)
        )
        async with self.transaction() as connection:
            return (await connection.execute(statement)).rowcount > 0

    async def _enable_tenant(self, client_key: str, enabled: bool, signed_at: float) -> bool:
        statement = (
            update(tenants)
            .where(tenants.c.client_key == client_key, tenants.c.installed, tenants.c.enabled_at <= signed_at)
            .values(enabled=enabled, enabled_at=signed_at)
        )
        async with self.transaction() as connection:
            return (await connection.execute(statement)).rowcount > 0

    async def _find_tenants(self, installation_id: str, cloud_id: str | None) -> list[Tenant]:
        match = tenants.c.installation_id == installation_id
        if cloud_id is not None:
            match = or_(match, tenants.c.cloud_id == cloud_id)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(tenants).where(match).order_by(tenants.c.client_key))).all()
        return [self._tenant(row) for row in rows]

    async def _rotate(self) -> int:
        """Re-encrypt every secret and token with the first key, a row at a time (each row its own write)."""
        rotated = 0
        for table, keys, column in (
            (tenants, ("client_key",), "encrypted_shared_secret"),
            (tokens, ("installation_id", "account_id"), "encrypted_token"),
        ):
            async with self.engine.connect() as connection:
                rows = (await connection.execute(select(*(table.c[key] for key in keys), table.c[column]))).all()
            for row in rows:
                match = [table.c[key] == getattr(row, key) for key in keys]
                rotate = (
                    update(table)
                    .where(*match, table.c[column] == row[-1])
                    .values({column: self.cipher.rotate(row[-1])})
                )
                async with self.transaction() as connection:
                    rotated += (await connection.execute(rotate)).rowcount
        return rotated

    # -- Forge installations --------------------------------------------------------------------

    async def _get_installation(self, installation_id: str) -> ForgeInstallationRecord | None:
        query = select(installations).where(installations.c.installation_id == installation_id)
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return _installation(row) if row is not None else None

    async def _put_installation(self, record: ForgeInstallationRecord) -> bool:
        values = installation_values(record)
        insert = self._dialect.insert(installations).values(values)
        statement = insert.on_conflict_do_update(
            index_elements=[installations.c.installation_id],
            set_={name: insert.excluded[name] for name in values if name != "installation_id"},
            where=installations.c.state != "uninstalled",
        ).returning(installations.c.installation_id)
        async with self.transaction() as connection:
            return (await connection.execute(statement)).first() is not None

    # -- Forge tokens ----------------------------------------------------------------------------

    async def _get_token(self, installation_id: str, account_id: str | None) -> ForgeStoredToken | None:
        query = select(tokens).where(
            tokens.c.installation_id == installation_id, tokens.c.account_id == (account_id or _SYSTEM)
        )
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).first()
        if row is None:
            return None
        return ForgeStoredToken(
            self.cipher.decrypt(row.encrypted_token), row.api_base_url, row.expires_at, row.received_at
        )

    async def _put_token(self, installation_id: str, account_id: str | None, token: ForgeStoredToken) -> None:
        insert = self._dialect.insert(tokens).values(
            installation_id=installation_id,
            account_id=account_id or _SYSTEM,
            encrypted_token=self.cipher.encrypt(token.token),
            token_hash=_digest(token.token),
            api_base_url=token.api_base_url,
            expires_at=token.expires_at,
            received_at=token.received_at,
        )
        statement = insert.on_conflict_do_update(
            index_elements=[tokens.c.installation_id, tokens.c.account_id],
            set_={
                name: insert.excluded[name]
                for name in ("encrypted_token", "token_hash", "api_base_url", "expires_at", "received_at")
            },
            where=or_(tokens.c.received_at <= insert.excluded.received_at, tokens.c.expires_at <= self.clock()),
        )
        async with self.transaction() as connection:
            await connection.execute(statement)
        await self._purge_now_and_then()

    async def _discard_token(self, installation_id: str, account_id: str | None, token: str) -> None:
        statement = delete(tokens).where(
            tokens.c.installation_id == installation_id,
            tokens.c.account_id == (account_id or _SYSTEM),
            tokens.c.token_hash == _digest(token),
        )
        async with self.transaction() as connection:
            await connection.execute(statement)

    # -- delivery ids -------------------------------------------------------------------------------

    async def _remember_delivery(self, key: str, fingerprint: str, expires_at: float) -> str | None:
        insert = self._dialect.insert(deliveries).values(key=key, fingerprint=fingerprint, expires_at=expires_at)
        statement = insert.on_conflict_do_update(
            index_elements=[deliveries.c.key],
            set_={"fingerprint": insert.excluded.fingerprint, "expires_at": insert.excluded.expires_at},
            where=deliveries.c.expires_at <= self.clock(),
        ).returning(deliveries.c.key)
        async with self.transaction() as connection:
            if (await connection.execute(statement)).first() is not None:
                kept = None
            else:
                query = select(deliveries.c.fingerprint).where(deliveries.c.key == key)
                kept = (await connection.execute(query)).scalar_one()
        await self._purge_now_and_then()
        return kept

    async def _forget_delivery(self, key: str, fingerprint: str) -> bool:
        statement = delete(deliveries).where(deliveries.c.key == key, deliveries.c.fingerprint == fingerprint)
        async with self.transaction() as connection:
            return bool((await connection.execute(statement)).rowcount)

    async def _purge_now_and_then(self) -> None:
        """Every thousand writes, delete the expired delivery ids and tokens, so the tables stay small."""
        self._writes_since_purge += 1
        if self._writes_since_purge < self.purge_every:
            return
        self._writes_since_purge = 0
        now = self.clock()
        async with self.transaction() as connection:
            await connection.execute(delete(deliveries).where(deliveries.c.expires_at <= now))
            await connection.execute(delete(tokens).where(tokens.c.expires_at <= now))

    # -- Connect links --------------------------------------------------------------------------------

    async def _get_link(self, installation_id: str) -> ConnectLink | None:
        query = select(connect_links).where(connect_links.c.installation_id == installation_id)
        async with self.engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return _link(row) if row is not None else None

    async def _claim_link(self, installation_id: str, now: float, until: float) -> bool:
        insert = self._dialect.insert(connect_links).values(
            installation_id=installation_id, attempts=1, next_attempt_at=until
        )
        statement = insert.on_conflict_do_update(
            index_elements=[connect_links.c.installation_id],
            set_={"attempts": connect_links.c.attempts + 1, "next_attempt_at": insert.excluded.next_attempt_at},
            where=and_(connect_links.c.source.is_(None), connect_links.c.next_attempt_at <= now),
        ).returning(connect_links.c.installation_id)
        async with self.transaction() as connection:
            return (await connection.execute(statement)).first() is not None

    async def _put_link(self, link: ConnectLink) -> None:
        values = {**link_values(link), "next_attempt_at": link.next_attempt_at}
        insert = self._dialect.insert(connect_links).values(
            installation_id=link.installation_id, attempts=link.attempts, **values
        )
        statement = insert.on_conflict_do_update(
            index_elements=[connect_links.c.installation_id],
            set_={name: insert.excluded[name] for name in values},
            where=None if link.verified else connect_links.c.source.is_(None),
        )
        async with self.transaction() as connection:
            await connection.execute(statement)

    async def _list_links(self) -> list[ConnectLink]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(connect_links))).all()
        return [_link(row) for row in rows]

    async def _list_tenants(self) -> list[Tenant]:
        """Every tenant, its secret left out of the query (a report opens the store without a key)."""
        columns = [column for column in tenants.c if column.name != "encrypted_shared_secret"]
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(*columns))).all()
        return [self._tenant(row, decrypt=False) for row in rows]

    async def _list_installations(self) -> list[ForgeInstallationRecord]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(select(installations))).all()
        return [_installation(row) for row in rows]


def _installation(row: Any) -> ForgeInstallationRecord:
    state: InstallationState = "uninstalled" if row.state == "uninstalled" else "installed"
    return ForgeInstallationRecord(
        installation_id=row.installation_id,
        state=state,
        contexts=tuple(row.contexts),
        api_base_url=row.api_base_url,
        app_version=row.app_version,
        installed_at=row.installed_at,
        updated_at=row.updated_at,
        uninstalled_at=row.uninstalled_at,
    )


def _link(row: Any) -> ConnectLink:
    return ConnectLink(
        installation_id=row.installation_id,
        client_key=row.client_key,
        source=row.source,
        linked_at=row.linked_at,
        attempts=row.attempts,
        last_outcome=row.last_outcome,
        next_attempt_at=row.next_attempt_at,
    )


def _not_outranked(signed_at: Any, rank: Any) -> Any:
    """The kept tenant's `(signed_at, signed_rank)` is not above `(signed_at, rank)` (`outranks`, in SQL)."""
    return or_(tenants.c.signed_at < signed_at, and_(tenants.c.signed_at == signed_at, tenants.c.signed_rank <= rank))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
