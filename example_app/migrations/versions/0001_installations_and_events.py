"""Installations and their webhook events, times stored with their time zone.

Revision ID: 0001
Revises:
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "installations",
        sa.Column("client_key", sa.String(255), primary_key=True),
        sa.Column("base_url", sa.String(2048), nullable=False),
        sa.Column("encrypted_shared_secret", sa.LargeBinary(), nullable=False),
        sa.Column("installed", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("client_key", sa.String(255), sa.ForeignKey("installations.client_key"), nullable=False),
        sa.Column("event", sa.String(255), nullable=False),
        sa.Column("issue_key", sa.String(255), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_events_client_key", "events", ["client_key"])


def downgrade() -> None:
    op.drop_index("ix_events_client_key", table_name="events")
    op.drop_table("events")
    op.drop_table("installations")
