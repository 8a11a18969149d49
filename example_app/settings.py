"""The app's settings, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    base_url: str = "http://localhost:8000"
    """CONNECT_BASE_URL: where Jira reaches the app (the descriptor's `baseUrl`)."""
    keys_url: str | None = None
    """CONNECT_KEYS_URL: a mirror of Atlassian's install-keys CDN; unset, Atlassian's own is used."""
    database_url: str = "sqlite:///./example_app.db"
    """DATABASE_URL: `sqlite:///…` or `postgresql://…`."""
    secret_encryption_key: str | None = None
    """SECRET_ENCRYPTION_KEY: the Fernet key shared secrets are encrypted with, or several, comma-separated, the first
    encrypting (a rotation); unset, a dev key file is used."""
    migrate_on_start: bool = True
    """MIGRATE_ON_START: apply the schema migrations when the app starts; set it to 0 in production and run
    `alembic -c example_app/alembic.ini upgrade heads` once per release instead."""
    app_key: str = "fastapi-connect-example"
    extra_product_hosts: tuple[str, ...] = ()
    """CONNECT_EXTRA_PRODUCT_HOSTS: comma-separated hosts allowed to install besides Atlassian's (a local Jira)."""
    product_api_timeout: float = 3.0
    """CONNECT_PRODUCT_API_TIMEOUT: seconds the inbox waits for Jira's REST API before showing the summaries
    the webhooks carried; 0 never calls Jira."""
    authorization_server: str | None = None
    """CONNECT_AUTHORIZATION_SERVER: where user access tokens come from; unset, Atlassian's (per environment)."""
    forge_app_id: str | None = None
    """FORGE_APP_ID: the Forge app's id (ARI or UUID) for Connect on Forge; unset, the /forge routes answer 404."""
    forge_jwks_url: str | None = None
    """FORGE_JWKS_URL: a mirror of Forge's JWKS; unset, Forge's production JWKS is used."""
    forge_api_hosts: tuple[str, ...] = ()
    """FORGE_API_HOSTS: comma-separated API hosts allowed in FITs besides Atlassian's (a local fake product)."""
    redis_url: str | None = None
    """REDIS_URL: keep Forge tokens and delivery ids in Redis (`redis://…`, `unix://…`); unset, in the database."""
    redis_prefix: str = "fastapi-connect-example"
    """REDIS_PREFIX: the start of every key the app writes in Redis."""
    credentials_cache_ttl: float = 5.0
    """CREDENTIALS_CACHE_TTL: seconds a tenant's credentials are answered from a replica's cache; another
    replica's install or uninstall is honoured within that time (this replica's at once)."""

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            base_url=env.get("CONNECT_BASE_URL", cls.base_url),
            keys_url=env.get("CONNECT_KEYS_URL") or None,
            database_url=env.get("DATABASE_URL", cls.database_url),
            secret_encryption_key=env.get("SECRET_ENCRYPTION_KEY") or None,
            migrate_on_start=env.get("MIGRATE_ON_START", "1") != "0",
            product_api_timeout=float(env.get("CONNECT_PRODUCT_API_TIMEOUT", cls.product_api_timeout)),
            extra_product_hosts=_hosts(env.get("CONNECT_EXTRA_PRODUCT_HOSTS", "")),
            authorization_server=env.get("CONNECT_AUTHORIZATION_SERVER") or None,
            forge_app_id=env.get("FORGE_APP_ID") or None,
            forge_jwks_url=env.get("FORGE_JWKS_URL") or None,
            forge_api_hosts=_hosts(env.get("FORGE_API_HOSTS", "")),
            redis_url=env.get("REDIS_URL") or None,
            redis_prefix=env.get("REDIS_PREFIX") or cls.redis_prefix,
            credentials_cache_ttl=float(env.get("CREDENTIALS_CACHE_TTL", cls.credentials_cache_ttl)),
        )


def _hosts(value: str) -> tuple[str, ...]:
    return tuple(host.strip() for host in value.split(",") if host.strip())
