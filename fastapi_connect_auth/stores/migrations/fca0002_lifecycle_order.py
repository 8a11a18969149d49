"""Lifecycle order: `signed_rank` and `enabled_at` on tenants; text columns as wide as the models allow.

`signed_rank` (1 when Atlassian signed the latest install or uninstall) breaks a
tie in `signed_at` in Atlassian's favour; `enabled_at` orders `enabled` and
`disabled` on their own. `productType`, `oauthClientId` and a Forge app version
may be as long as the models accept (2,048 characters): a narrower column
answered every install of such a tenant with 503.

Revision ID: fca0002
Revises: fca0001
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "fca0002"
down_revision = "fca0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("atlassian_tenants") as batch:
        batch.add_column(sa.Column("signed_rank", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("enabled_at", sa.Double(), nullable=False, server_default="0"))
        batch.alter_column("product_type", type_=sa.String(2048), existing_type=sa.String(64))
        batch.alter_column("oauth_client_id", type_=sa.String(2048), existing_type=sa.String(255))
    with op.batch_alter_table("atlassian_forge_installations") as batch:
        batch.alter_column("app_version", type_=sa.String(2048), existing_type=sa.String(255))


def downgrade() -> None:
    with op.batch_alter_table("atlassian_forge_installations") as batch:
        batch.alter_column("app_version", type_=sa.String(255), existing_type=sa.String(2048))
    with op.batch_alter_table("atlassian_tenants") as batch:
        batch.alter_column("oauth_client_id", type_=sa.String(255), existing_type=sa.String(2048))
        batch.alter_column("product_type", type_=sa.String(64), existing_type=sa.String(2048))
        batch.drop_column("enabled_at")
        batch.drop_column("signed_rank")
