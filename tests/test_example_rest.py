"""The example app's inbox shows each issue's current summary from the tenant's Jira REST API, called as the user.

The test kit's fake Jira issues a user access token only for a valid JWT bearer
grant (HS256 with the tenant's shared secret, `iss` the tenant's oauthClientId,
`sub` the user) and answers each issue only to a user allowed to see it. Fail
closed: whenever Jira cannot confirm an issue to the user (hidden, down, slow,
rate limited), the event is left out and counted in `X-Events-Withheld`; the
inbox still loads. (These tests once expected the webhook's summary in those
cases: shown without Jira's word, it could reveal an issue the user may not see.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from example_app.jira_api import Tenant, visible_summaries
from example_app.main import create_app
from example_app.settings import Settings
from fastapi_connect_auth import ProductHosts, RetryPolicy
from fastapi_connect_auth.testing import DEFAULT_ACCOUNT_ID, ConnectAppDriver, FakeProduct, ProductAPICall

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

APP_URL = "https://connect-app.example.test"
APP_KEY = "fastapi-connect-example"
ISSUE_URL = "/rest/api/3/issue/DEMO-1?fields=summary"
ISSUE_QSH = hashlib.sha256(b"GET&/rest/api/3/issue/DEMO-1&fields=summary").hexdigest()
WEBHOOK_SUMMARY = "A fake issue"  # what the kit's default webhook body carries

Start = Callable[..., AbstractContextManager[ConnectAppDriver]]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(base_url=APP_URL, database_url=f"sqlite:///{tmp_path / 'app.db'}")


@pytest.fixture
def start(fake_product: FakeProduct, settings: Settings) -> Start:
    """Start the app with Jira's REST API reached through `transport` (`None`: the network) and drive it."""

    @contextmanager
    def started(
        transport: httpx2.AsyncBaseTransport | None = None, app_settings: Settings = settings
    ) -> Iterator[ConnectAppDriver]:
        app = create_app(
            app_settings,
            key_provider=fake_product.key_provider(),
            product_transport=transport,
            user_tokens=fake_product.user_tokens(),  # made here: inside serve_api() the served token endpoint
        )
        with TestClient(app, base_url=APP_URL) as client:
            yield fake_product.drive(client)

    return started


def loopback_allowed(settings: Settings) -> Settings:
    return replace(settings, extra_product_hosts=("127.0.0.1",))


def listed_events(driver: ConnectAppDriver) -> list[dict[str, Any]]:
    response = driver.context_call("GET", "/api/events")
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()
    return events


def summaries(driver: ConnectAppDriver) -> list[tuple[str | None, str | None, str | None]]:
    """(issue key, current summary, its source) of each listed event."""
    return [(event["issue_key"], event["current_summary"], event["summary_source"]) for event in listed_events(driver)]


def install_with_an_issue_event(driver: ConnectAppDriver) -> None:
    assert driver.install().status_code == 204
    assert driver.webhook("jira:issue_created").status_code == 204


def issue_calls(product: FakeProduct) -> list[ProductAPICall]:
    """The calls to Jira's REST API, without those to its authorization server."""
    return [call for call in product.api_calls if call.url != "/oauth2/token"]


def assert_verified_user_token(product: FakeProduct, call_index: int = -1) -> None:
    """The fake Jira got `GET ISSUE_URL` with a user token it issued, for the user of the context token."""
    call = issue_calls(product)[call_index]
    assert (call.method, call.url, call.refusal) == ("GET", ISSUE_URL, None)
    assert call.account_id == DEFAULT_ACCOUNT_ID
    (grant,) = [call for call in product.api_calls if call.url == "/oauth2/token"][:1]
    assert (grant.status, grant.account_id) == (200, DEFAULT_ACCOUNT_ID)


def withheld_only(driver: ConnectAppDriver) -> None:
    """Jira did not confirm the issue to the user: its event is left out, and counted."""
    response = driver.context_call("GET", "/api/events")
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["X-Events-Withheld"] == "1"


# -- Jira answers -------------------------------------------------------------------------


def test_inbox_shows_the_live_summary_fetched_with_a_verified_user_token(
    start: Start, fake_product: FakeProduct
) -> None:
    fake_product.issues["DEMO-1"] = "Live summary"
    with start(fake_product.api_transport) as driver:
        install_with_an_issue_event(driver)
        (event,) = listed_events(driver)
    assert event["webhook_summary"] == WEBHOOK_SUMMARY
    assert (event["current_summary"], event["summary_source"]) == ("Live summary", "live")
    assert [call.status for call in issue_calls(fake_product)] == [200]
    assert_verified_user_token(fake_product)


