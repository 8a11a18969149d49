"""Calling out of a container: every request goes through the egress proxy, with `forge-proxy-authorization`.

`/jira/…`, `/confluence/…` and `/atlassian/graphql` reach the invocation's (or
an installation's) product; `/proxy/<host>/…` an external host on the manifest's
allow-list. The client refuses any request that would leave its prefix (another
origin, `..`), so the invocation id never reaches anything but the sidecar; rate
limits are retried as Atlassian asks (`RetryPolicy`).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Generator
from typing import Any, Literal

import httpx2
from pydantic import BaseModel, Field, ValidationError

from .._forge._models import _CONFIG, Identifier, ShortText
from .._json import loads
from .._outbound._errors import ProductAPIError, UnsafeRequestError
from .._outbound._origin import origin
from .._outbound._retries import ATLASSIAN_RETRIES, AsyncRetryingClient, RetryPolicy
from .._wiring import IDENTITY_ENCODING, read_raw

__all__ = ["EgressProduct", "EgressProxyAuth", "ForgeContainerInstallation", "egress_client", "list_installations"]

EgressProduct = Literal["jira", "confluence", "atlassian"]
"""Where a product client's paths go: `/jira/<rest path>`, `/confluence/<path>`, `/atlassian/graphql`."""

_HOST = re.compile(
    r"(?=.{1,253}(?::\d{1,5})?$)[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*(:\d{1,5})?"
)
_MAX_PAGE = 1024 * 1024


class EgressProxyAuth(httpx2.Auth):
    """Send `forge-proxy-authorization: <header>` with requests under `prefix` on the sidecar, refuse any other."""

    def __init__(self, prefix: httpx2.URL, header: str) -> None:
        self.prefix = prefix
        """The sidecar URL every request must stay under (`http://localhost:7072/jira`)."""
        self._header = header

    def __repr__(self) -> str:
        return f"EgressProxyAuth(prefix={str(self.prefix)!r})"

    def auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        path = request.url.path
        segments = path.split("/")
        if (
            origin(request.url) != origin(self.prefix)
            or not (path + "/").startswith(self.prefix.path + "/")
            or "." in segments
            or ".." in segments
        ):
            raise UnsafeRequestError(
                f"Refused to send the invocation's authorization outside {self.prefix.path} on the egress proxy."
            )
        request.headers["forge-proxy-authorization"] = self._header
        yield request


def egress_client(
    proxy_url: str,
    prefix: str,
    header: str,
    *,
    transport: httpx2.AsyncBaseTransport | None,
    retries: RetryPolicy | None = ATLASSIAN_RETRIES,
    **options: Any,
) -> httpx2.AsyncClient:
    """An `httpx2.AsyncClient` whose paths are relative to `proxy_url + prefix`, each sent with `header`."""
    if options.get("follow_redirects"):
        raise ValueError("the egress proxy's clients never follow redirects")
    if "auth" in options or "base_url" in options:
        raise ValueError("auth and base_url are set by the factory")
    base = httpx2.URL(proxy_url + prefix)
    options.setdefault("timeout", 30.0)
    if transport is not None:
        options.setdefault("transport", transport)
    return AsyncRetryingClient(retries=retries, auth=EgressProxyAuth(base, header), base_url=base, **options)


def proxy_prefix(host: str) -> str:
    """`/proxy/<host>`, for an external host (`api.example.com`, optionally `:port`) on the allow-list."""
    if not isinstance(host, str) or _HOST.fullmatch(host) is None:
        raise UnsafeRequestError("host must be a lower-case host name, optionally with :port")
    return f"/proxy/{host}"


class ForgeContainerInstallation(BaseModel):
    """One installation of `GET /v1/installations`: what offline calls name (`installationId=<id>`)."""

    model_config = _CONFIG

    id: Identifier
    """The installation's UUID."""
    installation_context: ShortText | None = None
    """The site or workspace ARI it is installed in."""
    version: ShortText | None = None
    """The app version installed."""
    secondary_installation_contexts: list[ShortText] = Field(default_factory=list, max_length=100)
    """Further contexts of the installation."""


class _Page(BaseModel):
    model_config = _CONFIG

    installations: list[ForgeContainerInstallation] = Field(max_length=1000)
    cursor: ShortText | None = None


async def list_installations(
    client: httpx2.AsyncClient, page_size: int, max_pages: int
) -> AsyncIterator[ForgeContainerInstallation]:
    """Every installation of the app's environment, page by page (`pageSize`, `cursor`)."""
    if not 1 <= page_size <= 100:
        raise ValueError("page_size is between 1 and 100")
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(max_pages):
        params = {"pageSize": str(page_size)} | ({"cursor": cursor} if cursor else {})
        async with client.stream("GET", "/v1/installations", params=params, headers=IDENTITY_ENCODING) as response:
            if response.status_code != 200:
                raise ProductAPIError(f"The installations listing answered {response.status_code}.")
            try:
                page = _Page.model_validate(loads(await read_raw(response, _MAX_PAGE)))
            except (ValueError, ValidationError):
                raise ProductAPIError("The installations listing answered something unreadable.") from None
        for installation in page.installations:
            yield installation
        if page.cursor is None or page.cursor in seen:
            return
        seen.add(page.cursor)
        cursor = page.cursor
    raise ProductAPIError("The installations listing did not end.")
