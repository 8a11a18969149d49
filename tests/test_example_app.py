"""The example app, driven through its whole lifecycle by the test kit's fake Jira, on SQLite and PostgreSQL.

The database is read back here with `sqlite3` or asyncpg, not the app's store,
so "stored" and "nothing stored" are checked independently.
"""

from __future__ import annotations

import gc
import logging
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from example_app.db import async_database_url, load_cipher
from example_app.main import create_app
from example_app.pages import refusal_page
from example_app.settings import Settings
from fastapi_connect_auth import WEBHOOK_IDENTIFIER_HEADER, AuthError, AuthErrorCode, ProductHosts, RedactTokens
from fastapi_connect_auth.testing import ConnectAppDriver, FakeProduct, generate_rsa_key
from tests.postgres import Database

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

APP_URL = "https://connect-app.example.test"
ROOT = Path(__file__).resolve().parent.parent
PROTECTED_ROUTES = {"/installed", "/uninstalled", "/enabled", "/disabled", "/webhooks", "/inbox", "/api/events"}

Jira = Callable[..., AbstractContextManager[ConnectAppDriver]]


@pytest.fixture
def settings(database: Database) -> Settings:
    """A fresh database: SQLite with no encryption key (dev mode: a key file beside it), or PostgreSQL with one."""
    key = None if database.path is not None else Fernet.generate_key().decode()
    return Settings(base_url=APP_URL, database_url=database.url, secret_encryption_key=key)


@pytest.fixture
def sqlite_file(database: Database) -> Path:
    """The SQLite file, for the tests of what is kept in or beside it (its journal mode, the development key)."""
    if database.path is None:
        pytest.skip("SQLite only")
    return database.path


@pytest.fixture
def jira(fake_product: FakeProduct, settings: Settings) -> Jira:
    """Start the app (a `TestClient` runs its lifespan) and let `product` drive it; each call is a (re)start."""

    @contextmanager
    def start(product: FakeProduct = fake_product, app_settings: Settings = settings) -> Iterator[ConnectAppDriver]:
        # The fake Jira's REST API and its token endpoint answer in-process: no call ever leaves the machine.
        # The webhooks' issue exists there, so /api/events (which lists only issues Jira confirms) lists them.
        product.issues.setdefault("DEMO-1", "A fake issue")
        app = create_app(
            app_settings,
            key_provider=product.key_provider(),
            product_transport=product.api_transport,
            user_tokens=product.user_tokens(),
        )
        with TestClient(app, base_url=APP_URL) as client:
            yield product.drive(client)

    return start


def installations(database: Database) -> list[tuple[Any, ...]]:
    return database.rows("SELECT client_key, base_url, installed, enabled FROM atlassian_tenants")


def stored_events(database: Database) -> list[tuple[Any, ...]]:
    return database.rows("SELECT client_key, event, issue_key FROM events ORDER BY id")


def assert_refused(response: httpx2.Response, code: str, status: int = 401) -> None:
    assert response.status_code == status, response.text
    assert response.json()["code"] == code


