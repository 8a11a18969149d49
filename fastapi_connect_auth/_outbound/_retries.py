"""Retrying rate-limited calls as Atlassian asks, each attempt signed afresh; and the rate-limit headers, typed.

`RetryPolicy` holds Atlassian's 2026 numbers (at most 4 retries, 2 s doubling to at
most 30 s, a random factor of 0.7 to 1.3, `Retry-After` or `Beta-Retry-After`
honoured as a minimum, 60 s in all) and `_Attempts.next_wait` decides, after each
attempt, whether to wait and how long: the one place a retry is decided. An hourly
quota used up is not retried at all. The loop that runs attempts is here too, one
coroutine for the sync and the async clients: each attempt is a callable that
builds and sends the request anew, so the product clients re-run their
`httpx2.Auth` (a fresh JWT and QSH) and the token endpoint gets a fresh assertion.
A retry transport (`httpx-retries`) would resend the request as first signed; why
no retry library carries this loop is in `docs/rest-client.md`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx2

from .._telemetry import outbound_span
from ._errors import ProductAPIError
from ._issue_writes import IssueWrites
from ._origin import refuse_client_redirects

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
"""Methods that may be retried whatever the answer (RFC 9110, section 9.2.2)."""

_SECONDS = re.compile(r"\d+(?:\.\d+)?")
_LONGEST_SANE_WAIT = 86_400.0
"""A `Retry-After` beyond a day is no instruction anyone can follow: it stops retrying, as a malformed one does."""
_QUOTA_REASONS = ("jira-quota-", "confluence-quota-")
_T = TypeVar("_T")

logger = logging.getLogger("fastapi_connect_auth")


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What a product's answer says about its rate limits; every field is `None` (or false) when absent.

    * `reason`: `RateLimit-Reason`, e.g. `jira-burst-based` (one endpoint and
      method), `jira-per-issue-on-write` (one issue), or a quota
      (`jira-quota-tenant-based`, `jira-quota-global-based`, `confluence-quota-*`:
      `quota_exceeded`, until the quota's hourly reset).
    * `limit`, `remaining`, `reset`: `X-RateLimit-Limit`, `-Remaining`, `-Reset`
      (an aware `datetime`); `near_limit`: `X-RateLimit-NearLimit: true` (under 20% left).
    * `retry_after`: seconds the product asks to wait (`Retry-After`, else
      `Beta-Retry-After`; in seconds or as an HTTP-date), at least 0.
      `retry_after_unusable`: one was sent but says no wait anyone can follow
      (not a number or date, negative, infinite, NaN, or beyond a day).
    * `policy`, `quota`: the points-based quota headers, `RateLimit-Policy` and
      `RateLimit` (or their `Beta-` forms), as sent.

    ```python
    info = RateLimitInfo.from_response(response)
    if info.near_limit:
        slow_down()
    ```
    """

    reason: str | None = None
    """`RateLimit-Reason`: which limit was hit."""
    limit: int | None = None
    """`X-RateLimit-Limit`."""
    remaining: int | None = None
    """`X-RateLimit-Remaining`."""
    reset: datetime | None = None
    """`X-RateLimit-Reset`, an aware `datetime`."""
    near_limit: bool = False
    """`X-RateLimit-NearLimit: true`: under 20% of the limit left."""
    retry_after: float | None = None
    """Seconds the product asks to wait (`Retry-After`, else `Beta-Retry-After`), at least 0."""
    retry_after_unusable: bool = False
    """A `Retry-After` (or `Beta-Retry-After`) was sent that is no usable wait: the call is not retried."""
    policy: str | None = None
    """`RateLimit-Policy` (or `Beta-RateLimit-Policy`), as sent."""
    quota: str | None = None
    """`RateLimit` (or `Beta-RateLimit`), as sent."""

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], *, now: float | None = None) -> RateLimitInfo:
        """Parse `headers` (an `httpx2.Headers` or any case-insensitive mapping); malformed values count as absent.

        `now` (epoch seconds, default the current time) turns an HTTP-date
        `Retry-After` into seconds.
        """
        retry_after = headers.get("Retry-After")
        if retry_after is None:
            retry_after = headers.get("Beta-Retry-After")
        wait, unusable = _retry_after(retry_after, time.time() if now is None else now)
        return cls(
            # Jira sent the reason and reset under `X-Beta-` names while the 2026 quotas were in beta.
            reason=_text(headers.get("RateLimit-Reason") or headers.get("X-Beta-RateLimit-Reason")),
            limit=_count(headers.get("X-RateLimit-Limit")),
            remaining=_count(headers.get("X-RateLimit-Remaining")),
            reset=_timestamp(headers.get("X-RateLimit-Reset") or headers.get("X-Beta-RateLimit-Reset")),
            near_limit=(headers.get("X-RateLimit-NearLimit") or "").strip().lower() == "true",
            retry_after=wait,
            retry_after_unusable=unusable,
            policy=_text(headers.get("RateLimit-Policy") or headers.get("Beta-RateLimit-Policy")),
            quota=_text(headers.get("RateLimit") or headers.get("Beta-RateLimit")),
        )

    @classmethod
    def from_response(cls, response: httpx2.Response, *, now: float | None = None) -> RateLimitInfo:
        """The rate-limit information of a product's `response`."""
        return cls.from_headers(response.headers, now=now)

    @property
    def quota_exceeded(self) -> bool:
        """Whether `reason` names an hourly quota (`jira-quota-*`, `confluence-quota-*`): waiting seconds won't help."""
        return self.reason is not None and self.reason.startswith(_QUOTA_REASONS)

    def reset_after(self, now: float) -> datetime | None:
        """`reset` if it is sane from `now` (epoch seconds): later, and within the hour a quota lasts, else `None`."""
        if self.reset is None or not 0 < self.reset.timestamp() - now <= 3600 + 60:  # a minute of clock skew
            return None
        return self.reset


