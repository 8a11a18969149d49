"""`IssueWrites`: the writes to one Jira issue, one at a time and spaced out, across concurrent tasks.

Unit tests inject the clock and the sleep; the integration tests send real
requests, over loopback, to the test kit's fake Jira, whose handler counts the
writes in flight per issue on the server's threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx2
import pytest

from fastapi_connect_auth import IssueWrites, RetryPolicy, product_client
from fastapi_connect_auth.testing import APIRequest, FakeProduct
from tests.test_rate_limits import as_app

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

SITE = "https://tenant.atlassian.net"


class Clock:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.mark.anyio
async def test_writes_to_one_issue_start_spacing_seconds_apart() -> None:
    clock = Clock()
    writes = IssueWrites(spacing=0.35, clock=clock, sleep=clock.sleep)
    async with writes.hold(SITE, "DEMO-1"):
        clock.now += 0.1  # the write took 0.1 s
    async with writes.hold(SITE, "demo-1"):  # the same issue, in any case
        pass
    async with writes.hold(SITE + "/", "DEMO-2"):  # another issue: no wait
        pass
    clock.now += 1.0
    async with writes.hold(SITE, "DEMO-1"):  # long after: no wait
        pass
    assert clock.sleeps == [pytest.approx(0.25)]


@pytest.mark.anyio
async def test_concurrent_tasks_write_one_issue_one_at_a_time_and_other_issues_meanwhile() -> None:
    writes = IssueWrites(spacing=0.0)
    in_flight: dict[str, int] = {"DEMO-1": 0, "DEMO-2": 0}
    most: dict[str, int] = {"DEMO-1": 0, "DEMO-2": 0}
    overlap = 0

    async def write(issue: str) -> None:
        nonlocal overlap
        async with writes.hold(SITE, issue):
            in_flight[issue] += 1
            most[issue] = max(most[issue], in_flight[issue])
            overlap = max(overlap, sum(in_flight.values()))
            await asyncio.sleep(0.01)
            in_flight[issue] -= 1

    await asyncio.gather(*(write(issue) for issue in ["DEMO-1", "DEMO-2"] * 5))

    assert most == {"DEMO-1": 1, "DEMO-2": 1}
    assert overlap == 2  # the two issues' writes ran side by side


async def take(writes: IssueWrites, issue: str) -> None:
    async with writes.hold(SITE, issue):
        pass


@pytest.mark.anyio
async def test_a_task_holding_an_issue_s_turn_can_take_it_again() -> None:
    """A client's own turn inside the caller's `hold`, in one task."""
    writes = IssueWrites()

    async def nested() -> None:
        async with writes.hold(SITE, "DEMO-1"):
            await take(writes, "DEMO-1")

    done, _ = await asyncio.wait({asyncio.create_task(nested())}, timeout=1)
    assert done, "deadlocked"


@pytest.mark.anyio
async def test_a_cancelled_waiter_gives_up_its_turn() -> None:
    writes = IssueWrites(spacing=0.0)
    release = asyncio.Event()

    async def hold_until_released() -> None:
        async with writes.hold(SITE, "DEMO-1"):
            await release.wait()

    holder = asyncio.create_task(hold_until_released())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold_until_released())
    await asyncio.sleep(0)
    waiter.cancel()
    release.set()
    await holder
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(take(writes, "DEMO-1"), 1)


def test_spacing_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="spacing"):
        IssueWrites(spacing=-1.0)


@pytest.mark.parametrize(
    ("method", "url", "turn"),
    [
        ("PUT", f"{SITE}/rest/api/3/issue/DEMO-1", True),
        ("POST", f"{SITE}/rest/api/3/issue/DEMO-1/comment", True),
        ("DELETE", f"{SITE}/rest/api/2/issue/10001", True),
        ("POST", f"{SITE}/rest/api/latest/issue/DEMO-1/transitions", True),
        ("POST", "https://api.atlassian.com/ex/jira/a1b2/rest/api/3/issue/DEMO-1/comment", True),
        ("GET", f"{SITE}/rest/api/3/issue/DEMO-1", False),  # a read
        ("POST", f"{SITE}/rest/api/3/issue", False),  # a new issue
        ("POST", f"{SITE}/rest/api/3/issue/bulk", False),
        ("PUT", f"{SITE}/rest/api/3/issue/properties/key", False),
        ("PUT", f"{SITE}/rest/api/3/project/DEMO", False),
    ],
)
def test_a_client_takes_a_turn_only_for_a_write_naming_one_issue(method: str, url: str, turn: bool) -> None:
    assert (IssueWrites().for_request(httpx2.Request(method, url)) is not None) is turn


@pytest.mark.anyio
async def test_the_same_issue_on_two_sites_is_two_issues() -> None:
    clock = Clock()
    writes = IssueWrites(clock=clock, sleep=clock.sleep)
    for url in (f"{SITE}/rest/api/3/issue/DEMO-1", "https://other.atlassian.net/rest/api/3/issue/DEMO-1"):
        turn = writes.for_request(httpx2.Request("PUT", url))
        assert turn is not None
        async with turn:
            pass
    assert clock.sleeps == []


# --- with a product client, over real HTTP -------------------------------------------------------------------------


class WriteCounter:
    """A fake Jira route for writes to an issue: counts them in flight, and notes when each started."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.started: list[float] = []

    def __call__(self, call: APIRequest) -> httpx2.Response:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.started.append(time.monotonic())
        time.sleep(0.03)  # the write takes a while
        with self.lock:
            self.in_flight -= 1
        return httpx2.Response(201, json={"id": "1"})


