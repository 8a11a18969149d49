"""Atlassian's 2026 rate-limit rules, each against the test kit's throttling fake (integration).

The fake Jira (`FakeProduct`) verifies every call's JWT, then answers the 429s its
`api.throttle` schedules, with the headers Jira sends: `RateLimit-Reason`,
`Retry-After`, `Beta-Retry-After`, `X-RateLimit-Reset`. The policy's sleep, random
source and clock are injected (`Waits`), so each test sees the exact waits and
reset times without waiting. Sources of the rules: docs/rest-client.md.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import httpx2
import pytest

from fastapi_connect_auth import RateLimitedError, RetryPolicy, product_client, sync_product_client
from fastapi_connect_auth.testing import APIRequest, FakeProduct
from tests.test_retries import Waits

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

ISSUE = "/rest/api/3/issue/DEMO-1"
NEXT_HOUR = datetime(2023, 11, 14, 23, 0, tzinfo=timezone.utc)
"""`NOW` is 2023-11-14 22:13:20 UTC: the hourly quotas reset at 23:00."""


def as_app(product: FakeProduct, **options: Any) -> dict[str, Any]:
    """The product clients' arguments for `product`'s tenant, as an installed app `my-app`, plus `options`."""
    product.app_key = "my-app"
    tenant = {"client_key": product.client_key, "base_url": product.base_url, "shared_secret": product.shared_secret}
    return {"app_key": "my-app", **tenant, "transport": product.api_transport, **options}


def jira(product: FakeProduct, waits: Waits, **policy: Any) -> httpx2.AsyncClient:
    product.issues["DEMO-1"] = "Rate limited"
    return product_client(**as_app(product, retries=waits.policy(**policy)))


def sync_jira(product: FakeProduct, waits: Waits, **policy: Any) -> httpx2.Client:
    product.issues["DEMO-1"] = "Rate limited"
    return sync_product_client(**as_app(product, retries=waits.policy(**policy)))


def statuses(product: FakeProduct) -> list[int]:
    return [call.status for call in product.api_calls]


# --- the numbers ---------------------------------------------------------------------------------------------------


def test_the_defaults_are_atlassian_s_numbers() -> None:
    policy = RetryPolicy()
    assert (policy.base_delay, policy.max_delay, policy.jitter, policy.max_retries) == (2.0, 30.0, (0.7, 1.3), 4)
    assert policy.budget == 60.0


@pytest.mark.anyio
@pytest.mark.parametrize("reason", ["jira-burst-based", "jira-per-issue-on-write", None])
async def test_a_429_is_retried_from_2_s_doubling_with_jitter(fake_product: FakeProduct, reason: str | None) -> None:
    for factor, multiplier in ((0.0, 0.7), (0.5, 1.0), (0.999, 1.2994)):
        waits, product = Waits(), FakeProduct(private_key=fake_product.private_key)
        product.api.throttle(429, times=4, reason=reason)
        async with jira(product, waits, random=lambda factor=factor: factor) as client:
            assert (await client.get(ISSUE)).status_code == 200
        assert waits.sleeps == pytest.approx([2.0 * multiplier, 4.0 * multiplier, 8.0 * multiplier, 16.0 * multiplier])
        assert statuses(product) == [429, 429, 429, 429, 200]


def test_the_backoff_is_capped_at_30_s(fake_product: FakeProduct) -> None:
    waits = Waits()
    fake_product.api.throttle(429, times=6)
    with sync_jira(fake_product, waits, max_retries=6, budget=None, random=lambda: 0.5) as client:
        assert client.get(ISSUE).status_code == 200
    assert waits.sleeps == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


# --- Retry-After and Beta-Retry-After --------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("throttle", "wait"),
    [
        ({"retry_after": 7}, 7.0),
        ({"beta_retry_after": 7}, 7.0),  # Retry-After absent: Beta-Retry-After
        ({"retry_after": 3, "beta_retry_after": 9}, 3.0),  # both: Retry-After
        ({"retry_after": 0}, 1.0),  # at least a second
        ({"beta_retry_after": "Tue, 14 Nov 2023 22:13:32 GMT"}, 12.0),  # an HTTP-date
    ],
)
async def test_retry_after_or_else_beta_retry_after_is_a_minimum(
    fake_product: FakeProduct, throttle: dict[str, Any], wait: float
) -> None:
    waits = Waits()
    fake_product.api.throttle(429, reason="jira-burst-based", **throttle)
    async with jira(fake_product, waits, random=lambda: 0.0) as client:
        assert (await client.get(ISSUE)).status_code == 200
    assert waits.sleeps == [wait]
    waits = Waits()
    fake_product.api.throttle(429, reason="jira-burst-based", **throttle)
    async with jira(fake_product, waits, random=lambda: 0.999) as client:
        await client.get(ISSUE)
    assert wait <= waits.sleeps[0] <= wait * 1.3  # the jitter only lengthens it


UNUSABLE_WAITS = [
    "nan",
    "inf",
    "-inf",
    "-5",
    "1" + "0" * 400,  # overflows a float
    "100000",  # more than a day
    "Fri, 31 Dec 9999 23:59:59 GMT",  # years
    "soon",
]


@pytest.mark.anyio
@pytest.mark.parametrize("header", ["retry_after", "beta_retry_after"])
@pytest.mark.parametrize("value", UNUSABLE_WAITS)
async def test_a_wait_nobody_can_follow_stops_retrying(fake_product: FakeProduct, header: str, value: str) -> None:
    """A non-finite, negative, overflowing or absurd `Retry-After` used to count as absent: it was retried."""
    waits = Waits()
    fake_product.api.throttle(429, times=5, reason="jira-burst-based", **{header: value})
    async with jira(fake_product, waits) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.get(ISSUE)
    assert waits.sleeps == []
    assert statuses(fake_product) == [429]
    error = caught.value
    assert (error.attempts, error.retry_after, error.rate_limit.retry_after_unusable) == (1, None, True)
    assert str(error).endswith("after 1 attempt; its Retry-After is unusable.")


def test_a_retry_after_past_max_retry_after_is_not_waited_for(fake_product: FakeProduct) -> None:
    waits = Waits()
    fake_product.api.throttle(429, retry_after=61, reason="jira-burst-based")
    with sync_jira(fake_product, waits, budget=None) as client, pytest.raises(RateLimitedError) as caught:
        client.get(ISSUE)
    assert (waits.sleeps, caught.value.retry_after) == ([], 61.0)


# --- the budget ----------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_default_budget_of_60_s_stops_a_retry_that_would_end_past_it(fake_product: FakeProduct) -> None:
    """Without a budget, four Retry-After of 60 s came to about five minutes."""
    waits = Waits()
    fake_product.api.throttle(429, times=5, retry_after=25, reason="jira-burst-based")
    async with jira(fake_product, waits, random=lambda: 0.0) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.get(ISSUE)
    assert waits.sleeps == [25.0, 25.0]  # a third would end at 75 s
    assert (caught.value.attempts, statuses(fake_product)) == (3, [429, 429, 429])


def test_the_budget_counts_the_time_the_attempts_took(fake_product: FakeProduct) -> None:
    waits = Waits()

    @fake_product.api.route("GET", "/rest/api/3/slow")
    def slow(call: APIRequest) -> httpx2.Response:
        waits.now += 50.0  # the product took 50 s to answer
        return httpx2.Response(429, headers={"RateLimit-Reason": "jira-burst-based"})

    with sync_jira(fake_product, waits, random=lambda: 0.5) as client, pytest.raises(RateLimitedError) as caught:
        client.get("/rest/api/3/slow")
    assert waits.sleeps == [2.0]  # 50 s, 2 s, 50 s: a second wait would start past the 60 s
    assert caught.value.attempts == 2


# --- quotas --------------------------------------------------------------------------------------------------------


QUOTA_REASONS = [
    "jira-quota-global-based",
    "jira-quota-tenant-based",
    "confluence-quota-global-based",
    "confluence-quota-tenant-based",
]


@pytest.mark.anyio
@pytest.mark.parametrize("reason", QUOTA_REASONS)
@pytest.mark.parametrize("method", ["GET", "PUT", "POST"])
async def test_a_quota_used_up_raises_at_once_with_the_next_utc_hour(
    fake_product: FakeProduct, reason: str, method: str
) -> None:
    waits = Waits()
    fake_product.api.throttle(429, times=5, retry_after=30, reason=reason)
    async with jira(fake_product, waits) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.request(method, ISSUE, json={} if method != "GET" else None)
    assert waits.sleeps == []
    assert statuses(fake_product) == [429]
    error = caught.value
    assert (error.reset_at, error.attempts, error.rate_limit.quota_exceeded) == (NEXT_HOUR, 1, True)
    assert "the quota is used up until 2023-11-14 23:00 UTC, so it was not retried" in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("reset", "reset_at"),
    [
        (datetime(2023, 11, 14, 22, 45, tzinfo=timezone.utc), datetime(2023, 11, 14, 22, 45, tzinfo=timezone.utc)),
        ("2023-11-14T22:00Z", NEXT_HOUR),  # gone by (Jira has sent those): the next hour
        ("2023-11-15T09:00Z", NEXT_HOUR),  # beyond the hour a quota lasts
        ("whenever", NEXT_HOUR),
    ],
)
async def test_a_quota_s_reset_is_x_ratelimit_reset_when_sane(
    fake_product: FakeProduct, reset: datetime | str, reset_at: datetime
) -> None:
    waits = Waits()
    fake_product.api.throttle(429, reason="jira-quota-tenant-based", reset=reset)
    async with jira(fake_product, waits) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.get(ISSUE)
    assert caught.value.reset_at == reset_at


def test_the_beta_names_of_the_quota_headers_are_read(fake_product: FakeProduct) -> None:
    """In March 2026 Jira sent the reason and reset as `X-Beta-RateLimit-Reason` and `X-Beta-RateLimit-Reset`."""
    waits = Waits()
    headers = {"X-Beta-RateLimit-Reason": "jira-quota-tenant-based", "X-Beta-RateLimit-Reset": "2023-11-14T22:30Z"}
    fake_product.api.throttle(429, headers=headers)
    with sync_jira(fake_product, waits) as client, pytest.raises(RateLimitedError) as caught:
        client.get(ISSUE)
    assert (caught.value.reset_at, waits.sleeps) == (datetime(2023, 11, 14, 22, 30, tzinfo=timezone.utc), [])


def test_a_burst_429_carries_its_reset_when_sane(fake_product: FakeProduct) -> None:
    waits = Waits()
    fake_product.api.throttle(429, times=5, reason="jira-burst-based", reset="2023-11-14T22:14Z")
    with sync_jira(fake_product, waits, random=lambda: 0.5) as client, pytest.raises(RateLimitedError) as caught:
        client.get(ISSUE)
    assert caught.value.reset_at == datetime(2023, 11, 14, 22, 14, tzinfo=timezone.utc)
    assert len(waits.sleeps) == 4


# --- what is retried, by method --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_per_issue_write_limit_on_an_idempotent_write_is_retried(fake_product: FakeProduct) -> None:
    waits = Waits()

    @fake_product.api.route("PUT", "/rest/api/3/issue/{key}")
    def edit(call: APIRequest) -> httpx2.Response:
        return httpx2.Response(204)

    fake_product.api.throttle(429, times=2, retry_after=2, reason="jira-per-issue-on-write", method="PUT")
    async with jira(fake_product, waits, random=lambda: 0.0) as client:
        assert (await client.put(ISSUE, json={"fields": {}})).status_code == 204
    assert waits.sleeps == [2.0, 2.0]
    assert statuses(fake_product) == [429, 429, 204]


@pytest.mark.anyio
async def test_a_post_is_not_retried_unless_the_caller_says_it_is_safe(fake_product: FakeProduct) -> None:
    """Atlassian: retry only idempotent requests. A POST the product refused unprocessed may be, by choice."""

    @fake_product.api.route("POST", "/rest/api/3/issue/{key}/comment")
    def comment(call: APIRequest) -> httpx2.Response:
        return httpx2.Response(201, json={"id": "1"})

    fake_product.api.throttle(429, times=2, retry_after=1, reason="jira-per-issue-on-write", method="POST")
    waits = Waits()
    async with jira(fake_product, waits) as client:
        with pytest.raises(RateLimitedError):
            await client.post(f"{ISSUE}/comment", json={"body": "hi"})
        safe = waits.policy(other_statuses=frozenset({429}), random=lambda: 0.0)
        assert (await client.post(f"{ISSUE}/comment", json={}, extensions={"retries": safe})).status_code == 201
    assert waits.sleeps == [1.0]
    assert statuses(fake_product) == [429, 429, 201]
