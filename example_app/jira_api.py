"""Current issue summaries from the tenant's Jira REST API, called as the user who asks.

Every call acts as that user (`ConnectUserAuth`, the app's `ACT_AS_USER` scope),
so Jira answers only for issues the user may see. Fail closed: an issue counts
as visible only when Jira answered 200 to that user; an issue Jira hides from
them (404) and one it could not answer for in time (down, slow, rate limited,
refusing) are both left out, so a user never sees an issue they cannot see in
Jira, even while Jira is down. Calls run
concurrently (at most `MAX_CONCURRENT_CALLS` at once) under one overall
deadline, and only to a tenant whose base URL is on the app's allow-list. A
rate-limited call is retried only while the deadline allows the wait Jira asks
for; otherwise the page shows the webhook's summary at once.
Logs name the tenant's URL, the issue and the failure's kind, never a secret or token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import quote

import httpx2

from fastapi_connect_auth import (
    ProductAPIError,
    ProductHosts,
    RateLimitedError,
    RetryPolicy,
    UserTokenProvider,
    product_client,
)

__all__ = ["MAX_CONCURRENT_CALLS", "SummarySource", "Tenant", "visible_summaries", "webhook_summary"]

logger = logging.getLogger("example_app")

MAX_CONCURRENT_CALLS = 8
"""Calls to one tenant's Jira in flight at once, per inbox load."""

SummarySource = Literal["live", "webhook"]


@dataclass(frozen=True)
class Tenant:
    """What calling a tenant's REST API as one of its users takes."""

    app_key: str
    client_key: str
    base_url: str
    shared_secret: str = field(repr=False)
    oauth_client_id: str | None = None
    """`oauthClientId` of the tenant's install; without it the app cannot act as a user."""


def webhook_summary(payload: dict[str, Any]) -> str | None:
    """The issue summary a Jira issue webhook carried, if any."""
    issue = payload.get("issue")
    fields = issue.get("fields") if isinstance(issue, dict) else None
    summary = fields.get("summary") if isinstance(fields, dict) else None
    return summary if isinstance(summary, str) else None


async def visible_summaries(
    tenant: Tenant,
    issue_keys: Iterable[str],
    *,
    account_id: str,
    tokens: UserTokenProvider,
    product_hosts: ProductHosts,
    timeout: float,
    transport: httpx2.AsyncBaseTransport | None = None,
    retries: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, so safe to share
) -> dict[str, str | None]:
    """The issues of `issue_keys` that Jira confirmed `account_id` may see, with their summary (`None`: none given).

    Fetched as that user, all within `timeout` seconds. An issue Jira hid from the
    user (404), or did not answer for (unreachable, too slow, 401, 429, 500...),
    is left out; so is every issue of a tenant whose host `product_hosts` does not
    allow, or that sent no `oauthClientId`, and every issue when `timeout` is 0.
    `retries` (Atlassian's by default) gets `timeout` as its time budget. `tokens`
    gives the user's access tokens; `transport` replaces the network (tests).
    """
    keys = list(dict.fromkeys(issue_keys))
    if not keys or timeout <= 0:
        return {}
    if product_hosts.environment_of(tenant.base_url) is None:
        logger.warning("Not calling %s: the host is not on the product allow-list.", tenant.base_url)
        return {}
    if tenant.oauth_client_id is None:
        logger.warning("Not calling %s: its install gave no oauthClientId to act as a user with.", tenant.base_url)
        return {}
    try:
        jira = product_client(
            app_key=tenant.app_key,
            client_key=tenant.client_key,
            base_url=tenant.base_url,
            shared_secret=tenant.shared_secret,
            as_user=account_id,
            oauth_client_id=tenant.oauth_client_id,
            tokens=tokens,
            timeout=httpx2.Timeout(timeout),
            transport=transport,
            retries=replace(retries, budget=timeout),  # never wait past the page's deadline
        )
    except (ProductAPIError, ValueError) as exc:
        logger.warning("Not calling %s: %s.", tenant.base_url, type(exc).__name__)
        return {}
    in_flight = asyncio.Semaphore(MAX_CONCURRENT_CALLS)

    async def fetch(key: str) -> _Answer:
        async with in_flight:
            return await _summary(jira, tenant, key)

    async with jira:
        tasks = {key: asyncio.ensure_future(fetch(key)) for key in keys}
        done, pending = await asyncio.wait(tasks.values(), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
            logger.warning("%s did not answer %d issue(s) within %ss.", tenant.base_url, len(pending), timeout)
    answers = {key: task.result() for key, task in tasks.items() if task in done}
    return {key: answer.summary for key, answer in answers.items() if answer.visible}


@dataclass(frozen=True)
class _Answer:
    visible: bool
    """Jira answered 200 to the user: they may see the issue."""
    summary: str | None = None


_UNCONFIRMED = _Answer(visible=False)


async def _summary(jira: httpx2.AsyncClient, tenant: Tenant, key: str) -> _Answer:
    """`GET /rest/api/3/issue/{key}?fields=summary` as the user; not visible (logged) unless Jira answered 200."""
    try:
        response = await jira.get(f"/rest/api/3/issue/{quote(key, safe='')}", params={"fields": "summary"})
    except RateLimitedError as exc:
        logger.warning(
            "%s rate limited issue %s (reason %s, retry after %ss).",
            tenant.base_url,
            key,
            exc.rate_limit.reason,
            exc.retry_after,
        )
        return _UNCONFIRMED
    except (httpx2.HTTPError, ProductAPIError) as exc:
        logger.warning("Could not fetch issue %s from %s: %s.", key, tenant.base_url, type(exc).__name__)
        return _UNCONFIRMED
    if response.status_code != 200:
        logger.warning("%s answered HTTP %d for issue %s.", tenant.base_url, response.status_code, key)
        return _UNCONFIRMED
    try:
        summary = webhook_summary({"issue": response.json()})
    except ValueError:
        summary = None
    if summary is None:
        logger.warning("%s answered issue %s without a summary.", tenant.base_url, key)
    return _Answer(visible=True, summary=summary)