def test_each_issue_is_fetched_once_and_the_new_secret_is_used_after_an_update(
    start: Start, fake_product: FakeProduct
) -> None:
    fake_product.issues.update({"DEMO-1": "First, now renamed", "DEMO-2": "Second"})
    second_issue = {"webhookEvent": "jira:issue_updated", "issue": {"key": "DEMO-2", "fields": {"summary": "Old"}}}
    with start(fake_product.api_transport) as driver:
        install_with_an_issue_event(driver)
        assert driver.webhook("jira:issue_updated").status_code == 204
        assert driver.webhook("jira:issue_updated", second_issue).status_code == 204
        assert driver.webhook("jira:issue_updated", {"webhookEvent": "jira:issue_updated"}).status_code == 204
        assert driver.update().status_code == 204
        listed = summaries(driver)
    assert listed == [
        (None, None, None),
        ("DEMO-2", "Second", "live"),
        ("DEMO-1", "First, now renamed", "live"),
        ("DEMO-1", "First, now renamed", "live"),
    ]
    assert sorted(call.url for call in issue_calls(fake_product)) == [ISSUE_URL, ISSUE_URL.replace("DEMO-1", "DEMO-2")]
    assert all(call.status == 200 for call in fake_product.api_calls)


def test_a_loopback_jira_is_called_over_real_http_when_its_host_is_allow_listed(
    start: Start, fake_product: FakeProduct, settings: Settings
) -> None:
    fake_product.issues["DEMO-1"] = "Live over HTTP"
    with fake_product.serve_api() as jira_url, start(app_settings=loopback_allowed(settings)) as driver:
        assert jira_url.startswith("http://127.0.0.1:")
        install_with_an_issue_event(driver)
        assert summaries(driver) == [("DEMO-1", "Live over HTTP", "live")]
    assert_verified_user_token(fake_product)


# -- Jira does not answer -----------------------------------------------------------------


def answering(status: int) -> httpx2.MockTransport:
    return httpx2.MockTransport(lambda request: httpx2.Response(status, json={"errorMessages": ["No."]}))


def raising(error: type[httpx2.TransportError]) -> httpx2.MockTransport:
    def handle(request: httpx2.Request) -> httpx2.Response:
        raise error("simulated", request=request)

    return httpx2.MockTransport(handle)


async def never_answer(request: httpx2.Request) -> httpx2.Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "transport",
    [
        pytest.param(answering(500), id="500"),
        pytest.param(answering(503), id="503"),
        pytest.param(answering(403), id="403"),
        pytest.param(raising(httpx2.ConnectError), id="connect-error"),
        pytest.param(raising(httpx2.ReadTimeout), id="read-timeout"),
        pytest.param(
            httpx2.MockTransport(lambda request: httpx2.Response(302, headers={"Location": "https://evil.example/x"})),
            id="redirect-elsewhere",
        ),
    ],
)
def test_an_issue_jira_does_not_confirm_is_left_out(start: Start, transport: httpx2.MockTransport) -> None:
    """Fail closed: without Jira's 200 to this user, the app cannot know the user may see the issue."""
    with start(transport) as driver:
        install_with_an_issue_event(driver)
        withheld_only(driver)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda: httpx2.Response(200, text="<html>"), id="not-json"),
        pytest.param(lambda: httpx2.Response(200, json={"fields": {}}), id="no-summary"),
    ],
)
def test_the_webhooks_summary_is_shown_for_a_confirmed_issue_answered_without_one(
    start: Start, answer: Callable[[], httpx2.Response]
) -> None:
    with start(httpx2.MockTransport(lambda request: answer())) as driver:
        install_with_an_issue_event(driver)
        assert summaries(driver) == [("DEMO-1", WEBHOOK_SUMMARY, "webhook")]


def test_an_unknown_issue_is_left_out_after_a_verified_404(start: Start, fake_product: FakeProduct) -> None:
    with start(fake_product.api_transport) as driver:
        install_with_an_issue_event(driver)
        withheld_only(driver)
    assert [call.status for call in issue_calls(fake_product)] == [404]
    assert_verified_user_token(fake_product)


def test_a_grant_jira_refuses_leaves_the_issue_out(start: Start, fake_product: FakeProduct) -> None:
    """Jira rotated the secret without a re-install reaching the app: the user grant is refused, Jira never asked."""
    fake_product.issues["DEMO-1"] = "Live summary"
    with start(fake_product.api_transport) as driver:
        install_with_an_issue_event(driver)
        fake_product.rotate_shared_secret()
        response = driver.context_call("GET", "/api/events", shared_secret=fake_product.previous_shared_secrets[-1])
    assert response.json() == []
    assert response.headers["X-Events-Withheld"] == "1"
    assert issue_calls(fake_product) == []
    assert {call.refusal for call in fake_product.api_calls} == {"invalid assertion (InvalidSignatureError)"}


def test_a_tenant_installed_without_an_oauth_client_id_shows_no_issue(start: Start, fake_product: FakeProduct) -> None:
    """Installed before the app stored oauthClientId (or the product sent none): it cannot act as the user."""
    fake_product.issues["DEMO-1"] = "Live summary"
    with start(fake_product.api_transport) as driver:
        assert driver.install(oauthClientId=None).status_code == 204
        assert driver.webhook("jira:issue_created").status_code == 204
        withheld_only(driver)
    assert fake_product.api_calls == []


