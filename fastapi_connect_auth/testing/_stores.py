"""`StoreContract`: the tests every store must pass, for the library's stores and for yours.

```python
from contextlib import asynccontextmanager
from fastapi_connect_auth.testing import StoreContract

class TestMyStore(StoreContract):
    @asynccontextmanager
    async def open_store(self):
        store = MyStore(url=DATABASE_URL)  # every call: a new store object on the same data
        try:
            yield store
        finally:
            await store.close()
```

It covers the rules (a new secret replaces the old at once, uninstalled tenants
stay known, lifecycle order where a shared secret never outranks Atlassian's
signature, unsigned installs only create, only Atlassian-signed installs link,
an uninstalled Forge installation stays so, complete link lookups), concurrency
(two installs racing for one clientKey: the later signed secret wins whichever
commits last; racing unsigned installs create once; installs arriving together
on one store each keep their own result; of N identical
deliveries exactly one is new; the latest received token wins), expiry (delivery
ids and tokens), hostile values refused before storage, and a restart: a new
store object on the same data sees everything (skipped when `persistent` is false).
Tests run with anyio's pytest plugin (`anyio_backend` is asyncio unless you say otherwise).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any, ClassVar

import pytest

from .._connect._models import ConnectClaims, InstallPayload, VerifiedRequest
from .._connect._redelivery import remember_webhook_delivery, webhook_once
from .._errors import AuthError, AuthErrorCode
from .._forge._models import ForgeClaims, ForgeInvocation
from .._forge._redelivery import forge_event_once, remember_forge_event
from .._outbound._forge import ForgeStoredToken
from .._redelivery import Delivery
from ..stores._base import BaseStore
from ..stores._records import ConnectLink

__all__ = ["StoreContract", "forge_invocation", "install_payload"]


def install_payload(client_key: str, shared_secret: str, **fields: Any) -> InstallPayload:
    """An `installed` payload as Jira sends it; `fields` (camelCase) add to or override it."""
    body = {
        "key": "contract-app",
        "clientKey": client_key,
        "sharedSecret": shared_secret,
        "baseUrl": "https://contract.atlassian.net",
        "productType": "jira",
        "eventType": "installed",
        **fields,
    }
    return InstallPayload.model_validate({name: value for name, value in body.items() if value is not None})


def forge_invocation(
    installation_id: str, cloud_id: str, *, product: str = "jira", browser: bool = False, **claims: Any
) -> ForgeInvocation:
    """A `ForgeInvocation` (unverified: for store tests) of an installation on a site of `product`."""
    api_base_url = f"https://api.atlassian.com/ex/{product}/{cloud_id}"
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": "forge/invocation-token",
        "aud": ["ari:cloud:ecosystem::app/00000000-0000-4000-8000-000000000000"],
        "iat": now,
        "nbf": now,
        "exp": now + 25,
        "jti": str(uuid.uuid4()),
        "app": {
            "id": "ari:cloud:ecosystem::app/00000000-0000-4000-8000-000000000000",
            "installationId": installation_id,
            "apiBaseUrl": api_base_url,
            "installation": {
                "id": installation_id,
                "contexts": [
                    {"name": f"ari:cloud:{product}::site/{cloud_id}", "apiBaseUrl": api_base_url, "cloudId": cloud_id}
                ],
            },
        },
        **claims,
    }
    if browser:
        body["principal"] = "account-1"
        body["context"] = {"cloudId": cloud_id}
    return ForgeInvocation(ForgeClaims.model_validate(body))


def verified_webhook(client_key: str, raw_body: bytes | None, identifier: str) -> VerifiedRequest[Any]:
    """A webhook of `client_key` as `ConnectRequest(body=...)` hands it over (unverified: for store tests)."""
    claims = ConnectClaims.model_validate({"iss": client_key, "exp": int(time.time()) + 180})
    return VerifiedRequest(
        claims, None, json.loads(raw_body or b"null"), raw_body=raw_body, webhook_identifier=identifier
    )


def forge_event(installation_id: str, body: dict[str, Any]) -> ForgeInvocation:
    """A Forge event for `installation_id` with its raw `body` and a FIT of its own (a new `jti`)."""
    call = forge_invocation(installation_id, "cloud-1")
    return dataclasses.replace(call, body=body, raw_body=json.dumps(body).encode())


class _WriteFailed(Exception):
    """The app's own write, failing after its delivery was remembered (its database is down)."""

    def __init__(self, new: bool) -> None:
        super().__init__("the app's database is down")
        self.new = new


async def _fail_to_store(once: AbstractAsyncContextManager[Delivery]) -> None:
    async with once as delivery:
        raise _WriteFailed(delivery.new)


def _key() -> str:
    return f"contract-{uuid.uuid4().hex[:12]}"