def event_names(response: httpx2.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [event["event"] for event in response.json()]


# -- configuration ------------------------------------------------------------------------


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONNECT_BASE_URL", "CONNECT_KEYS_URL", "DATABASE_URL", "SECRET_ENCRYPTION_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert Settings.from_env() == Settings()
    assert Settings().base_url == "http://localhost:8000"
    assert Settings().keys_url is None  # Atlassian's own CDN
    assert Settings().database_url == "sqlite:///./example_app.db"
    monkeypatch.setenv("CONNECT_BASE_URL", APP_URL)
    monkeypatch.setenv("CONNECT_KEYS_URL", "http://127.0.0.1:9/keys")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db/connect")
    monkeypatch.setenv("SECRET_ENCRYPTION_KEY", "k")
    assert Settings.from_env() == Settings(APP_URL, "http://127.0.0.1:9/keys", "postgresql://app@db/connect", "k")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///./example_app.db", "sqlite+aiosqlite:///./example_app.db"),
        ("sqlite:////var/data/app.db", "sqlite+aiosqlite:////var/data/app.db"),
        ("postgresql://app:pw@db:5432/connect", "postgresql+asyncpg://app:pw@db:5432/connect"),
        ("postgres://app@db/connect", "postgresql+asyncpg://app@db/connect"),
        ("postgresql+asyncpg://app@db/connect", "postgresql+asyncpg://app@db/connect"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_database_urls_get_their_async_driver(url: str, expected: str) -> None:
    assert async_database_url(url) == expected


def test_a_server_database_needs_an_encryption_key() -> None:
    with pytest.raises(RuntimeError, match="SECRET_ENCRYPTION_KEY"):
        load_cipher(None, "postgresql://app@db/connect")
    key = Fernet.generate_key()
    assert Fernet(key).decrypt(load_cipher(key.decode(), "postgresql://app@db/connect").encrypt("x")) == b"x"


def test_importing_the_app_touches_no_database(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import example_app.main"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "DATABASE_URL": "sqlite:///./app.db"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


def test_descriptor_is_a_jira_connect_descriptor(jira: Jira) -> None:
    with jira() as driver:
        descriptor = driver.descriptor
        routes = set(driver.client.get("/openapi.json").json()["paths"])
    assert descriptor["key"] == "fastapi-connect-example"
    assert descriptor["name"]
    assert descriptor["baseUrl"] == APP_URL
    assert descriptor["authentication"] == {"type": "jwt"}
    assert descriptor["lifecycle"] == {
        "installed": "/installed",
        "uninstalled": "/uninstalled",
        "enabled": "/enabled",
        "disabled": "/disabled",
    }
    assert descriptor["apiMigrations"] == {"signed-install": True, "context-qsh": True, "gdpr": True}
    assert descriptor["scopes"] == ["READ", "ACT_AS_USER"]  # /api/events fetches issues as the user
    webhooks = descriptor["modules"]["webhooks"]
    assert {webhook["event"] for webhook in webhooks} == {"jira:issue_created", "jira:issue_updated"}
    (page,) = descriptor["modules"]["generalPages"]
    assert page["key"] == "inbox"
    declared = [*descriptor["lifecycle"].values(), *(webhook["url"] for webhook in webhooks), page["url"]]
    assert set(declared) <= routes


def test_docs_list_every_route_and_protected_ones_show_the_scheme(jira: Jira) -> None:
    with jira() as driver:
        assert driver.client.get("/docs").status_code == 200
        schema = driver.client.get("/openapi.json").json()
    operations = {path: next(iter(methods.values())) for path, methods in schema["paths"].items()}
    assert set(operations) == {"/atlassian-connect.json", *PROTECTED_ROUTES}
    for path, operation in operations.items():
        expected = [{"AtlassianConnectJWT": []}] if path in PROTECTED_ROUTES else None
        assert operation.get("security") == expected, path
    assert "AtlassianConnectJWT" in schema["components"]["securitySchemes"]


# -- the lifecycle ------------------------------------------------------------------------


def test_the_whole_lifecycle(jira: Jira, fake_product: FakeProduct, database: Database) -> None:
    with jira() as driver:
        assert driver.install().status_code == 204
        assert installations(database) == [(fake_product.client_key, fake_product.base_url, 1, 1)]

        assert driver.webhook("jira:issue_created").status_code == 204
        assert driver.webhook("jira:issue_updated").status_code == 204
        assert stored_events(database) == [
            (fake_product.client_key, "jira:issue_created", "DEMO-1"),
            (fake_product.client_key, "jira:issue_updated", "DEMO-1"),
        ]

        page = driver.load_page("inbox")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        for fragment in ("https://connect-cdn.atl-paas.net/all.js", "AP.context.getToken()", '"api/events"', "JWT "):
            assert fragment in page.text
        assert event_names(driver.context_call("GET", "/api/events")) == ["jira:issue_updated", "jira:issue_created"]

        old_secret = fake_product.shared_secret
        assert driver.update().status_code == 204
        assert_refused(driver.webhook("jira:issue_created", shared_secret=old_secret), "INVALID_SIGNATURE")
        assert_refused(driver.context_call("GET", "/api/events", shared_secret=old_secret), "INVALID_SIGNATURE")
        assert driver.webhook("jira:issue_created").status_code == 204

        assert driver.disable().status_code == 204
        assert installations(database)[0][2:] == (1, 0)
        assert driver.enable().status_code == 204
        assert installations(database)[0][2:] == (1, 1)

        assert driver.uninstall().status_code == 204
        assert installations(database)[0][2:] == (0, 1)
        assert_refused(driver.webhook("jira:issue_created"), "UNKNOWN_ISSUER")
        assert_refused(driver.load_page("inbox"), "UNKNOWN_ISSUER")
        assert_refused(driver.context_call("GET", "/api/events"), "UNKNOWN_ISSUER")
        assert driver.uninstall().status_code == 204  # twice: answered, still uninstalled
        assert driver.disable().status_code == 204  # after the uninstall: answered, nothing changes
        assert installations(database)[0][2:] == (0, 1)
        assert_refused(driver.webhook("jira:issue_created"), "UNKNOWN_ISSUER")
        assert len(stored_events(database)) == 3

        assert driver.install().status_code == 204
        assert len(event_names(driver.context_call("GET", "/api/events"))) == 3
        assert driver.webhook("jira:issue_updated").status_code == 204


def test_shared_secrets_are_encrypted_at_rest_with_the_dev_key_beside_the_database(
    jira: Jira, fake_product: FakeProduct, database: Database, sqlite_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="example_app"), jira() as driver:
        assert driver.install().status_code == 204
    key_file = sqlite_file.with_name("app.db.key")
    key = key_file.read_bytes()
    assert "SECRET_ENCRYPTION_KEY is not set" in caplog.text
    assert fake_product.shared_secret.encode() not in sqlite_file.read_bytes()
    ((encrypted,),) = database.rows("SELECT encrypted_shared_secret FROM atlassian_tenants")
    assert Fernet(key).decrypt(encrypted).decode() == fake_product.shared_secret
    assert fake_product.shared_secret not in caplog.text
    with jira() as driver:  # a restart keeps the key
        assert driver.webhook("jira:issue_created").status_code == 204
    assert key_file.read_bytes() == key


def test_tenants_and_their_events_survive_a_restart(jira: Jira, database: Database) -> None:
    with jira() as driver:
        assert driver.install().status_code == 204
        assert driver.webhook("jira:issue_created").status_code == 204
    with jira() as driver:
        assert event_names(driver.context_call("GET", "/api/events")) == ["jira:issue_created"]
        assert driver.webhook("jira:issue_updated").status_code == 204
    assert [event for _, event, _ in stored_events(database)] == ["jira:issue_created", "jira:issue_updated"]


def test_sqlite_runs_in_wal_mode_so_reads_never_wait_for_the_writer(jira: Jira, sqlite_file: Path) -> None:
    with jira() as driver:
        assert driver.install().status_code == 204
        assert driver.webhook("jira:issue_created").status_code == 204
    with closing(sqlite3.connect(sqlite_file)) as connection:  # the mode is kept in the file once set
        assert connection.execute("PRAGMA journal_mode").fetchall() == [("wal",)]


def test_startup_objects_are_kept_out_of_full_collections_only_while_the_app_runs(settings: Settings) -> None:
    """No full-collection pauses over startup's objects under load; handed back to the collector at shutdown."""
    assert gc.get_freeze_count() == 0
    with TestClient(create_app(settings), base_url=APP_URL) as client:
        assert client.get("/atlassian-connect.json").status_code == 200
        assert gc.get_freeze_count() > 1000  # the modules, models and routes made at startup
    assert gc.get_freeze_count() == 0


def test_a_configured_key_is_used_and_a_changed_key_fails_closed(
    jira: Jira, fake_product: FakeProduct, settings: Settings, database: Database
) -> None:
    configured = replace(settings, secret_encryption_key=Fernet.generate_key().decode())
    with jira(app_settings=configured) as driver:
        assert driver.install().status_code == 204
        assert driver.webhook("jira:issue_created").status_code == 204
    if database.path is not None:
        assert not database.path.with_name("app.db.key").exists()
    with jira(app_settings=replace(settings, secret_encryption_key=Fernet.generate_key().decode())) as driver:
        # Fail closed, and retryable: a secret no key decrypts is a 503 (never "unknown", which an unsigned
        # legacy install could then re-claim); the product retries once the right key is back.
        assert_refused(driver.webhook("jira:issue_created"), "STORE_UNAVAILABLE", 503)


def test_tenants_see_only_their_own_events(jira: Jira, fake_product: FakeProduct) -> None:
    other_tenant = FakeProduct(base_url="https://other.atlassian.net", private_key=fake_product.private_key)
    with jira() as first, jira(product=other_tenant) as second:
        assert first.install().status_code == 204
        assert second.install().status_code == 204
        assert first.webhook("jira:issue_created").status_code == 204
        assert second.webhook("jira:issue_updated").status_code == 204
        assert event_names(first.context_call("GET", "/api/events")) == ["jira:issue_created"]
        assert event_names(second.context_call("GET", "/api/events")) == ["jira:issue_updated"]
        assert first.uninstall().status_code == 204
        assert second.webhook("jira:issue_updated").status_code == 204


def test_a_jira_retry_is_stored_once_and_a_retry_with_another_body_is_refused_for_good(
    jira: Jira, fake_product: FakeProduct, database: Database
) -> None:
    """Jira's retry (the same identifier and body, a new token) is stored once; the identifier is per tenant."""
    other_tenant = FakeProduct(base_url="https://other.atlassian.net", private_key=fake_product.private_key)
    with jira() as driver, jira(product=other_tenant) as other:
        assert driver.install().status_code == 204
        assert other.install().status_code == 204
        first = driver.webhook("jira:issue_created")
        retries = [driver.retry_webhook(first), driver.retry_webhook(first, retry=2)]
        identifier = first.request.headers[WEBHOOK_IDENTIFIER_HEADER]
        same_id = other.webhook("jira:issue_created", identifier=identifier)  # another tenant's webhook
        changed = driver.retry_webhook(first, retry=3, body=fake_product.webhook_body("jira:issue_updated"))
        assert [response.status_code for response in (first, *retries, same_id)] == [204] * 4
        assert changed.status_code == 422  # not 408, 409, 425, 429 or 5xx: Jira does not send it again
        assert changed.json()["code"] == "DELIVERY_CONFLICT"
        assert event_names(driver.context_call("GET", "/api/events")) == ["jira:issue_created"]
        assert event_names(other.context_call("GET", "/api/events")) == ["jira:issue_created"]
    assert stored_events(database) == [
        (fake_product.client_key, "jira:issue_created", "DEMO-1"),
        (other_tenant.client_key, "jira:issue_created", "DEMO-1"),
    ]


@pytest.mark.parametrize("late", ["installed", "uninstalled", "enabled", "disabled"])
def test_a_lifecycle_callback_signed_before_the_last_applied_one_changes_nothing(
    late: str, jira: Jira, database: Database
) -> None:
    """Delivered late (signed before the latest applied callback): answered 2xx so the product stops, ignored."""
    with jira() as driver:
        now = time.time()
        assert driver.install(signed_at=now - 60).status_code == 204
        assert driver.disable(signed_at=now - 30).status_code == 204
        assert driver.uninstall(signed_at=now - 20).status_code == 204
        before = installations(database)
        send = {"installed": driver.install, "uninstalled": driver.uninstall}.get(late)
        signed_before = now - 40  # before the disable and the uninstall
        if send is not None:
            assert send(signed_at=signed_before).status_code == 204
        else:
            assert (driver.enable if late == "enabled" else driver.disable)(signed_at=signed_before).status_code == 204
        assert installations(database) == before
        assert installations(database)[0][2:] == (0, 0)
        assert_refused(driver.webhook("jira:issue_created"), "UNKNOWN_ISSUER")
        assert driver.install().status_code == 204  # a new install, signed after the uninstall
        assert installations(database)[0][2] == 1
        assert driver.webhook("jira:issue_created").status_code == 204


def test_install_keys_can_come_from_a_key_server(fake_product: FakeProduct, settings: Settings) -> None:
    """CONNECT_KEYS_URL: the app fetches the install key over HTTP from the given base URL."""
    with fake_product.serve_keys() as server:
        app = create_app(replace(settings, keys_url=server.url), product_transport=fake_product.api_transport)
        with TestClient(app, base_url=APP_URL) as client:
            driver = fake_product.drive(client)
            assert driver.install().status_code == 204
            assert driver.uninstall().status_code == 204
    assert server.requests == [f"/{fake_product.kid}"]  # fetched once, then cached


# -- failure paths ------------------------------------------------------------------------


def forged_token(product: FakeProduct) -> str:
    """A signed install token made with a key that is not the product's."""
    return product.signed_token("POST", "/installed", app_base_url=APP_URL, private_key=generate_rsa_key())


@pytest.mark.parametrize(
    ("send", "status", "code", "message"),
    [
        pytest.param(
            lambda d: d.install(content=b"{not json"), 400, "INVALID_INSTALL_PAYLOAD", "Invalid JSON", id="not-json"
        ),
        pytest.param(lambda d: d.install(content=b"[]"), 400, "INVALID_INSTALL_PAYLOAD", "body", id="not-an-object"),
        pytest.param(
            lambda d: d.install(sharedSecret=None), 400, "INVALID_INSTALL_PAYLOAD", "sharedSecret", id="no-secret"
        ),
        pytest.param(lambda d: d.install(baseUrl=None), 400, "INVALID_INSTALL_PAYLOAD", "baseUrl", id="no-base-url"),
        pytest.param(
            lambda d: d.install(clientKey="someone-else"), 401, "WRONG_ISSUER", "clientKey", id="other-client-key"
        ),
        pytest.param(
            lambda d: d.install(token=forged_token(d.product)), 401, "INVALID_SIGNATURE", "signature", id="forged"
        ),
        pytest.param(
            lambda d: d.install(token=d.product.shared_secret_token("POST", "/installed")),
            401,
            "INVALID_ALGORITHM",
            "",
            id="shared-secret-signed",
        ),
        pytest.param(
            lambda d: d.install(baseUrl="https://jira.evil.example"),
            401,
            "UNTRUSTED_PRODUCT_HOST",
            "",
            id="untrusted-host",
        ),
        pytest.param(
            lambda d: d.install(
                token=d.product.signed_token("POST", "/installed", app_base_url="https://other.example")
            ),
            401,
            "WRONG_AUDIENCE",
            "audience",
            id="other-audience",
        ),
        pytest.param(lambda d: d.request("POST", "/installed", json_body={}), 401, "MISSING_JWT", "JWT", id="no-token"),
    ],
)
def test_a_refused_install_stores_nothing(
    jira: Jira,
    database: Database,
    send: Callable[[ConnectAppDriver], httpx2.Response],
    status: int,
    code: str,
    message: str,
) -> None:
    with jira() as driver:
        response = send(driver)
        assert_refused(response, code, status)
        assert message in response.json()["detail"]
        assert installations(database) == []
        assert_refused(driver.webhook("jira:issue_created"), "UNKNOWN_ISSUER")


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda d: d.webhook("jira:issue_created", shared_secret="a-wrong-secret-" * 3), id="wrong-secret"),
        pytest.param(lambda d: d.webhook("jira:issue_created", token=d.product.context_token()), id="context-token"),
        pytest.param(
            lambda d: d.request("POST", "/webhooks?x=1", token=d.product.shared_secret_token("POST", "/webhooks")),
            id="other-url",
        ),
        pytest.param(lambda d: d.request("POST", "/webhooks", json_body={"webhookEvent": "x"}), id="no-token"),
        pytest.param(
            lambda d: d.webhook("jira:issue_created", token=d.product.shared_secret_token("POST", "/webhooks", exp=1)),
            id="expired",
        ),
        pytest.param(
            lambda d: d.request(
                "POST", "/webhooks", token=d.product.shared_secret_token("POST", "/webhooks"), content=b"[1]"
            ),
            id="not-an-object",
        ),
    ],
)
def test_a_refused_webhook_stores_nothing(
    jira: Jira, database: Database, send: Callable[[ConnectAppDriver], httpx2.Response]
) -> None:
    with jira() as driver:
        assert driver.install().status_code == 204
        response = send(driver)
        assert response.status_code in (401, 422), response.text
        assert stored_events(database) == []
        assert event_names(driver.context_call("GET", "/api/events")) == []


