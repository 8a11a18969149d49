"""`APBridge`: Atlassian's `all.js` faked in a Playwright browser, so a test can run a Connect app's own pages.

FOR TESTS ONLY. A page the product frames loads `all.js` from Atlassian's CDN and
asks its `AP` object for context tokens. In a test the bridge takes that URL over
in the browser (Playwright's `route`) and serves `ap_bridge.js` instead, shipped
with the kit. That script's `AP.context.getToken()` calls back into the test
(Playwright's `expose_function`), where the fake product mints a fresh context
token for each call, as the product's `all.js` gets one from the product.

Playwright is not a dependency of the library: this module only uses the page it
is given, so the kit imports without it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from ._profiles import DEFAULT_ACCOUNT_ID
from ._tenant import FakeTenant

if TYPE_CHECKING:
    from playwright import async_api, sync_api

__all__ = ["ALL_JS_URL", "APBridge"]

ALL_JS_URL = "https://connect-cdn.atl-paas.net/all.js"
"""Where a Connect page loads Atlassian's `all.js` from: what the bridge serves by default."""

_EXPOSED = "__fastapiConnectAuthAP"
"""The name of the function the bridge exposes on the page; `ap_bridge.js` calls it."""


@cache
def _script() -> str:
    return files("fastapi_connect_auth.testing").joinpath("ap_bridge.js").read_text(encoding="utf-8")


class APBridge:
    """A fake of Atlassian's `all.js` for a Connect app's pages in a Playwright browser. For tests only.

    `AP.context.getToken()` resolves to a context token that `product` mints on
    each call for `account_id`: HS256 with the tenant's current shared secret,
    `qsh` `context-qsh`, `sub` and `context.user` the user, as the product's.
    `AP.context.getContext()` resolves to `context`, which the tokens' `context`
    claim carries too; `AP.resize()` and `AP.sizeToParent()` do nothing. Each
    call takes an optional callback, as the real ones do.

    Install it on a page (or a browser context) before the page loads, and load
    the page at the URL the product would frame:

    ```python
    bridge = product.ap_bridge(account_id="user-a")
    bridge.install(page)  # Playwright's sync API; `await bridge.install_async(page)` for the async one
    page.goto(jira.iframe_url("inbox"))
    ```

    Change `account_id` or `context` between calls to act for someone else;
    `tokens` lists every token given to the page, in order.
    """

    def __init__(
        self,
        product: FakeTenant,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        context: Mapping[str, Any] | None = None,
        script_url: str = ALL_JS_URL,
    ) -> None:
        self.product = product
        """The fake product whose tenant's shared secret signs the tokens."""
        self.account_id = account_id
        """The user the page acts for: the `sub` of the tokens."""
        self.context = dict(context or {})
        """What `AP.context.getContext()` answers, and the tokens' `context` claim holds beside `user`."""
        self.script_url = script_url
        """The URL (or Playwright glob) the page loads `all.js` from, which the bridge answers."""
        self.tokens: list[str] = []
        """Every context token given to the page, in order."""

    @staticmethod
    def script() -> str:
        """The JavaScript served in place of `all.js` (`ap_bridge.js`, shipped with the kit)."""
        return _script()

    def context_token(self) -> str:
        """A fresh context token, as `AP.context.getToken()` resolves it; recorded in `tokens`."""
        token = self.product.context_token(account_id=self.account_id, context=self.context)
        self.tokens.append(token)
        return token

    def answer(self, call: str) -> str | dict[str, Any]:
        """What the page's `AP` asked for: `"token"` (`getToken`) or `"context"` (`getContext`)."""
        if call == "token":
            return self.context_token()
        if call == "context":
            return dict(self.context)
        raise ValueError(f"The AP bridge answers 'token' and 'context', not {call!r}.")

    def fulfil(self, route: sync_api.Route | async_api.Route) -> Awaitable[None] | None:
        """Answer the page's request for `all.js` with the bridge's script (a Playwright route handler)."""
        return route.fulfill(
            status=200,
            content_type="text/javascript; charset=utf-8",
            body=self.script(),
            headers={"Cache-Control": "no-store"},
        )

    def install(self, page: sync_api.Page | sync_api.BrowserContext) -> None:
        """Serve the bridge to `page` (or to every page of a context), with Playwright's sync API."""
        page.expose_function(_EXPOSED, self.answer)
        page.route(self.script_url, self.fulfil)

    async def install_async(self, page: async_api.Page | async_api.BrowserContext) -> None:
        """Serve the bridge to `page` (or to every page of a context), with Playwright's async API."""
        await page.expose_function(_EXPOSED, self.answer)
        await page.route(self.script_url, self.fulfil)
