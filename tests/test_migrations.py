"""The example app's Alembic migrations, on SQLite and PostgreSQL: from empty, down and up again, adopting old data.

"Matches the models" is Alembic's own autogenerate comparison between the migrated
database and `Base.metadata`: an empty diff means no migration is missing.
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

from example_app.db import FIRST_REVISION, Base, create_engine, migrations_config, upgrade_schema
from tests.postgres import Database

ROOT = Path(__file__).resolve().parent.parent
TABLES = {"installations", "events", "forge_events"}
HEAD = "0003"


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
    return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def test_an_empty_database_is_migrated_to_the_models(database: Database) -> None:
    on(database, upgrade_schema)
    assert on(database, tables) == TABLES
    assert on(database, schema_diff) == []
    assert database.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]


def test_a_downgrade_and_upgrade_round_trip(database: Database) -> None:
    on(database, upgrade_schema)
    on(database, lambda connection: command.downgrade(migrations_config(connection), "base"))
    assert on(database, tables) == set()
    on(database, upgrade_schema)
    assert on(database, schema_diff) == []
    on(database, upgrade_schema)  # already at head: nothing to do
    assert database.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]


def test_a_database_made_before_migrations_is_adopted_with_its_data(database: Database) -> None:
    # What the app made before it had migrations: revision 0001's tables, with no record of a revision.
    on(database, lambda connection: command.upgrade(migrations_config(connection), FIRST_REVISION))
    database.rows("DROP TABLE alembic_version")
    database.rows(
        "INSERT INTO installations VALUES ('tenant', 'https://t.atlassian.net', 'x', true, true, '2026-01-01')"
    )
    on(database, upgrade_schema)
    assert database.rows("SELECT client_key FROM installations") == [("tenant",)]
    assert database.rows("SELECT version_num FROM alembic_version") == [(HEAD,)]


def test_the_production_command_migrates_database_url(database: Database) -> None:
    """`alembic -c example_app/alembic.ini upgrade head`, as docs/storage.md tells operators to run it."""
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", "example_app/alembic.ini", "upgrade", "head"],
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
