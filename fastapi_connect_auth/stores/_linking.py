"""`ConnectLinker`: each Forge installation linked to its Connect tenant by Atlassian's own answer, before it goes.

Until Connect's end of support (31 January 2027), the reserved app property
names the Connect `clientKey` of a Forge installation, read with that
installation's own system token. The linker reads it once per installation:

* on first contact (`link_on_contact`, or the linker itself as
  `ForgeAuth(on_invocation=linker)`): an invocation whose system token the
  library would keep (`trusted_system_token`: never a call a browser may have sent);
* in a batch (`link_stored`), with each installation's stored, unexpired system token.

A read starts only after an atomic claim in the store (one replica reads, the
others skip), and whatever it comes to is kept: a verified link for good, a
failure with a back-off (404, no Connect history: a day; 401/403: an hour; a 429:
its `Retry-After`; a timeout or 5xx: five minutes). A property naming no stored
tenant leaves the link as it was. A failure never fails the invocation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import httpx2
from cachetools import TLRUCache

from .._forge._models import ForgeInvocation
from .._outbound._connect_property import check_connect_key, connect_property_path, read
from .._outbound._forge import ForgeTokenStore, forge_product_client, stored_forge_client, trusted_system_token
from ._base import BaseStore
from ._records import ConnectLink, LinkOutcome, product_of_api_base_url

__all__ = ["DEFAULT_LINK_BACKOFF", "ConnectLinker", "LinkAttempt", "LinkRun"]

logger = logging.getLogger("fastapi_connect_auth")

DEFAULT_LINK_BACKOFF: Mapping[str, float] = MappingProxyType(
    {
        "not-found": 86_400.0,
        "refused": 3_600.0,
        "rate-limited": 60.0,
        "unreachable": 300.0,
        "invalid": 86_400.0,
        "no-tenant": 3_600.0,
    }
)
"""Seconds before an installation's property is read again, by what the last read came to (a 429's own wait wins)."""

_FOREVER = math.inf


@dataclass(frozen=True, slots=True)
class LinkAttempt:
    """What the linker did for one installation.

    `outcome` is a `LinkOutcome`, or `pending` when no read was started (another
    replica's is under way, or the last failure's back-off has not run out).
    """

    installation_id: str
    """The Forge installation."""
    outcome: LinkOutcome | Literal["pending"]
    """`linked`, a failure (`not-found`, `refused`, …), `no-token`, `unsupported` or `pending`."""
    client_key: str | None = None
    """The linked tenant's clientKey, when linked."""
    read: bool = False
    """Whether the property was read for it (a link already verified is not read again)."""


@dataclass(frozen=True, slots=True)
class LinkRun:
    """What a batch (`ConnectLinker.link_stored`) did, one `LinkAttempt` per installation."""

    attempts: tuple[LinkAttempt, ...]
    """Every installation it went through, in installation id order."""

    @property
    def linked(self) -> tuple[LinkAttempt, ...]:
        """The installations whose tenant is known for certain now."""
        return tuple(attempt for attempt in self.attempts if attempt.outcome == "linked")

    @property
    def unreached(self) -> tuple[LinkAttempt, ...]:
        """The installations still without a verified link, with why."""
        return tuple(attempt for attempt in self.attempts if attempt.outcome != "linked")

    def as_json(self) -> dict[str, Any]:
        """Counts and the unreached installations, as JSON types (no token, no secret)."""
        return {
            "installations": len(self.attempts),
            "linked": len(self.linked),
            "read": sum(attempt.read for attempt in self.attempts),
            "unreached": [
                {"installation_id": attempt.installation_id, "outcome": attempt.outcome} for attempt in self.unreached
            ],
        }


ClientFactory = Callable[[], Awaitable[httpx2.AsyncClient]]


