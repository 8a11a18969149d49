"""Integration: the test kit's AP bridge installed with Playwright's async API, in Chromium.

Its own browser, in its own module: a browser of Playwright's sync API (`tests/browser.py`)
cannot serve async calls, and must be stopped before an asyncio test runs.
"""

from __future__ import annotations

import pytest

from fastapi_connect_auth.testing import FakeProduct
from tests.browser import CHROMIUM_FLAGS, chromium, require_browser
from tests.test_browser import BRIDGED_PAGE, USER_B, claims_of

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]


@pytest.mark.anyio
async def test_the_bridge_installs_with_playwrights_async_api_too(fake_product: FakeProduct) -> None:
    require_browser()
    from playwright.async_api import Route, async_playwright

    async def fake_page(route: Route) -> None:
        await route.fulfill(content_type="text/html", body=BRIDGED_PAGE)

    bridge = fake_product.ap_bridge(account_id=USER_B)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page()
            await bridge.install_async(page)
            await page.route("https://app.example.test/page", fake_page)
            await page.goto("https://app.example.test/page")
            token = await page.evaluate("AP.context.getToken()")
            context = await page.evaluate("AP.context.getContext()")
        finally:
            await browser.close()

    assert bridge.tokens == [token]
    assert claims_of(token, fake_product)["sub"] == USER_B
    assert context == {}
