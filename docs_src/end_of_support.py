"""Connect's end of support: link every Forge installation to its Connect tenant while
Atlassian still answers, re-key your data by installation, and keep an eye on the rest."""

from __future__ import annotations

from typing import Any

from fastapi_connect_auth import (
    ForgeAuth,
    ForgeTokenStore,
    InstallationDetailsClient,
    installation_is_live,
)
from fastapi_connect_auth.stores import BaseStore, ConnectLinker, readiness_report

CONNECT_KEY = "my-connect-app"  # app.connect.key: the "key" of atlassian-connect.json


def link_on_first_contact(
    forge: ForgeAuth, store: BaseStore, **options: Any
) -> ConnectLinker:
    """Each installation's first event, trigger or lifecycle call reads the reserved
    property once (never a UI call); same as `ForgeAuth(..., on_invocation=linker)`.
    `options` go to the linker (`timeout=`, a test's `transport=`)."""
    linker = ConnectLinker(store, connect_key=CONNECT_KEY, **options)
    forge.on_invocation = linker
    return linker


async def nightly(store: BaseStore, **options: Any) -> dict[str, Any]:
    """The rest, with each installation's stored system token; then the report."""
    run = await ConnectLinker(store, connect_key=CONNECT_KEY, **options).link_stored()
    report = await readiness_report(store)
    return {"not_reached": len(run.unreached), **report.as_json()}


async def rekey(
    store: BaseStore, by_client_key: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Your rows keyed by clientKey, moved to the Forge installation verified for their
    tenant; rows of tenants not yet verified stay where they are, under their clientKey."""
    by_installation: dict[str, list[str]] = {}
    for record in await store.list_forge_installations():
        tenant = await store.installation_tenant(record.installation_id)
        if tenant is not None and tenant.client_key in by_client_key:
            by_installation[record.installation_id] = by_client_key.pop(
                tenant.client_key
            )
    return {**by_installation, **by_client_key}


async def purge_if_gone(
    details: InstallationDetailsClient,
    tokens: ForgeTokenStore,
    installation_id: str,
    data: dict[str, Any],
) -> bool:
    """A retention job: delete an installation's data only when Atlassian says it is
    gone (404); `None` ("cannot tell now") never deletes anything."""
    if await installation_is_live(details, tokens, installation_id) is False:
        data.pop(installation_id, None)
        return True
    return False
