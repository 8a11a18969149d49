"""Current issue summaries from the tenant's Jira REST API, called as the app.

The inbox must load even when Jira is slow, down or refuses: every issue Jira
does not answer for in time keeps the summary its webhook carried. Calls run
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

import httpx

from fastapi_connect_auth import ProductAPIError, ProductHosts, RateLimitedError, RetryPolicy, product_client

__all__ = ["MAX_CONCURRENT_CALLS", "SummarySource", "Tenant", "current_summaries", "webhook_summary"]

logger = logging.getLogger("example_app")

MAX_CONCURRENT_CALLS = 8
"""Calls to one tenant's Jira in flight at once, per inbox load."""

SummarySource = Literal["live", "webhook"]


@dataclass(frozen=True)
class Tenant:
    """What calling a tenant's REST API as the app takes."""

    app_key: str
    client_key: str
    base_url: str
    shared_secret: str = field(repr=False)


def webhook_summary(payload: dict[str, Any]) -> str | None:
    """The issue summary a Jira issue webhook carried, if any."""
    issue = payload.get("issue")
    fields = issue.get("fields") if isinstance(issue, dict) else None
    summary = fields.get("summary") if isinstance(fields, dict) else None
    return summary if isinstance(summary, str) else None


async def current_summaries(
    tenant: Tenant,
    issue_keys: Iterable[str],
    *,
    product_hosts: ProductHosts,
    timeout: float,
    transport: httpx.AsyncBaseTransport | None = None,
    retries: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, so safe to share
) -> dict[str, str]:
    """The summaries Jira answers for `issue_keys`, all fetched within `timeout` seconds.

    An issue Jira did not answer for (unreachable, too slow, 401, 404, 500...)
    is left out; so is every issue of a tenant whose host `product_hosts` does
    not allow. A `timeout` of 0 turns live summaries off. `retries` (Atlassian's
    by default) gets `timeout` as its time budget. `transport` replaces the
    network (tests).
    """
    keys = list(dict.fromkeys(issue_keys))
    if not keys or timeout <= 0:
        return {}
    if product_hosts.environment_of(tenant.base_url) is None:
        logger.warning("Not calling %s: the host is not on the product allow-list.", tenant.base_url)
        return {}
    try:
        jira = product_client(
            app_key=tenant.app_key,
            client_key=tenant.client_key,
            base_url=tenant.base_url,
            shared_secret=tenant.shared_secret,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            retries=replace(retries, budget=timeout),  # never wait past the page's deadline
        )
    except (ProductAPIError, ValueError) as exc:
        logger.warning("Not calling %s: %s.", tenant.base_url, type(exc).__name__)
        return {}
    in_flight = asyncio.Semaphore(MAX_CONCURRENT_CALLS)

    async def fetch(key: str) -> str | None:
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
    summaries = {key: task.result() for key, task in tasks.items() if task in done}
    return {key: summary for key, summary in summaries.items() if summary is not None}


async def _summary(jira: httpx.AsyncClient, tenant: Tenant, key: str) -> str | None:
    """`GET /rest/api/3/issue/{key}?fields=summary` as the app; `None` (logged) if Jira did not answer with one."""
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
        return None
    except (httpx.HTTPError, ProductAPIError) as exc:
        logger.warning("Could not fetch issue %s from %s: %s.", key, tenant.base_url, type(exc).__name__)
        return None
    if response.status_code != 200:
        logger.warning("%s answered HTTP %d for issue %s.", tenant.base_url, response.status_code, key)
        return None
    try:
        summary = webhook_summary({"issue": response.json()})
    except ValueError:
        summary = None
    if summary is None:
        logger.warning("%s answered issue %s without a summary.", tenant.base_url, key)
    return summary