def test_the_page_and_the_api_take_only_their_kind_of_token(jira: Jira, fake_product: FakeProduct) -> None:
    with jira() as driver:
        assert driver.install().status_code == 204
        assert_refused(driver.request("GET", "/inbox", token=fake_product.context_token()), "INVALID_QSH")
        page_token = fake_product.shared_secret_token("GET", "/api/events")
        assert_refused(driver.request("GET", "/api/events", token=page_token), "INVALID_QSH")
        assert_refused(driver.request("GET", "/api/events"), "MISSING_JWT")
        assert_refused(driver.request("GET", "/inbox"), "MISSING_JWT")


def assert_framed(response: httpx2.Response) -> None:
    """Framed only by allowed products (no clickjacking), never sniffed, and its `?jwt=` URL never sent as a Referer."""
    sources = response.headers["Content-Security-Policy"].removeprefix("frame-ancestors ").split()
    assert response.headers["Content-Security-Policy"].startswith("frame-ancestors ")
    assert "https://*.atlassian.net" in sources
    assert "https://*.jira.com" in sources
    assert "*" not in sources
    assert all(source.startswith(("https://", "http://")) for source in sources)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_the_page_sends_framing_and_referrer_headers(jira: Jira) -> None:
    with jira() as driver:
        assert driver.install().status_code == 204
        page = driver.load_page("inbox")

    assert page.status_code == 200, page.text
    assert_framed(page)


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
"""What Chromium's `Accept` says when it loads a page, such as Jira's iframe."""
PAGE_REFUSALS: dict[str, tuple[Callable[[FakeProduct], str | None], str]] = {
    "no token": (lambda product: None, "MISSING_JWT"),
    "expired": (
        lambda product: product.shared_secret_token("GET", "/inbox", exp=int(time.time()) - 60),
        "TOKEN_EXPIRED",
    ),
    "bad signature": (
        lambda product: product.shared_secret_token("GET", "/inbox", shared_secret=product.new_shared_secret()),
        "INVALID_SIGNATURE",
    ),
}


