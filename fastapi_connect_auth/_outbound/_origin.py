"""Origin pinning: a tenant's credentials go to its base URL's origin only, and redirects are re-signed per hop."""

from __future__ import annotations

from collections.abc import Callable, Generator

import httpx2

from ._errors import ProductAPIError, UnsafeRedirectError, UnsafeRequestError

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
"""The only hosts credentials may be sent to over plain http (a local test product)."""

_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def origin(url: httpx2.URL) -> Origin:
    return (url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 0))


def origin_text(url: httpx2.URL) -> str:
    scheme, host, port = origin(url)
    return f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}"


def safe_base_url(base_url: str, what: str) -> httpx2.URL:
    """`base_url` without its trailing slash, if credentials may be sent there; else raise."""
    try:
        url = httpx2.URL(base_url.rstrip("/"))
    except httpx2.InvalidURL as exc:
        raise ValueError(f"{what} is not a valid URL") from exc
    if url.scheme not in _DEFAULT_PORTS or not url.host or url.userinfo or url.query or url.fragment:
        raise ValueError(f"{what} must be an absolute http(s) URL without credentials, query or fragment")
    if url.scheme == "http" and url.host not in LOOPBACK_HOSTS:
        raise UnsafeRequestError(
            f"Refused to send credentials over plain http to {origin_text(url)}: only https, "
            f"or http to {', '.join(sorted(LOOPBACK_HOSTS))}, is allowed."
        )
    return url


def refuse_client_redirects(client: httpx2.Client | httpx2.AsyncClient, follow_redirects: object) -> None:
    """Raise `UnsafeRequestError` before sending if httpx2 itself would follow redirects.

    httpx2 follows a redirect before the auth flow sees it: the next hop, to any
    origin, would be sent (without credentials, but with the path and query the
    product chose) before the library could refuse it. The Connect auth follows
    same-origin redirects itself, re-signing each hop.
    """
    if follow_redirects is True or (follow_redirects is httpx2.USE_CLIENT_DEFAULT and client.follow_redirects):
        raise UnsafeRequestError(
            "Refused to send with follow_redirects=True: the Connect auth follows same-origin redirects itself, "
            "re-signing each hop; leave follow_redirects off."
        )


def required(value: str, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    return value


class TenantAuth(httpx2.Auth):
    """What both auths share: only the tenant's origin gets credentials, and redirects are re-signed."""

    def __init__(self, base_url: str, *, follow_redirects: bool, max_redirects: int) -> None:
        self.base_url = safe_base_url(base_url, "base_url")
        """The tenant's base URL: the only origin that receives the credentials."""
        self.follow_redirects = follow_redirects
        """Whether redirects within that origin are followed (and signed again)."""
        self.max_redirects = max_redirects
        """The most redirects followed for one call."""
        self._pinned_origin = origin(self.base_url)

    def check_destination(self, url: httpx2.URL) -> None:
        """Raise `UnsafeRequestError` unless `url` has the scheme, host and port of the tenant's base URL."""
        if origin(url) != self._pinned_origin:
            raise UnsafeRequestError(
                f"Refused to send the tenant's credentials to {origin_text(url)}: "
                f"only {origin_text(self.base_url)} (the tenant's baseUrl) may receive them."
            )

    def _hops(
        self, request: httpx2.Request, authorize: Callable[[httpx2.Request], str]
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        """Send `request` with `Authorization: authorize(request)`, then each same-origin redirect likewise."""
        for _ in range(self.max_redirects + 1):
            self.check_destination(request.url)
            request.headers["Authorization"] = authorize(request)
            response = yield request
            if response.request is not request:
                raise ProductAPIError(
                    "The HTTP client followed a redirect with a stale token: create it with "
                    "follow_redirects=False and let the Connect auth follow redirects, signing each hop."
                )
            next_request = response.next_request
            if not self.follow_redirects or next_request is None:
                return
            if origin(next_request.url) != self._pinned_origin:
                raise UnsafeRedirectError(
                    f"Not following the product's redirect to {origin_text(next_request.url)}: only "
                    f"{origin_text(self.base_url)} may receive the tenant's credentials.",
                    location=str(next_request.url),
                )
            request = next_request
        raise httpx2.TooManyRedirects(f"Exceeded {self.max_redirects} redirects.", request=request)
