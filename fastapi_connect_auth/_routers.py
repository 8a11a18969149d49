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
from .stores._base import BaseStore
from .stores._records import Tenant

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
    *,
    prefix: str = "",
    on_installed: Hook[VerifiedInstallation[Tenant]] | None = None,
    on_uninstalled: Hook[VerifiedLifecycle[Tenant]] | None = None,
    on_enabled: Hook[VerifiedLifecycle[Tenant]] | None = None,
    on_disabled: Hook[VerifiedLifecycle[Tenant]] | None = None,
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
    * `on_installed=`, `on_uninstalled=`, `on_enabled=`, `on_disabled=`: the app's
      own work, awaited after the store committed; the callback is answered
      once the hook returns.
    """
    router = LifecycleRouter(prefix=prefix)
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

    return router


async def _run(hook: Hook[Any] | None, verified: Any) -> None:
    if hook is not None:
        await hook(verified)