def load_inbox(driver: ConnectAppDriver, token: str | None, accept: str) -> httpx2.Response:
    """`GET /inbox` as Jira's iframe loads it, the token in the `jwt` query parameter."""
    return driver.request("GET", "/inbox" + (f"?jwt={token}" if token else ""), headers={"Accept": accept})


@pytest.mark.parametrize(("make_token", "code"), PAGE_REFUSALS.values(), ids=PAGE_REFUSALS)
def test_a_browser_gets_a_refused_page_load_as_a_framed_page_that_says_why(
    jira: Jira, fake_product: FakeProduct, make_token: Callable[[FakeProduct], str | None], code: str
) -> None:
    """In Jira's iframe a user would see raw JSON, or nothing: the refusal is a page, framed like the inbox."""
    with jira() as driver:
        assert driver.install().status_code == 204
        token = make_token(fake_product)
        refused = load_inbox(driver, token, BROWSER_ACCEPT)

    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("text/html")
    assert refused.headers["WWW-Authenticate"] == "JWT"
    assert_framed(refused)
    assert f'<code id="code">{code}</code>' in refused.text
    assert "<h1>This page could not be loaded</h1>" in refused.text
    assert token is None or token.split(".")[2] not in refused.text


@pytest.mark.parametrize(("make_token", "code"), PAGE_REFUSALS.values(), ids=PAGE_REFUSALS)
def test_any_other_client_gets_a_refused_page_load_as_framed_json(
    jira: Jira, fake_product: FakeProduct, make_token: Callable[[FakeProduct], str | None], code: str
) -> None:
    with jira() as driver:
        assert driver.install().status_code == 204
        refused = load_inbox(driver, make_token(fake_product), "*/*")

    assert_refused(refused, code)
    assert refused.headers["WWW-Authenticate"] == "JWT"
    assert_framed(refused)


