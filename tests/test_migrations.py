"""The example app's Alembic migrations, on SQLite and PostgreSQL: from empty, down and up again, adopting old data.

Two branches: the app's own tables and the library store's (`fastapi_connect_auth`).
"Matches the models" is Alembic's own autogenerate comparison between the migrated
database and both `MetaData`s: an empty diff means no migration is missing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from example_app.db import FIRST_REVISION, METADATA, create_engine, load_cipher, migrations_config, upgrade_schema
from fastapi_connect_auth.stores import SecretCipher
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore
from tests.postgres import Database

ROOT = Path(__file__).resolve().parent.parent
TABLES = {
    "events",
    "forge_events",
    "atlassian_tenants",
    "atlassian_forge_installations",
    "atlassian_forge_tokens",
    "atlassian_deliveries",
    "atlassian_connect_links",
}
HEADS = {("0004",), ("fca0003",)}  # the app's branch (0004 depends on fca0001) and the store's (fca0003)


def on(database: Database, work: Any) -> Any:
    """Run `work(connection)` in one transaction on the database, through the app's engine."""

    async def run() -> Any:
        engine = create_engine(database.url)
        try:
            async with engine.begin() as connection:
                return await connection.run_sync(work)
        finally:
            await engine.dispose()

    return anyio.run(run)


def schema_diff(connection: Connection) -> list[Any]:
    return compare_metadata(MigrationContext.configure(connection), METADATA)  # type: ignore[arg-type]


def tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def test_an_empty_database_is_migrated_to_the_models(database: Database) -> None:
    on(database, upgrade_schema)
    assert on(database, tables) == TABLES
    assert on(database, schema_diff) == []
    assert set(database.rows("SELECT version_num FROM alembic_version")) == HEADS


def test_a_downgrade_and_upgrade_round_trip(database: Database) -> None:
    on(database, upgrade_schema)
    on(database, lambda connection: command.downgrade(migrations_config(connection), "base"))
    assert on(database, tables) == set()
    on(database, lambda connection: command.upgrade(migrations_config(connection), "heads"))
    on(database, lambda connection: command.downgrade(migrations_config(connection), "0003"))
    assert "installations" in on(database, tables)
    on(database, upgrade_schema)
    assert on(database, schema_diff) == []
    on(database, upgrade_schema)  # already at head: nothing to do
    assert set(database.rows("SELECT version_num FROM alembic_version")) == HEADS


def test_a_database_made_before_migrations_is_adopted_with_its_data(database: Database) -> None:
    # What the app made before it had migrations: revision 0001's tables, with no record of a revision.
    on(database, lambda connection: command.upgrade(migrations_config(connection), FIRST_REVISION))
    database.rows("DROP TABLE alembic_version")
    database.rows(
        "INSERT INTO installations VALUES ('tenant', 'https://t.atlassian.net', 'x', true, true, '2026-01-01')"
    )
    on(database, upgrade_schema)
    assert database.rows("SELECT client_key FROM atlassian_tenants") == [("tenant",)]
    assert set(database.rows("SELECT version_num FROM alembic_version")) == HEADS


def example_app_database_before_the_library_store(database: Database, key: str) -> None:
    """A database as the example app kept it until revision 0003: tenants in `installations`, with their events."""
    on(database, lambda connection: command.upgrade(migrations_config(connection), "0003"))
    secret = load_cipher(key, database.url).encrypt("the-shared-secret-of-the-tenant-" * 2)
    for client_key, installed, installation_id in (("jira-a", 1, "ari:installation/a"), ("jira-b", 0, None)):
        hexed = secret.hex()
        literal = f"X'{hexed}'" if database.server is None else f"'\\x{hexed}'::bytea"
        database.rows(
            "INSERT INTO installations (client_key, base_url, encrypted_shared_secret, installed, enabled, updated_at,"
            f" installation_id, cloud_id, oauth_client_id) VALUES ('{client_key}', 'https://{client_key}.atlassian.net',"
            f" {literal}, {'true' if installed else 'false'}, true, '2026-01-01 00:00:00+00',"
            f" {repr(installation_id) if installation_id else 'NULL'}, 'cloud-1', 'oauth-1')"
        )
    database.rows(
        "INSERT INTO events (client_key, event, issue_key, payload, received_at)"
        " VALUES ('jira-a', 'jira:issue_created', 'K-1', '{}', '2026-01-01 00:00:00+00')"
    )


def test_an_example_app_database_from_before_the_library_store_keeps_its_tenants_and_events(database: Database) -> None:
    key = SecretCipher.generate_key()
    example_app_database_before_the_library_store(database, key)
    on(database, upgrade_schema)
    assert on(database, tables) == TABLES
    assert on(database, schema_diff) == []
    assert database.rows("SELECT client_key FROM events") == [("jira-a",)]

    async def read() -> list[tuple[object, ...]]:
        store = SQLAlchemyStore(database.url, cipher=SecretCipher([key]))
        try:
            found = [await store.tenant(client_key) for client_key in ("jira-a", "jira-b")]
        finally:
            await store.close()
        return [(t.shared_secret, t.installed, t.installation_id, t.oauth_client_id) for t in found if t is not None]

    secret = "the-shared-secret-of-the-tenant-" * 2
    assert anyio.run(read) == [(secret, True, "ari:installation/a", "oauth-1"), (secret, False, None, "oauth-1")]

    on(database, lambda connection: command.downgrade(migrations_config(connection), "0003"))  # and back again
    assert database.rows("SELECT client_key, installed FROM installations ORDER BY client_key") in (
        [("jira-a", 1), ("jira-b", 0)],
        [("jira-a", True), ("jira-b", False)],
    )
    assert database.rows("SELECT count(*) FROM atlassian_tenants") == [(0,)]
    on(database, upgrade_schema)
    assert anyio.run(read) == [(secret, True, "ari:installation/a", "oauth-1"), (secret, False, None, "oauth-1")]


def test_the_production_command_migrates_database_url(database: Database) -> None:
    """`alembic -c example_app/alembic.ini upgrade heads`, as docs/storage.md tells operators to run it."""
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", "example_app/alembic.ini", "upgrade", "heads"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database.url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert on(database, tables) == TABLES
    assert on(database, schema_diff) == []
