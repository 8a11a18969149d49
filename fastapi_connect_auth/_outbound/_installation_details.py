"""The Forge Installation Details API: an installation's version, contexts and permissions, and whether it is live.

`GET https://api.atlassian.com/forge/installation/v1/{appId}/{envId}/installation/{installationId}`
with the installation's own system token (no scope needed). It answers the
installed version, the installation's contexts, its permissions and `isSandbox`,
and no Connect `clientKey`. Atlassian allows one request per 5 minutes per
installation and 50 a minute per app: the client keeps each answer (and each
404) for 5 minutes, asks once for concurrent callers, counts the app's requests
in the last minute, and after a 429 asks nothing for that installation until its
`Retry-After` has passed. A limit this client can see coming is raised without
a request.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx2
from cachetools import TTLCache
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError
from pydantic.alias_generators import to_camel

from .._json import loads
from ._errors import ProductAPIError
from ._forge import ForgeTokenStore
from ._origin import safe_base_url
from ._retries import RateLimitInfo

__all__ = [
    "InstallationContextRef",
    "InstallationDetails",
    "InstallationDetailsClient",
    "InstallationDetailsError",
    "InstallationPermissions",
    "installation_is_live",
]

_PER_INSTALLATION = 300.0
_APP_WINDOW = 60.0

_CONFIG = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True)


class InstallationContextRef(BaseModel):
    """A context the app is installed in: `id` is its ARI (`ari:cloud:jira::site/<cloudId>`)."""

    model_config = _CONFIG

    id: StrictStr
    """The context's ARI."""


class InstallationPermissions(BaseModel):
    """The permissions the installed version holds: its scopes and its external permissions, as sent."""

    model_config = _CONFIG

    scopes: list[StrictStr] = Field(default_factory=list)
    """The OAuth scopes granted."""
    external: dict[str, Any] = Field(default_factory=dict)
    """`fetch`, `images`, `media`, `styles`, `scripts`, `frames`, `fonts`, as the API sends them."""


class InstallationDetails(BaseModel):
    """What the Installation Details API says of an installation (unknown fields are kept)."""

    model_config = _CONFIG

    version: StrictStr | None = None
    """The installed app version."""
    installation_context: InstallationContextRef | None = None
    """The main context (site or workspace)."""
    secondary_installation_contexts: list[InstallationContextRef] = Field(default_factory=list)
    """Further contexts."""
    permissions: InstallationPermissions | None = None
    """The permissions the installed version holds."""
    is_sandbox: StrictBool | None = None
    """Whether the installation is in a sandbox."""