def test_only_the_page_routes_are_framed_pages(jira: Jira) -> None:
    """The app's API answers its JSON refusals to browsers too, without the page's headers: it is not a page."""
    with jira() as driver:
        refused = driver.request("GET", "/api/events", headers={"Accept": BROWSER_ACCEPT})

    assert_refused(refused, "MISSING_JWT")
    assert "Content-Security-Policy" not in refused.headers


def test_the_refusal_page_escapes_the_message() -> None:
    page = refusal_page(AuthError(AuthErrorCode.MISSING_JWT, 'No <script>alert("x")</script> here & there.'))

    assert page.body.decode().count("<script>") == 0
    assert "No &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; here &amp; there." in page.body.decode()
    assert page.headers["WWW-Authenticate"] == "JWT"


def test_frame_ancestors_follow_the_product_allow_list() -> None:
    hosts = ProductHosts.of(environments=["production", "staging"], extra_hosts=["localhost", "*.example.test"])

    assert hosts.frame_ancestors().split() == [
        "https://*.atlassian.net",
        "https://*.jira.com",
        "https://*.jira-dev.com",
        "https://bitbucket.org",
        "https://api.bitbucket.org",
        "http://localhost:*",
        "https://localhost:*",
        "http://*.example.test:*",
        "https://*.example.test:*",
    ]


