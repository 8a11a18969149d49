"""The example app's Forge routes (Connect on Forge), driven by the test kit's `FakeForge` and fake Jira.

The pinned contract: FORGE_APP_ID enables `POST /forge/events` (stored once per
FIT jti and body) and `GET /forge/whoami` (linked to the Connect tenant by
installation id); 401 / 503 with `{"detail", "code"}` and nothing stored on any
rejection. The database is read back with SQL, not the app's store.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from example_app.main import create_app
from example_app.settings import Settings
from fastapi_connect_auth import ForgeLifecycleEvent
from fastapi_connect_auth.testing import FakeForge, FakeProduct, generate_rsa_key
from tests.postgres import Database

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

APP_URL = "https://connect-app.example.test"


@pytest.fixture(scope="module")
def forge_key() -> rsa.RSAPrivateKey:
    return generate_rsa_key()


@pytest.fixture
def forge(forge_key: rsa.RSAPrivateKey) -> FakeForge:
    return FakeForge(private_key=forge_key)


@pytest.fixture
def settings(database: Database, forge: FakeForge) -> Settings:
    key = None if database.path is not None else Fernet.generate_key().decode()
    return Settings(base_url=APP_URL, database_url=database.url, secret_encryption_key=key, forge_app_id=forge.app_id)


@pytest.fixture
def client(settings: Settings, forge: FakeForge, fake_product: FakeProduct) -> Iterator[TestClient]:
    app = create_app(
        settings,
        key_provider=fake_product.key_provider(),
        forge_key_provider=forge.key_provider(),
        forge_transport=forge.api_transport,
    )
    with TestClient(app, base_url=APP_URL) as client:
        yield client


def forge_events(database: Database) -> list[tuple[Any, ...]]:
    return database.rows("SELECT installation_id, module_key, payload FROM forge_events ORDER BY id")


def test_event_is_stored_once_per_delivery(forge: FakeForge, client: TestClient, database: Database) -> None:
    driver = forge.drive(client)
    fit = forge.mint_fit("event")
    assert driver.event("/forge/events", {"issue": {"key": "F-1"}}, fit=fit).status_code == 204
    assert driver.event("/forge/events", {"issue": {"key": "F-1"}}, fit=fit).status_code == 204  # redelivered
    replayed = driver.event("/forge/events", {"issue": {"key": "F-2"}}, fit=fit)  # the same FIT, another body
    assert (replayed.status_code, replayed.json()["code"]) == (409, "DELIVERY_CONFLICT")
    assert driver.event("/forge/events", {"issue": {"key": "F-1"}}).status_code == 204  # another FIT, the same event
    trigger = forge.mint_fit("trigger", module_key="forge-events")  # the manifest sends triggers there too
    assert driver.event("/forge/events", {"cron": "hourly"}, fit=trigger).status_code == 204
    rows = forge_events(database)
    assert [(row[0], row[1]) for row in rows] == [(forge.installation_id, "forge-events")] * 2


def test_forge_retries_with_a_new_fit_are_stored_once_per_installation(
    forge: FakeForge, forge_key: rsa.RSAPrivateKey, client: TestClient, database: Database
) -> None:
    """Forge's retries (a new FIT, `retryContext` at the top or inside `payload`) are the event already stored."""
    driver = forge.drive(client)
    event = {"eventType": "avi:jira:created:issue", "issue": {"id": "10001", "key": "F-1"}, "timestamp": 1765000000000}
    wrapped = {"payload": {"issue": {"id": "10002"}}, "eventType": "avi:jira:updated:issue"}
    first, other_first = driver.event("/forge/events", event), driver.event("/forge/events", wrapped)
    retries = [
        driver.retry_event(first, retry_reason="TIMEOUT_ERROR"),
        driver.retry_event(first, retry_count=2, retry_reason="INVALID_FORGE_INVOCATION_TOKEN"),
        driver.retry_event(other_first),  # retryContext inside the payload, as Forge's docs show it
        driver.retry_event(other_first, retry_count=2, retry_context_in="top"),
    ]
    assert [response.status_code for response in (first, other_first, *retries)] == [204] * 6
    assert "retryContext" in json.loads(retries[2].request.content)["payload"]
    another = FakeForge(app_id=forge.app_id, private_key=forge_key)  # the app installed on another site
    assert another.drive(client).event("/forge/events", event).status_code == 204  # that installation's own
    later = driver.event("/forge/events", {**event, "timestamp": event["timestamp"] + 1})  # another event
    assert later.status_code == 204
    assert [(row[0], json.loads(row[2]) if isinstance(row[2], str) else row[2]) for row in forge_events(database)] == [
        (forge.installation_id, event),
        (forge.installation_id, wrapped),
        (another.installation_id, event),
        (forge.installation_id, {**event, "timestamp": event["timestamp"] + 1}),
    ]

    listed = driver.ui_call("/forge/events")
    assert listed.status_code == 200
    assert [item["eventType"] for item in listed.json()] == [
        "avi:jira:created:issue",
        "avi:jira:updated:issue",
        "avi:jira:created:issue",
    ]  # newest first, this installation's only
    assert "F-1" not in listed.text  # the kind of each event, never its payload
    assert {key for item in listed.json() for key in item} == {"id", "eventType", "moduleKey", "receivedAt"}
    assert [item["eventType"] for item in another.drive(client).ui_call("/forge/events").json()] == [
        "avi:jira:created:issue"
    ]
    trigger = forge.mint_fit("trigger", module_key="forge-events")
    assert driver.event("/forge/events", {"cron": "hourly"}, fit=trigger).status_code == 204
    assert driver.ui_call("/forge/events").json()[0]["eventType"] is None  # a trigger has none
    refused = driver.event("/forge/events", {}, fit=forge.mint_fit("event")).request
    assert client.get("/forge/events", headers=dict(refused.headers)).json()["code"] == "WRONG_INVOCATION"


