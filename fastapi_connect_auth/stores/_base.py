"""`BaseStore`: the rules every store follows, once, over a few storage primitives each backend implements.

The rules that are easy to get wrong live here, not in the adapters:

* an install's new shared secret replaces the old one at once, and of two
  racing installs or uninstalls the later signed one wins (`lifecycle_order`:
  a shared secret's holder can never outrank Atlassian's signature);
  `enabled`/`disabled` are ordered on their own and never touch `installed`;
* an uninstalled tenant stays known and refused until a signed install; an
  unsigned (legacy) install only ever creates a tenant never seen;
* a Forge call is linked to a Connect tenant by the installation id or cloud id
  of an Atlassian-signed install only, and by cloud id only in the narrow case
  `link_connect_tenant` allows;
* a Forge installation that received `preUninstall` stays uninstalled;
* hostile values (NaN, absurd nesting, control characters in ids) are refused
  before a backend sees them, and a backend's faults answer 503, never 500;
* a bounded local cache answers `credentials` for `cache_ttl` seconds, dropped
  at once in this process on install and uninstall.

A backend implements the `_`-prefixed primitives (each one atomic) and declares
its `faults`: the exceptions that mean "unreachable now". The contract suite
(`fastapi_connect_auth.testing.StoreContract`) checks a backend against all of it.
"""

from __future__ import annotations

import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from cachetools import TTLCache

from .._connect._models import ConnectClaims, Credentials, InstallPayload, VerifiedInstallation, VerifiedLifecycle
from .._errors import AuthError, AuthErrorCode
from .._forge._models import ForgeInvocation
from .._outbound._forge import ForgeStoredToken
from ._batching import Batcher
from ._records import (
    ConnectLink,
    ForgeInstallationRecord,
    InstallationState,
    Product,
    Tenant,
    product_of_api_base_url,
)
from ._secrets import SecretDecryptionError

__all__ = [
    "BaseStore",
    "CacheStats",
    "lifecycle_order",
    "link_connect_tenant",
    "outranks",
    "reinstalled",
    "store_unavailable",
]

logger = logging.getLogger("fastapi_connect_auth")

MAX_ID_LENGTH = 255
MAX_JSON_DEPTH = 32
MAX_JSON_ITEMS = 10_000


@dataclass(frozen=True, slots=True)
class CacheStats:
    """How the credentials cache has served this process: hits, misses and the hit rate."""

    hits: int
    """Lookups answered from the cache."""
    misses: int
    """Lookups that read the store."""

    @property
    def hit_rate(self) -> float:
        """Hits over all lookups (0.0 before any)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def store_unavailable() -> AuthError:
    """The `STORE_UNAVAILABLE` (503) answer to a store fault: nothing was changed, the product retries."""
    error = AuthError(
        AuthErrorCode.STORE_UNAVAILABLE, "The app's store is unavailable; try again later.", status_code=503
    )
    error.headers = {"Retry-After": "5"}
    return error


def _refuse(what: str) -> AuthError:
    return AuthError(AuthErrorCode.INVALID_INSTALL_PAYLOAD, f"Refused before storage: {what}.")


def _storable_id(value: object) -> bool:
    """A printable string of 1 to 255 characters that UTF-8 can encode (no lone surrogate, no NUL)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH or not value.isprintable():
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_id(value: str, what: str) -> str:
    """`value` if it is a storable id, else `INVALID_INSTALL_PAYLOAD` (400) before any database sees it."""
    if not _storable_id(value):
        raise _refuse(f"{what} must be a printable id of 1 to {MAX_ID_LENGTH} characters")
    return value


