"""`readiness_report`: how ready a store is for Connect's end of support, counted without reading a secret.

Every installed Connect tenant is linked to a Forge installation for certain
(`verified`: a signed Connect install named it, or the reserved app property did),
by the cloud-id guess `link_connect_tenant` allows (`guessed`), or not at all
(`unlinked`). Data keyed by `clientKey` can be re-keyed only for linked tenants,
and the property that verifies links stops answering at end of support.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._base import BaseStore, link_connect_tenant
from ._records import ConnectLink, Tenant

__all__ = ["ReadinessReport", "UnlinkedTenant", "UnreachedInstallation", "readiness_report"]


@dataclass(frozen=True, slots=True)
class UnlinkedTenant:
    """An installed Connect tenant no Forge installation is linked to."""

    client_key: str
    """The tenant's clientKey."""
    base_url: str
    """Its site."""
    product: str | None
    """`jira`, `confluence` or `bitbucket`."""


@dataclass(frozen=True, slots=True)
class UnreachedInstallation:
    """An installed Forge installation without a verified link, and what its last property read came to."""

    installation_id: str
    """The Forge installation."""
    last_outcome: str | None
    """`not-found`, `refused`, … (`None`: never read)."""
    guessed_client_key: str | None
    """The tenant the cloud-id guess links it to, if any."""


@dataclass(frozen=True, slots=True)
class ReadinessReport:
    """Counts and lists for a dashboard or `fastapi-connect-auth migrate status`; no secret, no token."""

    connect_tenants: int
    """Installed Connect tenants."""
    linked: int
    """Of those, linked to a Forge installation (`verified` + `guessed`)."""
    verified: int
    """Linked for certain: by a signed install naming the installation, or by the reserved property."""
    guessed: int
    """Linked only by the cloud-id guess (re-key them once verified)."""
    unlinked: int
    """Installed tenants with no link at all."""
    forge_installations: int
    """Installed Forge installations."""
    forge_without_connect: int
    """Installed Forge installations linked to no installed Connect tenant."""
    unlinked_tenants: tuple[UnlinkedTenant, ...]
    """The unlinked tenants, by clientKey."""
    unreached: tuple[UnreachedInstallation, ...]
    """Installed Forge installations without a verified link, by installation id."""

    def as_json(self) -> dict[str, Any]:
        """The report as JSON types: the integer counts, then the lists."""
        return {
            "connect_tenants": self.connect_tenants,
            "linked": self.linked,
            "verified": self.verified,
            "guessed": self.guessed,
            "unlinked": self.unlinked,
            "forge_installations": self.forge_installations,
            "forge_without_connect": self.forge_without_connect,
            "unlinked_tenants": [
                {"client_key": t.client_key, "base_url": t.base_url, "product": t.product}
                for t in self.unlinked_tenants
            ],
            "unreached_installations": [
                {
                    "installation_id": i.installation_id,
                    "last_outcome": i.last_outcome,
                    "guessed_client_key": i.guessed_client_key,
                }
                for i in self.unreached
            ],
        }


async def readiness_report(store: BaseStore) -> ReadinessReport:
    """Count the store's tenants and installations by how they are linked (the store's own rules); reads no secret."""
    tenants = [tenant for tenant in await store.list_tenants() if tenant.installed]
    by_key = {tenant.client_key: tenant for tenant in tenants}
    links: dict[str, ConnectLink] = {link.installation_id: link for link in await store.connect_links()}
    installations = sorted(
        (record for record in await store.list_forge_installations() if record.state == "installed"),
        key=lambda record: record.installation_id,
    )
    verified = {  # by a signed install: whatever `link_connect_tenant` counts as one
        tenant.client_key
        for tenant in tenants
        if tenant.installation_id is not None
        and _client_key(
            link_connect_tenant(tenants, installation_id=tenant.installation_id, cloud_id=None, product=None)
        )
        == tenant.client_key
    }
    verified |= {link.client_key for link in links.values() if link.verified and link.client_key in by_key}
    guessed: set[str] = set()
    without_connect = 0
    unreached = []
    for record in installations:
        link = links.get(record.installation_id)
        tenant: Tenant | None = by_key.get(link.client_key or "") if link is not None and link.verified else None
        if tenant is None:
            tenant = link_connect_tenant(
                tenants, installation_id=record.installation_id, cloud_id=record.cloud_id, product=record.product
            )
            if tenant is None or tenant.installation_id != record.installation_id:
                unreached.append(
                    UnreachedInstallation(
                        record.installation_id,
                        link.last_outcome if link is not None else None,
                        tenant.client_key if tenant is not None else None,
                    )
                )
            if tenant is not None and tenant.client_key not in verified:
                guessed.add(tenant.client_key)
        without_connect += tenant is None
    unlinked = [tenant for tenant in tenants if tenant.client_key not in verified | guessed]
    return ReadinessReport(
        connect_tenants=len(tenants),
        linked=len(verified) + len(guessed),
        verified=len(verified),
        guessed=len(guessed),
        unlinked=len(unlinked),
        forge_installations=len(installations),
        forge_without_connect=without_connect,
        unlinked_tenants=tuple(
            UnlinkedTenant(tenant.client_key, tenant.base_url, tenant.product)
            for tenant in sorted(unlinked, key=lambda tenant: tenant.client_key)
        ),
        unreached=tuple(unreached),
    )


def _client_key(tenant: Tenant | None) -> str | None:
    return tenant.client_key if tenant is not None else None
