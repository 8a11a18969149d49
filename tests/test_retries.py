"""Retries of rate-limited calls (unit and integration): waits, statuses per method, budget, fresh tokens, errors.

The product is an `httpx2.MockTransport` answering a schedule of statuses and
headers; the clock and the sleeps are injected (`Waits`), so every test sees the
exact waits without waiting. Each retried token is decoded with PyJWT and its
`qsh` compared with `hashlib.sha256` of the canonical request written out by hand.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs

import httpx2
import jwt
import pytest

from fastapi_connect_auth import (
    ConnectAppAuth,
    ProductAPIError,
    RateLimitedError,
    RateLimitInfo,
    RetryPolicy,
    UserTokenProvider,
    product_client,
    sync_product_client,
)
from fastapi_connect_auth._outbound._retries import AsyncRetryingClient, RetryingClient

SECRET = "tenant-shared-secret-of-at-least-thirty-two-bytes"
APP_KEY = "com.example.my-app"
CLIENT_KEY = "tenant-client-key"
TENANT = "https://tenant.atlassian.net"
NOW = 1_700_000_000.0


class Waits:
    """An injected clock that moves only when the code under test sleeps; records each sleep."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)

    def policy(self, **options: Any) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleep, async_sleep=self.async_sleep, clock=self.clock, **options)


Answer = tuple[int, dict[str, str]] | httpx2.TransportError


class ScheduledProduct:
    """Answers the scheduled `(status, headers)` (or raises the scheduled error) in turn, then 200.

    Records every request and its credentials as sent.
    """

    def __init__(self, *schedule: Answer) -> None:
        self.schedule: Iterator[Answer] = iter(schedule)
        self.requests: list[httpx2.Request] = []
        self.authorizations: list[str] = []
        self.transport = httpx2.MockTransport(self)

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        self.authorizations.append(request.headers.get("Authorization", ""))  # as sent: a retry may re-sign it
        answer = next(self.schedule, (200, {}))
        if isinstance(answer, httpx2.TransportError):
            raise answer
        status, headers = answer
        return httpx2.Response(status, headers=headers, json={"attempt": len(self.requests)})


def tenant(product: ScheduledProduct, retries: RetryPolicy | None) -> dict[str, Any]:
    """The factories' arguments for the tenant, answered by `product`."""
    return {
        "app_key": APP_KEY,
        "client_key": CLIENT_KEY,
        "base_url": TENANT,
        "shared_secret": SECRET,
        "transport": product.transport,
        "retries": retries,
    }


def client(product: ScheduledProduct, retries: RetryPolicy | None) -> httpx2.Client:
    return sync_product_client(**tenant(product, retries))


def async_client(product: ScheduledProduct, retries: RetryPolicy | None) -> httpx2.AsyncClient:
    return product_client(**tenant(product, retries))


async def get_both_ways(product: ScheduledProduct, waits: Waits, path: str = "/rest/api/3/myself") -> list[int]:
    """GET `path` with the sync client, then again with the async one; the statuses answered."""
    schedule = list(product.schedule)
    product.schedule = iter(schedule)
    with client(product, waits.policy()) as jira:
        statuses = [jira.get(path).status_code]
    product.schedule = iter(schedule)
    async with async_client(product, waits.policy()) as jira:
        statuses.append((await jira.get(path)).status_code)
    return statuses


# --- waits ---------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_retry_after_seconds_is_waited_at_least_then_the_call_succeeds() -> None:
    waits = Waits()
    product = ScheduledProduct((429, {"Retry-After": "2"}))

    assert await get_both_ways(product, waits) == [200, 200]

    assert len(waits.sleeps) == 2
    assert all(2.0 <= sleep <= 2.6 for sleep in waits.sleeps)  # a minimum, spread by up to the jitter's top
    assert len(product.requests) == 4


@pytest.mark.anyio
async def test_retry_after_zero_waits_a_second() -> None:
    waits = Waits()
    product = ScheduledProduct((429, {"Retry-After": "0"}))

    assert await get_both_ways(product, waits) == [200, 200]

    assert all(1.0 <= sleep <= 1.3 for sleep in waits.sleeps)
    assert len(waits.sleeps) == 2


def test_retry_after_as_an_http_date_is_waited_until() -> None:
    waits = Waits()
    product = ScheduledProduct((503, {"Retry-After": formatdate(NOW + 7, usegmt=True)}))

    with client(product, waits.policy(random=lambda: 0.0)) as jira:
        assert jira.get("/rest/api/3/myself").status_code == 200

    assert waits.sleeps == [7.0]