def _text(value: str | None) -> str | None:
    """A header value safe to show: printable, at most 200 characters; `None` if empty."""
    if not value:
        return None
    return "".join(char if char.isprintable() else "?" for char in value.strip())[:200] or None


def _count(value: str | None) -> int | None:
    value = (value or "").strip()
    return int(value) if value.isdecimal() and len(value) < 19 else None


def _timestamp(value: str | None) -> datetime | None:
    """An ISO 8601 timestamp (`X-RateLimit-Reset`), as an aware datetime (UTC if it names no zone)."""
    try:
        moment = datetime.fromisoformat((value or "").strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _retry_after(value: str | None, now: float) -> tuple[float | None, bool]:
    """`Retry-After` in seconds from `now` (delay-seconds or an HTTP-date, RFC 9110 section 10.2.3), and
    whether it was sent but unusable: not a number or date, NaN, infinite, negative, or beyond a day."""
    value = (value or "").strip()
    if not value:
        return None, False
    if _SECONDS.fullmatch(value):
        seconds = float(value)  # a 400-digit number is `inf`
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None, True
        if moment.tzinfo is None:  # an HTTP-date is always GMT
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = max(0.0, moment.timestamp() - now)  # a date gone by: now
    if not math.isfinite(seconds) or seconds > _LONGEST_SANE_WAIT:
        return None, True
    return seconds, False


def _next_utc_hour(now: float) -> datetime:
    """The next full hour, UTC, after `now` (epoch seconds): when Atlassian's hourly quotas reset."""
    hour = datetime.fromtimestamp(now, timezone.utc).replace(minute=0, second=0, microsecond=0)
    return hour + timedelta(hours=1)


class RateLimitedError(ProductAPIError):
    """The product answered 429 and no retry was left, allowed, within the time budget, or of any use.

    `status_code`, `method` and `path` say which call; `rate_limit` holds what the
    answer said (`reason`, `remaining`, `near_limit`...), `retry_after` the seconds
    the product asked to wait (`None` if it did not say), `reset_at` when to try
    again if that is known, and `attempts` how many times the call was sent. It
    holds no request, so no credential.

    An hourly quota used up (`rate_limit.quota_exceeded`: `jira-quota-*`,
    `confluence-quota-*`) raises it at once, without a retry, with `reset_at` the
    quota's reset: `X-RateLimit-Reset` when it is sane, else the next full hour UTC.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        method: str,
        path: str,
        rate_limit: RateLimitInfo,
        attempts: int,
        reset_at: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The status of the last answer (429)."""
        self.method = method
        """The call's method."""
        self.path = path
        """The call's path."""
        self.rate_limit = rate_limit
        """What the last answer said about the limits."""
        self.retry_after = rate_limit.retry_after
        """Seconds the product asked to wait, `None` if it did not say."""
        self.reset_at = reset_at
        """When to try again (an aware `datetime`): a quota's reset, or a sane `X-RateLimit-Reset`; else `None`."""
        self.attempts = attempts
        """How many times the call was sent."""

    @classmethod
    def of(cls, response: httpx2.Response, *, attempts: int, now: float) -> RateLimitedError:
        """The error for `response`, the last 429 after `attempts` sends, at `now` (epoch seconds)."""
        info = RateLimitInfo.from_response(response, now=now)
        method, path = response.request.method, response.request.url.path
        reset_at = info.reset_after(now)
        if info.quota_exceeded:
            reset_at = reset_at or _next_utc_hour(now)
        reason = f", reason {info.reason}" if info.reason else ""
        if info.quota_exceeded:
            wait = f"; the quota is used up until {reset_at:%Y-%m-%d %H:%M} UTC, so it was not retried"
        elif info.retry_after is not None:
            wait = f"; retry after {info.retry_after:g} s"
        else:
            wait = "; its Retry-After is unusable" if info.retry_after_unusable else ""
        return cls(
            f"{method} {path} was rate limited (HTTP {response.status_code}{reason}) "
            f"after {attempts} attempt{'s' if attempts != 1 else ''}{wait}.",
            status_code=response.status_code,
            method=method,
            path=path,
            rate_limit=info,
            attempts=attempts,
            reset_at=reset_at,
        )


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """When and how long to wait before sending a call again; Atlassian's published numbers by default.

    * `max_retries` retries at most; retry n waits `base_delay * 2 ** (n - 1)`, capped
      at `max_delay`, times a random factor in `jitter` (so concurrent callers spread out).
    * A `Retry-After` (else `Beta-Retry-After`) is a minimum: the wait is that
      (`0` counts as 1 s) times a factor between 1 and the top of `jitter`. Longer
      than `max_retry_after` (or than the `budget` left), it is not waited for;
      one that is no usable wait (not a number or date, NaN, infinite, negative,
      beyond a day) stops retrying too.
    * An hourly quota used up (`RateLimit-Reason` `jira-quota-*` or
      `confluence-quota-*`) is never retried: `RateLimitedError` at once, with its `reset_at`.
    * `idempotent_methods` are retried on `statuses` and on `errors` (timeouts,
      refused connections); other methods (POST, PATCH) only on `other_statuses`,
      none by default: add 429 to retry a POST the product refused unprocessed.
    * `budget`: seconds from the first attempt after which no retry starts,
      counting the wait before it (60 by default: Atlassian's four backoffs fit
      in it); `None` for no limit.
    * `sleep`, `async_sleep`, `random` (a float in [0, 1)) and `clock` (epoch
      seconds) are injectable, so tests see the exact waits without waiting.

    ```python
    product_client(..., retries=RetryPolicy(max_retries=2, budget=10.0))
    ```
    """

    max_retries: int = 4
    """Retries at most, after the first attempt."""
    base_delay: float = 2.0
    """Seconds before the first retry; doubled for each next one."""
    max_delay: float = 30.0
    """The longest backoff, in seconds."""
    jitter: tuple[float, float] = (0.7, 1.3)
    """The range of the random factor applied to each wait."""
    max_retry_after: float = 60.0
    """The longest `Retry-After` waited for, in seconds."""
    budget: float | None = 60.0
    """Seconds from the first attempt after which no retry starts; `None` for no limit."""
    idempotent_methods: frozenset[str] = IDEMPOTENT_METHODS
    """Methods retried on `statuses` and `errors`."""
    statuses: frozenset[int] = frozenset({408, 429, 503})
    """Statuses that retry an idempotent call."""
    other_statuses: frozenset[int] = frozenset()
    """Statuses that retry any other call (none by default)."""
    errors: tuple[type[httpx2.TransportError], ...] = (httpx2.TimeoutException, httpx2.ConnectError)
    """Transport errors that retry an idempotent call."""
    sleep: Callable[[float], object] = field(default=time.sleep, repr=False, compare=False)
    """How a sync client waits."""
    async_sleep: Callable[[float], Awaitable[object]] = field(default=asyncio.sleep, repr=False, compare=False)
    """How an async client waits."""
    random: Callable[[], float] = field(default=random.random, repr=False, compare=False)
    """A float in [0, 1) for the jitter."""
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)
    """Seconds since the epoch, for the budget and for HTTP-dates."""

    def __post_init__(self) -> None:
        low, high = self.jitter
        if self.max_retries < 0 or not 0 < low <= high:
            raise ValueError("max_retries must be at least 0, and jitter a range (low, high) with 0 < low <= high")
        if not 0 <= self.base_delay <= self.max_delay or (self.budget is not None and self.budget < 0):
            raise ValueError("delays and the budget must be non-negative, with base_delay <= max_delay")

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number `retry` (1 for the first), given the answer's `Retry-After`."""
        low, high = self.jitter
        if retry_after is not None:
            return max(retry_after, 1.0) * (1.0 + max(high - 1.0, 0.0) * self.random())
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (retry - 1))
        return backoff * (low + (high - low) * self.random())


