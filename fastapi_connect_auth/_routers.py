"""`lifecycle_router`: the lifecycle routes every app needs, over a store, ready to include.

Each route verifies its callback with the library's dependencies, writes the
store (the new secret replaces the old at once; an uninstalled tenant stays
known and refused), and only then runs the app's hook: a hook never sees a
callback the store did not commit. A store fault is a 503 the product retries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from fastapi import APIRouter, Depends

from ._connect._dependencies import ConnectInstall, ConnectLifecycle
from ._connect._flow import ConnectAuth
from ._connect._models import VerifiedInstallation, VerifiedLifecycle
from ._errors import AuthErrorCode
from ._forge._dependencies import ForgeLifecycle
from ._forge._flow import ForgeAuth
from ._forge._lifecycle import ForgeLifecycleEvent, VerifiedForgeLifecycle
from ._forge._redelivery import remember_forge_delivery
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
    forge_module_keys: Iterable[str] | None = None,
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
    * A callback signed before the latest one applied (a late delivery) is
      answered 204 and changes nothing (`lifecycle_order`).
    * With `forge` and `forge_module_keys` (the manifest's endpoint keys that
      receive lifecycle events): `POST {prefix}{forge_prefix}`, which takes all
      three events (`ForgeLifecycle("any")`: one manifest endpoint for the
      lifecycle `trigger` and the `preUninstall` module, as an endpoint has one
      route), and `POST {prefix}{forge_prefix}/installed`, `/upgraded` and
      `/pre-uninstall`, one event each; all are `ForgeLifecycle` routes: only FITs whose
      `app.module.key` is one of them (a product event's or a trigger's FIT is
      `WRONG_INVOCATION`, 401), the payload's installation the FIT's. The
      installation is recorded with its contexts (`installed`, then `uninstalled`
      with its time, for good: a later event for it is a redelivery, answered
      204 and ignored), and the system token an installed or upgraded event
      brings is kept (`remember_forge_tokens`).
    * `on_installed=`, `on_uninstalled=`, `on_enabled=`, `on_disabled=`,
      `on_forge_installed=`, `on_forge_upgraded=`, `on_forge_uninstalled=`: the
      app's own work, awaited only once the store committed the write the
      callback describes (not for one it refused); the callback is answered
      once the hook returns.
    """
    if forge is not None and (forge_module_keys is None or isinstance(forge_module_keys, str)):
        raise ValueError(
            "lifecycle_router(forge=...) needs forge_module_keys=: the manifest's endpoint keys for lifecycle events"
            " (any FIT without a principal would pass otherwise, a product event's or a trigger's too)"
        )
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
        if await store.save_install(install):
            await _run(on_installed, install)

    @router.post("/uninstalled", status_code=204)
    async def uninstalled(event: VerifiedLifecycle[Tenant] = uninstall) -> None:
        if await store.uninstall(event):
            await _run(on_uninstalled, event)

    @router.post("/enabled", status_code=204)
    async def enabled(event: VerifiedLifecycle[Tenant] = enable) -> None:
        if await store.set_enabled(event, True):
            await _run(on_enabled, event)

    @router.post("/disabled", status_code=204)
    async def disabled(event: VerifiedLifecycle[Tenant] = disable) -> None:
        if await store.set_enabled(event, False):
            await _run(on_disabled, event)

    if forge is not None:
        hooks = (on_forge_installed, on_forge_upgraded, on_forge_uninstalled)
        _add_forge_routes(router, store, forge, forge_prefix, frozenset(forge_module_keys or ()), *hooks)
    return router


def _add_forge_routes(
    router: LifecycleRouter,
    store: BaseStore,
    forge: ForgeAuth,
    prefix: str,
    module_keys: frozenset[str],
    on_installed: Hook[VerifiedForgeLifecycle] | None,
    on_upgraded: Hook[VerifiedForgeLifecycle] | None,
    on_uninstalled: Hook[VerifiedForgeLifecycle] | None,
) -> None:
    forge_installed: Any = Depends(ForgeLifecycle("installed", module_keys=module_keys, config=forge))
    forge_upgraded: Any = Depends(ForgeLifecycle("upgraded", module_keys=module_keys, config=forge))
    forge_pre_uninstall: Any = Depends(ForgeLifecycle("pre-uninstall", module_keys=module_keys, config=forge))
    forge_any: Any = Depends(ForgeLifecycle("any", module_keys=module_keys, config=forge))
    hooks: dict[ForgeLifecycleEvent, Hook[VerifiedForgeLifecycle] | None] = {
        "installed": on_installed,
        "upgraded": on_upgraded,
        "pre-uninstall": on_uninstalled,
    }

    async def receive(event: VerifiedForgeLifecycle) -> None:
        """Record the installation, keep its token only if the record was written (never for an uninstalled
        one), then run the event's hook: the same for an event at its own route or at the single one.

        One FIT carries one body: the FIT does not sign the body, and one endpoint takes
        all three events, so an `installed` event's FIT sent again with a preUninstall
        body is refused (`DELIVERY_CONFLICT`, 409) before anything is recorded.
        """
        if not await remember_forge_delivery(store, event.invocation):
            return  # the same FIT and body again: received already
        state: InstallationState = "uninstalled" if event.event == "pre-uninstall" else "installed"
        app = getattr(event.payload, "app", None)
        version = getattr(app, "version", None)
        if await store.record_forge_installation(event.invocation, state=state, app_version=version) is None:
            return
        if state == "installed":
            await remember_forge_tokens(store, event.invocation)
        await _run(hooks[event.event], event)

    @router.post(prefix, status_code=204)
    async def forge_lifecycle_event(event: VerifiedForgeLifecycle = forge_any) -> None:
        await receive(event)

    @router.post(f"{prefix}/installed", status_code=204)
    async def forge_installed_event(event: VerifiedForgeLifecycle = forge_installed) -> None:
        await receive(event)

    @router.post(f"{prefix}/upgraded", status_code=204)
    async def forge_upgraded_event(event: VerifiedForgeLifecycle = forge_upgraded) -> None:
        await receive(event)

    @router.post(f"{prefix}/pre-uninstall", status_code=204)
    async def forge_pre_uninstall_event(event: VerifiedForgeLifecycle = forge_pre_uninstall) -> None:
        await receive(event)


async def _run(hook: Hook[Any] | None, verified: Any) -> None:
    if hook is not None:
        await hook(verified)
