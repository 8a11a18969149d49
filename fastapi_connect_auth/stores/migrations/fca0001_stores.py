"""The store's tables: Connect tenants, Forge installations, Forge tokens, delivery ids.

Revision ID: fca0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "fca0001"
down_revision = None
branch_labels = ("fastapi_connect_auth",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "atlassian_tenants",
        sa.Column("client_key", sa.String(255), primary_key=True),
        sa.Column("base_url", sa.String(2048), nullable=False),
        sa.Column("encrypted_shared_secret", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", sa.Double(), nullable=False),
        sa.Column("installed", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("product_type", sa.String(64), nullable=True),
        sa.Column("installation_id", sa.String(255), nullable=True),
        sa.Column("cloud_id", sa.String(255), nullable=True),
        sa.Column("oauth_client_id", sa.String(255), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("installed_at", sa.Double(), nullable=True),
        sa.Column("uninstalled_at", sa.Double(), nullable=True),
    )
    op.create_index("ix_atlassian_tenants_installation_id", "atlassian_tenants", ["installation_id"])
    op.create_index("ix_atlassian_tenants_cloud_id", "atlassian_tenants", ["cloud_id"])
    op.create_table(
        "atlassian_forge_installations",
        sa.Column("installation_id", sa.String(255), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("contexts", sa.JSON(), nullable=False),
        sa.Column("api_base_url", sa.String(2048), nullable=True),
        sa.Column("app_version", sa.String(255), nullable=True),
        sa.Column("installed_at", sa.Double(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("uninstalled_at", sa.Double(), nullable=True),
    )
    op.create_table(
        "atlassian_forge_tokens",
        sa.Column("installation_id", sa.String(255), primary_key=True),
        sa.Column("account_id", sa.String(255), primary_key=True),
        sa.Column("encrypted_token", sa.LargeBinary(), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("api_base_url", sa.String(2048), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("received_at", sa.Double(), nullable=False),
    )
    op.create_index("ix_atlassian_forge_tokens_expires_at", "atlassian_forge_tokens", ["expires_at"])
    op.create_table(
        "atlassian_deliveries",
        sa.Column("key", sa.String(512), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
    )
    op.create_index("ix_atlassian_deliveries_expires_at", "atlassian_deliveries", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_atlassian_deliveries_expires_at", table_name="atlassian_deliveries")
    op.drop_table("atlassian_deliveries")
    op.drop_index("ix_atlassian_forge_tokens_expires_at", table_name="atlassian_forge_tokens")
    op.drop_table("atlassian_forge_tokens")
    op.drop_table("atlassian_forge_installations")
    op.drop_index("ix_atlassian_tenants_cloud_id", table_name="atlassian_tenants")
    op.drop_index("ix_atlassian_tenants_installation_id", table_name="atlassian_tenants")
    op.drop_table("atlassian_tenants")