class ConnectLinker:
    """Link Forge installations to their Connect tenants from the reserved app property, once each.

    ```python
    linker = ConnectLinker(store, connect_key="my-connect-app")
    forge = ForgeAuth(app_id=APP_ID, on_invocation=linker)  # on first contact
    run = await linker.link_stored()  # the rest, with their stored system tokens
    ```

    * `connect_key`: the app's Connect key (`app.connect.key`, the descriptor's `key`).
    * `timeout`: seconds one read may take. It runs inside the invocation, and
      Forge gives an event 5 seconds in all: the default leaves the app 3 of them.
    * `lease`: seconds a claimed read holds the installation (another replica waits that long at most).
    * `backoff`: seconds before the next read, by outcome (`DEFAULT_LINK_BACKOFF`);
      `max_retry_after` caps what a 429 may ask.
    * `transport`: the HTTP transport of the reads (a test's `MockTransport`).
    """

    def __init__(
        self,
        store: BaseStore,
        *,
        connect_key: str,
        timeout: float = 2.0,
        lease: float = 60.0,
        backoff: Mapping[str, float] | None = None,
        max_retry_after: float = 86_400.0,
        transport: httpx2.AsyncBaseTransport | None = None,
        cache_size: int = 10_000,
    ) -> None:
        if not 0 < timeout < lease:
            raise ValueError("timeout must be a positive number of seconds, shorter than the lease")
        self.store = store
        """Where links, claims and back-offs are kept."""
        self.connect_key = check_connect_key(connect_key)
        """The app's Connect key, whose property is read."""
        self.timeout = timeout
        """Seconds one read may take."""
        self.lease = lease
        """Seconds a claimed read holds the installation."""
        self.backoff: Mapping[str, float] = MappingProxyType({**DEFAULT_LINK_BACKOFF, **(backoff or {})})
        """Seconds before the next read, by what the last one came to."""
        self.max_retry_after = max_retry_after
        """The longest wait a 429's `Retry-After` is followed for."""
        self.transport = transport
        """The reads' HTTP transport (`None`: the network)."""
        self._quiet: TLRUCache[str, float] = TLRUCache(
            cache_size, ttu=lambda _key, until, _now: until, timer=store.clock
        )
        """Installations this process need not look at before a time: linked (never), backing off, or unsupported."""

    @staticmethod
    def check_key(connect_key: str) -> str:
        """`connect_key` if it is a Connect app key (letters, digits, `.`, `_`, `-`), else `ValueError`."""
        return check_connect_key(connect_key)

    async def __call__(self, invocation: ForgeInvocation) -> None:
        """`ForgeAuth(on_invocation=linker)`: `link_on_contact` for each verified invocation."""
        await self.link_on_contact(invocation)

    async def link_on_contact(self, invocation: ForgeInvocation) -> LinkAttempt | None:
        """Read the property for an unlinked installation with the invocation's system token; `None`: not looked at.

        Only an invocation whose system token the library would keep
        (`trusted_system_token`) is used; a UI call never is, whatever it carries.
        """
        if trusted_system_token(invocation) is None or invocation.installation_id in self._quiet:
            return None

        async def open_client() -> httpx2.AsyncClient:
            return forge_product_client(invocation, retries=None, timeout=self.timeout, transport=self.transport)

        return await self._attempt(invocation.installation_id, invocation.api_base_url, open_client)

    async def link_installation(self, installation_id: str, *, tokens: ForgeTokenStore | None = None) -> LinkAttempt:
        """Read the property for one stored installation with its stored, unexpired system token (`tokens`: the store)."""
        kept = tokens if tokens is not None else self.store
        stored = await kept.get(installation_id, None)
        if stored is None:
            verified = await self.store.installation_tenant(installation_id)
            if verified is not None:
                return LinkAttempt(installation_id, "linked", verified.client_key)
            return LinkAttempt(installation_id, "no-token")

        async def open_client() -> httpx2.AsyncClient:
            return await stored_forge_client(
                kept, installation_id, retries=None, timeout=self.timeout, transport=self.transport
            )

        return await self._attempt(installation_id, stored.api_base_url, open_client)

    async def link_stored(self, *, tokens: ForgeTokenStore | None = None) -> LinkRun:
        """Go through every installed Forge installation kept, one read at a time, and say what each came to.

        Installations already linked are not read again, back-offs are respected
        (`pending`), and one without a live stored system token is `no-token`: a
        token arrives with its next event or trigger.
        """
        installations = await self.store.list_forge_installations()
        ids = sorted(record.installation_id for record in installations if record.state == "installed")
        return LinkRun(tuple([await self.link_installation(installation_id, tokens=tokens) for installation_id in ids]))

    async def _attempt(self, installation_id: str, api_base_url: str, open_client: ClientFactory) -> LinkAttempt:
        store, now = self.store, self.store.clock()
        verified = await store.installation_tenant(installation_id)
        if verified is not None:
            self._quiet[installation_id] = _FOREVER
            return LinkAttempt(installation_id, "linked", verified.client_key)
        path = connect_property_path(self.connect_key, product_of_api_base_url(api_base_url))
        if path is None:
            self._quiet[installation_id] = _FOREVER
            return LinkAttempt(installation_id, "unsupported")
        kept = await store.connect_link(installation_id)
        if kept is not None and kept.next_attempt_at > now:
            self._quiet[installation_id] = kept.next_attempt_at
            return LinkAttempt(installation_id, "pending")
        if not await store.claim_connect_link(installation_id, lease=self.lease):
            self._quiet[installation_id] = now + self.lease
            return LinkAttempt(installation_id, "pending")
        async with await open_client() as client:
            answer = await read(client, path, timeout=self.timeout)
        outcome: LinkOutcome = answer.outcome
        client_key = answer.client_key
        if client_key is not None and await store.tenant(client_key) is None:
            outcome, client_key = "no-tenant", None
        now = store.clock()
        wait = self._wait(outcome, answer.retry_after)
        link = ConnectLink(
            installation_id,
            client_key=client_key,
            source="property" if client_key is not None else None,
            linked_at=now if client_key is not None else None,
            last_outcome=outcome,
            next_attempt_at=now + (0.0 if client_key is not None else wait),
        )
        await store.record_connect_link(link)
        self._quiet[installation_id] = _FOREVER if client_key is not None else now + wait
        logger.info("Connect link of Forge installation %r: %s", installation_id, outcome)
        return LinkAttempt(installation_id, outcome, client_key, read=True)

    def _wait(self, outcome: str, retry_after: float | None) -> float:
        if outcome == "rate-limited" and retry_after is not None:
            return min(max(retry_after, 1.0), self.max_retry_after)
        return self.backoff.get(outcome, 0.0)
