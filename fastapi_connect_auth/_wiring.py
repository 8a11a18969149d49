"""What `ConnectAuth` and `ForgeAuth` share: attaching to an app, the JSON error answer, an owned HTTP client.

* `AppConfig.install(app)` puts the configuration on `app.state` and answers
  `AuthError`s with `auth_error_handler`; `AppConfig.of(request)` finds it again.
* `AppConfig.lifespan` keeps the key provider's HTTP client for the app's lifetime,
  and first checks that every guarded route will find its configuration
  (`check_configured`): a forgotten `install(app)` fails at startup, not at the
  first request.
* `OwnedClient` is a key provider's `httpx2.AsyncClient`: one passed in, or its
  own, kept from `async with` (made at the first fetch) to `aclose()`; `read_raw`
  reads what a key server answers, uncompressed and capped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.routing import Mount

from ._bodies import declared_length
from ._errors import AuthError
from ._openapi import document_errors, guarded_routes

if TYPE_CHECKING:
    import httpx2
    from typing_extensions import Self  # typing.Self is Python 3.11+

__all__ = ["IDENTITY_ENCODING", "AppConfig", "OwnedClient", "auth_error_handler", "check_configured", "read_raw"]

IDENTITY_ENCODING = {"Accept-Encoding": "identity"}
"""The headers of a key fetch: no compression, so a size cap counts what crosses the wire."""


async def auth_error_handler(request: Request, exc: AuthError) -> JSONResponse:
    """Answer an `AuthError` with its status, `{"detail": message, "code": CODE}` and headers.

    `nosniff`: a browser must read the refusal as the JSON it is, never as a page or a script.
    """
    headers = {**(exc.headers or {}), "X-Content-Type-Options": "nosniff"}
    return JSONResponse({"detail": exc.message, "code": exc.code.value}, status_code=exc.status_code, headers=headers)


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
        try:
            config = app.state[cls.state_name]  # the mapping look-up: `getattr` goes through a failed lookup first
        except KeyError:
            return None
        return config if isinstance(config, cls) else None

    @classmethod
    def of(cls, request: Request) -> Self:
        """The configuration `install()` attached to the request's app."""
        config = cls.installed_on(request.scope["app"])
        if config is None:
            raise RuntimeError(f"No {cls.__name__} on this app: {cls.install_hint}, or pass config= to the dependency.")
        return config


class OwnedClient:
    """A key provider's HTTP client: the one passed in, else its own while open (`async with provider:`).

    Its own is made when opened (the app's lifespan, before the first request):
    made at the first fetch, the client (httpx2's import and its TLS context, tens
    of milliseconds) held up every request in flight behind the first install of
    a burst (install p99 1.25 times that of making it at start-up, `benchmarks/load.py`).
    `import fastapi_connect_auth` still imports no httpx2.
    """

    _client: httpx2.AsyncClient | None
    _owns_client: bool
    _timeout: float

    async def __aenter__(self) -> Self:
        if self._client is None:
            self._owns_client = True
            self._open_client()
        return self

    def _open_client(self) -> httpx2.AsyncClient | None:
        """The client a fetch uses: the one passed in, or this provider's own while open (made now if needed);
        `None` outside `async with`, where each fetch opens and closes a client of its own."""
        if self._client is None and self._owns_client:
            import httpx2

            self._client = httpx2.AsyncClient(timeout=self._timeout)
        return self._client

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client this provider opened (never one passed in)."""
        if self._owns_client:
            if self._client is not None:
                await self._client.aclose()
            self._client, self._owns_client = None, False


async def read_raw(response: httpx2.Response, limit: int) -> bytes:
    """The body of a streamed `response` as sent, at most `limit` bytes; `ValueError` (a reason) otherwise.

    Asked with `IDENTITY_ENCODING`, a key server has no reason to compress:
    a compressed answer is refused rather than inflated (a few hundred KiB of
    gzip inflate to hundreds of MiB before a cap on decoded bytes would see them).
    """
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise ValueError("the answer is compressed although identity was asked for")
    declared = declared_length(response.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise ValueError("the answer is too large")
    if response.is_stream_consumed:  # an answer made in memory (`httpx2.MockTransport`): already read
        if len(response.content) > limit:
            raise ValueError("the answer is too large")
        return response.content
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            raise ValueError("the answer is too large")
    return bytes(body)
