"""Alembic's entry point: migrate the connection the app hands over, else DATABASE_URL."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from example_app.db import METADATA, create_engine
from example_app.settings import Settings


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=METADATA, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


async def migrate_database_url() -> None:
    """The command line (`alembic -c example_app/alembic.ini upgrade heads`): the database is DATABASE_URL."""
    engine = create_engine(Settings.from_env().database_url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


given: Connection | None = context.config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    asyncio.run(migrate_database_url())