def test_whoami_links_the_connect_tenant(forge: FakeForge, fake_product: FakeProduct, client: TestClient) -> None:
    driver = forge.drive(client)
    unlinked = driver.ui_call("/forge/whoami", system_token=forge.system_token())
    assert unlinked.json() == {
        "installationId": forge.installation_id,
        "cloudId": forge.cloud_id,
        "accountId": forge.account_id,
        "environment": "PRODUCTION",
        "connectClientKey": None,
        "installationState": None,
    }
    assert fake_product.drive(client).install(installationId=forge.installation_id).status_code == 204
    system, user = forge.system_token(), forge.user_token()
    linked = driver.ui_call("/forge/whoami", system_token=system, user_token=user)
    assert linked.status_code == 200
    assert linked.json()["connectClientKey"] == fake_product.client_key
    assert system not in linked.text
    assert user not in linked.text


def test_whoami_falls_back_to_the_cloud_id(forge: FakeForge, fake_product: FakeProduct, client: TestClient) -> None:
    assert fake_product.drive(client).install(cloudId=forge.cloud_id).status_code == 204
    assert forge.drive(client).ui_call("/forge/whoami").json()["connectClientKey"] == fake_product.client_key


REFUSED = {
    "no token": ({"Authorization": None}, "MISSING_JWT"),
    "another app": ({"aud": "ari:cloud:ecosystem::app/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"}, "WRONG_AUDIENCE"),
    "forged key": ({"key": "forged"}, "INVALID_SIGNATURE"),
    "expired": ({"exp": 1}, "TOKEN_EXPIRED"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_refused_events_store_nothing(case: str, forge: FakeForge, client: TestClient, database: Database) -> None:
    change, code = REFUSED[case]
    if change.get("key") == "forged":
        fit = forge.mint_fit("event", key=generate_rsa_key())
    elif "Authorization" in change:
        fit = None
    else:
        fit = forge.mint_fit("event", **change)
    headers = forge.drive(client).headers(fit) if fit else {}
    response = client.post("/forge/events", json={"n": 1}, headers=headers)
    assert (response.status_code, response.json()["code"]) == (401, code), response.text
    assert forge_events(database) == []


def test_bad_bodies_are_4xx_and_store_nothing(forge: FakeForge, client: TestClient, database: Database) -> None:
    headers = forge.drive(client).headers(forge.mint_fit("event"))
    for body in (b"[1, 2]", b"{not json", b'{"n": NaN}', b'{"n": Infinity}', b'{"n": 1e999}', b"[" * 200 + b"]" * 200):
        refused = client.post("/forge/events", content=body, headers=headers)
        assert refused.status_code == 422, body[:20]
        assert body.decode() not in refused.text
    too_big = client.post("/forge/events", content=b" " * (1024 * 1024 + 1), headers=headers)
    assert (too_big.status_code, too_big.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert forge_events(database) == []


def test_jwks_outage_is_503(forge: FakeForge, client: TestClient, database: Database) -> None:
    forge.jwks_outage = True
    response = forge.drive(client).event("/forge/events", {"n": 1})
    assert (response.status_code, response.json()["code"]) == (503, "FAILED_TO_OBTAIN_PUBLIC_KEY")
    assert forge_events(database) == []


def test_without_forge_app_id_the_routes_are_404(database: Database, fake_product: FakeProduct) -> None:
    settings = Settings(
        base_url=APP_URL, database_url=database.url, secret_encryption_key=Fernet.generate_key().decode()
    )
    with TestClient(create_app(settings, key_provider=fake_product.key_provider()), base_url=APP_URL) as client:
        assert client.post("/forge/events", json={}).status_code == 404
        assert client.get("/forge/whoami").status_code == 404


def test_settings_read_the_forge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORGE_APP_ID", "6c9a4a8f-27c5-4b7e-8f5e-3b9f2d0c1a77")
    monkeypatch.setenv("FORGE_JWKS_URL", "http://127.0.0.1:9/jwks.json")
    monkeypatch.setenv("FORGE_API_HOSTS", "127.0.0.1, localhost,")
    settings = Settings.from_env()
    assert settings.forge_app_id == "6c9a4a8f-27c5-4b7e-8f5e-3b9f2d0c1a77"
    assert settings.forge_jwks_url == "http://127.0.0.1:9/jwks.json"
    assert settings.forge_api_hosts == ("127.0.0.1", "localhost")


def test_loopback_jwks_from_the_environment(forge: FakeForge, database: Database) -> None:
    """FORGE_JWKS_URL and FORGE_API_HOSTS as a loopback test sets them: the app fetches the kit's served JWKS."""
    fit = forge.mint_fit("event", app={"apiBaseUrl": "http://127.0.0.1:8123/ex/jira/x"})
    with forge.serve_jwks() as served:
        settings = Settings(
            base_url=APP_URL,
            database_url=database.url,
            secret_encryption_key=Fernet.generate_key().decode(),
            forge_app_id=forge.app_id,
            forge_jwks_url=served.url,
            forge_api_hosts=("127.0.0.1",),
        )
        with TestClient(create_app(settings), base_url=APP_URL) as client:
            response = client.post("/forge/events", json={"n": 1}, headers=forge.drive(client).headers(fit))
    assert response.status_code == 204, response.text
    assert served.requests == 1
    assert isinstance(httpx2.URL(served.url).port, int)


def test_openapi_documents_the_forge_routes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    events = schema["paths"]["/forge/events"]["post"]
    assert events["security"] == [{"ForgeInvocationToken": []}]
    assert {"401", "413", "503"} <= set(events["responses"])
    assert {"401", "503"} <= set(schema["paths"]["/forge/whoami"]["get"]["responses"])
    assert set(schema["components"]["schemas"]["ForgeWhoAmI"]["properties"]) == {
        "installationId",
        "cloudId",
        "accountId",
        "environment",
        "connectClientKey",
        "installationState",
    }


def installation_uuid(forge: FakeForge) -> str:
    return forge.installation_id.rsplit("/", 1)[1]


def lifecycle_fit(forge: FakeForge) -> str:
    """A lifecycle event's FIT: like a product event's, no principal, no context; the `forge-lifecycle` endpoint's."""
    return forge.mint_fit("lifecycle", module_key="forge-lifecycle")


def test_forge_lifecycle_is_recorded_and_whoami_says_the_state(forge: FakeForge, client: TestClient) -> None:
    driver = forge.drive(client)
    assert driver.ui_call("/forge/whoami").json()["installationState"] is None  # never seen
    installed = {"id": installation_uuid(forge), "app": {"id": forge.app_id, "version": "2.4.0"}}
    response = client.post("/forge/lifecycle/installed", json=installed, headers=driver.headers(lifecycle_fit(forge)))
    assert response.status_code == 204, response.text
    assert driver.ui_call("/forge/whoami").json()["installationState"] == "installed"
    upgraded = {"id": forge.installation_id, "app": {"id": forge.app_id, "version": "3.0.0"}}  # the ARI works too
    response = client.post("/forge/lifecycle/upgraded", json=upgraded, headers=driver.headers(lifecycle_fit(forge)))
    assert response.status_code == 204, response.text
    leaving = {"context": {"cloudId": forge.cloud_id, "moduleKey": "pre-uninstall"}, "contextToken": "opaque"}
    response = client.post("/forge/lifecycle/pre-uninstall", json=leaving, headers=driver.headers(lifecycle_fit(forge)))
    assert response.status_code == 204, response.text
    assert driver.ui_call("/forge/whoami").json()["installationState"] == "uninstalled"


def test_the_manifests_lifecycle_endpoint_takes_each_event_at_one_route(forge: FakeForge, client: TestClient) -> None:
    """The manifest sends installed, upgraded and preUninstall to the one endpoint `forge-lifecycle`: /forge/lifecycle."""
    driver = forge.drive(client)
    states = []
    for event in ("installed", "upgraded", "pre-uninstall"):
        assert driver.lifecycle("/forge/lifecycle", event).status_code == 204
        states.append(driver.ui_call("/forge/whoami").json()["installationState"])
    assert states == ["installed", "installed", "uninstalled"]


def lifecycle_path(single: bool, event: str) -> str:
    """The one route for every lifecycle event (the manifest's), or the event's own."""
    return "/forge/lifecycle" if single else f"/forge/lifecycle/{event}"


@pytest.mark.parametrize("single", [False, True], ids=["per-event", "one-route"])
@pytest.mark.parametrize("event", ["installed", "upgraded"])
def test_a_late_installed_or_upgraded_after_pre_uninstall_leaves_the_installation_uninstalled(
    event: ForgeLifecycleEvent, single: bool, forge: FakeForge, client: TestClient, database: Database
) -> None:
    driver = forge.drive(client)
    late = lifecycle_fit(forge)  # minted before the uninstall, delivered after it
    assert driver.lifecycle(lifecycle_path(single, "installed"), "installed").status_code == 204
    assert driver.lifecycle(lifecycle_path(single, "pre-uninstall"), "pre-uninstall").status_code == 204
    tokens = database.rows("SELECT token_hash FROM atlassian_forge_tokens")
    assert driver.lifecycle(lifecycle_path(single, event), event, fit=late).status_code == 204
    assert driver.lifecycle(lifecycle_path(single, event), event, retry_count=1).status_code == 204  # redelivered
    assert driver.ui_call("/forge/whoami").json()["installationState"] == "uninstalled"
    assert database.rows("SELECT token_hash FROM atlassian_forge_tokens") == tokens  # their system tokens not kept


@pytest.mark.parametrize(
    "fit", [lambda forge: forge.mint_fit("event"), lambda forge: forge.mint_fit("trigger", module_key="forge-events")]
)
def test_lifecycle_routes_take_only_the_lifecycle_endpoints_fits(
    fit: Callable[[FakeForge], str], forge: FakeForge, client: TestClient, database: Database
) -> None:
    driver = forge.drive(client)
    events: tuple[ForgeLifecycleEvent, ...] = ("installed", "upgraded", "pre-uninstall")
    for event in events:
        for path in (f"/forge/lifecycle/{event}", "/forge/lifecycle"):
            refused = driver.lifecycle(path, event, fit=fit(forge))
            assert (refused.status_code, refused.json()["code"]) == (401, "WRONG_INVOCATION")
    assert database.rows("SELECT count(*) FROM atlassian_forge_installations") == [(0,)]
    stored = driver.event("/forge/events", {"x": 1}, fit=lifecycle_fit(forge))  # and the other way round
    assert (stored.status_code, stored.json()["code"]) == (401, "WRONG_INVOCATION")


@pytest.mark.parametrize("route", ["installed", "upgraded"])
def test_a_lifecycle_payload_of_another_installation_records_nothing(
    route: str, forge: FakeForge, client: TestClient, database: Database
) -> None:
    driver = forge.drive(client)
    other = {"id": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", "app": {"id": forge.app_id, "version": "1"}}
    response = client.post(f"/forge/lifecycle/{route}", json=other, headers=driver.headers(lifecycle_fit(forge)))
    assert (response.status_code, response.json()["code"]) == (401, "INSTALLATION_MISMATCH")
    assert database.rows("SELECT count(*) FROM atlassian_forge_installations") == [(0,)]


@pytest.mark.parametrize(
    "path", ["/forge/events", "/forge/lifecycle/installed", "/forge/lifecycle/pre-uninstall", "/forge/lifecycle"]
)
def test_server_side_forge_routes_refuse_ui_fits_and_unsigned_calls(
    path: str, forge: FakeForge, client: TestClient, database: Database
) -> None:
    driver = forge.drive(client)
    body = {"id": installation_uuid(forge), "app": {"id": forge.app_id}}
    from_browser = client.post(path, json=body, headers=driver.headers(forge.mint_fit("ui")))
    assert (from_browser.status_code, from_browser.json()["code"]) == (401, "WRONG_INVOCATION")
    unsigned = client.post(path, json=body)
    assert (unsigned.status_code, unsigned.json()["code"]) == (401, "MISSING_JWT")
    assert forge_events(database) == []
    assert database.rows("SELECT count(*) FROM atlassian_forge_installations") == [(0,)]


def test_whoami_never_links_another_installations_or_products_tenant(
    forge: FakeForge, fake_product: FakeProduct, client: TestClient
) -> None:
    """The cross-installation link: a FIT of another installation on the same site gets no tenant."""
    assert fake_product.drive(client).install(installationId=forge.installation_id, cloudId=forge.cloud_id).is_success
    other = FakeForge(private_key=forge.signing_keys[forge.kid], cloud_id=forge.cloud_id, app_id=forge.app_id)
    other.kid = forge.kid
    assert forge.drive(client).ui_call("/forge/whoami").json()["connectClientKey"] == fake_product.client_key
    assert other.drive(client).ui_call("/forge/whoami").json()["connectClientKey"] is None


# -- Connect's end of support: the reserved property links an installation on first contact ------------


def test_an_event_links_the_installation_from_the_reserved_property(
    forge: FakeForge, fake_product: FakeProduct, settings: Settings, client: TestClient, database: Database
) -> None:
    """The pinned contract: the app's Connect key is asked for, at the FIT's apiBaseUrl, with the event's system token.

    The tenant's recorded site is another one (renamed, imported): the property is Atlassian's answer, so it links.
    """
    assert fake_product.drive(client).install(cloudId="another-site").status_code == 204
    driver = forge.drive(client)
    assert driver.ui_call("/forge/whoami").json()["connectClientKey"] is None
    forge.connect_key = settings.app_key
    forge.serve_connect_client_key(fake_product.client_key)
    system = forge.system_token()
    assert driver.event("/forge/events", {"n": 1}, system_token=system).status_code == 204
    assert driver.ui_call("/forge/whoami").json()["connectClientKey"] == fake_product.client_key
    reads = [call for call in forge.api_calls if "atlassian-connect" in call.url]
    assert [(call.status, call.token_kind) for call in reads] == [(200, "system")]
    property_path = f"/addons/{settings.app_key}/properties/connect_client_key_019cdff3-8bfb-71fe-9628-875b700aebb8"
    assert reads[0].url == f"/ex/jira/{forge.cloud_id}/rest/atlassian-connect/1{property_path}"
    assert driver.event("/forge/events", {"n": 2}, system_token=forge.system_token()).status_code == 204
    assert len([call for call in forge.api_calls if "atlassian-connect" in call.url]) == 1  # once per installation
    assert database.rows("SELECT client_key, source FROM atlassian_connect_links") == [
        (fake_product.client_key, "property")
    ]


def test_the_property_outranks_the_cloud_id_guess(
    forge: FakeForge,
    fake_product: FakeProduct,
    fake_product_signing_key: rsa.RSAPrivateKey,
    settings: Settings,
    client: TestClient,
) -> None:
    guessed = FakeProduct(private_key=fake_product_signing_key)
    assert guessed.drive(client).install(cloudId=forge.cloud_id).status_code == 204
    assert fake_product.drive(client).install().status_code == 204
    driver = forge.drive(client)
    assert driver.ui_call("/forge/whoami").json()["connectClientKey"] == guessed.client_key
    forge.connect_key = settings.app_key
    forge.serve_connect_client_key({"clientKey": fake_product.client_key})
    assert driver.lifecycle("/forge/lifecycle/installed", "installed").status_code == 204
    assert driver.ui_call("/forge/whoami").json()["connectClientKey"] == fake_product.client_key


def test_a_ui_call_with_a_system_token_never_reads_the_property(
    forge: FakeForge, fake_product: FakeProduct, settings: Settings, client: TestClient
) -> None:
    assert fake_product.drive(client).install().status_code == 204
    forge.connect_key = settings.app_key
    forge.serve_connect_client_key(fake_product.client_key)
    driver = forge.drive(client)
    answer = driver.ui_call("/forge/whoami", system_token=forge.system_token())
    assert answer.json()["connectClientKey"] is None
    assert [call for call in forge.api_calls if "atlassian-connect" in call.url] == []


@pytest.mark.parametrize("answer", ["no tenant", "404", "403", "500", "invalid"])
def test_failed_reads_leave_the_link_and_the_invocation_succeeds(
    answer: str, forge: FakeForge, fake_product: FakeProduct, settings: Settings, client: TestClient
) -> None:
    assert fake_product.drive(client).install(cloudId=forge.cloud_id).status_code == 204  # the guess
    forge.connect_key = settings.app_key
    if answer == "no tenant":
        forge.serve_connect_client_key("a-tenant-this-app-never-saw")
    elif answer == "invalid":
        forge.serve_connect_client_key(["not", "a", "clientKey"])
    else:
        forge.serve_connect_client_key(status=int(answer))
    driver = forge.drive(client)
    assert driver.event("/forge/events", {"n": 1}, system_token=forge.system_token()).status_code == 204
    assert driver.ui_call("/forge/whoami").json()["connectClientKey"] == fake_product.client_key
    assert len([call for call in forge.api_calls if "atlassian-connect" in call.url]) == 1


def test_the_property_is_read_at_a_loopback_api_base_url(
    forge: FakeForge, fake_product: FakeProduct, database: Database
) -> None:
    """No transport handed in: the app reads the property over HTTP at the FIT's apiBaseUrl (the kit on loopback)."""
    settings = Settings(
        base_url=APP_URL,
        database_url=database.url,
        secret_encryption_key=Fernet.generate_key().decode(),
        forge_app_id=forge.app_id,
        forge_api_hosts=("127.0.0.1",),
    )
    app = create_app(settings, key_provider=fake_product.key_provider(), forge_key_provider=forge.key_provider())
    forge.serve_connect_client_key(fake_product.client_key)
    with forge.serve_api(), TestClient(app, base_url=APP_URL) as client:
        assert fake_product.drive(client).install().status_code == 204
        driver = forge.drive(client)
        assert driver.event("/forge/events", {"n": 1}, system_token=forge.system_token()).status_code == 204
        assert driver.ui_call("/forge/whoami").json()["connectClientKey"] == fake_product.client_key
    assert [call.url.split("/addons/")[1].split("/")[0] for call in forge.api_calls] == [settings.app_key]
