"""Connect links: each Forge installation's Connect tenant as the reserved app property named it.

Revision ID: fca0003
Revises: fca0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "fca0003"
down_revision = "fca0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "atlassian_connect_links",
        sa.Column("installation_id", sa.String(255), primary_key=True),
        sa.Column("client_key", sa.String(255), nullable=True),
        sa.Column("source", sa.String(16), nullable=True),
        sa.Column("linked_at", sa.Double(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_outcome", sa.String(32), nullable=True),
        sa.Column("next_attempt_at", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("atlassian_connect_links")