def check_json(value: Any, what: str) -> None:
    """Refuse what a JSON column would choke on: NaN or infinite numbers, nesting past 32, NUL, lone surrogates."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    items = 0
    while pending:
        item, depth = pending.pop()
        items += 1
        if depth > MAX_JSON_DEPTH or items > MAX_JSON_ITEMS:
            raise _refuse(f"{what} is nested too deeply or too large")
        if isinstance(item, float) and not math.isfinite(item):
            raise _refuse(f"{what} holds a number JSON cannot represent (NaN or infinite)")
        if isinstance(item, str):
            _check_text(item, what)
        elif isinstance(item, Mapping):
            for key, child in item.items():
                _check_text(str(key), what)
                pending.append((child, depth + 1))
        elif isinstance(item, list | tuple):
            pending.extend((child, depth + 1) for child in item)
        elif item is not None and not isinstance(item, bool | int | float):
            raise _refuse(f"{what} holds a value that is not JSON")


def _check_text(text: str, what: str) -> None:
    if "\x00" in text:
        raise _refuse(f"{what} holds a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(f"{what} holds text UTF-8 cannot encode") from None


def lifecycle_order(claims: ConnectClaims | None, now: float) -> tuple[float, int]:
    """The order key `(signed_at, rank)` of a Connect lifecycle write; a write applies if its key is not below the kept one.

    Atlassian-signed (RS256): its `iat`, rank 1. Shared-secret (HS256): its `iat`
    but never later than the current second, rank 0, so whoever holds a
    tenant's secret can never sign past Atlassian's next install or uninstall,
    and a tie (Atlassian's `iat` is in whole seconds too) goes to Atlassian. No
    token (a legacy first install): the current second, rank 0, so an update
    signed in that second still applies. The verifier has already refused an
    `iat` in the future beyond its leeway.
    """
    second = float(math.floor(now))
    if claims is None:
        return second, 0
    iat = float(claims.iat) if claims.iat is not None else now
    return (iat, 1) if claims.alg == "RS256" else (min(iat, second), 0)


def outranks(kept: Tenant, signed_at: float, rank: int) -> bool:
    """Whether the kept tenant's install or uninstall comes after a write ordered `(signed_at, rank)`."""
    return (kept.signed_at, kept.signed_rank) > (signed_at, rank)


def reinstalled(kept: Tenant, tenant: Tenant) -> Tenant:
    """`tenant` (a newer install) over `kept`: dates kept; `enabled` kept if an `enabled`/`disabled` came later."""
    tenant = replace(tenant, installed_at=kept.installed_at, uninstalled_at=kept.uninstalled_at)
    if kept.enabled_at > tenant.signed_at:
        tenant = replace(tenant, enabled=kept.enabled, enabled_at=kept.enabled_at)
    return tenant


def link_connect_tenant(
    candidates: Iterable[Tenant], *, installation_id: str, cloud_id: str | None, product: Product | None
) -> Tenant | None:
    """The installed Connect tenant a Forge invocation belongs to, or `None`; never a guess.

    * By installation id: the tenant whose latest signed install named it (a
      re-install naming a new `installationId` re-links).
    * Else by cloud id, only for a tenant with no installation id recorded, of the
      invocation's product (Jira and Confluence share a cloud id), and only when
      exactly one such tenant matches.

    Ambiguity means no link.
    """
    installed = [tenant for tenant in candidates if tenant.installed]
    linked = [tenant for tenant in installed if tenant.installation_id == installation_id]
    if linked:
        return linked[0] if len(linked) == 1 else None
    if not cloud_id or product is None:
        return None
    unlinked = [
        tenant
        for tenant in installed
        if tenant.installation_id is None and tenant.cloud_id == cloud_id and tenant.product == product
    ]
    return unlinked[0] if len(unlinked) == 1 else None


def _invocation_product(invocation: ForgeInvocation) -> Product | None:
    urls = (invocation.api_base_url, *(context.api_base_url for context in invocation.installation_contexts))
    return next((product for url in urls if (product := product_of_api_base_url(url)) is not None), None)


class BaseStore(ABC):
    """Connect tenants, Forge installations, Forge tokens and delivery ids, with the library's rules.

    Use one of the library's stores (`MemoryStore`, `SQLAlchemyStore`, `RedisStore`)
    or subclass this one and implement its primitives; `StoreContract` tests it.

    ```python
    store = MemoryStore()
    connect = ConnectAuth(base_url="https://my-app.example.com", store=store)
    app.include_router(lifecycle_router(connect, store))
    ```

    * `cache_ttl`: seconds `credentials` may answer from this process's cache.
      This process drops an entry at once when it writes the tenant; another
      replica's write is seen within `cache_ttl` (5 s by default). `0` turns it off.
    * `cache_size`: the most tenants cached (least recently used go first).
    * `token_leeway`: seconds before expiry a Forge token is no longer handed out.
    """

    faults: ClassVar[tuple[type[BaseException], ...]] = ()
    """Exceptions of the backend that mean it cannot be reached or written now: answered 503."""

    def __init__(
        self,
        *,
        cache_ttl: float = 5.0,
        cache_size: int = 10_000,
        token_leeway: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not math.isfinite(cache_ttl) or cache_ttl < 0:
            raise ValueError("cache_ttl must be a finite number of seconds, 0 or more")
        self.cache_ttl = cache_ttl
        """Seconds a tenant's credentials may be answered from this process's cache."""
        self.token_leeway = token_leeway
        """Seconds before expiry from which a Forge token is no longer handed out."""
        self.clock = clock
        """The clock records are dated by (seconds since the epoch)."""
        self._cache: TTLCache[str, Credentials[Tenant] | None] | None = (
            TTLCache(cache_size, cache_ttl, timer=time.monotonic) if cache_ttl > 0 else None
        )
        self._reads: Batcher[str, Credentials[Tenant] | None] = Batcher(self._read_credentials)
        self._hits = self._misses = 0
        self._writes = 0
        """Bumped on every tenant write in this process: a read that overlapped one is not cached."""

    # -- what backends implement ---------------------------------------------------------

    @abstractmethod
    async def _get_tenant(self, client_key: str) -> Tenant | None:
        """The tenant kept for `client_key`, or `None`."""

    async def _get_tenants(self, client_keys: Sequence[str]) -> Mapping[str, Tenant]:
        """The tenants kept for `client_keys` (distinct), by clientKey; override to read them in one query."""
        found = {key: await self._get_tenant(key) for key in client_keys}
        return {key: tenant for key, tenant in found.items() if tenant is not None}

    @abstractmethod
    async def _put_tenant(self, tenant: Tenant, *, create_only: bool = False) -> bool:
        """Insert or replace the tenant, atomically; `True` if written.

        Not over a kept one whose `(signed_at, signed_rank)` is greater
        (`outranks`); with `create_only`, not over any kept one. A kept tenant keeps
        its `installed_at` and `uninstalled_at`, and its `enabled` and `enabled_at`
        when those are later than the install (`reinstalled`).
        """

    @abstractmethod
    async def _uninstall_tenant(self, client_key: str, signed_at: float, rank: int, now: float) -> bool:
        """Mark the kept tenant uninstalled at `now` with `(signed_at, rank)`, atomically, unless it `outranks` them."""

    @abstractmethod
    async def _enable_tenant(self, client_key: str, enabled: bool, signed_at: float) -> bool:
        """Set `enabled` and `enabled_at` on the kept tenant, atomically, if it is installed and its `enabled_at` is not later."""

    @abstractmethod
    async def _find_tenants(self, installation_id: str, cloud_id: str | None) -> list[Tenant]:
        """Every tenant whose installation id is `installation_id` or whose cloud id is `cloud_id`, by client key."""

    @abstractmethod
    async def _get_installation(self, installation_id: str) -> ForgeInstallationRecord | None:
        """The Forge installation kept for `installation_id`, or `None`."""

    @abstractmethod
    async def _put_installation(self, record: ForgeInstallationRecord) -> bool:
        """Insert or replace the Forge installation, atomically, unless the kept one is uninstalled; `True` if written."""

    @abstractmethod
    async def _get_token(self, installation_id: str, account_id: str | None) -> ForgeStoredToken | None:
        """The token kept for the key, expired or not (the store may have dropped expired ones)."""

    @abstractmethod
    async def _put_token(self, installation_id: str, account_id: str | None, token: ForgeStoredToken) -> None:
        """Keep `token` unless the kept one was received later, atomically; expire it at `expires_at`."""

    @abstractmethod
    async def _discard_token(self, installation_id: str, account_id: str | None, token: str) -> None:
        """Forget the kept token if it is still `token`, atomically."""

    @abstractmethod
    async def _remember_delivery(self, key: str, fingerprint: str, expires_at: float) -> str | None:
        """`RedeliveryStore.remember_delivery`: atomic; of concurrent calls for one key, exactly one gets `None`."""

    async def _forget_delivery(self, key: str, fingerprint: str) -> bool:
        """Forget `key` if it is kept with `fingerprint`, atomically (compare-and-delete); `True` if forgotten.

        Not abstract, so a store written before it still opens; without it `delivery_once` cannot forget.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement _forget_delivery")

    async def _rotate(self) -> int:
        """Re-encrypt every secret with the first key; how many were rewritten (none for a store that encrypts none)."""
        return 0

    async def close(self) -> None:
        """Release the backend's connections (the app's lifespan calls it)."""
        return None

    async def _get_link(self, installation_id: str) -> ConnectLink | None:
        """The Connect link kept for the installation, or `None` (a store that keeps none: always `None`)."""
        return None

    async def _claim_link(self, installation_id: str, now: float, until: float) -> bool:
        """Atomically: unless a verified link is kept or the next read is due after `now`, start one (lease `until`).

        Of concurrent calls for one installation, at most one gets `True`; the kept
        link's `attempts` grows by one and its `next_attempt_at` becomes `until`.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no Connect links")

    async def _put_link(self, link: ConnectLink) -> None:
        """Write what a read came to, atomically; a verified link kept is never replaced by an unverified one."""
        raise NotImplementedError(f"{type(self).__name__} keeps no Connect links")

    async def _list_links(self) -> list[ConnectLink]:
        """Every Connect link kept."""
        raise NotImplementedError(f"{type(self).__name__} keeps no Connect links")

    async def _list_tenants(self) -> list[Tenant]:
        """Every tenant kept, its `shared_secret` left empty (never decrypted: a report needs no key)."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its tenants")

    async def _list_installations(self) -> list[ForgeInstallationRecord]:
        """Every Forge installation kept."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its Forge installations")

    # -- faults ----------------------------------------------------------------------------

    @asynccontextmanager
    async def _reaching(self, operation: str) -> AsyncIterator[None]:
        """Turn the backend's faults into `STORE_UNAVAILABLE` (503), logging only their class and SQLSTATE."""
        try:
            yield
        except AuthError:
            raise
        except SecretDecryptionError:
            logger.error(
                "%s cannot decrypt a stored secret during %s: was a key dropped too early?",
                type(self).__name__,
                operation,
            )
            raise store_unavailable() from None
        except self.faults as exc:
            orig = getattr(exc, "orig", None)
            sqlstate = getattr(orig, "sqlstate", None)
            cause = type(orig).__name__ if orig is not None else "none"
            if isinstance(sqlstate, str):
                cause += f", SQLSTATE {sqlstate}"
            logger.error(
                "%s unavailable during %s: %s (cause: %s)", type(self).__name__, operation, type(exc).__name__, cause
            )
            raise store_unavailable() from None

    # -- Connect tenants -------------------------------------------------------------------

    async def credentials(self, client_key: str) -> Credentials[Tenant] | None:
        """The credentials loader: `ConnectAuth(credentials_loader=store.credentials)` (or `store=store`).

        `installed=False` for an uninstalled tenant; `None` for one never seen
        (or an id no store could hold). Answered from the cache for `cache_ttl`
        seconds; the misses that arrive together are read in one query.
        """
        cache = self._cache
        if cache is not None:
            try:
                cached = cache[client_key]
            except KeyError:
                pass
            else:
                self._hits += 1
                return cached
        self._misses += 1
        if not _storable_id(client_key):
            return None
        writes = self._writes
        credentials = await self._reads.submit(client_key)
        if cache is not None and writes == self._writes:  # a read that overlapped a write here is not kept
            cache[client_key] = credentials
        return credentials

    async def _read_credentials(self, client_keys: list[str]) -> list[Credentials[Tenant] | None]:
        async with self._reaching("a tenant read"):
            found = await self._get_tenants(list(dict.fromkeys(client_keys)))
        return [_credentials(found.get(key)) for key in client_keys]

    @property
    def cache_stats(self) -> CacheStats:
        """How often `credentials` was answered from the cache in this process."""
        return CacheStats(self._hits, self._misses)

    def _forget(self, client_key: str) -> None:
        self._writes += 1
        if self._cache is not None:
            self._cache.pop(client_key, None)

    async def tenant(self, client_key: str) -> Tenant | None:
        """The tenant kept for `client_key`, read from the store (never the cache), installed or not."""
        check_id(client_key, "clientKey")
        async with self._reaching("a tenant read"):
            return await self._get_tenant(client_key)

    async def fresh_credentials(self, client_key: str) -> Credentials[Tenant] | None:
        """`credentials` read from the store, never the cache: what an unsigned install's acceptance is decided on."""
        if not _storable_id(client_key):
            return None
        async with self._reaching("a tenant read"):
            return _credentials(await self._get_tenant(client_key))

    async def save_install(
        self,
        install: VerifiedInstallation[Any] | InstallPayload,
        *,
        signed_at: float | None = None,
        atlassian_signed: bool = False,
    ) -> bool:
        """Keep a verified install: its shared secret replaces the old one at once; the tenant is installed.

        Writes are ordered by `lifecycle_order` of the install's token (`signed_at`
        and `atlassian_signed` set it for a bare payload you verified yourself). An
        install ordered before the kept install or uninstall changes nothing:
        `False`, else `True`. One atomic write, no read first.

        An unsigned install (a legacy first install: no token, or a bare payload
        without `signed_at`) only creates a tenant never seen: for a kept one it is
        `UNAUTHORIZED_REQUEST` (401) and nothing is written, whichever replica
        raced it. The `installationId` and `cloudId` of an install not signed by
        Atlassian stay in its payload but link no Forge installation.
        """
        payload = install.payload if isinstance(install, VerifiedInstallation) else install
        claims = install.claims if isinstance(install, VerifiedInstallation) else None
        now = self.clock()
        unsigned = claims is None and signed_at is None
        when, rank = lifecycle_order(claims, now)
        when, rank = (signed_at if signed_at is not None else when), max(rank, int(atlassian_signed))
        record = payload.dump_for_storage()
        secret = record.pop("sharedSecret")
        check_id(payload.client_key, "clientKey")
        for name, value in (("installationId", payload.installation_id), ("cloudId", payload.cloud_id)):
            if value is not None:
                check_id(value, name)
        check_json(payload.model_dump(exclude={"shared_secret"}), "the install payload")  # before JSON mode nulls a NaN
        if not math.isfinite(when):
            raise _refuse("the install's time is not finite")
        tenant = Tenant(
            client_key=payload.client_key,
            base_url=payload.base_url,
            shared_secret=secret,
            signed_at=float(when),
            signed_rank=rank,
            enabled_at=float(when),
            product_type=payload.product_type,
            installation_id=payload.installation_id if rank else None,
            cloud_id=payload.cloud_id if rank else None,
            oauth_client_id=payload.oauth_client_id,
            payload=record,
            installed_at=now,
        )
        async with self._reaching("an install"):
            written = await self._put_tenant(tenant, create_only=unsigned)
        self._forget(payload.client_key)
        if unsigned and not written:
            raise AuthError(
                AuthErrorCode.UNAUTHORIZED_REQUEST,
                "An install for a known clientKey must be signed with its shared secret.",
            )
        return written

    async def uninstall(
        self, event: VerifiedLifecycle[Any] | str, *, signed_at: float | None = None, atlassian_signed: bool = False
    ) -> bool:
        """Mark the tenant of a verified `uninstalled` (or a client key) uninstalled: kept, refused until a signed install.

        Ordered with installs (`lifecycle_order`): an uninstall ordered before the
        kept install or uninstall changes nothing. `True` if it was written.
        """
        client_key = check_id(event if isinstance(event, str) else event.client_key, "clientKey")
        now = self.clock()
        when, rank = lifecycle_order(None if isinstance(event, str) else event.claims, now)
        when, rank = (signed_at if signed_at is not None else when), max(rank, int(atlassian_signed))
        async with self._reaching("an uninstall"):
            written = await self._uninstall_tenant(client_key, float(when), rank, now)
        self._forget(client_key)
        return written

    async def set_enabled(
        self, event: VerifiedLifecycle[Any] | str, enabled: bool, *, signed_at: float | None = None
    ) -> bool:
        """Record an `enabled` or `disabled` callback; `True` if written.

        Ordered among `enabled`/`disabled` (and installs) only, never with
        uninstalls: one signed before the latest applied changes nothing, and an
        uninstalled tenant stays as it is.
        """
        client_key = check_id(event if isinstance(event, str) else event.client_key, "clientKey")
        now = self.clock()
        when = lifecycle_order(None if isinstance(event, str) else event.claims, now)[0]
        async with self._reaching("an enabled/disabled write"):
            written = await self._enable_tenant(
                client_key, enabled, float(signed_at if signed_at is not None else when)
            )
        self._forget(client_key)
        return written

    async def connect_tenant(self, invocation: ForgeInvocation) -> Tenant | None:
        """The Connect tenant linked to a Forge invocation (`link_connect_tenant`'s rule), or `None`."""
        installation_id, cloud_id = invocation.installation_id, invocation.cloud_id
        if not _storable_id(installation_id) or (cloud_id is not None and not _storable_id(cloud_id)):
            return None
        async with self._reaching("a tenant lookup"):
            verified = await self._property_linked_tenant(installation_id)
            if verified is not None:
                return verified
            candidates = await self._find_tenants(installation_id, cloud_id)
        return link_connect_tenant(
            candidates, installation_id=installation_id, cloud_id=cloud_id, product=_invocation_product(invocation)
        )

    async def rotate(self) -> int:
        """Re-encrypt every kept secret with the first encryption key; returns how many were rewritten."""
        async with self._reaching("a key rotation"):
            return await self._rotate()

    # -- Forge installations -----------------------------------------------------------------

    async def forge_installation(self, installation_id: str) -> ForgeInstallationRecord | None:
        """The Forge installation kept for `installation_id`, or `None` for one never seen."""
        if not _storable_id(installation_id):
            return None
        async with self._reaching("an installation read"):
            return await self._get_installation(installation_id)

    async def record_forge_installation(
        self, invocation: ForgeInvocation, *, state: InstallationState = "installed", app_version: str | None = None
    ) -> ForgeInstallationRecord | None:
        """Keep the installation of a verified lifecycle invocation, with its contexts and `state`; `None` if refused.

        `installed` (installed or upgraded) keeps when it was first recorded;
        `uninstalled` (a `preUninstall`) records when, and is final: the id
        changes on a reinstall, so a later event for it is a redelivery and changes
        nothing (`None`, logged). The version is the FIT's `appVersion`, else
        `app_version` (a payload's, unsigned).
        """
        installation_id = check_id(invocation.installation_id, "installationId")
        contexts = [
            context.model_dump(
                by_alias=True, exclude_none=True, include={"name", "api_base_url", "cloud_id", "workspace_id"}
            )
            for context in invocation.installation_contexts
        ]
        check_json(contexts, "the installation's contexts")
        now = self.clock()
        async with self._reaching("an installation write"):
            kept = await self._get_installation(installation_id)
            record = ForgeInstallationRecord(
                installation_id=installation_id,
                state=state,
                contexts=tuple(contexts) or (kept.contexts if kept is not None else ()),
                api_base_url=invocation.api_base_url,
                # The FIT's appVersion is signed; a payload's version is not: it only fills a gap.
                app_version=invocation.app_version or app_version or (kept.app_version if kept else None),
                installed_at=kept.installed_at if kept is not None and kept.installed_at is not None else now,
                updated_at=now,
                uninstalled_at=now if state == "uninstalled" else None,
            )
            written = await self._put_installation(record)  # atomic: never over an uninstalled one
        if not written:
            logger.info(
                "Forge installation %s already uninstalled: a late %s event for it changes nothing",
                installation_id,
                "preUninstall" if state == "uninstalled" else "installed/upgraded",
            )
            return None
        return record

    # -- Forge tokens (`ForgeTokenStore`) --------------------------------------------------------

    async def get(self, installation_id: str, account_id: str | None) -> ForgeStoredToken | None:
        """A kept token that stays valid for `token_leeway` seconds yet, or `None`."""
        if not _storable_id(installation_id) or (account_id is not None and not _storable_id(account_id)):
            return None
        async with self._reaching("a token read"):
            stored = await self._get_token(installation_id, account_id)
        if stored is None or stored.expires_at - self.token_leeway <= self.clock():
            return None
        return stored

    async def put(self, installation_id: str, account_id: str | None, token: ForgeStoredToken) -> None:
        """Keep `token` unless the kept one was received later."""
        check_id(installation_id, "installationId")
        if account_id is not None:
            check_id(account_id, "accountId")
        if not (math.isfinite(token.expires_at) and math.isfinite(token.received_at)):
            raise _refuse("a token's times must be finite")
        if token.expires_at <= self.clock():
            return
        async with self._reaching("a token write"):
            await self._put_token(installation_id, account_id, token)

    async def discard(self, installation_id: str, account_id: str | None, token: str) -> None:
        """Forget `token` if it is still the one kept (the product answered 401 to it)."""
        if not _storable_id(installation_id) or (account_id is not None and not _storable_id(account_id)):
            return
        async with self._reaching("a token discard"):
            await self._discard_token(installation_id, account_id, token)

    # -- delivery ids (`RedeliveryStore`) ----------------------------------------------------------

    async def remember_delivery(self, key: str, fingerprint: str, expires_at: float) -> str | None:
        """Keep `key` until `expires_at` unless it is kept; the kept fingerprint, or `None` for a new delivery."""
        async with self._reaching("a delivery check"):
            return await self._remember_delivery(key, fingerprint, expires_at)

    async def forget_delivery(self, key: str, fingerprint: str) -> bool:
        """Forget `key` if it is still kept with `fingerprint` (the app failed to store it); `True` if forgotten."""
        async with self._reaching("a delivery forget"):
            return await self._forget_delivery(key, fingerprint)

    # -- Connect links (Connect's end of support) ------------------------------------------------

    async def _property_linked_tenant(self, installation_id: str) -> Tenant | None:
        """The installed tenant the reserved property named for the installation: Atlassian's answer, over any guess."""
        link = await self._get_link(installation_id)
        if link is None or not link.verified or link.client_key is None:
            return None
        tenant = await self._get_tenant(link.client_key)
        return tenant if tenant is not None and tenant.installed else None

    async def installation_tenant(self, installation_id: str) -> Tenant | None:
        """The installed tenant verified for the installation, never a guess: the reserved property's, else a signed install's."""
        if not _storable_id(installation_id):
            return None
        async with self._reaching("a tenant lookup"):
            verified = await self._property_linked_tenant(installation_id)
            if verified is not None:
                return verified
            candidates = await self._find_tenants(installation_id, None)
        return link_connect_tenant(candidates, installation_id=installation_id, cloud_id=None, product=None)

    async def connect_link(self, installation_id: str) -> ConnectLink | None:
        """What is kept of the installation's link from the reserved property, or `None`."""
        if not _storable_id(installation_id):
            return None
        async with self._reaching("a link read"):
            return await self._get_link(installation_id)

    async def claim_connect_link(self, installation_id: str, *, lease: float) -> bool:
        """Start a read of the installation's property, unless it is linked, backing off, or being read elsewhere.

        Atomic across replicas: of concurrent claims exactly one gets `True`, and it
        holds the installation for `lease` seconds (then another may start).
        """
        check_id(installation_id, "installationId")
        now = self.clock()
        async with self._reaching("a link claim"):
            return await self._claim_link(installation_id, now, now + lease)

    async def record_connect_link(self, link: ConnectLink) -> None:
        """Keep what a read came to: a verified link, or the failure and when to try again."""
        check_id(link.installation_id, "installationId")
        if link.client_key is not None:
            check_id(link.client_key, "clientKey")
        if not math.isfinite(link.next_attempt_at):
            raise _refuse("a link's next attempt must be a finite time")
        async with self._reaching("a link write"):
            await self._put_link(link)

    async def connect_links(self) -> list[ConnectLink]:
        """Every link kept (for reports), in no particular order."""
        async with self._reaching("a link listing"):
            return await self._list_links()

    async def list_tenants(self) -> list[Tenant]:
        """Every tenant kept, installed or not, each with an empty `shared_secret` (none is decrypted)."""
        async with self._reaching("a tenant listing"):
            return await self._list_tenants()

    async def list_forge_installations(self) -> list[ForgeInstallationRecord]:
        """Every Forge installation kept, installed or not."""
        async with self._reaching("an installation listing"):
            return await self._list_installations()


def _credentials(tenant: Tenant | None) -> Credentials[Tenant] | None:
    if tenant is None:
        return None
    return Credentials(tenant.shared_secret, stored_entity=tenant, base_url=tenant.base_url, installed=tenant.installed)


def matching(tenants: Sequence[Tenant], installation_id: str, cloud_id: str | None) -> list[Tenant]:
    """The tenants whose installation id or cloud id matches, by client key (for backends that filter in Python)."""
    found = [t for t in tenants if t.installation_id == installation_id or (cloud_id and t.cloud_id == cloud_id)]
    return sorted(found, key=lambda tenant: tenant.client_key)
