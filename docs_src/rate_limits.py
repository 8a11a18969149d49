"""Calls that respect Atlassian's rate limits: a policy per kind of work, the rate-
limit headers, the final 429."""

from __future__ import annotations

import logging
from typing import Any

from fastapi_connect_auth import (
    RateLimitedError,
    RateLimitInfo,
    RetryPolicy,
    product_client,
)

logger = logging.getLogger("my_app")

# A page must answer fast: two retries at most, none that would end past 5 seconds.
INTERACTIVE = RetryPolicy(max_retries=2, budget=5.0)
# A background job may wait, and Jira answers 429 to a POST it did not process: retry
# those too.
BACKGROUND = RetryPolicy(other_statuses=frozenset({429}))


async def create_issue(
    tenant: Any,
    fields: dict[str, Any],
    *,
    retries: RetryPolicy = BACKGROUND,
    **options: Any,
) -> str | None:
    """Create an issue as the app; `None` (to try again later) if Jira is still rate
    limiting."""
    async with product_client(
        app_key="my-connect-app",
        client_key=tenant.client_key,
        base_url=tenant.base_url,
        shared_secret=tenant.shared_secret,
        retries=retries,  # every attempt is signed afresh: a new JWT and QSH
        **options,
    ) as jira:
        try:
            response = await jira.post("/rest/api/3/issue", json={"fields": fields})
        except RateLimitedError as exc:
            # What the last 429 said; no token or secret is in it.
            if exc.rate_limit.quota_exceeded:  # the hourly quota: never retried
                logger.warning(
                    "Quota used up (%s) until %s.", exc.rate_limit.reason, exc.reset_at
                )
            else:
                logger.warning(
                    "Rate limited (%s); try again in %s s.",
                    exc.rate_limit.reason,
                    exc.retry_after,
                )
            return None
    info = RateLimitInfo.from_response(response)  # on every answer, not only on 429s
    if info.near_limit:
        logger.info("Under 20%% of the rate limit left (%s remaining).", info.remaining)
    response.raise_for_status()
    return str(response.json()["key"])