@pytest.mark.anyio
class StoreContract:
    """Subclass it as `Test…` and define `open_store()`: each call opens a new store object on the same data."""

    persistent: ClassVar[bool] = True
    """Whether a new store object sees what an earlier one wrote (false for `MemoryStore`)."""

    def open_store(self) -> AbstractAsyncContextManager[BaseStore]:
        """An async context manager yielding a new store object on this test's data, closed on exit."""
        raise NotImplementedError("define open_store() in your subclass")

    # -- tenants ---------------------------------------------------------------------------

    async def test_an_install_is_kept_with_its_secret_and_link(self) -> None:
        """An install is kept with its secret and link."""
        key = _key()
        async with self.open_store() as store:
            assert await store.credentials(key) is None
            payload = install_payload(
                key, "s" * 40, installationId="ari:cloud:ecosystem::installation/1", cloudId="c-1"
            )
            await store.save_install(payload, signed_at=100, atlassian_signed=True)
            credentials = await store.credentials(key)
            assert credentials is not None
            assert (credentials.shared_secret, credentials.installed, credentials.base_url) == (
                "s" * 40,
                True,
                "https://contract.atlassian.net",
            )
            tenant = credentials.stored_entity
            assert tenant is not None
            assert (tenant.installation_id, tenant.cloud_id, tenant.product) == (
                "ari:cloud:ecosystem::installation/1",
                "c-1",
                "jira",
            )
            assert "sharedSecret" not in tenant.payload
            assert "s" * 40 not in repr(tenant)

    async def test_a_new_secret_replaces_the_old_one_at_once(self) -> None:
        """A new secret replaces the old one at once."""
        key = _key()
        async with self.open_store() as store:
            await store.save_install(install_payload(key, "old" * 12), signed_at=100)
            assert (await store.credentials(key)) is not None  # now cached
            await store.save_install(install_payload(key, "new" * 12), signed_at=101)
            credentials = await store.credentials(key)
            assert credentials is not None
            assert credentials.shared_secret == "new" * 12

    @pytest.mark.parametrize("order", ["later last", "later first"])
    async def test_two_racing_installs_the_later_signed_secret_wins(self, order: str) -> None:
        """Two installs racing for one clientKey: the later signed secret wins, whichever commits last."""
        key = _key()
        earlier, later = (install_payload(key, "e" * 40), 100.0), (install_payload(key, "l" * 40), 200.0)
        racers = [earlier, later] if order == "later last" else [later, earlier]
        async with self.open_store() as first, self.open_store() as second:
            await asyncio.gather(
                *(store.save_install(p, signed_at=t) for store, (p, t) in zip((first, second), racers, strict=True))
            )
            for store in (first, second):
                tenant = await store.tenant(key)
                assert tenant is not None
                assert (tenant.shared_secret, tenant.signed_at) == ("l" * 40, 200.0)

    async def test_concurrent_installs_on_one_store_each_keep_their_own_result(self) -> None:
        """Installs arriving together on one store (one group commit, where the store groups them) resolve one by one."""
        keys = [_key() for _ in range(12)]
        same, raced = _key(), _key()
        async with self.open_store() as store:
            answers = await asyncio.gather(
                *(store.save_install(install_payload(key, key * 2), signed_at=100) for key in keys),
                store.save_install(install_payload(same, "l" * 40), signed_at=200),
                store.save_install(install_payload(same, "e" * 40), signed_at=100),
                store.save_install(install_payload(raced, "u" * 40)),
                store.save_install(install_payload(raced, "s" * 40), signed_at=time.time() + 3600),
                return_exceptions=True,
            )
            assert answers[: len(keys) + 1] == [True] * (len(keys) + 1)  # each tenant, and the later of `same`
            assert isinstance(answers[len(keys) + 1], bool)  # the earlier of `same`: written if it went first
            unsigned, signed = answers[len(keys) + 2 :]
            assert signed is True  # the signed install is later than the unsigned one, whichever went first
            if unsigned is not True:  # it came second: a known clientKey needs a signed install
                assert isinstance(unsigned, AuthError)
                assert unsigned.code is AuthErrorCode.UNAUTHORIZED_REQUEST
            for key in keys:
                tenant = await store.tenant(key)
                assert tenant is not None
                assert (tenant.shared_secret, tenant.client_key) == (key * 2, key)
            kept = [await store.tenant(key) for key in (same, raced)]
            assert [(tenant.shared_secret if tenant else None) for tenant in kept] == ["l" * 40, "s" * 40]

    async def test_an_uninstalled_tenant_stays_known_until_a_signed_install(self) -> None:
        """An uninstalled tenant stays known until a signed install."""
        key = _key()
        async with self.open_store() as store:
            await store.save_install(install_payload(key, "s" * 40), signed_at=100)
            first = await store.tenant(key)
            assert first is not None
            assert first.installed_at is not None
            assert await store.credentials(key) is not None
            assert await store.uninstall(key, signed_at=101)
            credentials = await store.credentials(key)
            assert credentials is not None
            assert credentials.installed is False
            await store.save_install(install_payload(key, "s" * 40), signed_at=100.5)  # signed before the uninstall
            assert (await store.credentials(key)).installed is False  # type: ignore[union-attr]
            await store.save_install(install_payload(key, "t" * 40), signed_at=102)
            credentials = await store.credentials(key)
            assert credentials is not None
            assert (credentials.installed, credentials.shared_secret) == (True, "t" * 40)
            tenant = credentials.stored_entity
            assert tenant is not None
            assert tenant.uninstalled_at is not None
            assert tenant.installed_at == first.installed_at  # when it was first installed, kept

    async def test_enabled_and_disabled_are_recorded(self) -> None:
        """Enabled and disabled are recorded."""
        key = _key()
        async with self.open_store() as store:
            assert not await store.set_enabled(key, False)  # never installed
            await store.save_install(install_payload(key, "s" * 40), signed_at=100)
            assert await store.set_enabled(key, False)
            assert (await store.tenant(key)).enabled is False  # type: ignore[union-attr]
            assert await store.set_enabled(key, True)
            tenant = await store.tenant(key)
            assert tenant is not None
            assert (tenant.enabled, tenant.shared_secret) == (True, "s" * 40)

    @pytest.mark.parametrize(
        "fields",
        [
            {"extra": float("nan")},
            {"extra": float("inf")},
            {"extra": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
            {"extra": "nul\x00inside"},
            {"installationId": "ari:\x00cloud"},
            {"cloudId": "c" * 300},
        ],
        ids=["nan", "infinity", "nesting", "nul", "control-in-id", "long-id"],
    )
    async def test_hostile_values_are_refused_before_storage(self, fields: dict[str, Any]) -> None:
        """Hostile values are refused before storage."""
        key = _key()
        async with self.open_store() as store:
            try:
                payload = install_payload(key, "s" * 40, **fields)
            except ValueError:
                return  # the payload model refused it already
            with pytest.raises(AuthError) as refused:
                await store.save_install(payload, signed_at=100)
            assert (refused.value.code, refused.value.status_code) == (AuthErrorCode.INVALID_INSTALL_PAYLOAD, 400)
            assert await store.tenant(key) is None

    @pytest.mark.parametrize("client_key", ["", "nul\x00", "x" * 256, "\ud800", "line\nbreak"])
    async def test_ids_no_store_could_hold_are_never_found(self, client_key: str) -> None:
        """Ids no store could hold are never found."""
        async with self.open_store() as store:
            assert await store.credentials(client_key) is None
            assert await store.fresh_credentials(client_key) is None
            assert await store.forge_installation(client_key) is None
            assert await store.get(client_key, None) is None

    # -- the Connect-on-Forge link -------------------------------------------------------------

    async def test_the_link_goes_by_installation_id_and_follows_a_reinstall(self) -> None:
        """The link goes by installation id and follows a reinstall."""
        key, cloud = _key(), _key()
        first, second = f"ari:cloud:ecosystem::installation/{_key()}", f"ari:cloud:ecosystem::installation/{_key()}"
        async with self.open_store() as store:
            payload = install_payload(key, "s" * 40, installationId=first, cloudId=cloud)
            await store.save_install(payload, signed_at=1, atlassian_signed=True)
            linked = await store.connect_tenant(forge_invocation(first, cloud))
            assert linked is not None
            assert linked.client_key == key
            assert await store.connect_tenant(forge_invocation(second, cloud)) is None  # another installation
            payload = install_payload(key, "s" * 40, installationId=second, cloudId=cloud)
            await store.save_install(payload, signed_at=2, atlassian_signed=True)
            assert await store.connect_tenant(forge_invocation(first, cloud)) is None
            relinked = await store.connect_tenant(forge_invocation(second, cloud))
            assert relinked is not None
            assert relinked.client_key == key

    async def test_the_cloud_id_fallback_is_for_one_unlinked_tenant_of_the_product(self) -> None:
        """The cloud id fallback is for one unlinked tenant of the product."""
        jira, confluence, cloud = _key(), _key(), _key()
        installation = f"ari:cloud:ecosystem::installation/{_key()}"
        async with self.open_store() as store:
            await store.save_install(install_payload(jira, "s" * 40, cloudId=cloud), signed_at=1, atlassian_signed=True)
            wiki = {"cloudId": cloud, "productType": "confluence", "baseUrl": "https://contract.atlassian.net/wiki"}
            await store.save_install(install_payload(confluence, "s" * 40, **wiki), signed_at=1, atlassian_signed=True)
            on_jira = await store.connect_tenant(forge_invocation(installation, cloud, product="jira"))
            on_wiki = await store.connect_tenant(forge_invocation(installation, cloud, product="confluence"))
            assert (on_jira and on_jira.client_key, on_wiki and on_wiki.client_key) == (jira, confluence)
            second_jira = install_payload(_key(), "s" * 40, cloudId=cloud)
            await store.save_install(second_jira, signed_at=1, atlassian_signed=True)
            assert await store.connect_tenant(forge_invocation(installation, cloud, product="jira")) is None
            await store.uninstall(confluence, signed_at=2)
            assert await store.connect_tenant(forge_invocation(installation, cloud, product="confluence")) is None

    async def test_ids_of_an_install_not_signed_by_atlassian_link_nothing(self) -> None:
        """The installationId and cloudId of an install not signed by Atlassian stay in its payload, unlinked."""
        key, cloud = _key(), _key()
        installation = f"ari:cloud:ecosystem::installation/{_key()}"
        async with self.open_store() as store:
            unsigned = install_payload(key, "s" * 40, installationId=installation, cloudId=cloud)
            assert await store.save_install(unsigned)
            shared_secret = install_payload(key, "t" * 40, installationId=installation, cloudId=cloud)
            assert await store.save_install(shared_secret, signed_at=time.time())
            for _ in range(2):
                tenant = await store.tenant(key)
                assert tenant is not None
                assert (tenant.installation_id, tenant.cloud_id) == (None, None)
                assert (tenant.payload["installationId"], tenant.payload["cloudId"]) == (installation, cloud)
                assert await store.connect_tenant(forge_invocation(installation, cloud)) is None
                shared_secret = install_payload(key, "u" * 40, installationId=installation, cloudId=cloud)
                assert await store.save_install(shared_secret, signed_at=time.time() + 1)

    async def test_the_link_lookup_is_complete(self) -> None:
        """The link is found among any number of tenants sharing a cloud id (no silent cut at 100)."""
        cloud = _key()
        installation = f"ari:cloud:ecosystem::installation/{_key()}"
        linked = f"zz-{_key()}"  # sorts after the others
        async with self.open_store() as store:
            for number in range(101):
                payload = install_payload(f"aa-{number:03}-{cloud}", "s" * 40, cloudId=cloud)
                await store.save_install(payload, signed_at=1, atlassian_signed=True)
            payload = install_payload(linked, "s" * 40, installationId=installation, cloudId=cloud)
            await store.save_install(payload, signed_at=1, atlassian_signed=True)
            found = await store.connect_tenant(forge_invocation(installation, cloud))
            assert found is not None
            assert found.client_key == linked

    # -- lifecycle order ----------------------------------------------------------------------

    async def test_a_shared_secret_never_outranks_atlassian(self) -> None:
        """Of an install or uninstall signed at the same time, Atlassian's (rank 1) wins; a later one wins whatever."""
        key = _key()
        async with self.open_store() as store:
            assert await store.save_install(install_payload(key, "a" * 40), signed_at=100, atlassian_signed=True)
            assert not await store.save_install(install_payload(key, "h" * 40), signed_at=100)
            assert not await store.uninstall(key, signed_at=100)
            tenant = await store.tenant(key)
            assert tenant is not None
            assert (tenant.shared_secret, tenant.installed, tenant.signed_rank) == ("a" * 40, True, 1)
            assert await store.uninstall(key, signed_at=100, atlassian_signed=True)
            assert not await store.save_install(install_payload(key, "h" * 40), signed_at=100)
            assert (await store.credentials(key)).installed is False  # type: ignore[union-attr]
            assert await store.save_install(install_payload(key, "h" * 40), signed_at=100.5)
            tenant = await store.tenant(key)
            assert tenant is not None
            assert (tenant.shared_secret, tenant.installed, tenant.signed_rank) == ("h" * 40, True, 0)

    @pytest.mark.parametrize("order", ["atlassian last", "atlassian first"])
    async def test_racing_installs_signed_at_once_atlassian_wins(self, order: str) -> None:
        """Two replicas racing an Atlassian-signed and a shared-secret install signed at once: Atlassian's wins."""
        key = _key()
        racers: list[tuple[str, bool]] = [("h" * 40, False), ("a" * 40, True)]
        if order == "atlassian first":
            racers.reverse()
        async with self.open_store() as first, self.open_store() as second:
            await asyncio.gather(
                *(
                    store.save_install(install_payload(key, secret), signed_at=100, atlassian_signed=atlassian)
                    for store, (secret, atlassian) in zip((first, second), racers, strict=True)
                )
            )
            for store in (first, second):
                tenant = await store.tenant(key)
                assert tenant is not None
                assert tenant.shared_secret == "a" * 40

    async def test_enabled_and_disabled_are_ordered_on_their_own(self) -> None:
        """`enabled`/`disabled` never move the install order, never reinstall, and a late one changes nothing."""
        key = _key()
        async with self.open_store() as store:
            await store.save_install(install_payload(key, "s" * 40), signed_at=100, atlassian_signed=True)
            assert await store.set_enabled(key, False, signed_at=110)
            assert not await store.set_enabled(key, True, signed_at=105)  # signed before the disabled
            assert (await store.tenant(key)).enabled is False  # type: ignore[union-attr]
            assert not await store.save_install(install_payload(key, "s" * 40), signed_at=99, atlassian_signed=True)
            assert await store.save_install(install_payload(key, "s" * 40), signed_at=101, atlassian_signed=True)
            assert (await store.tenant(key)).enabled is False  # type: ignore[union-attr]  # disabled after this install
            assert await store.uninstall(key, signed_at=120, atlassian_signed=True)
            assert not await store.set_enabled(key, True, signed_at=130)  # uninstalled: stays so
            assert not await store.set_enabled(key, False, signed_at=115)
            assert await store.uninstall(key, signed_at=121, atlassian_signed=True)  # twice: still uninstalled
            tenant = await store.tenant(key)
            assert tenant is not None
            assert (tenant.installed, tenant.signed_at) == (False, 121)
            assert await store.save_install(install_payload(key, "t" * 40), signed_at=140, atlassian_signed=True)
            tenant = await store.tenant(key)
            assert tenant is not None
            assert (tenant.installed, tenant.enabled, tenant.enabled_at) == (True, True, 140)

    async def test_an_unsigned_install_only_creates(self) -> None:
        """An unsigned (legacy) install creates a tenant never seen, and nothing else: 401, nothing written."""
        key = _key()
        async with self.open_store() as store:
            assert await store.save_install(install_payload(key, "first" * 8))
            for unsigned in (install_payload(key, "second" * 8), install_payload(key, "third" * 8)):
                with pytest.raises(AuthError) as refused:
                    await store.save_install(unsigned)
                assert (refused.value.code, refused.value.status_code) == (AuthErrorCode.UNAUTHORIZED_REQUEST, 401)
            await store.uninstall(key, signed_at=time.time())
            with pytest.raises(AuthError):
                await store.save_install(install_payload(key, "again" * 8))
            tenant = await store.tenant(key)
            assert tenant is not None
            assert (tenant.shared_secret, tenant.installed) == ("first" * 8, False)

    async def test_racing_unsigned_installs_create_once(self) -> None:
        """Unsigned installs for one new clientKey racing on two replicas: exactly one is written."""
        key = _key()
        async with self.open_store() as first, self.open_store() as second:
            assert await first.credentials(key) is None  # "never seen", cached on each replica
            assert await second.credentials(key) is None
            stores = [first, second]
            answers = await asyncio.gather(
                *(stores[n % 2].save_install(install_payload(key, f"{n:02}" * 20)) for n in range(6)),
                return_exceptions=True,
            )
            assert answers.count(True) == 1
            refused = [answer for answer in answers if isinstance(answer, AuthError)]
            assert [error.code for error in refused] == [AuthErrorCode.UNAUTHORIZED_REQUEST] * 5
            tenant = await first.tenant(key)
            assert tenant is not None
            assert tenant.shared_secret == f"{answers.index(True):02}" * 20

    async def test_text_as_long_as_the_models_allow_is_kept(self) -> None:
        """A productType or oauthClientId as long as the install model accepts is kept (never a 503)."""
        key = _key()
        async with self.open_store() as store:
            payload = install_payload(key, "s" * 40, productType="p" * 2048, oauthClientId="o" * 2048)
            assert await store.save_install(payload, signed_at=1, atlassian_signed=True)
            tenant = await store.tenant(key)
            assert tenant is not None
            assert (tenant.product_type, tenant.oauth_client_id) == ("p" * 2048, "o" * 2048)

    # -- Forge installations ------------------------------------------------------------------

    async def test_forge_installations_are_kept_with_their_state_and_contexts(self) -> None:
        """Forge installations are kept with their state and contexts."""
        installation, cloud = f"ari:cloud:ecosystem::installation/{_key()}", _key()
        async with self.open_store() as store:
            assert await store.forge_installation(installation) is None
            invocation = forge_invocation(installation, cloud, product="confluence")
            record = await store.record_forge_installation(invocation, app_version="2.0.0")
            kept = await store.forge_installation(installation)
            assert kept == record
            assert kept is not None
            assert (kept.state, kept.cloud_id, kept.product, kept.app_version) == (
                "installed",
                cloud,
                "confluence",
                "2.0.0",
            )
            gone = await store.record_forge_installation(invocation, state="uninstalled")
            kept = await store.forge_installation(installation)
            assert kept == gone
            assert kept is not None
            assert record is not None
            assert kept.state == "uninstalled"
            assert kept.uninstalled_at is not None
            assert kept.installed_at == record.installed_at

    async def test_an_uninstalled_forge_installation_stays_uninstalled(self) -> None:
        """A late installed or upgraded (or a second preUninstall) for an uninstalled installation changes nothing."""
        installation, cloud = f"ari:cloud:ecosystem::installation/{_key()}", _key()
        async with self.open_store() as store:
            invocation = forge_invocation(installation, cloud)
            assert await store.record_forge_installation(invocation) is not None
            gone = await store.record_forge_installation(invocation, state="uninstalled")
            assert gone is not None
            assert await store.record_forge_installation(invocation, app_version="9.0.0") is None
            assert await store.record_forge_installation(invocation, state="uninstalled") is None
            assert await store.forge_installation(installation) == gone

    async def test_racing_installed_and_pre_uninstall_end_uninstalled(self) -> None:
        """An installed and a preUninstall racing on two replicas: the installation ends uninstalled, whatever the order."""
        async with self.open_store() as first, self.open_store() as second:
            for _ in range(5):
                installation = f"ari:cloud:ecosystem::installation/{_key()}"
                invocation = forge_invocation(installation, "cloud-1")
                await asyncio.gather(
                    first.record_forge_installation(invocation),
                    second.record_forge_installation(invocation, state="uninstalled"),
                    first.record_forge_installation(invocation),
                )
                kept = await second.forge_installation(installation)
                assert kept is not None
                assert kept.state == "uninstalled"

    # -- Forge tokens ---------------------------------------------------------------------------

    async def test_the_latest_received_token_is_kept_whatever_its_exp(self) -> None:
        """The latest received token is kept whatever its exp."""
        installation, now = f"ari:cloud:ecosystem::installation/{_key()}", time.time()
        base = "https://api.atlassian.com/ex/jira/c"
        async with self.open_store() as store:
            await store.put(installation, None, ForgeStoredToken("junk", base, now + 3 * 3600, received_at=now - 10))
            await store.put(installation, None, ForgeStoredToken("real", base, now + 3600, received_at=now))
            await store.put(installation, None, ForgeStoredToken("stale", base, now + 3 * 3600, received_at=now - 5))
            kept = await store.get(installation, None)
            assert kept == ForgeStoredToken("real", base, now + 3600, received_at=now)
            assert await store.get(installation, "account-1") is None
            await store.discard(installation, None, "junk")  # not the kept one: nothing happens
            assert await store.get(installation, None) is not None
            await store.discard(installation, None, "real")
            assert await store.get(installation, None) is None

    async def test_concurrent_tokens_the_latest_received_wins(self) -> None:
        """Concurrent tokens the latest received wins."""
        installation, now = f"ari:cloud:ecosystem::installation/{_key()}", time.time()
        tokens = [
            ForgeStoredToken(f"t{n}", "https://api.atlassian.com/ex/jira/c", now + 3600, now + n) for n in range(8)
        ]
        async with self.open_store() as first, self.open_store() as second:
            stores = [first, second]
            await asyncio.gather(*(stores[n % 2].put(installation, None, tokens[n]) for n in (3, 7, 1, 5, 0, 6, 2, 4)))
            kept = await first.get(installation, None)
            assert kept is not None
            assert kept.token == "t7"  # noqa: S105 - a test token's name

    async def test_tokens_expire(self) -> None:
        """Tokens expire."""
        installation, now = f"ari:cloud:ecosystem::installation/{_key()}", time.time()
        async with self.open_store() as store:
            soon = ForgeStoredToken("soon", "https://api.atlassian.com/ex/jira/c", now + store.token_leeway + 1.5, now)
            await store.put(installation, "account-1", soon)
            assert await store.get(installation, "account-1") == soon
            await asyncio.sleep(2.0)
            assert await store.get(installation, "account-1") is None
            await store.put(installation, "account-1", ForgeStoredToken("dead", soon.api_base_url, now - 1, now))
            assert await store.get(installation, "account-1") is None

    # -- delivery ids -----------------------------------------------------------------------------

    async def test_of_n_identical_concurrent_deliveries_exactly_one_is_new(self) -> None:
        """Of N identical concurrent deliveries, exactly one is new."""
        key = f"forge:{_key()}"
        async with self.open_store() as first, self.open_store() as second:
            stores = [first, second]
            expires = time.time() + 60
            answers = await asyncio.gather(*(stores[n % 2].remember_delivery(key, "f1", expires) for n in range(20)))
            assert answers.count(None) == 1
            assert set(answers) == {None, "f1"}
            assert await first.remember_delivery(key, "f2", expires) == "f1"  # another body: the kept one is told

    async def test_delivery_ids_expire(self) -> None:
        """Delivery ids expire."""
        key = f"forge:{_key()}"
        async with self.open_store() as store:
            expires_at = time.time() + 1.5  # room for a loaded machine between the two calls
            assert await store.remember_delivery(key, "f1", expires_at) is None
            assert await store.remember_delivery(key, "f1", expires_at) == "f1"
            await asyncio.sleep(2.0)
            assert await store.remember_delivery(key, "f2", time.time() + 60) is None

    async def test_a_webhook_retry_is_stored_once_per_tenant_and_another_body_refused(self) -> None:
        """A webhook retry is stored once, per tenant; another body under its identifier is refused (422)."""
        tenant = f"tenant-{_key()}"
        first = verified_webhook(tenant, b'{"issue": {"key": "K-1"}}', "id:42")
        async with self.open_store() as one, self.open_store() as other:
            assert await remember_webhook_delivery(one, first)
            assert not await remember_webhook_delivery(other, verified_webhook(tenant, first.raw_body, "id:42"))
            # The parts stay apart: tenant `<t>:id` with id `42` is not tenant `<t>` with id `id:42`.
            assert await remember_webhook_delivery(one, verified_webhook(f"{tenant}:id", first.raw_body, "42"))
            with pytest.raises(AuthError) as refused:
                await remember_webhook_delivery(other, verified_webhook(tenant, b'{"issue": {"key": "K-2"}}', "id:42"))
            assert (refused.value.code, refused.value.status_code) == (AuthErrorCode.DELIVERY_CONFLICT, 422)

    async def test_a_forge_retry_with_a_new_fit_is_known_by_its_content(self) -> None:
        """A Forge retry (a new FIT, `retryContext` added) is known by its content, per installation."""
        installation = f"ari:cloud:ecosystem::installation/{_key()}"
        event = {"eventType": "avi:jira:created:issue", "issue": {"id": "1"}, "timestamp": 1}
        retried = {**event, "retryContext": {"retryCount": 1, "retryReason": "TIMEOUT_ERROR", "retryData": None}}
        async with self.open_store() as one, self.open_store() as other:
            assert await remember_forge_event(one, forge_event(installation, event))
            assert not await remember_forge_event(other, forge_event(installation, retried))
            assert await remember_forge_event(one, forge_event(f"{installation}x", event))
            assert await remember_forge_event(other, forge_event(installation, {**event, "timestamp": 2}))

    async def test_a_delivery_is_forgotten_only_with_the_fingerprint_it_was_kept_with(self) -> None:
        """A delivery is forgotten only with the fingerprint it was kept with (compare-and-delete)."""
        key = f"forge:{_key()}"
        async with self.open_store() as one, self.open_store() as other:
            assert await one.remember_delivery(key, "f1", time.time() + 60) is None
            assert not await other.forget_delivery(key, "f2")  # another body's: the kept one stays
            assert await one.remember_delivery(key, "f1", time.time() + 60) == "f1"
            assert await other.forget_delivery(key, "f1")
            assert not await one.forget_delivery(key, "f1")  # forgotten already
            assert await one.remember_delivery(key, "f2", time.time() + 60) is None  # the key is free again
            assert not await other.forget_delivery(f"forge:{_key()}", "f1")  # never kept

    async def test_of_n_concurrent_forgets_of_one_delivery_exactly_one_forgets_it(self) -> None:
        """Of N concurrent forgets of one delivery, on two store objects, exactly one forgets it."""
        key = f"forge:{_key()}"
        async with self.open_store() as first, self.open_store() as second:
            stores = [first, second]
            assert await first.remember_delivery(key, "f1", time.time() + 60) is None
            forgotten = await asyncio.gather(*(stores[n % 2].forget_delivery(key, "f1") for n in range(12)))
            assert forgotten.count(True) == 1

    async def test_a_webhook_or_event_the_app_failed_to_store_is_forgotten_and_its_retry_is_new(self) -> None:
        """A webhook or an event the app failed to store is forgotten: its retry is new, then stored once."""
        tenant, installation = f"tenant-{_key()}", f"ari:cloud:ecosystem::installation/{_key()}"
        webhook = verified_webhook(tenant, b'{"issue": {"key": "K-1"}}', "id:7")
        event = {"eventType": "avi:jira:created:issue", "issue": {"id": "1"}, "timestamp": 1}
        retried = {**event, "retryContext": {"retryCount": 1, "retryReason": "TIMEOUT_ERROR", "retryData": None}}
        async with self.open_store() as one, self.open_store() as other:
            with pytest.raises(_WriteFailed) as failed:
                await _fail_to_store(webhook_once(one, webhook))
            assert failed.value.new
            with pytest.raises(_WriteFailed) as failed:
                await _fail_to_store(forge_event_once(one, forge_event(installation, event)))
            assert failed.value.new
            async with webhook_once(other, verified_webhook(tenant, webhook.raw_body, "id:7")) as delivery:
                assert delivery.new  # Jira's retry: stored this time
            async with forge_event_once(other, forge_event(installation, retried)) as delivery:
                assert delivery.new  # Forge's retry: stored this time
            assert not await remember_webhook_delivery(one, verified_webhook(tenant, webhook.raw_body, "id:7"))
            assert not await remember_forge_event(one, forge_event(installation, retried))

    # -- restart ----------------------------------------------------------------------------------

    async def test_a_new_store_object_on_the_same_data_sees_everything(self) -> None:
        """A new store object on the same data sees everything."""
        if not self.persistent:
            pytest.skip("this store keeps nothing past its object")
        key, installation, delivery = _key(), f"ari:cloud:ecosystem::installation/{_key()}", f"forge:{_key()}"
        now = time.time()
        token = ForgeStoredToken("kept", "https://api.atlassian.com/ex/jira/c", now + 3600, now)
        async with self.open_store() as store:
            payload = install_payload(key, "s" * 40, installationId=installation)
            await store.save_install(payload, signed_at=100, atlassian_signed=True)
            await store.record_forge_installation(forge_invocation(installation, "cloud-1"))
            await store.put(installation, None, token)
            assert await store.remember_delivery(delivery, "f1", now + 60) is None
        async with self.open_store() as restarted:
            credentials = await restarted.credentials(key)
            assert credentials is not None
            assert credentials.shared_secret == "s" * 40
            installation_record = await restarted.forge_installation(installation)
            assert installation_record is not None
            assert installation_record.state == "installed"
            assert await restarted.get(installation, None) == token
            assert await restarted.remember_delivery(delivery, "f1", now + 60) == "f1"
            assert await restarted.rotate() >= 0
            credentials = await restarted.credentials(key)
            assert credentials is not None
            assert credentials.shared_secret == "s" * 40

    # -- Connect links ----------------------------------------------------------------------------

    async def test_of_concurrent_link_claims_exactly_one_reads(self) -> None:
        """Of concurrent claims to read an installation's property, on two store objects, exactly one wins."""
        installation = f"ari:cloud:ecosystem::installation/{_key()}"
        async with self.open_store() as first, self.open_store() as second:
            stores = [first, second]
            won = await asyncio.gather(*(stores[n % 2].claim_connect_link(installation, lease=60) for n in range(12)))
            assert won.count(True) == 1
            kept = await first.connect_link(installation)
            assert kept is not None
            assert (kept.attempts, kept.verified) == (1, False)
            assert kept.next_attempt_at > time.time() + 30  # the lease holds it

    async def test_a_failed_read_backs_off_and_a_verified_link_is_final(self) -> None:
        """A failure's back-off holds claims off until it runs out; a verified link is never claimed nor undone."""
        key, installation = _key(), f"ari:cloud:ecosystem::installation/{_key()}"
        async with self.open_store() as store:
            await store.save_install(install_payload(key, "s" * 40), signed_at=100)
            assert await store.claim_connect_link(installation, lease=60)
            failed = ConnectLink(installation, last_outcome="refused", next_attempt_at=time.time() + 3600)
            await store.record_connect_link(failed)
            assert not await store.claim_connect_link(installation, lease=60)
            await store.record_connect_link(replace(failed, next_attempt_at=time.time() - 1))  # ran out
            assert await store.claim_connect_link(installation, lease=60)
            linked = ConnectLink(installation, key, "property", time.time(), last_outcome="linked")
            await store.record_connect_link(linked)
            await store.record_connect_link(failed)  # a late failure never undoes a verified link
            kept = await store.connect_link(installation)
            assert kept is not None
            assert (kept.client_key, kept.source, kept.attempts, kept.verified) == (key, "property", 2, True)
            assert not await store.claim_connect_link(installation, lease=60)
            assert [link.installation_id for link in await store.connect_links()].count(installation) == 1
            tenant = await store.installation_tenant(installation)
            assert tenant is not None
            assert tenant.client_key == key
            invocation = forge_invocation(installation, "cloud-of-another-site")
            linked_tenant = await store.connect_tenant(invocation)
            assert linked_tenant is not None
            assert linked_tenant.client_key == key

    async def test_listings_leave_every_secret_out(self) -> None:
        """Tenants and installations are listed for reports with no secret in them."""
        key, installation = _key(), f"ari:cloud:ecosystem::installation/{_key()}"
        async with self.open_store() as store:
            await store.save_install(
                install_payload(key, "s" * 40, cloudId="c-1"), signed_at=100, atlassian_signed=True
            )
            await store.record_forge_installation(forge_invocation(installation, "c-1"))
            listed = [tenant for tenant in await store.list_tenants() if tenant.client_key == key]
            assert [(tenant.shared_secret, tenant.cloud_id, tenant.installed) for tenant in listed] == [
                ("", "c-1", True)
            ]
            records = [r for r in await store.list_forge_installations() if r.installation_id == installation]
            assert [record.cloud_id for record in records] == ["c-1"]
