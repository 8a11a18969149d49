"""Writes to one Jira issue, one at a time and spaced out: Atlassian's per-issue write limit, kept by the app.

Jira limits writes to each issue (`RateLimit-Reason: jira-per-issue-on-write`;
20 per 2 s and 100 per 30 s) and asks apps to serialise them. Concurrent tasks
of one process (webhook handlers, a batch job) share an `IssueWrites`: each
write to an issue waits for the one before it, and starts at least `spacing`
seconds after it started.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx2
from cachetools import TTLCache

__all__ = ["IssueWrites"]

_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# `/rest/api/3/issue/DEMO-1[/...]` or by id, `/rest/api/2/issue/10001`; not `/issue/bulk`, `/issue/picker`...
_ISSUE_PATH = re.compile(r"(?P<site>.*?)/rest/api/(?:2|3|latest)/issue/(?P<issue>[A-Za-z][A-Za-z0-9_]*-\d+|\d+)(?:/|$)")

_Key = tuple[str, str]


class _Turns:
    """One issue's turns: the lock writers queue on, who holds it, and how many are holding or queueing."""

    __slots__ = ("holder", "lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.holder: asyncio.Task[object] | None = None
        self.users = 0


class IssueWrites:
    """Serialises and spaces out the writes to each Jira issue, across the concurrent tasks of a process.

    Make one per process and share it. Hold an issue's turn around a write:

    ```python
    issue_writes = IssueWrites()

    async with issue_writes.hold(tenant.base_url, "DEMO-1"):
        await jira.post("/rest/api/3/issue/DEMO-1/comment", json=comment)
    ```

    or let a product client take the turn for every write (POST, PUT, PATCH,
    DELETE) whose path names one issue, retries included:
    `product_client(..., issue_writes=issue_writes)`.

    * `spacing`: seconds from the start of one write to an issue to the start of
      the next (0.35: at most 6 in 2 s and 86 in 30 s, under Jira's 20 and 100).
    * An issue is one `(site, issue)` pair: a key (`DEMO-1`, any case) and its
      numeric id are two issues here, so use one form per issue.
    * A task holding an issue's turn can take it again (a client's own turn
      inside a `hold`): no deadlock.
    * Bounded: an issue is tracked while a write holds or awaits its turn, and
      for `spacing` seconds after (at most `max_issues` of those).
    * `clock` (monotonic seconds) and `sleep` are injectable for tests.
    """

    def __init__(
        self,
        *,
        spacing: float = 0.35,
        max_issues: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if spacing < 0:
            raise ValueError("spacing must be at least 0 seconds")
        self.spacing = spacing
        """Seconds from the start of one write to an issue to the start of the next."""
        self._clock = clock
        self._sleep = sleep
        self._turns: dict[_Key, _Turns] = {}
        self._started: TTLCache[_Key, float] = TTLCache(max_issues, max(spacing, 1e-3), timer=clock)

    @asynccontextmanager
    async def hold(self, site: str, issue: str) -> AsyncIterator[None]:
        """Hold the turn to write `issue` (a key or an id) on `site` (the tenant's base URL) for the block."""
        key = (site.rstrip("/"), issue.upper())
        task = asyncio.current_task()
        turns = self._turns.setdefault(key, _Turns())
        if task is not None and turns.holder is task:
            yield  # this task's turn already
            return
        turns.users += 1
        try:
            async with turns.lock:
                turns.holder = task
                try:
                    await self._spaced(key)
                    yield
                finally:
                    turns.holder = None
        finally:
            turns.users -= 1
            if not turns.users:
                del self._turns[key]

    def for_request(self, request: httpx2.Request) -> AbstractAsyncContextManager[None] | None:
        """The turn a client's `request` takes: its issue's if it is a write naming one issue, else `None`."""
        if request.method not in _WRITE_METHODS:
            return None
        match = _ISSUE_PATH.match(request.url.path)
        if match is None:
            return None
        site = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}{match['site']}"
        return self.hold(site, match["issue"])

    async def _spaced(self, key: _Key) -> None:
        """Wait until `spacing` seconds have passed since the last write to `key` started; note this one's start."""
        started = self._started.get(key)
        if started is not None and (wait := started + self.spacing - self._clock()) > 0:
            await self._sleep(wait)
        self._started[key] = self._clock()
