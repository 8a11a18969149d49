"""`lifecycle_router` over a store, driven by the test kit's fake Jira and fake Forge; `ConnectAuth(store=)`.

Hooks must see what the store committed; the descriptor's lifecycle URLs come from the router.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from fastapi_connect_auth import (
    ConnectAuth,
    ForgeLifecycleEvent,
    ForgeStoredToken,
    InMemoryRedeliveryStore,
    VerifiedForgeLifecycle,
    VerifiedInstallation,
    VerifiedLifecycle,
    VerifiedRequest,
    lifecycle_router,
    remember_forge_event,
    remember_webhook_delivery,
)
from fastapi_connect_auth.stores import MemoryStore, SecretCipher, Tenant
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore
from fastapi_connect_auth.testing import FakeForge, FakeProduct, FitShape, forge_invocation

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

APP_URL = "https://router-app.example.test"


@pytest.fixture
def seen() -> list[tuple[str, Any]]:
    return []


@pytest.fixture
def app_parts(
    fake_product: FakeProduct, seen: list[tuple[str, Any]]
) -> Iterator[tuple[TestClient, MemoryStore, FakeForge]]:
    store, forge = MemoryStore(), FakeForge()
    connect = ConnectAuth(base_url=APP_URL, store=store, key_provider=fake_product.key_provider())
    forge_auth = forge.forge_auth()

    async def on_installed(install: VerifiedInstallation[Tenant]) -> None:
        kept = await store.tenant(install.client_key)  # the hook runs after the store committed
        seen.append(("installed", kept.shared_secret if kept else None))

    async def on_uninstalled(event: VerifiedLifecycle[Tenant]) -> None:
        kept = await store.tenant(event.client_key)
        seen.append(("uninstalled", kept.installed if kept else None))

    async def on_enabled(event: VerifiedLifecycle[Tenant]) -> None:
        seen.append(("enabled", event.client_key))

    async def on_disabled(event: VerifiedLifecycle[Tenant]) -> None:
        seen.append(("disabled", event.client_key))

    async def on_forge(event: VerifiedForgeLifecycle) -> None:
        kept = await store.forge_installation(event.installation_id)
        seen.append((event.event, kept.state if kept else None))

    router = lifecycle_router(
        connect,
        store,
        forge_auth,
        prefix="/atlassian",
        forge_module_keys={"forge-lifecycle"},
        on_installed=on_installed,
        on_uninstalled=on_uninstalled,
        on_enabled=on_enabled,
        on_disabled=on_disabled,
        on_forge_installed=on_forge,
        on_forge_upgraded=on_forge,
        on_forge_uninstalled=on_forge,
    )
    app = FastAPI()
    connect.install(app)
    forge_auth.install(app)
    app.include_router(router)

    @app.get("/atlassian-connect.json")
    async def descriptor() -> dict[str, Any]:
        return {"key": "router-app", "baseUrl": APP_URL, "lifecycle": router.lifecycle_urls}

    with TestClient(app, base_url=APP_URL) as client:
        yield client, store, forge


def test_the_connect_routes_store_first_then_run_the_hooks(
    app_parts: tuple[TestClient, MemoryStore, FakeForge], fake_product: FakeProduct, seen: list[tuple[str, Any]]
) -> None:
    client, _, _ = app_parts
    jira = fake_product.drive(client)
    assert jira.descriptor["lifecycle"] == {
        "installed": "/atlassian/installed",
        "uninstalled": "/atlassian/uninstalled",
        "enabled": "/atlassian/enabled",
        "disabled": "/atlassian/disabled",
    }
    assert jira.install().status_code == 204
    assert jira.disable().status_code == 204
    assert jira.enable().status_code == 204
    assert jira.uninstall().status_code == 204
    assert seen == [
        ("installed", fake_product.shared_secret),
        ("disabled", fake_product.client_key),
        ("enabled", fake_product.client_key),
        ("uninstalled", False),
    ]
    refused = jira.install(token=fake_product.context_token())  # never a context token on a lifecycle route
    assert refused.status_code == 401
    assert len(seen) == 4


def test_the_forge_routes_record_the_installation_and_keep_its_system_token(
    app_parts: tuple[TestClient, MemoryStore, FakeForge], seen: list[tuple[str, Any]]
) -> None:
    client, store, forge = app_parts
    driver = forge.drive(client)
    fit = forge.mint_fit("lifecycle")  # the endpoint forge-lifecycle's
    token = forge.system_token()
    body = {"id": forge.installation_id.rsplit("/", 1)[1], "app": {"id": forge.app_id, "version": "7.0.0"}}
    installed = client.post(
        "/atlassian/forge/lifecycle/installed", json=body, headers=driver.headers(fit, system_token=token)
    )
    assert installed.status_code == 204, installed.text
    upgraded = client.post(  # each event comes with its own FIT, as Forge sends it
        "/atlassian/forge/lifecycle/upgraded", json=body, headers=driver.headers(forge.mint_fit("lifecycle"))
    )
    assert upgraded.status_code == 204
    leaving = {"context": {"cloudId": forge.cloud_id, "moduleKey": "bye"}, "contextToken": "opaque"}
    replayed = client.post("/atlassian/forge/lifecycle/pre-uninstall", json=leaving, headers=driver.headers(fit))
    assert (replayed.status_code, replayed.json()["code"]) == (409, "DELIVERY_CONFLICT")  # one FIT, one body
    gone = client.post(
        "/atlassian/forge/lifecycle/pre-uninstall", json=leaving, headers=driver.headers(forge.mint_fit("lifecycle"))
    )
    assert gone.status_code == 204
    assert seen == [("installed", "installed"), ("upgraded", "installed"), ("pre-uninstall", "uninstalled")]

    async def kept() -> tuple[Any, ForgeStoredToken | None]:
        return await store.forge_installation(forge.installation_id), await store.get(forge.installation_id, None)

    record, stored = anyio.run(kept)
    # The version is the FIT's (signed appVersion), not the payload's.
    assert (record.app_version, record.cloud_id, record.product) == ("2.4.0", forge.cloud_id, "jira")
    assert stored is not None
    assert stored.token == token


@pytest.mark.parametrize("single", [False, True], ids=["per-event", "one-route"])
def test_one_forge_route_records_each_event_as_its_own_route_does(
    app_parts: tuple[TestClient, MemoryStore, FakeForge], seen: list[tuple[str, Any]], single: bool
) -> None:
    """`POST /forge/lifecycle`, the manifest's one lifecycle endpoint: the same records, tokens and hooks, once each."""
    client, store, forge = app_parts
    driver = forge.drive(client)
    token = forge.system_token()
    events: tuple[ForgeLifecycleEvent, ...] = ("installed", "upgraded", "pre-uninstall")
    for event in events:
        path = "/atlassian/forge/lifecycle" + ("" if single else f"/{event}")
        # The preUninstall's own token is not kept: the installation is leaving.
        answer = driver.lifecycle(path, event, system_token=token if event != "pre-uninstall" else None)
        assert answer.status_code == 204, (event, answer.text)
    assert seen == [("installed", "installed"), ("upgraded", "installed"), ("pre-uninstall", "uninstalled")]

    async def kept() -> tuple[Any, ForgeStoredToken | None]:
        return await store.forge_installation(forge.installation_id), await store.get(forge.installation_id, None)

    record, stored = anyio.run(kept)
    assert (record.state, record.cloud_id, record.product) == ("uninstalled", forge.cloud_id, "jira")
    assert stored is not None
    assert stored.token == token


