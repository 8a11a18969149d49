"""What the stores keep: Connect tenants and Forge installations, as plain frozen records.

Records are what every store reads and writes, whatever its backend; the rules
that decide them (a new secret replaces the old at once, an uninstalled tenant
stays out, which tenant a Forge call is linked to) live in `_base.py`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

__all__ = [
    "ConnectLink",
    "ForgeInstallationRecord",
    "InstallationState",
    "LinkOutcome",
    "LinkSource",
    "Product",
    "Tenant",
    "installation_values",
    "link_values",
    "product_of_api_base_url",
]

Product = Literal["jira", "confluence", "bitbucket"]
"""The Atlassian product of a tenant or a Forge installation."""
InstallationState = Literal["installed", "uninstalled"]
"""A Forge installation's state: `installed` until its `preUninstall`, then `uninstalled`."""

_PRODUCTS: tuple[Product, ...] = ("jira", "confluence", "bitbucket")


def _product_name(value: object) -> Product | None:
    text = value.lower() if isinstance(value, str) else ""
    return next((product for product in _PRODUCTS if product == text), None)


def product_of_api_base_url(api_base_url: str | None) -> Product | None:
    """The product a Forge `apiBaseUrl` reaches: `…/ex/jira/<cloudId>`, `…/ex/confluence/<cloudId>`, Bitbucket's API."""
    if not api_base_url:
        return None
    parts = urlsplit(api_base_url)
    if (parts.hostname or "").lower() == "api.bitbucket.org":
        return "bitbucket"
    segments = parts.path.strip("/").split("/")
    return _product_name(segments[1]) if len(segments) >= 2 and segments[0] == "ex" else None


@dataclass(frozen=True, slots=True)
class Tenant:
    """A Connect tenant: its latest signed install, its state and its link to a Forge installation.

    The shared secret is in clear here (stores encrypt it at rest) and never shown
    in a repr. `signed_at` orders writes: an install or uninstall older than the
    one kept changes nothing, so of two racing installs the later signed one wins,
    whichever commits last.
    """

    client_key: str
    """The tenant's `clientKey`: the `iss` of its tokens."""
    base_url: str
    """The product's base URL (`https://<site>.atlassian.net`, `/wiki` for Confluence)."""
    shared_secret: str = field(repr=False)
    """The HS256 secret of its latest install, in clear; never shown in a repr."""
    signed_at: float = 0.0
    """When the latest applied install or uninstall was signed (`lifecycle_order`): an Atlassian-signed
    token's `iat`; a shared-secret token's, never later than the second it arrived; else its arrival."""
    installed: bool = True
    """`False` once it uninstalled: its calls are refused until a signed install."""
    enabled: bool = True
    """`False` between a `disabled` and an `enabled` callback."""
    product_type: str | None = None
    """`productType` of the install (`jira`, `confluence`, `bitbucket`), when sent."""
    installation_id: str | None = None
    """Connect on Forge: the Forge installation (`installationId` of the latest install)."""
    cloud_id: str | None = None
    """The site's cloud id (`cloudId` of the latest install)."""
    oauth_client_id: str | None = None
    """The app's OAuth client id on this tenant, to act as a user."""
    payload: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The latest install payload as the product sent it, the shared secret left out."""
    installed_at: float | None = None
    """When it was first installed (seconds since the epoch)."""
    uninstalled_at: float | None = None
    """When it last uninstalled, if it did."""
    signed_rank: int = 0
    """1 when Atlassian signed (RS256) the latest applied install or uninstall, else 0.

    Writes are ordered by `(signed_at, signed_rank)`: of two signed at the same time, Atlassian's wins."""
    enabled_at: float = 0.0
    """When the latest applied `enabled`, `disabled` or install was signed: orders `enabled` on its own."""

    @property
    def product(self) -> Product | None:
        """The product: `product_type` when sent, else read from the base URL (`/wiki` is Confluence)."""
        named = _product_name(self.product_type)
        if named is not None:
            return named
        parts = urlsplit(self.base_url)
        host = (parts.hostname or "").lower()
        if host == "bitbucket.org" or host.endswith(".bitbucket.org"):
            return "bitbucket"
        return "confluence" if parts.path.rstrip("/").endswith("/wiki") else "jira"


