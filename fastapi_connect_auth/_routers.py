"""`lifecycle_router`: the lifecycle routes every app needs, over a store, ready to include.

Each route verifies its callback with the library's dependencies, writes the
store (the new secret replaces the old at once; an uninstalled tenant stays
known and refused), and only then runs the app's hook: a hook never sees a
callback the store did not commit. A store fault is a 503 the product retries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends

from ._connect._dependencies import ConnectInstall, ConnectLifecycle
from ._connect._flow import ConnectAuth
from ._connect._models import VerifiedInstallation, VerifiedLifecycle
from ._errors import AuthErrorCode
from ._forge._dependencies import ForgeLifecycle
from ._forge._flow import ForgeAuth
from ._forge._lifecycle import VerifiedForgeLifecycle
from ._openapi import auth_error_responses
from ._outbound._forge import remember_forge_tokens
from .stores._base import BaseStore
from .stores._records import InstallationState, Tenant

__all__ = ["LifecycleRouter", "lifecycle_router"]

VerifiedT = TypeVar("VerifiedT")
Hook = Callable[[VerifiedT], Awaitable[None]]
"""`async def hook(verified) -> None`, run after the store committed the callback."""


class LifecycleRouter(APIRouter):
    """An `APIRouter` that knows its lifecycle URLs, for the app's descriptor."""

    lifecycle_urls: dict[str, str]
    """`{"installed": "/installed", ...}`: the descriptor's `lifecycle` section, read from the routes."""


def lifecycle_router(
    connect: ConnectAuth,
    store: BaseStore,
    forge: ForgeAuth | None = None,
    *,
    prefix: str = "",
    forge_prefix: str = "/forge/lifecycle",
    on_installed: Hook[VerifiedInstallation[Tenant]] | None = None,
    on_uninstalled: Hook[VerifiedLifecycle[Tenant]] | None = None,
    on_enabled: Hook[VerifiedLifecycle[Tenant]] | None = None,
    on_disabled: Hook[VerifiedLifecycle[Tenant]] | None = None,
    on_forge_installed: Hook[VerifiedForgeLifecycle] | None = None,
    on_forge_upgraded: Hook[VerifiedForgeLifecycle] | None = None,
    on_forge_uninstalled: Hook[VerifiedForgeLifecycle] | None = None,
) -> LifecycleRouter:
    """`POST {prefix}/installed`, `/uninstalled`, `/enabled` and `/disabled`, each answering 204 once stored.

    ```python
    router = lifecycle_router(connect, store, on_installed=welcome)
    app.include_router(router)
    descriptor["lifecycle"] = router.lifecycle_urls
    ```

    * `installed`: signed as `connect.authorization_method` says; the tenant's
      secret, payload and Forge installation id are written (`store.save_install`).
    * `uninstalled`: the tenant is kept, refused until a signed install.
    * `enabled`/`disabled`: recorded on the tenant.
    * With `forge`: `POST {prefix}{forge_prefix}/installed`, `/upgraded` and
      `/pre-uninstall` (Forge `trigger` and `preUninstall` modules with
      `endpoint:`), each a `ForgeLifecycle` route: no browser-visible FIT, the
      payload's installation the FIT's. The installation is recorded with its
      contexts (`installed`, then `uninstalled` with its time), and the system
      token the event brings is kept (`remember_forge_tokens`).
    * `on_installed=`, `on_uninstalled=`, `on_enabled=`, `on_disabled=`,
      `on_forge_installed=`, `on_forge_upgraded=`, `on_forge_uninstalled=`: the
      app's own work, awaited after the store committed; the callback is
      answered once the hook returns.
    """
    # Every route writes the store: its outages are 503s, documented beside the dependencies' own.
    router = LifecycleRouter(prefix=prefix, responses=auth_error_responses(AuthErrorCode.STORE_UNAVAILABLE))
    router.lifecycle_urls = {
        event: f"{prefix}/{event}" for event in ("installed", "uninstalled", "enabled", "disabled")
    }

    # Dependencies as defaults: the annotations are strings (postponed), and `connect` is not a global.
    signed_install: Any = Depends(ConnectInstall(config=connect))
    uninstall: Any = Depends(ConnectLifecycle("uninstalled", config=connect))
    enable: Any = Depends(ConnectLifecycle("enabled", config=connect))
    disable: Any = Depends(ConnectLifecycle("disabled", config=connect))

    @router.post("/installed", status_code=204)
    async def installed(install: VerifiedInstallation[Tenant] = signed_install) -> None:
        await store.save_install(install)
        await _run(on_installed, install)

    @router.post("/uninstalled", status_code=204)
    async def uninstalled(event: VerifiedLifecycle[Tenant] = uninstall) -> None:
        await store.uninstall(event.client_key, signed_at=event.claims.iat)
        await _run(on_uninstalled, event)

    @router.post("/enabled", status_code=204)
    async def enabled(event: VerifiedLifecycle[Tenant] = enable) -> None:
        await store.set_enabled(event.client_key, True)
        await _run(on_enabled, event)

    @router.post("/disabled", status_code=204)
    async def disabled(event: VerifiedLifecycle[Tenant] = disable) -> None:
        await store.set_enabled(event.client_key, False)
        await _run(on_disabled, event)

    if forge is not None:
        _add_forge_routes(
            router, store, forge, forge_prefix, on_forge_installed, on_forge_upgraded, on_forge_uninstalled
        )
    return router


def _add_forge_routes(
    router: LifecycleRouter,
    store: BaseStore,
    forge: ForgeAuth,
    prefix: str,
    on_installed: Hook[VerifiedForgeLifecycle] | None,
    on_upgraded: Hook[VerifiedForgeLifecycle] | None,
    on_uninstalled: Hook[VerifiedForgeLifecycle] | None,
) -> None:
    forge_installed: Any = Depends(ForgeLifecycle("installed", config=forge))
    forge_upgraded: Any = Depends(ForgeLifecycle("upgraded", config=forge))
    forge_pre_uninstall: Any = Depends(ForgeLifecycle("pre-uninstall", config=forge))

    async def record(event: VerifiedForgeLifecycle, state: InstallationState) -> None:
        app = getattr(event.payload, "app", None)
        await store.record_forge_installation(event.invocation, state=state, app_version=getattr(app, "version", None))
        if state == "installed":
            await remember_forge_tokens(store, event.invocation)

    @router.post(f"{prefix}/installed", status_code=204)
    async def forge_installed_event(event: VerifiedForgeLifecycle = forge_installed) -> None:
        await record(event, "installed")
        await _run(on_installed, event)

    @router.post(f"{prefix}/upgraded", status_code=204)
    async def forge_upgraded_event(event: VerifiedForgeLifecycle = forge_upgraded) -> None:
        await record(event, "installed")
        await _run(on_upgraded, event)

    @router.post(f"{prefix}/pre-uninstall", status_code=204)
    async def forge_pre_uninstall_event(event: VerifiedForgeLifecycle = forge_pre_uninstall) -> None:
        await record(event, "uninstalled")
        await _run(on_uninstalled, event)


async def _run(hook: Hook[Any] | None, verified: Any) -> None:
    if hook is not None:
        await hook(verified)