@pytest.mark.parametrize(
    ("body", "fit", "status"),
    [
        (None, "event", 401),  # a product event's FIT: another endpoint
        (None, "trigger", 401),
        ({"id": "whatever", "app": {"id": "x"}}, None, 422),  # no eventType: installed or upgraded?
        ({"eventType": "avi:jira:created:issue", "issue": {"id": "1"}}, None, 422),  # a product event's body
    ],
)
def test_one_forge_route_refuses_other_fits_and_bodies_it_cannot_tell_apart(
    app_parts: tuple[TestClient, MemoryStore, FakeForge],
    seen: list[tuple[str, Any]],
    body: dict[str, Any] | None,
    fit: FitShape | None,
    status: int,
) -> None:
    client, store, forge = app_parts
    driver = forge.drive(client)
    minted = forge.mint_fit(fit) if fit is not None else None
    answer = driver.lifecycle("/atlassian/forge/lifecycle", "installed", body, fit=minted)
    assert answer.status_code == status, answer.text
    if status == 401:
        assert answer.json()["code"] == "WRONG_INVOCATION"
    else:
        assert [error["type"] for error in answer.json()["detail"]] == ["unknown_forge_lifecycle_event"]
    assert seen == []
    assert anyio.run(store.forge_installation, forge.installation_id) is None
    assert anyio.run(store.get, forge.installation_id, None) is None