ATLASSIAN_RETRIES = RetryPolicy()
"""The default of every outbound client: Atlassian's numbers."""

_Outcome = httpx2.Response | httpx2.TransportError


class _Attempts:
    """One call's retry bookkeeping: whether to try again after an answer or error, and after how long."""

    def __init__(self, policy: RetryPolicy, method: str, path: str, idempotent: bool | None) -> None:
        self.policy = policy
        self.method = method
        self.path = path
        self.idempotent = method.upper() in policy.idempotent_methods if idempotent is None else idempotent
        self.started = policy.clock()
        self.sent = 0
        self.span = outbound_span(method, path)

    def next_wait(self, outcome: _Outcome) -> float | None:
        """Seconds to wait before the next attempt, or `None` to stop with `outcome`; noted on the call's span."""
        delay = self._decide(outcome)
        if self.span is not None:
            response = outcome if isinstance(outcome, httpx2.Response) else None
            status, headers = (response.status_code, response.headers) if response is not None else (None, None)
            self.span.attempt(status, headers, self.sent - 1, stop=delay is None)
        return delay

    def _decide(self, outcome: _Outcome) -> float | None:
        """Every retry is decided here."""
        self.sent += 1
        policy = self.policy
        if isinstance(outcome, Exception):
            if not (self.idempotent and isinstance(outcome, policy.errors)):
                return None
            retry_after, cause = None, type(outcome).__name__
        else:
            if outcome.status_code not in (policy.statuses if self.idempotent else policy.other_statuses):
                return None
            info = RateLimitInfo.from_response(outcome, now=policy.clock())
            if info.quota_exceeded or info.retry_after_unusable:
                return None  # an hour's wait, or one nobody can tell: either way not ours to sit out
            if info.retry_after is not None and info.retry_after > policy.max_retry_after:
                return None
            retry_after = info.retry_after
            cause = f"HTTP {outcome.status_code}, {info.reason}" if info.reason else f"HTTP {outcome.status_code}"
        if self.sent > policy.max_retries:
            return None
        delay = policy.delay(self.sent, retry_after)
        if policy.budget is not None and policy.clock() - self.started + delay > policy.budget:
            return None
        logger.info(
            "Retrying %s %s in %.1f s (retry %d of %d) after %s.",
            self.method,
            self.path,
            delay,
            self.sent,
            policy.max_retries,
            cause,
        )
        return delay

    def rate_limited(self, response: httpx2.Response) -> RateLimitedError | None:
        """The error to raise for a 429 left when retrying stopped, else `None`."""
        if response.status_code != 429:
            return None
        return RateLimitedError.of(response, attempts=self.sent, now=self.policy.clock())


