"""What `ConnectAuth` and `ForgeAuth` share: attaching to an app, the JSON error answer, an owned HTTP client.

* `AppConfig.install(app)` puts the configuration on `app.state` and answers
  `AuthError`s with `auth_error_handler`; `AppConfig.of(request)` finds it again.
* `AppConfig.lifespan` opens the key provider's HTTP client for the app's lifetime,
  and first checks that every guarded route will find its configuration
  (`check_configured`): a forgotten `install(app)` fails at startup, not at the
  first request.
* `OwnedClient` is a key provider's `httpx2.AsyncClient`: one passed in, or its
  own, opened by `async with` and closed by `aclose()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import httpx2
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.routing import Mount

from ._errors import AuthError
from ._openapi import document_errors, guarded_routes

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self is Python 3.11+

__all__ = ["AppConfig", "OwnedClient", "auth_error_handler", "check_configured"]


async def auth_error_handler(request: Request, exc: AuthError) -> JSONResponse:
    """Answer an `AuthError` with its status, `{"detail": message, "code": CODE}` and headers."""
    return JSONResponse(
        {"detail": exc.message, "code": exc.code.value}, status_code=exc.status_code, headers=exc.headers
    )


def _unconfigured(app: Starlette, prefix: str = "") -> list[str]:
    problems = []
    if isinstance(app, FastAPI):
        for route in guarded_routes(app):
            for dependency in route.dependencies:
                if (reason := dependency.missing_configuration(app)) is not None:
                    methods = ",".join(sorted(route.methods))
                    problems.append(
                        f"{methods} {prefix}{route.path_format} uses {type(dependency).__name__}, but {reason}"
                    )
    for mount in app.routes:
        if isinstance(mount, Mount) and isinstance(mount.app, Starlette):
            problems += _unconfigured(mount.app, prefix + mount.path)
    return problems


def check_configured(app: Starlette) -> None:
    """Raise `RuntimeError` at startup if a route's dependency would find no configuration at its first request.

    Covers the app's routes (included routers too) and mounted sub-apps, each
    against its own `install()`. Apps that never enter a library lifespan are
    not checked here: their first guarded request raises the same error.
    """
    problems = _unconfigured(app)
    if problems:
        raise RuntimeError("; ".join(dict.fromkeys(problems)) + ".")


class AppConfig:
    """A configuration object attached to a FastAPI app under `app.state.<state_name>`."""

    state_name: ClassVar[str]
    install_hint: ClassVar[str]
    key_provider: object

    def install(self, app: FastAPI) -> None:
        """Attach this configuration to `app`, answer `AuthError`s as JSON with their code, and document them.

        Each route guarded by one of the library's dependencies lists in OpenAPI
        the error statuses it can answer and the request body it reads.
        """
        setattr(app.state, self.state_name, self)
        app.add_exception_handler(AuthError, auth_error_handler)  # type: ignore[arg-type]
        document_errors(app)

    @asynccontextmanager
    async def lifespan(self, app: Any = None) -> AsyncIterator[None]:
        """Open the key provider's HTTP client for the app's lifetime: `FastAPI(lifespan=config.lifespan)`.

        Before anything, every guarded route of `app` is checked to find its
        configuration (`install(app)` or `config=`): a `RuntimeError` naming the
        route and the fix otherwise, so the app does not start.
        """
        if app is not None:
            check_configured(app)
        async with AsyncExitStack() as stack:
            if isinstance(self.key_provider, AbstractAsyncContextManager):
                await stack.enter_async_context(self.key_provider)
            yield

    @classmethod
    def installed_on(cls, app: Starlette) -> Self | None:
        """The configuration `install()` attached to `app`, if any."""
        config = getattr(app.state, cls.state_name, None)
        return config if isinstance(config, cls) else None

    @classmethod
    def of(cls, request: Request) -> Self:
        """The configuration `install()` attached to the request's app."""
        config = cls.installed_on(request.app)
        if config is None:
            raise RuntimeError(f"No {cls.__name__} on this app: {cls.install_hint}, or pass config= to the dependency.")
        return config


class OwnedClient:
    """A key provider's HTTP client: the one passed in, else its own while open (`async with provider:`)."""

    _client: httpx2.AsyncClient | None
    _owns_client: bool
    _timeout: float

    async def __aenter__(self) -> Self:
        if self._client is None:
            self._client = httpx2.AsyncClient(timeout=self._timeout)
            self._owns_client = True
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client this provider opened (never one passed in)."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client, self._owns_client = None, False
