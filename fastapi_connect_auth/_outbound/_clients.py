"""Ready `httpx2` clients for a tenant's REST API, as the app or as a user."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx2

from ._app_auth import ConnectAppAuth
from ._issue_writes import IssueWrites
from ._retries import ATLASSIAN_RETRIES, AsyncRetryingClient, RetryingClient, RetryPolicy
from ._user_auth import ConnectUserAuth, UserTokenProvider


def _product_auth(
    *,
    app_key: str,
    client_key: str,
    base_url: str,
    shared_secret: str,
    as_user: str | None,
    oauth_client_id: str | None,
    scopes: Iterable[str],
    tokens: UserTokenProvider | None,
) -> httpx2.Auth:
    if as_user is None:
        return ConnectAppAuth(app_key=app_key, client_key=client_key, base_url=base_url, shared_secret=shared_secret)
    if not oauth_client_id:
        raise ValueError("as_user needs the tenant's oauth_client_id (from its installed callback)")
    return ConnectUserAuth(
        base_url=base_url,
        oauth_client_id=oauth_client_id,
        shared_secret=shared_secret,
        account_id=as_user,
        scopes=scopes,
        tokens=tokens,
    )


def _client_options(base_url: str, options: dict[str, Any]) -> dict[str, Any]:
    if options.pop("follow_redirects", False):
        raise ValueError("the Connect auth follows redirects itself, re-signing each hop: leave follow_redirects off")
    if "auth" in options or "base_url" in options:
        raise ValueError("auth and base_url are set by the factory")
    return {"timeout": 30.0, **options, "base_url": base_url.rstrip("/")}


def product_client(
    *,
    app_key: str,
    client_key: str,
    base_url: str,
    shared_secret: str,
    as_user: str | None = None,
    oauth_client_id: str | None = None,
    scopes: Iterable[str] = (),
    tokens: UserTokenProvider | None = None,
    retries: RetryPolicy | None = ATLASSIAN_RETRIES,
    issue_writes: IssueWrites | None = None,
    **client_options: Any,
) -> httpx2.AsyncClient:
    """An `httpx2.AsyncClient` for a tenant's REST API, as the app or (with `as_user`) as that user.

    Paths are relative to the tenant's `base_url` (`/rest/api/3/myself`). With
    `as_user` (an account id), `oauth_client_id` and the `scopes` to request
    (e.g. `["READ", "WRITE"]`) are needed; tokens come from `tokens`, else a
    process-wide provider. `retries` says how rate-limited and failed calls are
    retried (Atlassian's guidance by default; `None`: never), each attempt
    signed afresh. With `issue_writes` (an `IssueWrites` shared by the process),
    the writes to each Jira issue wait for each other and are spaced out, as
    Atlassian's per-issue write limit asks. Other keyword arguments go to
    `httpx2.AsyncClient`.
    """
    auth = _product_auth(
        app_key=app_key,
        client_key=client_key,
        base_url=base_url,
        shared_secret=shared_secret,
        as_user=as_user,
        oauth_client_id=oauth_client_id,
        scopes=scopes,
        tokens=tokens,
    )
    return AsyncRetryingClient(
        retries=retries, issue_writes=issue_writes, auth=auth, **_client_options(base_url, client_options)
    )


def sync_product_client(
    *,
    app_key: str,
    client_key: str,
    base_url: str,
    shared_secret: str,
    as_user: str | None = None,
    oauth_client_id: str | None = None,
    scopes: Iterable[str] = (),
    tokens: UserTokenProvider | None = None,
    retries: RetryPolicy | None = ATLASSIAN_RETRIES,
    **client_options: Any,
) -> httpx2.Client:
    """`product_client` as a blocking `httpx2.Client`."""
    auth = _product_auth(
        app_key=app_key,
        client_key=client_key,
        base_url=base_url,
        shared_secret=shared_secret,
        as_user=as_user,
        oauth_client_id=oauth_client_id,
        scopes=scopes,
        tokens=tokens,
    )
    return RetryingClient(retries=retries, auth=auth, **_client_options(base_url, client_options))
