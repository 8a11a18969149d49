"""Reading a Forge installation's Connect `clientKey` from the reserved app property, as the app.

Atlassian serves `connect_client_key_019cdff3-8bfb-71fe-9628-875b700aebb8`, a
synthetic read-only property of the app's Connect key, through the Connect
app-properties API, read with the installation's own system token: its `value`
is the tenant's `clientKey`. The shape of `value` is not documented: a JSON
string, or an object carrying `clientKey`, is accepted; anything else is refused.
It stops being served at Connect's end of support (31 January 2027).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any, Literal

import httpx2

from .._json import loads
from ._errors import ProductAPIError
from ._retries import RateLimitInfo

__all__ = [
    "CONNECT_CLIENT_KEY_PROPERTY",
    "PropertyAnswer",
    "PropertyOutcome",
    "check_connect_key",
    "connect_property_path",
    "read",
]

CONNECT_CLIENT_KEY_PROPERTY = "connect_client_key_019cdff3-8bfb-71fe-9628-875b700aebb8"
"""The reserved app property holding an installation's Connect `clientKey` (until Connect's end of support)."""

PropertyOutcome = Literal["linked", "not-found", "refused", "rate-limited", "unreachable", "invalid"]
"""What one read of the property came to (see `PropertyAnswer`)."""

_CONNECT_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
_PATHS = {
    "jira": "/rest/atlassian-connect/1/addons/{key}/properties/{property}",
    "confluence": "/wiki/rest/atlassian-connect/1/addons/{key}/properties/{property}",
}


def check_connect_key(connect_key: str) -> str:
    """`connect_key` if it is a Connect app key (letters, digits, `.`, `_`, `-`; at most 80), else `ValueError`."""
    if not isinstance(connect_key, str) or _CONNECT_KEY.fullmatch(connect_key) is None:
        raise ValueError("connect_key is the app's Connect key (app.connect.key): letters, digits, '.', '_' and '-'")
    return connect_key


def connect_property_path(connect_key: str, product: str | None) -> str | None:
    """The property's path under the installation's `apiBaseUrl` (Confluence under `/wiki`); `None` for Bitbucket."""
    template = _PATHS.get(product or "")
    return template.format(key=connect_key, property=CONNECT_CLIENT_KEY_PROPERTY) if template else None


@dataclass(frozen=True, slots=True)
class PropertyAnswer:
    """What one read of the property came to: a `clientKey`, or why not (and how long the product asked to wait)."""

    outcome: PropertyOutcome
    """`linked` (a clientKey was read), `not-found`, `refused`, `rate-limited`, `unreachable` or `invalid`."""
    client_key: str | None = None
    """The clientKey the property holds, when `outcome` is `linked`."""
    retry_after: float | None = None
    """Seconds a 429 asked to wait, when it said."""


def client_key_of(document: Any) -> str | None:
    """The clientKey of the property's JSON: its `value` a string, or an object with a string `clientKey`."""
    value = document.get("value") if isinstance(document, dict) else None
    if isinstance(value, dict):
        value = value.get("clientKey")
    if not isinstance(value, str) or not 0 < len(value) <= 255 or not value.isprintable():
        return None
    return value


async def read(client: httpx2.AsyncClient, path: str, *, timeout: float) -> PropertyAnswer:
    """GET the property with `client` (bearing the installation's system token); never raises for the product's answer."""
    try:
        response = await asyncio.wait_for(client.get(path), timeout)
    except (httpx2.HTTPError, ProductAPIError, asyncio.TimeoutError):
        return PropertyAnswer("unreachable")
    status = response.status_code
    if status == 404:
        return PropertyAnswer("not-found")
    if status in (401, 403):
        return PropertyAnswer("refused")
    if status == 429:
        return PropertyAnswer("rate-limited", retry_after=RateLimitInfo.from_response(response).retry_after)
    if status != 200:
        return PropertyAnswer("unreachable")
    try:
        client_key = client_key_of(loads(response.content))
    except ValueError:
        client_key = None
    return PropertyAnswer("linked", client_key) if client_key is not None else PropertyAnswer("invalid")