async def _send_with_retries(
    attempts: _Attempts,
    attempt: Callable[[], Awaitable[httpx2.Response]],
    close: Callable[[httpx2.Response], Awaitable[object]],
    sleep: Callable[[float], Awaitable[object]],
    raise_rate_limited: bool,
) -> httpx2.Response:
    """The retry loop, for both kinds of client: `attempt`, `close` and `sleep` are the client's own."""
    while True:
        outcome: _Outcome
        try:
            outcome = await attempt()
        except httpx2.TransportError as exc:
            outcome = exc
        delay = attempts.next_wait(outcome)
        if delay is None:
            break
        if isinstance(outcome, httpx2.Response):
            await close(outcome)
        await sleep(delay)
    if isinstance(outcome, Exception):
        raise outcome
    if raise_rate_limited and (error := attempts.rate_limited(outcome)):
        await close(outcome)
        raise error
    return outcome


def _run_to_the_end(steps: Coroutine[object, None, _T]) -> _T:
    """The result of a coroutine none of whose awaits suspends: a sync client's steps behind async signatures."""
    try:
        steps.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    steps.close()  # pragma: no cover - a sync step never suspends
    raise RuntimeError("a synchronous retry step suspended")  # pragma: no cover


def send_with_retries(
    policy: RetryPolicy | None,
    method: str,
    path: str,
    attempt: Callable[[], httpx2.Response],
    *,
    idempotent: bool | None = None,
    raise_rate_limited: bool = True,
) -> httpx2.Response:
    """Call `attempt` (which sends a freshly signed `method` request to `path`) until `policy` says stop.

    Returns the last response (a retried one is closed first); a 429 left at the
    end raises `RateLimitedError` unless `raise_rate_limited` is off. An error
    `policy` does not retry propagates. With no policy, `attempt` runs once.
    """
    if policy is None:
        return attempt()

    async def send() -> httpx2.Response:
        return attempt()

    async def close(response: httpx2.Response) -> None:
        response.close()

    async def sleep(seconds: float) -> None:
        policy.sleep(seconds)

    attempts = _Attempts(policy, method, path, idempotent)
    return _run_to_the_end(_send_with_retries(attempts, send, close, sleep, raise_rate_limited))


