"""Connect on Forge: the tenant's Forge installation id and cloud id, and Forge events stored once per delivery.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("installations") as batch:
        batch.add_column(sa.Column("installation_id", sa.String(255), nullable=True))
        batch.add_column(sa.Column("cloud_id", sa.String(255), nullable=True))
        batch.create_index("ix_installations_installation_id", ["installation_id"])
        batch.create_index("ix_installations_cloud_id", ["cloud_id"])
    op.create_table(
        "forge_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("installation_id", sa.String(255), nullable=False),
        sa.Column("delivery_key", sa.String(64), nullable=False),
        sa.Column("module_key", sa.String(255), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("delivery_key", name="uq_forge_events_delivery_key"),
    )
    op.create_index("ix_forge_events_installation_id", "forge_events", ["installation_id"])


def downgrade() -> None:
    op.drop_index("ix_forge_events_installation_id", table_name="forge_events")
    op.drop_table("forge_events")
    with op.batch_alter_table("installations") as batch:
        batch.drop_index("ix_installations_cloud_id")
        batch.drop_index("ix_installations_installation_id")
        batch.drop_column("cloud_id")
        batch.drop_column("installation_id")