def test_the_example_app_redacts_its_access_log(settings: Settings) -> None:
    """`make run` serves this app: building it installs the filter on uvicorn's access logger."""
    create_app(settings)

    filters = logging.getLogger("uvicorn.access").filters
    assert any(isinstance(installed, RedactTokens) for installed in filters)
    assert sum(isinstance(installed, RedactTokens) for installed in filters) == 1  # once, however many apps


# -- hostile identifiers and fields, on both databases -------------------------------------


def test_an_issuer_no_client_key_can_be_is_refused_before_the_database(
    jira: Jira, fake_product: FakeProduct, caplog: pytest.LogCaptureFixture
) -> None:
    """`iss` "victim\\u0000" made PostgreSQL answer 500 with a traceback quoting SQL; anyone can send it."""
    victim = "victim\x00"
    with caplog.at_level(logging.WARNING), jira() as driver:
        assert driver.install().status_code == 204
        sign = fake_product.shared_secret_token
        responses = [
            driver.webhook("jira:issue_created", token=sign("POST", "/webhooks", iss=victim)),
            driver.request("GET", "/inbox", token=sign("GET", "/inbox", iss=victim)),
            driver.request("GET", "/api/events", token=fake_product.context_token(iss=victim)),
            driver.enable(token=sign("POST", "/enabled", iss=victim)),
        ]
    assert [response.status_code for response in responses] == [401] * 4
    assert responses[0].json()["code"] == "UNKNOWN_ISSUER"
    assert "Database" not in caplog.text
    assert "Traceback" not in caplog.text