def test_without_retry_after_the_waits_double_from_two_seconds_with_jitter() -> None:
    expected = [2.0, 4.0, 8.0, 16.0]
    for factor in (0.0, 0.5, 0.999):
        waits = Waits()
        product = ScheduledProduct(*[(429, {})] * 5)
        with (
            client(product, waits.policy(random=lambda factor=factor: factor)) as jira,
            pytest.raises(RateLimitedError),
        ):
            jira.get("/rest/api/3/myself")
        multiplier = 0.7 + 0.6 * factor
        assert waits.sleeps == pytest.approx([delay * multiplier for delay in expected])
        assert len(product.requests) == 5

    waits = Waits()
    product = ScheduledProduct(*[(429, {})] * 5)
    with client(product, waits.policy()) as jira, pytest.raises(RateLimitedError):
        jira.get("/rest/api/3/myself")
    assert all(0.7 * delay <= sleep <= 1.3 * delay for delay, sleep in zip(expected, waits.sleeps, strict=True))


@pytest.mark.anyio
async def test_concurrent_callers_do_not_retry_in_lock_step() -> None:
    waits = Waits()
    product = ScheduledProduct(*[(429, {"Retry-After": "1"})] * 20)

    async with async_client(product, waits.policy()) as jira:
        responses = await asyncio.gather(*(jira.get(f"/rest/api/3/issue/A-{n}") for n in range(20)))

    assert [response.status_code for response in responses] == [200] * 20
    assert len(waits.sleeps) == 20
    assert len(set(waits.sleeps)) == 20  # each caller drew its own jitter
    assert max(waits.sleeps) - min(waits.sleeps) > 0.05
    assert all(1.0 <= sleep <= 1.3 for sleep in waits.sleeps)


# --- what is retried -----------------------------------------------------------------------------------------------


def test_after_the_last_retry_a_typed_error_tells_the_status_reason_and_limits() -> None:
    headers = {
        "RateLimit-Reason": "jira-burst-based",
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-NearLimit": "true",
        "X-RateLimit-Reset": "2023-11-14T22:14:00Z",
        "Retry-After": "3",
    }
    waits = Waits()
    product = ScheduledProduct(*[(429, headers)] * 5)

    with client(product, waits.policy()) as jira, pytest.raises(RateLimitedError) as caught:
        jira.get("/rest/api/3/issue/A-1", params={"fields": "summary"})

    error = caught.value
    assert isinstance(error, ProductAPIError)
    assert (error.status_code, error.method, error.path, error.attempts) == (429, "GET", "/rest/api/3/issue/A-1", 5)
    assert error.retry_after == 3.0
    assert error.rate_limit == RateLimitInfo(
        reason="jira-burst-based",
        limit=100,
        remaining=0,
        reset=datetime(2023, 11, 14, 22, 14, tzinfo=timezone.utc),
        near_limit=True,
        retry_after=3.0,
    )
    assert str(error) == (
        "GET /rest/api/3/issue/A-1 was rate limited (HTTP 429, reason jira-burst-based) after 5 attempts; "
        "retry after 3 s."
    )
    tokens = [authorization.removeprefix("JWT ") for authorization in product.authorizations]
    for text in (str(error), repr(error), repr(vars(error))):
        assert SECRET not in text
        assert not any(token in text for token in tokens)


@pytest.mark.anyio
async def test_503_and_408_and_timeouts_are_retried_for_get() -> None:
    waits = Waits()
    product = ScheduledProduct((503, {}), (408, {}))
    assert await get_both_ways(product, waits) == [200, 200]
    assert len(product.requests) == 6

    with client(
        ScheduledProduct(httpx2.ConnectTimeout("slow"), httpx2.ConnectError("refused")), waits.policy()
    ) as jira:
        assert jira.get("/rest/api/3/myself").status_code == 200
    async with async_client(ScheduledProduct(httpx2.ReadTimeout("slow")), waits.policy()) as ajira:
        assert (await ajira.get("/rest/api/3/myself")).status_code == 200
    assert len(waits.sleeps) == 7


