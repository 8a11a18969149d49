"""`ConnectAppDriver`: sends a fake product's calls to an app under test, the way the product would.

It reads the app's descriptor, as the product does at install time, to learn
the app's base URL, key, lifecycle URLs, webhooks and pages; then it expands the
URL's context parameters (`{issue.key}`, `{space.key}`) and signs each call for
the URL it is sent to.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import httpx2

from .._connect._redelivery import WEBHOOK_IDENTIFIER_HEADER, WEBHOOK_RETRY_HEADER
from ._profiles import DEFAULT_ACCOUNT_ID
from ._tenant import FakeTenant

__all__ = ["ConnectAppDriver", "expand_url"]

_CONTEXT_PARAMETER = re.compile(r"\{([^{}]*)\}")


def expand_url(template: str, context: Mapping[str, str]) -> str:
    """`template` with each `{name}` replaced by `context[name]`, percent-encoded, as the product does.

    A parameter missing from `context` is an error: sent literally, it would
    test a URL the product never calls.
    """
    missing = [name for name in _CONTEXT_PARAMETER.findall(template) if name not in context]
    if missing:
        raise ValueError(f"{template!r} needs context parameters {missing}; pass them in `context`.")
    return _CONTEXT_PARAMETER.sub(lambda match: quote(str(context[match[1]]), safe=""), template)


class ConnectAppDriver:
    """Drives the app behind `client` (a `TestClient` or an `httpx2.Client`) through its Connect lifecycle.

    Every method returns the app's `httpx2.Response`, so a test asserts what the
    app answered. `app_base_url` defaults to the descriptor's `baseUrl`; the
    client may reach the app at another address (a `TestClient`, a loopback port).
    """

    def __init__(
        self,
        product: FakeTenant,
        client: httpx2.Client,
        *,
        app_base_url: str | None = None,
        descriptor_url: str = "/atlassian-connect.json",
    ) -> None:
        self.product = product
        """The fake product whose calls are sent."""
        self.client = client
        """The client that reaches the app (a `TestClient` or an `httpx2.Client`)."""
        self.descriptor_url = descriptor_url
        """Where the app serves its descriptor, relative to the client's base URL."""
        self._app_base_url = app_base_url.rstrip("/") if app_base_url else None
        self._descriptor: dict[str, Any] | None = None
        self._installed_secret: str | None = None

    # -- the descriptor -------------------------------------------------------------------

    @property
    def descriptor(self) -> dict[str, Any]:
        """The app's descriptor, fetched once."""
        if self._descriptor is None:
            response = self.client.get(self.descriptor_url)
            response.raise_for_status()
            descriptor = response.json()
            if not isinstance(descriptor, dict):
                raise ValueError("The app's descriptor is not a JSON object.")
            self._descriptor = descriptor
        return self._descriptor

    @property
    def app_base_url(self) -> str:
        """The base URL the product signs for: the one given, else the descriptor's `baseUrl`."""
        if self._app_base_url is None:
            self._app_base_url = str(self.descriptor["baseUrl"]).rstrip("/")
        return self._app_base_url

    @property
    def app_key(self) -> str:
        """The app's key, from its descriptor."""
        return str(self.descriptor["key"])

    def lifecycle_url(self, event: str) -> str:
        """The URL the descriptor declares for a lifecycle event (`installed`, `uninstalled`...)."""
        url = self.descriptor.get("lifecycle", {}).get(event)
        if not url:
            raise LookupError(f"The app's descriptor declares no {event!r} lifecycle callback.")
        return str(url)

    def webhook_url(self, event: str) -> str:
        """The URL the descriptor declares for webhook `event` (e.g. `jira:issue_created`)."""
        for webhook in self.descriptor.get("modules", {}).get("webhooks", []):
            if webhook.get("event") == event:
                return str(webhook["url"])
        raise LookupError(f"The app's descriptor declares no webhook for {event!r}.")

    def page_url(self, key: str, module: str = "generalPages") -> str:
        """The URL of the page module `key` (a general page by default)."""
        for page in self.descriptor.get("modules", {}).get(module, []):
            if page.get("key") == key:
                return str(page["url"])
        raise LookupError(f"The app's descriptor declares no {module} module {key!r}.")

    # -- sending --------------------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        token: str | None = None,
        json_body: Any = None,
        content: str | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx2.Response:
        """Send `method url` (relative to the app's base URL), with `Authorization: JWT <token>` if given."""
        all_headers = dict(headers or {})
        if token is not None:
            all_headers["Authorization"] = f"JWT {token}"
        if json_body is not None:
            content = json.dumps(json_body)
            all_headers.setdefault("Content-Type", "application/json")
        return self.client.request(method, self._path(url), content=content, headers=all_headers)

    def _path(self, url: str) -> str:
        """`url` under the path of the app's base URL, for the client (which knows only the host)."""
        return urlsplit(self.app_base_url).path.rstrip("/") + url

    def _lifecycle(
        self, event: str, body: dict[str, Any] | str | bytes, token: str | None, signed_at: float | None = None
    ) -> httpx2.Response:
        url = self.lifecycle_url(event)
        if token is None:
            late: dict[str, Any] = {} if signed_at is None else {"iat": int(signed_at)}
            if event in ("installed", "uninstalled") and self.product.signs_installs:
                token = self.product.signed_token("POST", url, app_base_url=self.app_base_url, **late)
            else:
                # Unsigned installs (Bitbucket Cloud) use the secret the app holds: an update, the one it replaces.
                secret = self._installed_secret if event == "installed" else None
                token = self.product.shared_secret_token(
                    "POST", url, app_base_url=self.app_base_url, shared_secret=secret, **late
                )
        if isinstance(body, dict):
            response = self.request("POST", url, token=token, json_body=body)
        else:
            response = self.request(
                "POST", url, token=token, content=body, headers={"Content-Type": "application/json"}
            )
        if response.is_success and event in ("installed", "uninstalled"):
            # Like the product: once the app accepted the install, its REST API accepts the app's tokens.
            installed = event == "installed"
            self.product.app_key = self.app_key if installed else None
            self._installed_secret = self.product.shared_secret if installed else None
        return response

    # -- the lifecycle --------------------------------------------------------------------

    def install(
        self,
        *,
        token: str | None = None,
        content: str | bytes | None = None,
        signed_at: float | None = None,
        **fields: Any,
    ) -> httpx2.Response:
        """A signed `installed` callback with the current shared secret.

        `fields` override payload fields (`None` leaves one out); `content` sends a
        raw body instead; `token` replaces the correctly signed one. `signed_at`
        (here and for `uninstall`, `enable`, `disable`) dates the token's `iat`
        earlier: a callback delivered late, after one signed later. Once the app
        answers 2xx, the product's REST API accepts the app's tokens (`app_key`).
        """
        body = content if content is not None else self.product.install_payload(app_key=self.app_key, **fields)
        return self._lifecycle("installed", body, token, signed_at)

    def update(self, shared_secret: str | None = None, **fields: Any) -> httpx2.Response:
        """Re-install with a new shared secret, as the product does on an upgrade or re-enable."""
        self.product.rotate_shared_secret(shared_secret)
        return self.install(**fields)

    def uninstall(self, *, token: str | None = None, signed_at: float | None = None, **fields: Any) -> httpx2.Response:
        """A signed `uninstalled` callback; once the app accepts it, the REST API refuses the app."""
        body = self.product.lifecycle_payload("uninstalled", app_key=self.app_key, **fields)
        return self._lifecycle("uninstalled", body, token, signed_at)

    def enable(self, *, token: str | None = None, signed_at: float | None = None) -> httpx2.Response:
        """An `enabled` callback, signed with the shared secret."""
        body = self.product.lifecycle_payload("enabled", app_key=self.app_key)
        return self._lifecycle("enabled", body, token, signed_at)

    def disable(self, *, token: str | None = None, signed_at: float | None = None) -> httpx2.Response:
        """A `disabled` callback, signed with the shared secret."""
        body = self.product.lifecycle_payload("disabled", app_key=self.app_key)
        return self._lifecycle("disabled", body, token, signed_at)

    # -- calls ----------------------------------------------------------------------------

    def webhook(
        self,
        event: str,
        body: dict[str, Any] | None = None,
        *,
        shared_secret: str | None = None,
        token: str | None = None,
        context: Mapping[str, str] | None = None,
        identifier: str | None = None,
        retry: int | None = None,
    ) -> httpx2.Response:
        """Send webhook `event` to its URL in the descriptor, signed with the shared secret (or `shared_secret`).

        The default body is the product's own (`FakeProduct.webhook_body`): a Jira
        issue, a Confluence page, a Bitbucket repository. `context` fills the URL's
        `{parameters}`; one left without a value is a `ValueError`. Like Jira, it
        sends `X-Atlassian-Webhook-Identifier` (a new UUID unless `identifier` is
        given: the one sent is `response.request.headers[WEBHOOK_IDENTIFIER_HEADER]`);
        `retry=n` sends it as Jira's n-th retry (`X-Atlassian-Webhook-Retry: n`).
        `retry_webhook(response)` sends a webhook again as Jira retries it.
        """
        url = expand_url(self.webhook_url(event), context or {})
        if body is None:
            body = self.product.webhook_body(event)
        return self._webhook(url, json.dumps(body), identifier or str(uuid.uuid4()), retry, shared_secret, token)

    def retry_webhook(
        self,
        sent: httpx2.Response,
        *,
        retry: int | None = None,
        body: dict[str, Any] | None = None,
        shared_secret: str | None = None,
    ) -> httpx2.Response:
        """Send the webhook whose answer was `sent` again, as Jira retries it.

        The same URL, identifier and body, a freshly signed token, and
        `X-Atlassian-Webhook-Retry` one more than the last (`retry` sets it); `body`
        replaces the body, for a test of a retry that is not Jira's.
        """
        request = sent.request
        identifier = request.headers.get(WEBHOOK_IDENTIFIER_HEADER)
        if identifier is None:
            raise ValueError("That response is not to a webhook this driver sent: it has no webhook identifier.")
        last = request.headers.get(WEBHOOK_RETRY_HEADER)
        number = retry if retry is not None else (int(last) + 1 if last else 1)
        url = request.url.raw_path.decode("ascii").removeprefix(self._path(""))
        content = request.content if body is None else json.dumps(body).encode()
        return self._webhook(url, content, identifier, number, shared_secret, None)

    def _webhook(
        self,
        url: str,
        content: str | bytes,
        identifier: str,
        retry: int | None,
        shared_secret: str | None,
        token: str | None,
    ) -> httpx2.Response:
        if token is None:
            token = self.product.shared_secret_token(
                "POST", url, app_base_url=self.app_base_url, shared_secret=shared_secret
            )
        headers = {"Content-Type": "application/json", WEBHOOK_IDENTIFIER_HEADER: identifier}
        if retry is not None:
            headers[WEBHOOK_RETRY_HEADER] = str(retry)
        return self.request("POST", url, token=token, content=content, headers=headers)

    def iframe_url(
        self,
        key: str,
        *,
        module: str = "generalPages",
        context: Mapping[str, str] | None = None,
        account_id: str = DEFAULT_ACCOUNT_ID,
        shared_secret: str | None = None,
        **params: str,
    ) -> str:
        """The URL of page `key` of `module` as the product puts it in its iframe: its query parameters, `jwt` last.

        The token is signed for the app's base URL, as the product signs it, for
        `account_id`; the URL points where `client` reaches the app, so a browser
        can load it from there (`page.goto(driver.iframe_url("inbox"))`).
        `context` fills the URL's `{parameters}` (`{"space.key": "DOC"}` for
        `?space={space.key}`); one left without a value is a `ValueError`.
        `params` add or override query parameters.
        """
        url = self.product.page_url(
            expand_url(self.page_url(key, module), context or {}),
            app_base_url=self.app_base_url,
            app_key=self.app_key,
            account_id=account_id,
            shared_secret=shared_secret,
            **params,
        )
        return str(self.client.base_url.join(self._path(url)))

    def load_page(
        self,
        key: str,
        *,
        module: str = "generalPages",
        context: Mapping[str, str] | None = None,
        shared_secret: str | None = None,
        **params: str,
    ) -> httpx2.Response:
        """Load page `key` of `module` as the product's iframe does, at `iframe_url(...)`."""
        return self.client.get(
            self.iframe_url(key, module=module, context=context, shared_secret=shared_secret, **params)
        )

    def context_call(
        self,
        method: str,
        url: str,
        *,
        account_id: str | None = None,
        shared_secret: str | None = None,
        json_body: Any = None,
    ) -> httpx2.Response:
        """Call the app from its own iframe, with a token from `AP.context.getToken()`."""
        options: dict[str, Any] = {"shared_secret": shared_secret}
        if account_id is not None:
            options["account_id"] = account_id
        return self.request(method, url, token=self.product.context_token(**options), json_body=json_body)