class InstallationDetailsError(ProductAPIError):
    """The Installation Details API did not answer an installation's details (or a rate limit held the call back).

    `status_code` is the API's status (`None`: not reached, or held back before
    sending, then 429); `retry_after` the seconds to wait before asking again, when known.
    """

    def __init__(self, message: str, *, status_code: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The API's HTTP status, or 429 for a limit held back before sending, `None` if not reached."""
        self.retry_after = retry_after
        """Seconds to wait before asking again, when known."""


def _bare_uuid(value: str, what: str) -> str:
    """The UUID at the end of an ARI (or the bare UUID itself), checked."""
    bare = value.rsplit("/", 1)[-1]
    try:
        parsed = uuid.UUID(bare)
    except ValueError:
        raise ValueError(f"{what} is a UUID or an ARI ending with one") from None
    if str(parsed) != bare.lower():
        raise ValueError(f"{what} is a UUID or an ARI ending with one")
    return bare.lower()


class InstallationDetailsClient:
    """Ask the Installation Details API about the app's installations, within Atlassian's rate limits.

    ```python
    details_api = InstallationDetailsClient(app_id=APP_ID, environment_id=ENVIRONMENT_ID)
    details = await details_api.stored_details(store, installation_id)  # with its stored system token
    ```

    * `app_id`, `environment_id`: the app's and the environment's ids (UUIDs, or
      ARIs ending with one: a FIT's `app.id` and `app.environment.id`).
    * `base_url`: the API's origin (`https://api.atlassian.com`; a loopback fake in tests).
    * `cache_ttl`: seconds an answer is kept (5 minutes: the per-installation limit).
    * `app_limit`: requests a minute the app may make (50).
    * `transport`: the HTTP transport (a test's `MockTransport`).

    `details` returns `None` for an installation the API does not know (404: gone).
    """

    def __init__(
        self,
        *,
        app_id: str,
        environment_id: str,
        base_url: str = "https://api.atlassian.com",
        timeout: float = 10.0,
        cache_ttl: float = 300.0,
        app_limit: int = 50,
        cache_size: int = 10_000,
        transport: httpx2.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app_id = _bare_uuid(app_id, "app_id")
        """The app's id (a UUID)."""
        self.environment_id = _bare_uuid(environment_id, "environment_id")
        """The environment's id (a UUID)."""
        self.base_url = str(safe_base_url(base_url, "base_url"))
        """The API's origin."""
        self.timeout = timeout
        """Seconds one request may take."""
        self.app_limit = app_limit
        """Requests a minute the app may make."""
        self.transport = transport
        """The HTTP transport (`None`: the network)."""
        self.clock = clock
        """The clock the limits are counted by."""
        self._answers: TTLCache[str, InstallationDetails | None] = TTLCache(cache_size, cache_ttl, timer=clock)
        self._not_before: TTLCache[str, float] = TTLCache(cache_size, 86_400.0, timer=clock)
        self._sent: deque[float] = deque()
        self._inflight: dict[str, asyncio.Future[InstallationDetails | None]] = {}

    def url(self, installation_id: str) -> str:
        """The API's URL for an installation (its id as a UUID or an installation ARI)."""
        installation = _bare_uuid(installation_id, "installation_id")
        return f"{self.base_url}/forge/installation/v1/{self.app_id}/{self.environment_id}/installation/{installation}"

    async def details(self, installation_id: str, *, token: str) -> InstallationDetails | None:
        """The installation's details, asked with its system token `token`; `None` if the API answers 404 (gone).

        Raises `InstallationDetailsError` for any other answer, an unreachable
        API, or a rate limit known to hold (then without sending anything).
        """
        key = _bare_uuid(installation_id, "installation_id")
        if key in self._answers:
            return self._answers[key]
        inflight = self._inflight.get(key)
        if inflight is not None:
            return await asyncio.shield(inflight)
        future: asyncio.Future[InstallationDetails | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            answer = await self._fetch(key, token)
        except InstallationDetailsError as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no warning when nobody else waited
            raise
        finally:
            del self._inflight[key]
        self._answers[key] = answer
        future.set_result(answer)
        return answer

    async def stored_details(self, tokens: ForgeTokenStore, installation_id: str) -> InstallationDetails | None:
        """`details` with the installation's stored system token; `ProductAPIError` when none is kept alive."""
        stored = await tokens.get(installation_id, None)
        if stored is None:
            raise ProductAPIError(
                "No live Forge token is kept for this installation; one comes with the next invocation."
            )
        return await self.details(installation_id, token=stored.token)

    def _hold_back(self, key: str, now: float) -> None:
        """Raise before sending when this installation's `Retry-After` or the app's minute is not over."""
        not_before = self._not_before.get(key)
        if not_before is not None and not_before > now:
            raise InstallationDetailsError(
                "The Installation Details API asked to wait for this installation.",
                status_code=429,
                retry_after=not_before - now,
            )
        while self._sent and self._sent[0] <= now - _APP_WINDOW:
            self._sent.popleft()
        if len(self._sent) >= self.app_limit:
            raise InstallationDetailsError(
                f"The app's {self.app_limit} Installation Details requests a minute are used up.",
                status_code=429,
                retry_after=self._sent[0] + _APP_WINDOW - now,
            )
        self._sent.append(now)

    async def _fetch(self, key: str, token: str) -> InstallationDetails | None:
        now = self.clock()
        self._hold_back(key, now)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        try:
            async with httpx2.AsyncClient(transport=self.transport, timeout=self.timeout) as client:
                response = await client.get(self.url(key), headers=headers, follow_redirects=False)
        except httpx2.HTTPError as exc:
            raise InstallationDetailsError(
                f"The Installation Details API could not be reached ({type(exc).__name__})."
            ) from None
        status = response.status_code
        if status == 404:
            return None
        if status == 429:
            wait = RateLimitInfo.from_response(response).retry_after
            wait = _PER_INSTALLATION if wait is None else wait
            self._not_before[key] = now + wait
            raise InstallationDetailsError(
                "The Installation Details API answered 429.", status_code=429, retry_after=wait
            )
        if status != 200:
            raise InstallationDetailsError(f"The Installation Details API answered {status}.", status_code=status)
        try:
            return InstallationDetails.model_validate(loads(response.content))
        except (ValueError, ValidationError):
            raise InstallationDetailsError(
                "The Installation Details API answered a body of another shape.", status_code=200
            ) from None


async def installation_is_live(
    client: InstallationDetailsClient, tokens: ForgeTokenStore, installation_id: str
) -> bool | None:
    """Whether the installation is still installed, for data-retention jobs: `True`, `False` (404), or `None`.

    `None` means "cannot tell now" (no live stored system token, a rate limit,
    the API unreachable or refusing): never delete data on `None`.
    """
    try:
        return await client.stored_details(tokens, installation_id) is not None
    except ProductAPIError:
        return None