def test_post_is_not_retried_on_500_503_or_a_timeout() -> None:
    waits = Waits()
    for status in (500, 503):
        product = ScheduledProduct((status, {"Retry-After": "1"}))
        with client(product, waits.policy()) as jira:
            assert jira.post("/rest/api/3/issue", json={"fields": {}}).status_code == status
        assert len(product.requests) == 1

    with (
        client(ScheduledProduct(httpx2.ReadTimeout("slow")), waits.policy()) as jira,
        pytest.raises(httpx2.ReadTimeout),
    ):
        jira.post("/rest/api/3/issue", json={})
    assert waits.sleeps == []


def test_500_is_not_retried_for_get_either() -> None:
    waits = Waits()
    product = ScheduledProduct((500, {}))
    with client(product, waits.policy()) as jira:
        assert jira.get("/rest/api/3/myself").status_code == 500
    assert waits.sleeps == []


def test_429_on_post_raises_at_once_unless_the_caller_allows_retrying_it() -> None:
    waits = Waits()
    product = ScheduledProduct((429, {"Retry-After": "1"}))
    with client(product, waits.policy()) as jira, pytest.raises(RateLimitedError) as caught:
        jira.post("/rest/api/3/issue", json={"fields": {}})
    assert (caught.value.attempts, caught.value.method, len(product.requests)) == (1, "POST", 1)
    assert waits.sleeps == []

    product = ScheduledProduct((429, {"Retry-After": "1"}))
    with client(product, waits.policy(other_statuses=frozenset({429}))) as jira:
        response = jira.post("/rest/api/3/issue", json={"fields": {}})
    assert response.status_code == 200
    assert [request.content for request in product.requests] == [b'{"fields":{}}'] * 2
    assert len(waits.sleeps) == 1


def test_a_body_that_cannot_be_sent_twice_is_sent_once() -> None:
    waits = Waits()
    product = ScheduledProduct((429, {}))
    with client(product, waits.policy(other_statuses=frozenset({429}))) as jira:
        response = jira.post("/rest/api/3/issue", content=iter([b"{}"]))
    assert response.status_code == 429  # not retried, so handed back as it came
    assert (len(product.requests), waits.sleeps) == (1, [])


@pytest.mark.anyio
async def test_without_a_policy_a_429_is_an_ordinary_response() -> None:
    product = ScheduledProduct((429, {}), (429, {}))
    with client(product, None) as jira:
        assert jira.get("/rest/api/3/myself").status_code == 429
    async with async_client(product, None) as jira:
        assert (await jira.get("/rest/api/3/myself")).status_code == 429
    assert len(product.requests) == 2


@pytest.mark.anyio
async def test_one_request_can_have_its_own_policy_or_none() -> None:
    waits = Waits()
    product = ScheduledProduct((429, {"Retry-After": "1"}), (200, {}), (429, {"Retry-After": "1"}))
    read_only_post = waits.policy(other_statuses=frozenset({429, 503}))
    async with async_client(product, waits.policy()) as jira:
        searched = await jira.post("/rest/api/3/search/jql", json={"jql": ""}, extensions={"retries": read_only_post})
        unretried = await jira.get("/rest/api/3/myself", extensions={"retries": None})
        with pytest.raises(TypeError, match="RetryPolicy"):
            await jira.get("/rest/api/3/myself", extensions={"retries": 3})
    assert (searched.status_code, unretried.status_code) == (200, 429)  # without a policy, a 429 is a response
    assert len(waits.sleeps) == 1
    assert len(product.requests) == 3


def test_each_retry_is_logged_without_credentials(caplog: pytest.LogCaptureFixture) -> None:
    waits = Waits()
    product = ScheduledProduct((429, {"RateLimit-Reason": "jira-burst-based"}), httpx2.ConnectError("refused"))
    with (
        caplog.at_level("INFO", logger="fastapi_connect_auth"),
        client(product, waits.policy(random=lambda: 0.5)) as jira,
    ):
        assert jira.get("/rest/api/3/issue/A-1", params={"fields": "summary"}).status_code == 200
    assert [record.getMessage() for record in caplog.records] == [
        "Retrying GET /rest/api/3/issue/A-1 in 2.0 s (retry 1 of 4) after HTTP 429, jira-burst-based.",
        "Retrying GET /rest/api/3/issue/A-1 in 4.0 s (retry 2 of 4) after ConnectError.",
    ]
    assert SECRET not in caplog.text
    assert "eyJ" not in caplog.text  # the start of every JWT