def test_forge_lifecycle_routes_need_the_manifest_endpoint_keys() -> None:
    connect, forge = ConnectAuth(base_url=APP_URL, store=MemoryStore()), FakeForge().forge_auth()
    for keys in (None, "forge-lifecycle"):
        with pytest.raises(ValueError, match="forge_module_keys"):
            lifecycle_router(connect, MemoryStore(), forge, forge_module_keys=keys)


def test_connect_auth_takes_a_loader_or_a_store_not_both_nor_neither() -> None:
    store = MemoryStore()
    assert ConnectAuth(base_url=APP_URL, store=store).credentials_loader == store.credentials
    with pytest.raises(ValueError, match="one of them"):
        ConnectAuth(base_url=APP_URL)
    with pytest.raises(ValueError, match="one of them"):
        ConnectAuth(base_url=APP_URL, store=store, credentials_loader=store.credentials)


@pytest.mark.anyio
async def test_a_jira_webhook_retry_is_known_by_its_identifier_per_tenant() -> None:
    from fastapi_connect_auth import AuthError, ConnectClaims

    deliveries = InMemoryRedeliveryStore()
    claims = ConnectClaims.model_validate({"iss": "tenant-a", "exp": time.time() + 60})
    call = VerifiedRequest(claims, None, {"issue": {"key": "K-1"}})
    other_tenant = VerifiedRequest(ConnectClaims.model_validate({"iss": "tenant-b", "exp": 1}), None, call.body)
    assert await remember_webhook_delivery(deliveries, call, "id-1")
    assert not await remember_webhook_delivery(deliveries, call, "id-1")  # Jira's retry
    assert await remember_webhook_delivery(deliveries, other_tenant, "id-1")  # ids are per tenant
    assert await remember_webhook_delivery(deliveries, call, None)  # no identifier: cannot tell, so new
    with pytest.raises(AuthError) as refused:
        await remember_webhook_delivery(deliveries, call, "id-1", {"issue": {"key": "K-2"}})
    assert refused.value.status_code == 422  # a status Jira does not retry
    with pytest.raises(AuthError):
        await remember_webhook_delivery(deliveries, call, "bad\nid")


class RetriedPayload(BaseModel):
    payload: dict[str, Any]
    eventType: str


@pytest.mark.anyio
async def test_a_forge_event_is_the_same_whatever_form_its_body_takes_and_wherever_its_retry_context_is() -> None:
    """Raw bytes, parsed JSON or a pydantic model, keys in any order, `retryContext` on top or in `payload`."""
    store, installation = InMemoryRedeliveryStore(), "ari:cloud:ecosystem::installation/forms"
    call = forge_invocation(installation, "cloud-1")
    retry = {"retryCount": 1, "retryReason": "TIMEOUT_ERROR", "retryData": None}
    assert await remember_forge_event(store, call, b'{"eventType": "e", "payload": {"n": 1}}')
    seen = [
        {"payload": {"n": 1, "retryContext": retry}, "eventType": "e"},
        RetriedPayload(payload={"retryContext": retry, "n": 1}, eventType="e"),
        b'{"payload":{"n":1},"eventType":"e","retryContext":{"retryCount":2}}',
    ]
    assert [await remember_forge_event(store, call, body) for body in seen] == [False] * 3
    assert await remember_forge_event(store, call, b"not json")  # fingerprinted as the bytes it is
    assert not await remember_forge_event(store, call, b"not json")
    assert await remember_forge_event(store, call, [1, 2])  # not an object: nothing to take out
    assert not await remember_forge_event(store, call, b"[1, 2]")
    with pytest.raises(ValueError, match="positive"):
        InMemoryRedeliveryStore(max_size=0)
    with pytest.raises(ValueError, match="needs the event's body"):
        await remember_forge_event(store, call)  # a route that read no body: not every event one "null"


