"""A browser test of the app's own page: Chromium loads it at the URL Jira frames,
with the test kit's AP bridge in place of Atlassian's all.js."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from docs_src.testing_running_app import running_app
from fastapi_connect_auth.testing import FakeProduct

# As root (in a container) Chromium needs --no-sandbox; offline, it should not try to
# reach its own servers.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-background-networking", "--disable-sync"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium: the system's (`chromium` on the PATH), else Playwright's."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=shutil.which("chromium"), args=CHROMIUM_FLAGS
        )
        yield chromium
        chromium.close()


def test_the_page_shows_the_user_and_the_created_issues(
    fake_product: FakeProduct, browser: Browser
) -> None:
    with fake_product.serve_keys() as keys, running_app(keys.url) as client:
        jira = fake_product.drive(client)
        assert jira.install().status_code == 204
        assert jira.webhook("jira:issue_created").status_code == 204

        page = browser.new_page()
        bridge = fake_product.ap_bridge(account_id="user-1")
        bridge.install(page)  # before the page asks for all.js
        page.goto(jira.iframe_url("created-issues", account_id="user-1"))

        expect(page.locator("#user")).to_have_text("user-1")  # the token's user
        expect(page.locator("#issues li")).to_have_text(["DEMO-1"])
        assert len(bridge.tokens) == 1  # the page's one call to AP.context.getToken()
        page.close()