# --- budget --------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_time_budget_stops_retries_before_a_wait_would_exceed_it() -> None:
    waits = Waits()
    product = ScheduledProduct(*[(429, {})] * 5)
    async with async_client(product, waits.policy(budget=12.0, random=lambda: 0.5)) as jira:
        with pytest.raises(RateLimitedError) as caught:
            await jira.get("/rest/api/3/myself")
    assert waits.sleeps == [2.0, 4.0]  # 2 + 4 + 8 would pass 12 s
    assert caught.value.attempts == 3

    waits = Waits()
    product = ScheduledProduct((429, {"Retry-After": "20"}))
    with client(product, waits.policy(budget=10.0)) as jira, pytest.raises(RateLimitedError) as caught:
        jira.get("/rest/api/3/myself")
    assert (waits.sleeps, caught.value.retry_after, caught.value.attempts) == ([], 20.0, 1)


def test_a_retry_after_longer_than_the_longest_wait_is_left_to_the_caller() -> None:
    waits = Waits()
    product = ScheduledProduct((429, {"Retry-After": "3600", "RateLimit-Reason": "jira-burst-based"}))
    with client(product, waits.policy(budget=None)) as jira, pytest.raises(RateLimitedError) as caught:
        jira.get("/rest/api/3/myself")
    assert waits.sleeps == []
    assert (caught.value.retry_after, caught.value.rate_limit.reason) == (3600.0, "jira-burst-based")
    assert str(caught.value).endswith("after 1 attempt; retry after 3600 s.")


# --- every attempt is signed afresh --------------------------------------------------------------------------------