@dataclass(frozen=True, slots=True)
class ForgeInstallationRecord:
    """A Forge installation as its lifecycle events and invocations described it.

    Keyed by `installation_id` (an ARI, which changes on reinstall). `state` goes
    from `installed` to `uninstalled` with its timestamp, so an app can delete an
    installation's data N days after it left.
    """

    installation_id: str
    """The installation's id, as FITs name it (`ari:cloud:ecosystem::installation/<uuid>`)."""
    state: InstallationState = "installed"
    """`installed`, or `uninstalled` after its `preUninstall`."""
    contexts: Sequence[Mapping[str, str]] = ()
    """`app.installation.contexts`: `{name, apiBaseUrl, cloudId | workspaceId}` per site or workspace."""
    api_base_url: str | None = None
    """`app.apiBaseUrl` of the latest invocation."""
    app_version: str | None = None
    """The app version the latest lifecycle event named."""
    installed_at: float | None = None
    """When the installation was first recorded (seconds since the epoch)."""
    updated_at: float = 0.0
    """When it was last written."""
    uninstalled_at: float | None = None
    """When it uninstalled, if it did."""

    def _first(self, name: str) -> str | None:
        return next((context[name] for context in self.contexts if context.get(name)), None)

    @property
    def cloud_id(self) -> str | None:
        """The site's cloud id (the first context's)."""
        return self._first("cloudId")

    @property
    def workspace_id(self) -> str | None:
        """The Bitbucket workspace id (the first context's)."""
        return self._first("workspaceId")

    @property
    def product(self) -> Product | None:
        """The product, read from the contexts' ARIs (`ari:cloud:jira::site/…`) or `apiBaseUrl` (or the invocation's)."""
        for context in self.contexts:
            parts = str(context.get("name", "")).split(":")
            named = _product_name(parts[2]) if len(parts) > 2 and parts[0] == "ari" else None
            if named is not None:
                return named
        for url in (*(context.get("apiBaseUrl") for context in self.contexts), self.api_base_url):
            product = product_of_api_base_url(url)
            if product is not None:
                return product
        return None


def installation_values(record: ForgeInstallationRecord) -> dict[str, Any]:
    """The record's fields as JSON types (its contexts as a list of dicts), as backends write them."""
    return {
        "installation_id": record.installation_id,
        "state": record.state,
        "contexts": [dict(context) for context in record.contexts],
        "api_base_url": record.api_base_url,
        "app_version": record.app_version,
        "installed_at": record.installed_at,
        "updated_at": record.updated_at,
        "uninstalled_at": record.uninstalled_at,
    }


LinkSource = Literal["install", "property"]
"""Where a verified link between a Forge installation and a Connect tenant came from.

`install`: a signed Connect `installed` that named the `installationId`;
`property`: the reserved app property, read with that installation's own system token.
"""
LinkOutcome = Literal[
    "linked", "not-found", "refused", "rate-limited", "unreachable", "invalid", "no-tenant", "no-token", "unsupported"
]
"""What reading an installation's Connect `clientKey` came to.

`linked`: the property named a stored tenant; `not-found`: 404, no Connect history;
`refused`: 401 or 403; `rate-limited`: 429; `unreachable`: a timeout, a network
error or a 5xx; `invalid`: a value of no documented shape; `no-tenant`: a clientKey
this store does not keep; `no-token`: no live system token is kept (the batch);
`unsupported`: a product with no such property here (Bitbucket).
"""


@dataclass(frozen=True, slots=True)
class ConnectLink:
    """What is known of one Forge installation's Connect tenant from the reserved property, and when to ask again.

    A verified link (`source` set) is final: the property is never read again for
    that installation. Until then, `next_attempt_at` is when the next read may
    start (a lease while one is under way, else the back-off of the last failure).
    """

    installation_id: str
    """The Forge installation (an ARI)."""
    client_key: str | None = None
    """The linked tenant's clientKey, once verified."""
    source: LinkSource | None = None
    """`property` once verified here (links from signed installs live on the tenant)."""
    linked_at: float | None = None
    """When the link was verified (seconds since the epoch)."""
    attempts: int = 0
    """How many reads were started."""
    last_outcome: LinkOutcome | None = None
    """What the last read came to."""
    next_attempt_at: float = 0.0
    """When the next read may start (seconds since the epoch)."""

    @property
    def verified(self) -> bool:
        """Whether the installation's tenant is known for certain."""
        return self.source is not None and self.client_key is not None


def link_values(link: ConnectLink) -> dict[str, Any]:
    """What a read of the property wrote (all but the installation id, attempts and next attempt), as backends write it."""
    return {
        "client_key": link.client_key,
        "source": link.source,
        "linked_at": link.linked_at,
        "last_outcome": link.last_outcome,
    }
