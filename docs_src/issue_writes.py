"""Writes to one Jira issue from concurrent tasks, one at a time, as Jira's per-issue
write limit asks."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi_connect_auth import IssueWrites, RetryPolicy, product_client

# One per process: every task's writes to an issue take turns, whichever client sends them.
ISSUE_WRITES = IssueWrites()
# A comment Jira refused with 429 was not posted: posting it again is safe.
COMMENTS = RetryPolicy(other_statuses=frozenset({429}))


async def post_comments(
    tenant: Any, issue_key: str, comments: list[str], **options: Any
) -> list[str]:
    """Post `comments` to one issue at once; their ids, in order."""
    async with product_client(
        app_key="my-connect-app",
        client_key=tenant.client_key,
        base_url=tenant.base_url,
        shared_secret=tenant.shared_secret,
        retries=COMMENTS,
        issue_writes=ISSUE_WRITES,  # each write naming one issue waits for its turn
        **options,
    ) as jira:
        answers = await asyncio.gather(
            *(
                jira.post(f"/rest/api/3/issue/{issue_key}/comment", json={"body": text})
                for text in comments
            )
        )
    return [str(answer.raise_for_status().json()["id"]) for answer in answers]


async def edit_then_comment(
    tenant: Any, key: str, summary: str, **options: Any
) -> None:
    """Two writes no other task's write to the issue may come between: hold its turn.

    The client's own turns, inside, pass through: they are this task's already."""
    async with (
        product_client(
            app_key="my-connect-app",
            client_key=tenant.client_key,
            base_url=tenant.base_url,
            shared_secret=tenant.shared_secret,
            issue_writes=ISSUE_WRITES,
            **options,
        ) as jira,
        ISSUE_WRITES.hold(tenant.base_url, key),
    ):
        edit = {"fields": {"summary": summary}}
        (await jira.put(f"/rest/api/3/issue/{key}", json=edit)).raise_for_status()
        note = {"body": f"Renamed: {summary}"}
        (
            await jira.post(f"/rest/api/3/issue/{key}/comment", json=note)
        ).raise_for_status()