# -- key files ------------------------------------------------------------------------------------


def test_a_key_file_is_made_once_for_its_owner_only_and_read_back(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    cipher = SecretCipher.from_key_file(key_file, create=True)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = SecretCipher.from_key_file(key_file, create=True)
    assert again.decrypt(cipher.encrypt("secret")) == "secret"
    assert "secret" not in repr(cipher)
    assert key_file.read_text().strip() not in repr(cipher)


def test_a_key_file_of_another_user_a_directory_or_a_symlink_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(SecretCipher.generate_key() + "\n")
    key_file.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(key_file, 65534, 65534)  # nobody's
        with pytest.raises(PermissionError, match="not to the user running the app"):
            SecretCipher.from_key_file(key_file)
        os.chown(key_file, 0, 0)
    link = tmp_path / "link"
    link.symlink_to(key_file)
    with pytest.raises(PermissionError, match="symlink"):
        SecretCipher.from_key_file(link)
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(PermissionError, match="not a regular file"):
        SecretCipher.from_key_file(folder)


@pytest.mark.parametrize("keys", [[], ["not a key"], "one-string"])
def test_a_cipher_needs_a_list_of_fernet_keys(keys: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        SecretCipher(keys)


def test_expired_delivery_ids_and_tokens_are_purged(tmp_path: Path) -> None:
    async def run() -> list[int]:
        store = SQLAlchemyStore(
            f"sqlite:///{tmp_path / 'purge.db'}", cipher=SecretCipher([SecretCipher.generate_key()]), purge_every=3
        )
        await store.create_tables()
        now = time.time()
        await store.remember_delivery("gone-1", "f", now - 10)
        await store.remember_delivery("kept", "f", now + 60)
        await store.put("i", None, ForgeStoredToken("t", "https://api.atlassian.com/ex/jira/c", now + 3600, now))
        async with store.engine.connect() as connection:
            from sqlalchemy import text

            counts = [
                (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
                for table in ("atlassian_deliveries", "atlassian_forge_tokens")
            ]
        await store.close()
        return counts

    assert anyio.run(run) == [1, 1]


def test_a_legacy_install_updated_in_the_same_second_takes_the_new_secret(fake_bitbucket: FakeProduct) -> None:
    """Bitbucket: an unsigned first install, then an update signed with the secret the app holds, at once."""
    store = MemoryStore()
    connect = ConnectAuth(base_url=APP_URL, store=store, authorization_method="sharedSecret")
    router = lifecycle_router(connect, store)
    app = FastAPI()
    connect.install(app)
    app.include_router(router)

    @app.get("/atlassian-connect.json")
    async def descriptor() -> dict[str, Any]:
        return {"key": "router-app", "baseUrl": APP_URL, "lifecycle": router.lifecycle_urls}

    with TestClient(app, base_url=APP_URL) as client:
        bitbucket = fake_bitbucket.drive(client)
        assert bitbucket.install().status_code == 204
        assert bitbucket.update().status_code == 204
        unsigned = client.post("/installed", json=fake_bitbucket.install_payload(app_key="router-app"))
        assert (unsigned.status_code, unsigned.json()["code"]) == (401, "UNAUTHORIZED_REQUEST")

    tenant = anyio.run(store.tenant, fake_bitbucket.client_key)
    assert tenant is not None
    assert (tenant.shared_secret, tenant.signed_rank) == (fake_bitbucket.shared_secret, 0)