async def send_with_retries_async(
    policy: RetryPolicy | None,
    method: str,
    path: str,
    attempt: Callable[[], Awaitable[httpx2.Response]],
    *,
    idempotent: bool | None = None,
    raise_rate_limited: bool = True,
) -> httpx2.Response:
    """`send_with_retries` for an async `attempt`, waiting with `policy.async_sleep`."""
    if policy is None:
        return await attempt()
    attempts = _Attempts(policy, method, path, idempotent)
    return await _send_with_retries(attempts, attempt, httpx2.Response.aclose, policy.async_sleep, raise_rate_limited)


class RetryingClient(httpx2.Client):
    """An `httpx2.Client` whose every send follows `retries`, re-running its auth (a fresh token) per attempt.

    A request whose body cannot be sent twice (a generator) is sent once. A 429
    left when retries are over raises `RateLimitedError`; `retries=None` turns
    retrying off (a 429 is then an ordinary response). One request can have its
    own policy, or none: `client.post(url, json=body, extensions={"retries": policy})`.
    """

    def __init__(self, *, retries: RetryPolicy | None, **options: Any) -> None:
        super().__init__(**options)
        self.retries = retries

    def send(self, request: httpx2.Request, **options: Any) -> httpx2.Response:
        refuse_client_redirects(self, options.get("follow_redirects", httpx2.USE_CLIENT_DEFAULT))
        send = super().send
        return send_with_retries(
            _policy_for(request, self.retries), request.method, request.url.path, lambda: send(request, **options)
        )


class AsyncRetryingClient(httpx2.AsyncClient):
    """`RetryingClient` as an `httpx2.AsyncClient`; with `issue_writes`, each write to one Jira issue holds its turn.

    A write (POST, PUT, PATCH, DELETE) whose path names one issue
    (`/rest/api/3/issue/DEMO-1/comment`) runs, retries included, while holding
    that issue's turn in `issue_writes` (`IssueWrites`).
    """

    def __init__(self, *, retries: RetryPolicy | None, issue_writes: IssueWrites | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.retries = retries
        self.issue_writes = issue_writes

    async def send(self, request: httpx2.Request, **options: Any) -> httpx2.Response:
        refuse_client_redirects(self, options.get("follow_redirects", httpx2.USE_CLIENT_DEFAULT))
        send = super().send
        async with self._turn(request):
            return await send_with_retries_async(
                _policy_for(request, self.retries), request.method, request.url.path, lambda: send(request, **options)
            )

    def _turn(self, request: httpx2.Request) -> AbstractAsyncContextManager[object]:
        """The turn `request` takes in `issue_writes`: its issue's, for a write naming one; else none."""
        if self.issue_writes is None:
            return nullcontext()
        return self.issue_writes.for_request(request) or nullcontext()


def _policy_for(request: httpx2.Request, default: RetryPolicy | None) -> RetryPolicy | None:
    """The request's own policy (`extensions["retries"]`) or the client's; none if its body cannot be sent twice."""
    policy = request.extensions.get("retries", default)
    if policy is not None and not isinstance(policy, RetryPolicy):
        raise TypeError('extensions["retries"] must be a RetryPolicy or None')
    return policy if isinstance(request.stream, httpx2.ByteStream) else None
