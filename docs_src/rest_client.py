"""Calling a tenant's REST API back: as the app, as a user, and a context token for
the app's own iframe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx2

from fastapi_connect_auth import (
    UserTokenProvider,
    api_path,
    context_token,
    product_client,
)

APP_KEY = "my-connect-app"  # the descriptor's "key": the `iss` of every app JWT

user_tokens = (
    UserTokenProvider()
)  # one per process: each user's access token is fetched once and cached


@dataclass(frozen=True)
class Tenant:
    """What the app stored from the tenant's verified `installed` callback."""

    client_key: str
    # e.g. https://acme.atlassian.net, or https://acme.atlassian.net/wiki for Confluence
    base_url: str
    shared_secret: str
    oauth_client_id: str  # the payload's oauthClientId: needed only to act as a user


def tenant_client(
    tenant: Tenant, *, as_user: str | None = None, **options: Any
) -> httpx2.AsyncClient:
    """A client for the tenant's REST API: as the app, or as the user whose account
    id is `as_user`."""
    return product_client(
        app_key=APP_KEY,
        client_key=tenant.client_key,
        base_url=tenant.base_url,
        shared_secret=tenant.shared_secret,
        as_user=as_user,
        oauth_client_id=tenant.oauth_client_id,
        # The scopes the user's token is asked for (the app must declare ACT_AS_USER).
        scopes=["READ"],
        tokens=user_tokens,
        **options,  # anything httpx2.AsyncClient takes: timeout, transport...
    )


async def issue_summary(tenant: Tenant, issue_key: str, **options: Any) -> str:
    """As the app: every request is signed with a fresh JWT bound to its method, path
    and query. `api_path` encodes the key, and refuses one that would leave its path
    segment (`..`, `/`, `?`...)."""
    async with tenant_client(tenant, **options) as jira:
        response = await jira.get(
            api_path("/rest/api/3/issue/{key}", key=issue_key),
            params={"fields": "summary"},
        )
        response.raise_for_status()
        return str(response.json()["fields"]["summary"])


async def current_user(
    tenant: Tenant, account_id: str, **options: Any
) -> dict[str, Any]:
    """As the user: Jira answers with that user's permissions, and `/myself` is that
    user."""
    async with tenant_client(tenant, as_user=account_id, **options) as jira:
        response = await jira.get("/rest/api/3/myself")
        response.raise_for_status()
        user: dict[str, Any] = response.json()
        return user


def iframe_token(tenant: Tenant, account_id: str) -> str:
    """A token for the app's own page to send back, accepted by
    `ConnectRequest(qsh="context")`."""
    return context_token(
        client_key=tenant.client_key,
        shared_secret=tenant.shared_secret,
        account_id=account_id,
    )
