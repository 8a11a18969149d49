"""Integration: the example app's inbox page, run in Chromium as Jira shows it, with the test kit's AP bridge.

The app runs under uvicorn on loopback (a fresh SQLite file), installed by a fake
Jira whose REST API is served on loopback too. Each test opens Jira's page in the
browser (answered by the browser itself, at the product's base URL) with the
app's page in an iframe, at the URL Jira puts there: the page's query parameters
and a page-load JWT over them. The page's `all.js` is the kit's AP bridge, which
gives its script context tokens minted by the fake Jira for the test's user.
Every assertion is on what the browser rendered.

`UPDATE_SCREENSHOTS=1` (`make screenshots`) saves the rendered inbox as
`docs/images/inbox.png`; otherwise it is saved in the test's temporary folder.
"""

from __future__ import annotations

import hashlib
import html
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from example_app.demo import run_app
from fastapi_connect_auth.testing import ALL_JS_URL, APBridge, ConnectAppDriver, FakeProduct
from tests.browser import require_browser

if TYPE_CHECKING:
    from playwright.sync_api import Browser, FrameLocator, Page

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "images" / "inbox.png"
USER_A = "account-of-user-a"
USER_B = "account-of-user-b"
ISSUE_SUMMARY = "Checkout fails for customers in Norway"
"""DEMO-1's summary, as Jira's REST API answers it to a user allowed to see it."""
JIRA_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Webhook inbox - Jira</title>
  <style>
    body {{ margin: 0; font-family: sans-serif; background: #f4f5f7; }}
    header {{ background: #0052cc; color: #fff; padding: 12px 20px; font-weight: bold; }}
    iframe {{ display: block; margin: 16px 20px; width: calc(100% - 40px); height: 220px;
              border: 1px solid #dfe1e6; background: #fff; }}
  </style>
</head>
<body>
  <header>Jira (simulated) &middot; Apps &middot; Webhook inbox</header>
  <iframe src="{src}"></iframe>
</body>
</html>
"""
"""Jira's page around an app's general page: the app's iframe, at the URL Jira computed."""


@dataclass
class Served:
    """The example app on loopback, installed by `jira`, whose tenant has one webhook about DEMO-1."""

    jira: ConnectAppDriver
    client: httpx2.Client
    url: str

    @property
    def product(self) -> FakeProduct:
        product = self.jira.product
        assert isinstance(product, FakeProduct)
        return product


@pytest.fixture(scope="module")
def served(fake_product_signing_key: rsa.RSAPrivateKey) -> Iterator[Served]:
    require_browser()  # before starting anything: the app is for the browser
    product = FakeProduct(private_key=fake_product_signing_key)
    product.issues["DEMO-1"] = ISSUE_SUMMARY
    product.api.restrict("DEMO-1", USER_A)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="browser-")))
        stack.enter_context(product.serve_api())
        keys = stack.enter_context(product.serve_keys())
        # Jira's answers are waited for longer than in production: a loaded machine must not withhold DEMO-1.
        env = {"CONNECT_AUTHORIZATION_SERVER": product.api.authorization_server, "CONNECT_PRODUCT_API_TIMEOUT": "10"}
        url, _ = stack.enter_context(run_app(folder, keys.url, env=env))
        client = stack.enter_context(httpx2.Client(base_url=url, timeout=10.0))
        jira = product.drive(client)
        assert jira.install().status_code == 204
        assert jira.webhook("jira:issue_created").status_code == 204
        yield Served(jira, client, url)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (no cookies, no storage) and its page; its script errors fail the test."""
    from playwright.sync_api import expect

    expect.set_options(timeout=15_000)  # what the page renders may wait for the app and Jira on a loaded machine
    # Chromium asks before a page from the network frames a loopback app (Local Network Access); a page the
    # browser answers itself counts as one from the network. Granted here, as a developer grants it.
    context = browser.new_context(viewport={"width": 900, "height": 300}, permissions=["local-network-access"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert errors == []


def open_in_jira(page: Page, product: FakeProduct, iframe_url: str, *, host: str | None = None) -> FrameLocator:
    """Open Jira's page (at `host`, by default the product's base URL) with the app's page in an iframe."""
    jira_page = f"{host or product.base_url}/plugins/servlet/ac/fastapi-connect-example/inbox"
    body = JIRA_PAGE.format(src=html.escape(iframe_url))
    page.route(jira_page, lambda route: route.fulfill(content_type="text/html; charset=utf-8", body=body))
    page.goto(jira_page)
    return page.frame_locator("iframe")


def expired_page_url(served: Served, account_id: str) -> str:
    """The inbox's URL with a page-load JWT that expired a minute ago (PyJWT, the QSH hashed here)."""
    now = int(time.time())
    claims = {
        "iss": served.product.client_key,
        "sub": account_id,
        "iat": now - 240,
        "exp": now - 60,
        "qsh": hashlib.sha256(b"GET&/inbox&").hexdigest(),
    }
    return f"{served.url}/inbox?jwt={jwt.encode(claims, served.product.shared_secret, algorithm='HS256')}"


def claims_of(token: str, product: FakeProduct) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, product.shared_secret, algorithms=["HS256"])
    return claims


# -- the inbox, as users see it -----------------------------------------------------------------


def test_user_a_sees_the_restricted_issues_event_with_its_live_summary(
    page: Page, served: Served, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    bridge = served.product.ap_bridge(account_id=USER_A)
    bridge.install(page)
    inbox = open_in_jira(page, served.product, served.jira.iframe_url("inbox", account_id=USER_A))

    expect(inbox.locator("#status")).to_have_text("1 event(s), newest first.")
    expect(inbox.locator("#events li")).to_have_count(1)
    expect(inbox.locator("#events li")).to_contain_text(f"jira:issue_created DEMO-1 — {ISSUE_SUMMARY}")
    (token,) = bridge.tokens  # the page asked its AP for one context token, and used it
    assert claims_of(token, served.product)["sub"] == USER_A
    assert claims_of(token, served.product)["qsh"] == "context-qsh"

    screenshot = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / "inbox.png"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=screenshot)
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_user_b_does_not_see_the_restricted_issue_and_is_told_one_event_was_withheld(
    page: Page, served: Served
) -> None:
    from playwright.sync_api import expect

    served.product.ap_bridge(account_id=USER_B).install(page)
    inbox = open_in_jira(page, served.product, served.jira.iframe_url("inbox", account_id=USER_B))

    expect(inbox.locator("#status")).to_have_text(
        "0 event(s), newest first. 1 more about issues Jira did not confirm you may see."
    )
    expect(inbox.locator("#events li")).to_have_count(0)
    expect(inbox.locator("body")).not_to_contain_text("DEMO-1")


def test_a_tenant_with_no_events_sees_an_empty_inbox(
    page: Page, served: Served, fake_product_signing_key: rsa.RSAPrivateKey
) -> None:
    from playwright.sync_api import expect

    other = FakeProduct(base_url="https://other-site.atlassian.net", private_key=fake_product_signing_key)
    jira = other.drive(served.client)
    assert jira.install().status_code == 204
    other.ap_bridge().install(page)
    inbox = open_in_jira(page, other, jira.iframe_url("inbox"))

    expect(inbox.locator("#status")).to_have_text("0 event(s), newest first.")
    expect(inbox.locator("#events li")).to_have_count(0)


def test_an_expired_page_token_shows_the_refusal_not_a_blank_page(page: Page, served: Served) -> None:
    from playwright.sync_api import expect

    bridge = served.product.ap_bridge(account_id=USER_A)
    bridge.install(page)
    url = expired_page_url(served, USER_A)
    inbox = open_in_jira(page, served.product, url)

    expect(inbox.locator("h1")).to_have_text("This page could not be loaded")
    expect(inbox.locator("#code")).to_have_text("TOKEN_EXPIRED")
    expect(inbox.locator("#reason")).not_to_be_empty()
    expect(inbox.locator("body")).not_to_contain_text(url.rpartition("jwt=")[2])
    assert bridge.tokens == []  # no inbox script ran: nothing asked for a context token


# -- framing --------------------------------------------------------------------------------------


def test_the_page_and_its_refusal_carry_the_framing_headers(page: Page, served: Served) -> None:
    served.product.ap_bridge(account_id=USER_A).install(page)
    urls = [served.jira.iframe_url("inbox", account_id=USER_A), expired_page_url(served, USER_A)]
    statuses = []
    for url in urls:
        response = page.goto(url)
        assert response is not None
        headers = response.headers
        statuses.append(response.status)
        assert headers["content-security-policy"].startswith("frame-ancestors https://*.atlassian.net ")
        assert "http://127.0.0.1:*" in headers["content-security-policy"].split()  # the app's extra host
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    assert statuses == [200, 401]


def test_a_site_that_is_not_an_allowed_product_cannot_frame_the_page(page: Page, served: Served) -> None:
    """The browser enforces `frame-ancestors`: the same Jira page, served from another site, gets no inbox."""
    from playwright.sync_api import expect

    bridge = served.product.ap_bridge(account_id=USER_A)
    bridge.install(page)
    failures: list[str | None] = []
    page.on("requestfailed", lambda request: failures.append(request.failure))
    framed = open_in_jira(page, served.product, served.jira.iframe_url("inbox"), host="https://attacker.example.test")

    expect(framed.locator("#status")).to_have_count(0)
    assert [frame.url for frame in page.frames[1:]] == ["chrome-error://chromewebdata/"]
    assert failures == ["net::ERR_BLOCKED_BY_RESPONSE"]  # the answer's CSP refused the frame, not the network
    assert bridge.tokens == []


# -- the bridge itself ----------------------------------------------------------------------------

BRIDGED_PAGE = f'<!doctype html><script src="{ALL_JS_URL}"></script><p>A Connect page</p>'


def test_the_bridge_offers_the_ap_calls_a_page_makes(page: Page, fake_product: FakeProduct) -> None:
    """getToken and getContext as promises and with callbacks, fresh tokens each call; resize does nothing."""
    bridge = fake_product.ap_bridge(account_id=USER_A, context={"jira": {"issue": {"key": "DEMO-7"}}})
    bridge.install(page)
    page.route(
        "https://app.example.test/page", lambda route: route.fulfill(content_type="text/html", body=BRIDGED_PAGE)
    )
    page.goto("https://app.example.test/page")

    promised = page.evaluate("AP.context.getToken()")
    called_back = page.evaluate("new Promise((resolve) => AP.context.getToken(resolve))")
    bridge.account_id = USER_B
    as_b = page.evaluate("AP.context.getToken()")
    context = page.evaluate("new Promise((resolve) => AP.context.getContext(resolve))")
    layout = page.evaluate("[AP.resize(), AP.resize('100%', '300px'), AP.sizeToParent()]")

    assert bridge.tokens == [promised, called_back, as_b]
    for token, user in [(promised, USER_A), (called_back, USER_A), (as_b, USER_B)]:
        claims = claims_of(token, fake_product)  # HS256 with the tenant's shared secret
        assert claims["iss"] == fake_product.client_key
        assert claims["qsh"] == "context-qsh"
        assert claims["sub"] == user
        assert claims["context"] == {"jira": {"issue": {"key": "DEMO-7"}}, "user": {"accountId": user}}
        assert claims["exp"] > time.time()
    assert context == {"jira": {"issue": {"key": "DEMO-7"}}}
    assert layout == [None, None, None]


def test_a_page_without_the_bridge_installed_is_told_so(page: Page, fake_product: FakeProduct) -> None:
    """Served without `install` (its function not exposed), the script's calls reject with a message saying why."""
    page.route(ALL_JS_URL, APBridge(fake_product).fulfil)
    page.route(
        "https://app.example.test/page", lambda route: route.fulfill(content_type="text/html", body=BRIDGED_PAGE)
    )
    page.goto("https://app.example.test/page")

    refused = page.evaluate("AP.context.getToken().then(() => 'resolved', (error) => error.message)")

    assert refused == "The test kit's AP bridge is not installed on this page: APBridge.install(page)."


def test_the_bridge_answers_only_what_its_script_asks(fake_product: FakeProduct) -> None:
    with pytest.raises(ValueError, match="not 'license'"):
        fake_product.ap_bridge().answer("license")