async def comment_concurrently(product: FakeProduct, base_url: str, count: int, **options: Any) -> list[int]:
    async with product_client(**as_app(product, base_url=base_url, transport=None, **options)) as jira:
        answers = await asyncio.gather(
            *(jira.post("/rest/api/3/issue/DEMO-1/comment", json={"body": f"{n}"}) for n in range(count))
        )
    return [answer.status_code for answer in answers]


@pytest.mark.anyio
async def test_a_product_client_serialises_concurrent_writes_to_one_issue(fake_product: FakeProduct) -> None:
    counter = WriteCounter()
    fake_product.api.add_route("POST", "/rest/api/3/issue/{key}/comment", counter)

    with fake_product.serve_api() as base_url:
        unserialised = await comment_concurrently(fake_product, base_url, 8)
        most_without = counter.most
        counter.most, counter.started = 0, []
        serialised = await comment_concurrently(fake_product, base_url, 8, issue_writes=IssueWrites(spacing=0.1))

    assert unserialised == serialised == [201] * 8
    assert most_without > 1  # without it, the writes overlap on the server
    assert counter.most == 1
    gaps = [later - earlier for earlier, later in zip(counter.started, counter.started[1:], strict=False)]
    assert min(gaps) >= 0.05  # sent 0.1 s apart (a write takes 0.03 s); arrivals vary with the loopback


@pytest.mark.anyio
async def test_a_write_holds_its_issue_s_turn_through_its_retries(fake_product: FakeProduct) -> None:
    """A 429 `jira-per-issue-on-write`, then the retry: the other task's write to that issue waits for both."""

    @fake_product.api.route("PUT", "/rest/api/3/issue/{key}")
    def edit(call: APIRequest) -> httpx2.Response:
        return httpx2.Response(204)

    fake_product.api.throttle(429, retry_after=1, reason="jira-per-issue-on-write", method="PUT")

    async def wait(seconds: float) -> None:
        await asyncio.sleep(0.01)

    async with product_client(
        **as_app(fake_product, retries=RetryPolicy(async_sleep=wait), issue_writes=IssueWrites(spacing=0.0))
    ) as jira:
        first = asyncio.create_task(jira.put("/rest/api/3/issue/DEMO-1", json={"fields": {"summary": "a"}}))
        await asyncio.sleep(0)
        second = asyncio.create_task(jira.put("/rest/api/3/issue/DEMO-1", json={"fields": {"summary": "b"}}))
        assert [(await first).status_code, (await second).status_code] == [204, 204]

    bodies = [call.status for call in fake_product.api_calls]
    assert bodies == [429, 204, 204]  # not 429, 204 (the second task's), 204