def test_a_jira_that_never_answers_is_left_out_within_the_deadline(start: Start, settings: Settings) -> None:
    with start(httpx2.MockTransport(never_answer), app_settings=replace(settings, product_api_timeout=0.2)) as driver:
        install_with_an_issue_event(driver)
        withheld_only(driver)


def test_an_unreachable_jira_is_left_out(start: Start, fake_product: FakeProduct, settings: Settings) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    fake_product.base_url = f"http://127.0.0.1:{port}"
    with start(app_settings=loopback_allowed(settings)) as driver:
        install_with_an_issue_event(driver)
        withheld_only(driver)


def test_a_tenant_whose_host_is_no_longer_allowed_is_never_called(
    start: Start, fake_product: FakeProduct, settings: Settings
) -> None:
    fake_product.issues["DEMO-1"] = "Live summary"
    with fake_product.serve_api():
        with start(app_settings=loopback_allowed(settings)) as driver:
            install_with_an_issue_event(driver)
            assert summaries(driver) == [("DEMO-1", "Live summary", "live")]
        with start(app_settings=settings) as driver:
            refused = driver.install()
            withheld_only(driver)
    assert refused.status_code == 401
    assert refused.json()["code"] == "UNTRUSTED_PRODUCT_HOST"
    assert [call.status for call in issue_calls(fake_product)] == [200]  # only while it was allowed


# -- rate limits --------------------------------------------------------------------------


def test_a_rate_limited_issue_is_left_out_at_once_when_the_wait_would_pass_the_deadline(
    start: Start, fake_product: FakeProduct, caplog: pytest.LogCaptureFixture
) -> None:
    fake_product.issues["DEMO-1"] = "Live summary"
    fake_product.api.throttle(429, times=10, retry_after=30, headers={"RateLimit-Reason": "jira-burst-based"})
    with caplog.at_level(logging.WARNING), start(fake_product.api_transport) as driver:
        install_with_an_issue_event(driver)
        withheld_only(driver)
    assert [call.status for call in issue_calls(fake_product)] == [429]  # no retry: 30 s is past the 3 s budget
    assert_verified_user_token(fake_product)
    assert "rate limited issue DEMO-1 (reason jira-burst-based, retry after 30.0s)" in caplog.text
    assert fake_product.shared_secret not in caplog.text


@pytest.mark.anyio
async def test_a_short_rate_limit_is_waited_out_within_the_deadline(fake_product: FakeProduct) -> None:
    fake_product.app_key = APP_KEY
    fake_product.issues["DEMO-1"] = "Live after a pause"
    fake_product.api.throttle(429, retry_after=1)
    fake_product.api.throttle(503)
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    tenant = Tenant(
        APP_KEY,
        fake_product.client_key,
        fake_product.base_url,
        fake_product.shared_secret,
        fake_product.oauth_client_id,
    )
    found = await visible_summaries(
        tenant,
        ["DEMO-1"],
        account_id=DEFAULT_ACCOUNT_ID,
        tokens=fake_product.user_tokens(),
        product_hosts=ProductHosts.of(),
        timeout=8.0,
        transport=fake_product.api_transport,
        retries=RetryPolicy(async_sleep=wait, random=lambda: 0.0),
    )
    assert found == {"DEMO-1": "Live after a pause"}
    assert waits == [1.0, 2.8]  # Retry-After, then the second backoff (4 s) at its lowest jitter: within 8 s
    assert [call.status for call in issue_calls(fake_product)] == [429, 503, 200]


# -- secrets ------------------------------------------------------------------------------


def test_no_secret_or_token_reaches_the_logs(
    start: Start, fake_product: FakeProduct, caplog: pytest.LogCaptureFixture
) -> None:
    fake_product.issues["DEMO-1"] = "Live summary"
    with caplog.at_level(logging.DEBUG):
        with start(fake_product.api_transport) as driver:
            install_with_an_issue_event(driver)
            assert summaries(driver)[0][2] == "live"
            fake_product.issues.clear()
            withheld_only(driver)
        with start(raising(httpx2.ConnectError)) as driver:
            withheld_only(driver)
    assert "answered HTTP 404 for issue DEMO-1" in caplog.text
    assert "Could not fetch issue DEMO-1" in caplog.text
    assert fake_product.shared_secret not in caplog.text
    assert "eyJ" not in caplog.text  # the start of every JWT


# -- configuration and page ---------------------------------------------------------------


def test_extra_product_hosts_come_from_a_comma_separated_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONNECT_EXTRA_PRODUCT_HOSTS", raising=False)
    assert Settings.from_env().extra_product_hosts == ()
    monkeypatch.setenv("CONNECT_EXTRA_PRODUCT_HOSTS", " 127.0.0.1, localhost,,")
    assert Settings.from_env().extra_product_hosts == ("127.0.0.1", "localhost")


def test_the_inbox_page_shows_the_current_summary_and_where_it_came_from(start: Start) -> None:
    with start(answering(500)) as driver:
        install_with_an_issue_event(driver)
        page = driver.load_page("inbox")
    assert page.status_code == 200
    for fragment in ("event.current_summary", 'event.summary_source === "live"', "(as of the webhook)"):
        assert fragment in page.text
