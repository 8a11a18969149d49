"""`ForgeContainers`: the container's configuration, and who an invocation is, as its sidecar says.

The container receives no token: an `x-forge-invocation-id` means something only
once the sidecar answers `GET /invocation/context` for it, so each id is asked
once (concurrent calls of one invocation share the fetch), the answer is kept
briefly in a bounded cache, and a sidecar that is down, slow or unreadable is a 503,
never a guess. The context must name the configured app and environment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import anyio
import httpx2
from cachetools import TTLCache
from pydantic import ValidationError

from .._errors import AuthError, AuthErrorCode
from .._events import RejectionCallback, RejectionEvent, call_details, deliver
from .._json import loads
from .._outbound._errors import ProductAPIError
from .._outbound._retries import ATLASSIAN_RETRIES, AsyncRetryingClient, RetryPolicy
from .._wiring import IDENTITY_ENCODING, AppConfig, OwnedClient, read_raw
from ._config import ContainerSettings
from ._egress import EgressProduct, ForgeContainerInstallation, egress_client, list_installations, proxy_prefix
from ._header import is_invocation_id, proxy_authorization
from ._models import ForgeContainerContext, ForgeContainerInvocation

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["CONTEXT_PATH", "ForgeContainers"]

CONTEXT_PATH = "/invocation/context"
"""Where the sidecar answers who an invocation is."""
PROXY_AUTHORIZATION = "forge-proxy-authorization"
"""The header the sidecar reads the invocation id (and whom to act as) from."""

logger = logging.getLogger("fastapi_connect_auth.containers")


def _unavailable(reason: str) -> AuthError:
    return AuthError(AuthErrorCode.SIDECAR_UNAVAILABLE, f"The Forge sidecar is unavailable: {reason}.")


class ForgeContainers(AppConfig, OwnedClient):
    """The container's configuration, attached to the app once with `install(app)`.

    ```python
    containers = ForgeContainers()  # ContainerSettings.from_env(): FORGE_EGRESS_PROXY_URL, FORGE_APP_ARI...
    app = FastAPI(lifespan=containers.lifespan)
    containers.install(app)
    ```

    * `settings`: the environment Forge gives the container (read from `os.environ` by default).
    * `context_ttl`: seconds an invocation's context is kept (30); `max_contexts`: how
      many are kept at most (10,000, least recently used dropped first).
    * `timeout`: seconds the sidecar has to answer a context, whole (3); then 503.
    * `max_context_size`: the largest context read, in bytes (64 KiB); larger is a 503.
    * `transport`: an `httpx2` transport to the sidecar instead of the network (tests: `FakeSidecar.transport()`).
    * `on_rejection`: called with a `RejectionEvent` (kind `"forge"`) for every refused call, as `ForgeAuth`'s;
      each is also logged at WARNING on `fastapi_connect_auth`.
    """

    state_name: ClassVar[str] = "forge_containers"
    """The `app.state` attribute `install(app)` sets."""
    install_hint: ClassVar[str] = "call ForgeContainers(...).install(app)"
    """What an error says to do when no `ForgeContainers` is installed."""

    def __init__(
        self,
        settings: ContainerSettings | None = None,
        *,
        context_ttl: float = 30.0,
        max_contexts: int = 10_000,
        timeout: float = 3.0,
        max_context_size: int = 64 * 1024,
        transport: httpx2.AsyncBaseTransport | None = None,
        on_rejection: RejectionCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if context_ttl <= 0 or max_contexts <= 0 or timeout <= 0 or max_context_size <= 0:
            raise ValueError("context_ttl, max_contexts, timeout and max_context_size must be positive")
        self.settings = settings or ContainerSettings.from_env()
        """The container's environment."""
        self.timeout = timeout
        """Seconds the sidecar has to answer a context."""
        self.max_context_size = max_context_size
        """The largest context read, in bytes."""
        self.transport = transport
        """The transport to the sidecar (`None`: the network)."""
        self.fetches = 0
        """Contexts asked of the sidecar so far (for tests and telemetry)."""
        self.on_rejection = on_rejection
        """Called with the `RejectionEvent` of every refused call."""
        self.key_provider = self
        """Itself: `AppConfig.lifespan` opens (and closes) the client to the sidecar it finds here."""
        self._client: httpx2.AsyncClient | None = None
        self._owns_client = False
        self._contexts: TTLCache[str, ForgeContainerContext] = TTLCache(max_contexts, context_ttl, timer=clock)
        self._inflight: dict[str, asyncio.Future[ForgeContainerContext]] = {}

    @property
    def client(self) -> httpx2.AsyncClient:
        """The HTTP client to the sidecar: opened by the lifespan (or on first use), never following redirects."""
        if self._client is None:
            self._client = httpx2.AsyncClient(
                base_url=self.settings.egress_proxy_url,
                transport=self.transport,
                timeout=self.timeout,
                follow_redirects=False,
            )
            self._owns_client = True
        return self._client

    async def __aenter__(self) -> Self:
        self.client  # noqa: B018 - opened now, for the app's lifetime
        return self

    async def context(self, invocation_id: str) -> ForgeContainerContext:
        """The sidecar's context of `invocation_id`, fetched once for every concurrent caller and kept briefly.

        `INVALID_INVOCATION_ID` (401) for a malformed id, never sent; `UNKNOWN_INVOCATION` (401) when the sidecar answers 4xx; `SIDECAR_UNAVAILABLE`
        (503) when it is down, slow, or answers anything but a context. Failures are not kept.
        """
        cached = self._contexts.get(invocation_id)
        if cached is not None:
            return cached
        if not is_invocation_id(invocation_id):
            raise AuthError(AuthErrorCode.INVALID_INVOCATION_ID, "The invocation id is not a well-formed id.")
        inflight = self._inflight.get(invocation_id)
        if inflight is not None:
            try:
                return await asyncio.shield(inflight)
            except AuthError as exc:  # each waiter raises its own copy
                raise AuthError(exc.code, exc.message, status_code=exc.status_code) from None
        future: asyncio.Future[ForgeContainerContext] = asyncio.get_running_loop().create_future()
        self._inflight[invocation_id] = future
        try:
            self.fetches += 1
            context = await self._fetch(invocation_id)
        except BaseException as exc:  # a cancelled fetch fails its waiters too: they retry with their next call
            failure = exc if isinstance(exc, AuthError) else _unavailable("the context fetch was cancelled")
            future.set_exception(failure)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._inflight[invocation_id]
        self._contexts[invocation_id] = context
        future.set_result(context)
        return context

    async def _fetch(self, invocation_id: str) -> ForgeContainerContext:
        headers = {
            PROXY_AUTHORIZATION: proxy_authorization(invocation_id=invocation_id),
            "Accept": "application/json",
            **IDENTITY_ENCODING,
        }
        try:
            with anyio.fail_after(self.timeout):
                async with self.client.stream("GET", CONTEXT_PATH, headers=headers) as response:
                    status = response.status_code
                    if 400 <= status < 500 and status not in (408, 429):
                        raise AuthError(
                            AuthErrorCode.UNKNOWN_INVOCATION,
                            f"The Forge sidecar knows no such invocation (it answered {status}).",
                        )
                    if status != 200:
                        raise self._logged(_unavailable(f"it answered {status}"))
                    raw = await read_raw(response, self.max_context_size)
        except TimeoutError:
            raise self._logged(_unavailable("it did not answer in time")) from None
        except ValueError as exc:
            raise self._logged(_unavailable(f"its answer is refused: {exc}")) from None
        except httpx2.HTTPError as exc:
            raise self._logged(_unavailable(f"it could not be reached ({type(exc).__name__})")) from None
        try:
            return ForgeContainerContext.model_validate(loads(raw))
        except (ValueError, ValidationError):
            raise self._logged(_unavailable("its answer is not an invocation context")) from None

    @staticmethod
    def _logged(error: AuthError) -> AuthError:
        logger.warning("%s", error.message)
        return error

    async def report_rejection(
        self, exc: AuthError, *, installation_id: str | None, scope: Mapping[str, Any] | None
    ) -> None:
        """Log a refused call (never its invocation id) and give its `RejectionEvent` to `on_rejection`."""
        route, headers = call_details(scope)
        event = RejectionEvent.of(exc, "forge", route=route, headers=headers, installation_id=installation_id)
        message = (
            f"Rejected Forge container call: {exc.code.value} (installation={event.installation_id!r}): {event.detail}"
        )
        await deliver(event, message, self.on_rejection)

    def check(self, context: ForgeContainerContext) -> None:
        """Refuse a context of another app or environment than the container's (`CONTEXT_MISMATCH`, 401)."""
        if context.app.id != self.settings.app_ari:
            raise AuthError(AuthErrorCode.CONTEXT_MISMATCH, "The invocation is of another app than FORGE_APP_ARI.")
        environment = context.app.environment
        if environment is None or environment.id != self.settings.env_ari:
            raise AuthError(
                AuthErrorCode.CONTEXT_MISMATCH, "The invocation is of another environment than FORGE_ENV_ARI."
            )

    def product_client(
        self,
        call: ForgeContainerInvocation,
        product: EgressProduct = "jira",
        *,
        as_user: bool = False,
        retries: RetryPolicy | None = ATLASSIAN_RETRIES,
        **client_options: Any,
    ) -> httpx2.AsyncClient:
        """A client for the invocation's product, as the app or (`as_user=True`) as its user.

        ```python
        async with containers.product_client(call, as_user=True) as jira:
            me = (await jira.get("/rest/api/3/myself")).json()
        ```

        Paths are the product's (`/rest/api/3/myself`; `"atlassian"` then `/graphql`).
        `as_user` for an invocation without a user (a web trigger, an event) raises
        `ProductAPIError` before anything is sent.
        """
        if as_user and call.account_id is None:
            raise ProductAPIError("The invocation has no user to act as (a web trigger, an event or a trigger).")
        header = proxy_authorization(invocation_id=call.invocation_id, as_="user" if as_user else "app")
        return self._client_for(_product_prefix(product), header, retries, client_options)

    def offline_client(
        self,
        installation_id: str,
        product: EgressProduct = "jira",
        *,
        account_id: str | None = None,
        retries: RetryPolicy | None = ATLASSIAN_RETRIES,
        **client_options: Any,
    ) -> httpx2.AsyncClient:
        """A client for an installation's product outside any invocation: as the app, or as `account_id`.

        `installation_id` is the bare UUID (`/v1/installations`) or the ARI. Forge
        serves these calls only where it manages the sidecar (deployed, or `forge tunnel`).
        """
        as_: Literal["app", "user"] = "app" if account_id is None else "user"
        header = proxy_authorization(installation_id=installation_id, as_=as_, account_id=account_id)
        return self._client_for(_product_prefix(product), header, retries, client_options)

    def fetch_client(
        self,
        host: str,
        *,
        call: ForgeContainerInvocation | None = None,
        installation_id: str | None = None,
        retries: RetryPolicy | None = ATLASSIAN_RETRIES,
        **client_options: Any,
    ) -> httpx2.AsyncClient:
        """A client for an external `host` through `/proxy/<host>/…` (only hosts of `permissions.external.fetch.backend`).

        Give the invocation (`call`) or, outside one, the `installation_id`.
        """
        if call is not None:
            header = proxy_authorization(invocation_id=call.invocation_id, as_="app")
        else:
            header = proxy_authorization(installation_id=installation_id, as_="app")
        return self._client_for(proxy_prefix(host), header, retries, client_options)

    async def installations(
        self, *, page_size: int = 100, max_pages: int = 10_000, retries: RetryPolicy | None = ATLASSIAN_RETRIES
    ) -> AsyncIterator[ForgeContainerInstallation]:
        """Every installation of the app's environment (`GET /v1/installations`, page by page), for batch work.

        At most `max_pages` pages are read (`ProductAPIError` beyond: a listing that never ends);
        a cursor seen before ends the listing.

        ```python
        async for installation in containers.installations():
            async with containers.offline_client(installation.id) as jira: ...
        ```
        """
        async with AsyncRetryingClient(
            retries=retries, base_url=self.settings.egress_proxy_url, transport=self.transport, timeout=30.0
        ) as client:
            async for installation in list_installations(client, page_size, max_pages):
                yield installation

    def _client_for(
        self, prefix: str, header: str, retries: RetryPolicy | None, options: dict[str, Any]
    ) -> httpx2.AsyncClient:
        return egress_client(
            self.settings.egress_proxy_url, prefix, header, transport=self.transport, retries=retries, **options
        )


def _product_prefix(product: str) -> str:
    if product not in ("jira", "confluence", "atlassian"):
        raise ValueError(f"product is 'jira', 'confluence' or 'atlassian', not {product!r}")
    return f"/{product}"
