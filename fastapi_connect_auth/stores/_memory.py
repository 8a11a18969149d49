"""`MemoryStore`: the library's rules over dictionaries, for tests and single-process demos."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .._outbound._forge import ForgeStoredToken
from .._redelivery import InMemoryRedeliveryStore
from ._base import BaseStore, matching, outranks, reinstalled
from ._records import ConnectLink, ForgeInstallationRecord, Tenant

__all__ = ["MemoryStore"]


class MemoryStore(BaseStore):
    """Everything in this process's memory: gone when it stops, invisible to other processes.

    For tests and demos; production apps with more than one process use
    `SQLAlchemyStore` or `RedisStore`. `max_deliveries`: the most unexpired
    delivery ids kept; past it a new one is refused (`DELIVERY_STORE_FULL`, 503),
    never one forgotten (see `InMemoryRedeliveryStore` for the size to choose).
    Options as for `BaseStore`.
    """

    def __init__(self, *, max_deliveries: int = 100_000, **options: Any) -> None:
        super().__init__(**options)
        self._tenants: dict[str, Tenant] = {}
        self._installations: dict[str, ForgeInstallationRecord] = {}
        self._tokens: dict[tuple[str, str | None], ForgeStoredToken] = {}
        self._deliveries = InMemoryRedeliveryStore(max_size=max_deliveries, clock=self.clock)
        self._links: dict[str, ConnectLink] = {}

    async def _get_tenant(self, client_key: str) -> Tenant | None:
        return self._tenants.get(client_key)

    async def _put_tenant(self, tenant: Tenant, *, create_only: bool = False) -> bool:
        kept = self._tenants.get(tenant.client_key)
        if kept is not None and (create_only or outranks(kept, tenant.signed_at, tenant.signed_rank)):
            return False
        self._tenants[tenant.client_key] = reinstalled(kept, tenant) if kept is not None else tenant
        return True

    async def _uninstall_tenant(self, client_key: str, signed_at: float, rank: int, now: float) -> bool:
        kept = self._tenants.get(client_key)
        if kept is None or outranks(kept, signed_at, rank):
            return False
        self._tenants[client_key] = replace(
            kept, installed=False, uninstalled_at=now, signed_at=signed_at, signed_rank=rank
        )
        return True

    async def _enable_tenant(self, client_key: str, enabled: bool, signed_at: float) -> bool:
        kept = self._tenants.get(client_key)
        if kept is None or not kept.installed or kept.enabled_at > signed_at:
            return False
        self._tenants[client_key] = replace(kept, enabled=enabled, enabled_at=signed_at)
        return True

    async def _find_tenants(self, installation_id: str, cloud_id: str | None) -> list[Tenant]:
        return matching(list(self._tenants.values()), installation_id, cloud_id)

    async def _get_installation(self, installation_id: str) -> ForgeInstallationRecord | None:
        return self._installations.get(installation_id)

    async def _put_installation(self, record: ForgeInstallationRecord) -> bool:
        kept = self._installations.get(record.installation_id)
        if kept is not None and kept.state == "uninstalled":
            return False
        self._installations[record.installation_id] = record
        return True

    async def _get_token(self, installation_id: str, account_id: str | None) -> ForgeStoredToken | None:
        return self._tokens.get((installation_id, account_id))

    async def _put_token(self, installation_id: str, account_id: str | None, token: ForgeStoredToken) -> None:
        kept = self._tokens.get((installation_id, account_id))
        if kept is None or kept.received_at <= token.received_at or kept.expires_at <= self.clock():
            self._tokens[(installation_id, account_id)] = token

    async def _discard_token(self, installation_id: str, account_id: str | None, token: str) -> None:
        kept = self._tokens.get((installation_id, account_id))
        if kept is not None and kept.token == token:
            del self._tokens[(installation_id, account_id)]

    async def _remember_delivery(self, key: str, fingerprint: str, expires_at: float) -> str | None:
        return await self._deliveries.remember_delivery(key, fingerprint, expires_at)

    async def _forget_delivery(self, key: str, fingerprint: str) -> bool:
        return await self._deliveries.forget_delivery(key, fingerprint)

    async def _get_link(self, installation_id: str) -> ConnectLink | None:
        return self._links.get(installation_id)

    async def _claim_link(self, installation_id: str, now: float, until: float) -> bool:
        kept = self._links.get(installation_id) or ConnectLink(installation_id)
        if kept.verified or kept.next_attempt_at > now:
            return False
        self._links[installation_id] = replace(kept, attempts=kept.attempts + 1, next_attempt_at=until)
        return True

    async def _put_link(self, link: ConnectLink) -> None:
        kept = self._links.get(link.installation_id)
        if kept is not None and kept.verified and not link.verified:
            return
        self._links[link.installation_id] = replace(link, attempts=kept.attempts if kept else link.attempts)

    async def _list_links(self) -> list[ConnectLink]:
        return list(self._links.values())

    async def _list_tenants(self) -> list[Tenant]:
        return [replace(tenant, shared_secret="") for tenant in self._tenants.values()]

    async def _list_installations(self) -> list[ForgeInstallationRecord]:
        return list(self._installations.values())
