"""`FakeProduct`: a simulated Atlassian product (Jira, Confluence or Bitbucket Cloud) that signs like the real one."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx2
from cryptography.hazmat.primitives.asymmetric import rsa

from .._outbound import UserTokenProvider
from ._bridge import APBridge
from ._driver import ConnectAppDriver
from ._profiles import DEFAULT_ACCOUNT_ID, ProductType
from ._restapi import FAKE_AUTHORIZATION_SERVER, FakeRestAPI, ProductAPICall, issue_route
from ._tenant import FakeTenant

__all__ = ["FakeProduct"]


class FakeProduct(FakeTenant):
    """A fake Atlassian product that installs a Connect app and calls it.

    `product_type` picks Jira (the default), Confluence or Bitbucket Cloud: its
    base URL, install fields, webhook bodies and whether installs are signed
    with its RSA key. It holds that key and its `kid` (signed installs), the
    tenant's `client_key` and current `shared_secret`, and serves its public key
    both as an httpx2 transport (`key_transport`, `key_provider()`) and as a
    loopback HTTP server (`serve_keys()`). Its token builders take the method
    and URL of the request they will sign; URLs are relative to `app_base_url`,
    as the app's descriptor declares them.

    It also has a REST API for the app to call back (`api`), in-process
    (`api_transport`) or on a loopback port (`serve_api()`): it answers only a
    valid app JWT and records every call in `api_calls`. A fake Jira answers
    `GET /rest/api/3/issue/{key}` with the summaries in `issues`; add routes of
    your own with `api.route(...)`. It also issues user access tokens (the app
    acting as a user, `user_tokens()`), and `api.restrict(key, *account_ids)`
    hides an issue from every other user, with Jira's 404.

    ```python
    product = FakeProduct(product_type="confluence")
    app = create_app(key_provider=product.key_provider())
    with TestClient(app) as client:
        confluence = product.drive(client)
        assert confluence.install().status_code == 204
    ```
    """

    def __init__(
        self,
        *,
        product_type: ProductType = "jira",
        base_url: str | None = None,
        client_key: str | None = None,
        shared_secret: str | None = None,
        kid: str | None = None,
        private_key: rsa.RSAPrivateKey | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            product_type=product_type,
            base_url=base_url,
            client_key=client_key,
            shared_secret=shared_secret,
            kid=kid,
            private_key=private_key,
            clock=clock,
        )
        self.issues: dict[str, str] = {}
        """`{issue key: summary}` that a fake Jira's `GET /rest/api/3/issue/{key}` answers."""
        self.api = FakeRestAPI(self)
        """The product's REST API: add routes with `api.route(method, path)`."""
        if self.product_type == "jira":
            self.api.add_route("GET", "/rest/api/{version}/issue/{key}", issue_route(self.issues, self.api.viewers))

    def user_tokens(self, **options: Any) -> UserTokenProvider:
        """A `UserTokenProvider` that gets user access tokens from this product's fake authorization server.

        In-process through `api_transport`; inside `serve_api()`, from the served
        API over loopback. `options` go to `UserTokenProvider` (e.g. `clock`).
        """
        client = (
            None
            if self.api.authorization_server != FAKE_AUTHORIZATION_SERVER
            else httpx2.AsyncClient(transport=self.api.transport)
        )
        return UserTokenProvider(authorization_server=self.api.authorization_server, client=client, **options)

    @property
    def api_calls(self) -> list[ProductAPICall]:
        """Every call the REST API received, in order (`api.calls`)."""
        return self.api.calls

    def answer_api_request(self, request: httpx2.Request) -> httpx2.Response:
        """Answer a call to the product's REST API, as `api_transport` and `serve_api()` do.

        401 unless `Authorization: JWT` carries a token HS256-signed with the
        current shared secret, `iss` the installed `app_key`, `aud` the client key,
        unexpired, with the `qsh` of this request relative to `base_url`; then the
        route for the path answers, or 404. Each call is appended to `api_calls`.
        """
        return self.api.answer(request)

    @property
    def api_transport(self) -> httpx2.MockTransport:
        """An httpx2 transport that answers the product's REST API in-process (`product_client(transport=...)`)."""
        return self.api.transport

    @contextmanager
    def serve_api(self) -> Iterator[str]:
        """Serve the REST API on 127.0.0.1 (for an app in another process), yielding the product's new base URL.

        Within the block `base_url` is `http://127.0.0.1:<port>` (its path kept), so
        an install made there tells the app to call this server; it is restored after.
        """
        with self.api.serve() as base_url:
            yield base_url

    def ap_bridge(self, *, account_id: str = DEFAULT_ACCOUNT_ID, context: Mapping[str, Any] | None = None) -> APBridge:
        """A fake of Atlassian's `all.js` for a browser test of the app's pages, acting for `account_id`.

        For tests only: `bridge.install(page)` on a Playwright page makes its
        `AP.context.getToken()` resolve to this tenant's context tokens (see `APBridge`).
        """
        return APBridge(self, account_id=account_id, context=context)

    def drive(self, client: httpx2.Client, *, app_base_url: str | None = None) -> ConnectAppDriver:
        """A driver that sends this product's calls to the app behind `client` (a `TestClient` or `httpx2.Client`)."""
        return ConnectAppDriver(self, client, app_base_url=app_base_url)