def test_hostile_text_in_a_webhook_is_stored_without_a_database_error(
    jira: Jira, fake_product: FakeProduct, database: Database
) -> None:
    """NUL: PostgreSQL's text refuses it, so it is dropped, never a 5xx (lone surrogates never parse: a 4xx)."""
    body = {"webhookEvent": "jira:issue_created\x00", "issue": {"key": "DEMO-\x001", "fields": {"summary": "\x00"}}}
    with jira() as driver:
        assert driver.install().status_code == 204
        assert driver.webhook("jira:issue_created", body).status_code == 204
        assert event_names(driver.context_call("GET", "/api/events")) == ["jira:issue_created"]
    assert stored_events(database) == [(fake_product.client_key, "jira:issue_created", "DEMO-1")]


# -- the development key file ----------------------------------------------------------------


def test_the_dev_key_file_is_made_readable_by_its_owner_only(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    cipher = load_cipher(None, url)
    key_file = tmp_path / "app.db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_cipher(None, url).decrypt(cipher.encrypt("x")) == "x"  # the same key, read back


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o666])
def test_a_dev_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    key_file = tmp_path / "app.db.key"
    key_file.write_bytes(Fernet.generate_key())
    key_file.chmod(mode)
    with pytest.raises(RuntimeError, match="readable by its owner only"):
        load_cipher(None, f"sqlite:///{tmp_path / 'app.db'}")


def test_a_planted_dev_key_symlink_is_refused_and_production_never_reads_it(tmp_path: Path) -> None:
    planted = tmp_path / "attacker.key"
    planted.write_bytes(Fernet.generate_key())
    planted.chmod(0o600)
    (tmp_path / "app.db.key").symlink_to(planted)
    url = f"sqlite:///{tmp_path / 'app.db'}"
    with pytest.raises(RuntimeError, match="symlink"):
        load_cipher(None, url)
    configured = Fernet.generate_key()
    assert Fernet(configured).decrypt(load_cipher(configured.decode(), url).encrypt("x")) == b"x"
    dangling = tmp_path / "other.db.key"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(RuntimeError, match="symlink"):
        load_cipher(None, f"sqlite:///{tmp_path / 'other.db'}")
    assert not (tmp_path / "nowhere").exists()  # nothing was written through it


def test_an_anonymous_context_token_gets_no_events(jira: Jira, fake_product: FakeProduct) -> None:
    """`/api/events` answered every stored issue summary to a context token naming no user; now 403 with a code."""
    with jira() as driver:
        assert driver.install().status_code == 204
        assert driver.webhook("jira:issue_created").status_code == 204
        anonymous = fake_product.shared_secret_token("GET", "/api/events", qsh="context-qsh")

        refused = driver.request("GET", "/api/events", token=anonymous)
        for_a_user = driver.context_call("GET", "/api/events", account_id="557058:user-a")

    assert_refused(refused, "UNAUTHORIZED_REQUEST", 403)
    assert "issue" not in refused.text.lower()
    assert for_a_user.status_code == 200
    assert len(for_a_user.json()) == 1
