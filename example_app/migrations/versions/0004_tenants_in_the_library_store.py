"""Tenants move to the library's store (`atlassian_tenants`); `events` keeps its own rows, without the foreign key.

Revision ID: 0004
Revises: 0003
Depends on: fca0001 (the library store's tables)
Create Date: 2026-12-03

Each row of `installations` becomes a tenant of the store with the same encrypted
shared secret (both are Fernet tokens of the same key), state and Forge link; the
downgrade carries them back.
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = "fca0001"

_NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
_SQLITE_FK = "fk_events_client_key_installations"
_COLUMNS = ("client_key", "base_url", "encrypted_shared_secret", "installed", "enabled")
_LINK = ("installation_id", "cloud_id", "oauth_client_id")

installations = sa.table(
    "installations",
    *(sa.column(name) for name in (*_COLUMNS, *_LINK)),
    sa.column("updated_at", sa.DateTime(timezone=True)),  # typed: Python 3.12 deprecates sqlite3's own adapter
)
tenants = sa.table(
    "atlassian_tenants",
    *(sa.column(name) for name in (*_COLUMNS, *_LINK, "signed_at", "installed_at", "uninstalled_at")),
    sa.column("payload", sa.JSON),
)


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.select(*(installations.c[name] for name in (*_COLUMNS, *_LINK)))).mappings().all()
    if rows:
        op.bulk_insert(
            tenants,
            [{**row, "signed_at": 0.0, "payload": {}, "installed_at": None, "uninstalled_at": None} for row in rows],
        )
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table("events", naming_convention=_NAMING) as batch:
            batch.drop_constraint(_SQLITE_FK, type_="foreignkey")
    else:
        for foreign_key in sa.inspect(bind).get_foreign_keys("events"):
            op.drop_constraint(str(foreign_key["name"]), "events", type_="foreignkey")
    op.drop_index("ix_installations_cloud_id", table_name="installations")
    op.drop_index("ix_installations_installation_id", table_name="installations")
    op.drop_table("installations")


def downgrade() -> None:
    op.create_table(
        "installations",
        sa.Column("client_key", sa.String(255), primary_key=True),
        sa.Column("base_url", sa.String(2048), nullable=False),
        sa.Column("encrypted_shared_secret", sa.LargeBinary(), nullable=False),
        sa.Column("installed", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("installation_id", sa.String(255), nullable=True),
        sa.Column("cloud_id", sa.String(255), nullable=True),
        sa.Column("oauth_client_id", sa.String(255), nullable=True),
    )
    op.create_index("ix_installations_installation_id", "installations", ["installation_id"])
    op.create_index("ix_installations_cloud_id", "installations", ["cloud_id"])
    bind = op.get_bind()
    rows = bind.execute(sa.select(*(tenants.c[name] for name in (*_COLUMNS, *_LINK)))).mappings().all()
    if rows:
        now = datetime.now(timezone.utc)
        op.bulk_insert(installations, [{**row, "updated_at": now} for row in rows])
    op.execute(tenants.delete())
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table("events", naming_convention=_NAMING) as batch:
            batch.create_foreign_key(_SQLITE_FK, "installations", ["client_key"], ["client_key"])
    else:
        op.create_foreign_key(None, "events", "installations", ["client_key"], ["client_key"])