def qsh(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@pytest.mark.anyio
async def test_each_attempt_carries_a_fresh_valid_jwt_whose_qsh_matches() -> None:
    waits = Waits()
    auth = ConnectAppAuth(
        app_key=APP_KEY, client_key=CLIENT_KEY, base_url=TENANT, shared_secret=SECRET, clock=waits.clock
    )
    product = ScheduledProduct((429, {"Retry-After": "30"}), (503, {}), (429, {"Retry-After": "40"}))
    options: dict[str, Any] = {"auth": auth, "base_url": TENANT, "transport": product.transport}
    with RetryingClient(retries=waits.policy(budget=None), **options) as jira:
        assert jira.get("/rest/api/3/search", params={"jql": "project = A"}).status_code == 200
    async with AsyncRetryingClient(retries=waits.policy(budget=None), **options) as jira:
        assert (await jira.get("/rest/api/3/search", params={"jql": "project = A"})).status_code == 200

    assert len(product.requests) == 5
    tokens = [authorization.removeprefix("JWT ") for authorization in product.authorizations]
    claims = [
        jwt.decode(token, SECRET, algorithms=["HS256"], audience=CLIENT_KEY, options={"verify_exp": False})
        for token in tokens
    ]
    for claim in claims:
        assert claim["qsh"] == qsh("GET&/rest/api/3/search&jql=project%20%3D%20A")
        assert claim["exp"] - claim["iat"] == 180
    issued = [claim["iat"] for claim in claims[:4]]
    assert issued == sorted(issued)
    assert len(set(issued)) == 4
    assert issued[1] - issued[0] >= 30
    assert issued[3] - issued[2] >= 40


@pytest.mark.anyio
async def test_the_token_endpoint_is_retried_with_a_fresh_assertion() -> None:
    waits = Waits()
    assertions: list[str] = []
    answers = iter([httpx2.Response(429, headers={"Retry-After": "5"}), httpx2.Response(503)])

    def token_endpoint(request: httpx2.Request) -> httpx2.Response:
        assertions.append(parse_qs(request.content.decode())["assertion"][0])
        return next(answers, httpx2.Response(200, json={"access_token": "user-token", "expires_in": 900}))

    async with httpx2.AsyncClient(transport=httpx2.MockTransport(token_endpoint)) as endpoint:
        tokens = UserTokenProvider(
            authorization_server="https://auth.example.test", client=endpoint, clock=waits.clock, retries=waits.policy()
        )
        grant = tokens.grant(base_url=TENANT, oauth_client_id="client-1", shared_secret=SECRET, account_id="user-1")
        assert await tokens.access_token(grant) == "user-token"

    assert len(assertions) == 3
    issued = [
        jwt.decode(
            assertion, SECRET, algorithms=["HS256"], audience="https://auth.example.test", options={"verify_exp": False}
        )["iat"]
        for assertion in assertions
    ]
    assert issued[0] < issued[1] < issued[2]


def test_a_token_endpoint_still_rate_limiting_is_a_token_request_error() -> None:
    from fastapi_connect_auth import TokenRequestError

    waits = Waits()

    def token_endpoint(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(429, headers={"Retry-After": "1"}, json={"error": "rate_limited"})

    with httpx2.Client(transport=httpx2.MockTransport(token_endpoint)) as endpoint:
        tokens = UserTokenProvider(
            authorization_server="https://auth.example.test", sync_client=endpoint, retries=waits.policy()
        )
        grant = tokens.grant(base_url=TENANT, oauth_client_id="client-1", shared_secret=SECRET, account_id="user-1")
        with pytest.raises(TokenRequestError) as caught:
            tokens.access_token_sync(grant)
    assert (caught.value.status_code, caught.value.error, len(waits.sleeps)) == (429, "rate_limited", 4)


# --- rate-limit information ----------------------------------------------------------------------------------------


def test_rate_limit_information_is_read_from_any_response() -> None:
    response = httpx2.Response(
        200,
        headers={
            "X-RateLimit-Limit": "350",
            "X-RateLimit-Remaining": "42",
            "X-RateLimit-NearLimit": "TRUE",
            "X-RateLimit-Reset": "2026-03-02T10:00:00",
            "Beta-RateLimit-Policy": '"global-app-quota";q=65000;w=3600',
            "Beta-RateLimit": '"global-app-quota";r=64000;t=1800',
        },
    )
    info = RateLimitInfo.from_response(response)
    assert (info.limit, info.remaining, info.near_limit, info.reason, info.retry_after) == (350, 42, True, None, None)
    assert info.reset == datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
    assert info.policy == '"global-app-quota";q=65000;w=3600'
    assert info.quota == '"global-app-quota";r=64000;t=1800'

    final = RateLimitInfo.from_headers(
        httpx2.Headers({"RateLimit-Policy": "p", "Beta-RateLimit-Policy": "beta", "RateLimit": "r"})
    )
    assert (final.policy, final.quota) == ("p", "r")  # the final names win over the Beta- ones


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, RateLimitInfo()),
        (
            {"X-RateLimit-Limit": "-1", "X-RateLimit-Remaining": "many", "X-RateLimit-Reset": "soon"},
            RateLimitInfo(),
        ),
        ({"Retry-After": "-5"}, RateLimitInfo(retry_after_unusable=True)),
        ({"Retry-After": "tomorrow"}, RateLimitInfo(retry_after_unusable=True)),
        ({"Retry-After": " "}, RateLimitInfo()),
        ({"Retry-After": "1.5"}, RateLimitInfo(retry_after=1.5)),
        ({"Retry-After": "Tue, 14 Nov 2023 22:13:00 GMT"}, RateLimitInfo(retry_after=0.0)),  # in the past
        ({"Retry-After": "Tue, 14 Nov 2023 22:13:30 -0000"}, RateLimitInfo(retry_after=10.0)),
        ({"X-RateLimit-Limit": "9" * 30}, RateLimitInfo()),
        ({"X-RateLimit-NearLimit": "yes"}, RateLimitInfo()),
        ({"RateLimit-Reason": "a\x00b" + "c" * 300}, RateLimitInfo(reason="a?b" + "c" * 197)),
        ({"RateLimit-Reason": "   "}, RateLimitInfo()),
    ],
)
def test_malformed_rate_limit_headers_count_as_absent(headers: dict[str, str], expected: RateLimitInfo) -> None:
    assert RateLimitInfo.from_headers(httpx2.Headers(headers), now=NOW) == expected


@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": -1},
        {"jitter": (0.0, 1.3)},
        {"jitter": (1.3, 0.7)},
        {"base_delay": 40.0},
        {"base_delay": -1.0},
        {"budget": -1.0},
    ],
)
def test_a_policy_that_makes_no_sense_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryPolicy(**options)


def test_a_jitter_without_a_top_above_one_waits_exactly_retry_after() -> None:
    policy = RetryPolicy(jitter=(0.5, 1.0), random=lambda: 0.9)
    assert policy.delay(1, 0.0) == 1.0
    assert policy.delay(1, 4.0) == 4.0
    assert policy.delay(3, None) == pytest.approx(8.0 * 0.95)
