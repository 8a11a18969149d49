"""Faults, against the example app: the install-key server and the database failing, then coming back.

The key server is a real HTTP server on 127.0.0.1 (the handler of
`tests/_keyserver.py`, on a port that survives a restart) and the app's key
provider talks to it with a short timeout. The database failures are real
locks taken by another connection, as a migration or a backup would, on SQLite
and on PostgreSQL; the database is read back with `sqlite3` or asyncpg, not the app's store.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import ThreadingHTTPServer
from typing import Any, Literal

import httpx2
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from example_app.main import create_app
from example_app.settings import Settings
from fastapi_connect_auth import AtlassianKeyProvider, PublicKeyProvider
from fastapi_connect_auth.testing import ConnectAppDriver, FakeForge, FakeProduct
from tests._keyserver import KeyServer, Reply, _Handler, free_loopback_port, rsa_key
from tests.postgres import Database
from tests.test_example_app import APP_URL, assert_refused, installations, stored_events

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

KEY_TIMEOUT = 0.5
"""The key provider's timeout: the hanging key server holds a request longer than this."""
FAILURE_TTL = 1.0
"""How long the key provider remembers a failed fetch before asking the key server again."""
RECOVERY_DEADLINE = 10.0
INSTALLED_KID = "fault-test/install-key-1"
ROTATED_KID = "fault-test/install-key-2"
"""A kid the app has not fetched yet (Atlassian rotated its key): the one the faults hit."""


# -- a key server that can fail and restart on its port ----------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, state: KeyServer) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: the key provider hangs up on a slow answer, as it should."""


class RestartableKeyServer:
    """A loopback key server that keeps its port, replies and request log across `stop()` and `start()`."""

    def __init__(self) -> None:
        port = free_loopback_port()
        self.state = KeyServer(url=f"http://127.0.0.1:{port}")
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.state.url

    def start(self) -> None:
        self._server = _Server(self.port, self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.start()

    def stop(self) -> None:
        """Close the listening socket: connections are refused until `start()`."""
        if self._server is not None and self._thread is not None:
            self.state.release.set()  # end any reply held back
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = self._thread = None

    def serve(self, product: FakeProduct) -> None:
        self.state.release.clear()
        self.state.serve_key(product.kid, product.public_key_pem)

    def fetches(self, product: FakeProduct) -> int:
        return self.state.count(product.kid)


@pytest.fixture
def key_server() -> Iterator[RestartableKeyServer]:
    server = RestartableKeyServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def settings(database: Database) -> Settings:
    """A fresh database; a busy one answers within 0.2 s (SQLite's default is 5 s, PostgreSQL's forever)."""
    if database.server is None:
        url = f"{database.url}?timeout=0.2"
    else:
        url = database.url
        database.server.execute(f"ALTER DATABASE \"{database.name}\" SET lock_timeout = '200ms'")
    return Settings(base_url=APP_URL, database_url=url, secret_encryption_key=Fernet.generate_key().decode())


KEY_FAULTS_ON_SQLITE = pytest.mark.parametrize("database", ["sqlite"], indirect=True)
"""The key server's faults do not depend on the database: they run on SQLite only."""


@contextmanager
def running_app(settings: Settings, key_provider: PublicKeyProvider) -> Iterator[TestClient]:
    # Live issue summaries off: the fake tenants' hosts are not real, and no call may leave the machine.
    offline = replace(settings, product_api_timeout=0)
    with TestClient(create_app(offline, key_provider=key_provider), base_url=APP_URL) as client:
        yield client


def tenant(kid: str, key_index: int, name: str) -> FakeProduct:
    """A Jira site signing its install with key `key_index` under `kid`."""
    return FakeProduct(base_url=f"https://{name}.atlassian.net", kid=kid, private_key=rsa_key(index=key_index))


def client_keys(database: Database) -> set[str]:
    return {row[0] for row in installations(database)}


# -- the key server failing ---------------------------------------------------------------------

Fault = Literal["timeout", "500", "garbage", "404", "refused"]


def break_key_server(server: RestartableKeyServer, product: FakeProduct, fault: Fault) -> None:
    path = f"/{product.kid}"
    if fault == "timeout":  # answers, but only long after the provider gave up
        server.state.replies[path] = Reply(body=product.public_key_pem, delay=30.0)
    elif fault == "500":
        server.state.replies[path] = Reply(status=500, body=b"Internal Server Error")
    elif fault == "garbage":
        server.state.replies[path] = Reply(body=b"<html><body>Maintenance</body></html>")
    elif fault == "404":
        server.state.replies.pop(path, None)
    else:
        server.stop()


def repair_key_server(server: RestartableKeyServer, product: FakeProduct, fault: Fault) -> None:
    if fault == "refused":
        server.start()
    server.serve(product)


def install_when_recovered(driver: ConnectAppDriver) -> httpx2.Response:
    """Retry the install as the product would, until accepted or the deadline passes."""
    deadline = time.monotonic() + RECOVERY_DEADLINE
    response = driver.install()
    while response.status_code != 204 and time.monotonic() < deadline:
        time.sleep(0.1)
        response = driver.install()
    return response


@KEY_FAULTS_ON_SQLITE
@pytest.mark.parametrize(
    ("fault", "status"),
    [("timeout", 503), ("500", 503), ("garbage", 503), ("refused", 503), ("404", 401)],
)
def test_a_key_server_fault_refuses_the_install_stores_nothing_and_recovers(
    key_server: RestartableKeyServer, settings: Settings, database: Database, fault: Fault, status: int
) -> None:
    installed = tenant(INSTALLED_KID, 0, "installed-site")
    newcomer = tenant(ROTATED_KID, 1, "new-site")
    key_server.serve(installed)
    # An unknown kid (404) is refused for 5 s by default, then longer; here as briefly as an outage, to see recovery.
    provider = AtlassianKeyProvider(
        base_url=key_server.url, timeout=KEY_TIMEOUT, failure_ttl=FAILURE_TTL, unknown_kid_ttl=FAILURE_TTL
    )
    with running_app(settings, provider) as client:
        installed_driver, newcomer_driver = installed.drive(client), newcomer.drive(client)
        assert installed_driver.install().status_code == 204

        break_key_server(key_server, newcomer, fault)
        refused = newcomer_driver.install()
        assert_refused(refused, "FAILED_TO_OBTAIN_PUBLIC_KEY", status)
        assert newcomer.kid in refused.json()["detail"]
        assert client_keys(database) == {installed.client_key}
        assert_refused(newcomer_driver.webhook("jira:issue_created"), "UNKNOWN_ISSUER")

        # The installed tenant is served meanwhile: its key is cached, its webhooks stored.
        assert installed_driver.webhook("jira:issue_created").status_code == 204
        assert installed_driver.uninstall().status_code == 204  # signed with the cached key
        assert installed_driver.install().status_code == 204
        assert [row[0] for row in stored_events(database)] == [installed.client_key]

        # A retry within the failure TTL is refused from memory: the key server is not hammered.
        asked = key_server.fetches(newcomer)
        assert_refused(newcomer_driver.install(), "FAILED_TO_OBTAIN_PUBLIC_KEY", status)
        assert key_server.fetches(newcomer) == asked

        repair_key_server(key_server, newcomer, fault)
        assert install_when_recovered(newcomer_driver).status_code == 204
        assert client_keys(database) == {installed.client_key, newcomer.client_key}
        assert newcomer_driver.webhook("jira:issue_created").status_code == 204
        assert installed_driver.webhook("jira:issue_updated").status_code == 204
    assert key_server.fetches(installed) == 1


@KEY_FAULTS_ON_SQLITE
def test_a_hanging_key_server_holds_up_only_the_install_waiting_for_it(
    key_server: RestartableKeyServer, settings: Settings, database: Database
) -> None:
    """Other tenants' webhooks are answered while an install waits out the key provider's timeout."""
    installed = tenant(INSTALLED_KID, 0, "installed-site")
    newcomer = tenant(ROTATED_KID, 1, "new-site")
    key_server.serve(installed)
    provider = AtlassianKeyProvider(base_url=key_server.url, timeout=KEY_TIMEOUT, failure_ttl=FAILURE_TTL)
    with running_app(settings, provider) as client:
        installed_driver = installed.drive(client)
        assert installed_driver.install().status_code == 204
        break_key_server(key_server, newcomer, "timeout")
        key_server.state.received.clear()
        answers: list[httpx2.Response] = []
        waiting_install = threading.Thread(target=lambda: answers.append(newcomer.drive(client).install()))
        started = time.monotonic()
        waiting_install.start()
        assert key_server.state.received.wait(5.0)  # the install is now waiting on the key server

        for _ in range(5):
            assert installed_driver.webhook("jira:issue_created").status_code == 204
        assert waiting_install.is_alive()  # still waiting: the webhooks did not queue behind it
        waiting_install.join(10.0)
        assert time.monotonic() - started >= KEY_TIMEOUT
        (answer,) = answers
        assert_refused(answer, "FAILED_TO_OBTAIN_PUBLIC_KEY", 503)
        assert "timed out" in answer.json()["detail"]
    assert client_keys(database) == {installed.client_key}
    assert len(stored_events(database)) == 5


# -- the database failing -------------------------------------------------------------------------

LockMode = Literal["IMMEDIATE", "EXCLUSIVE"]
"""`IMMEDIATE` blocks writers (reads still work); `EXCLUSIVE` blocks readers too."""
POSTGRES_LOCKS: dict[LockMode, str] = {"IMMEDIATE": "EXCLUSIVE", "EXCLUSIVE": "ACCESS EXCLUSIVE"}
"""PostgreSQL's table locks with the same effect as SQLite's database locks."""


@contextmanager
def database_locked(database: Database, mode: LockMode) -> Iterator[None]:
    """Another connection holds the database's tables, as a migration or a backup would."""
    if database.server is not None:
        lock = f"LOCK TABLE atlassian_tenants, events IN {POSTGRES_LOCKS[mode]} MODE"
        with database.server.holding(lock, database=database.name):
            yield
        return
    connection = sqlite3.connect(str(database.path), isolation_level=None)
    try:
        connection.execute(f"BEGIN {mode}")
        yield
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def assert_database_unavailable(response: httpx2.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json() == {
        "detail": "The app's store is unavailable; try again later.",
        "code": "STORE_UNAVAILABLE",
    }
    assert response.headers["Retry-After"] == "5"


def assert_logged_without_secrets(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    logged = caplog.text
    assert "SQLAlchemyStore unavailable during " in logged
    for leak in ("INSERT", "UPDATE", "SELECT", "encrypted_shared_secret", *secrets):
        assert leak not in logged


@pytest.mark.parametrize("mode", ["IMMEDIATE", "EXCLUSIVE"])
def test_a_new_install_while_the_database_is_unavailable_gets_a_503_and_a_retry_succeeds(
    fake_product: FakeProduct, settings: Settings, database: Database, mode: LockMode, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.ERROR),
        running_app(settings, fake_product.key_provider()) as client,
    ):
        driver = fake_product.drive(client)
        with database_locked(database, mode):
            assert_database_unavailable(driver.install())
        assert installations(database) == []
        assert_refused(driver.webhook("jira:issue_created"), "UNKNOWN_ISSUER")

        assert driver.install().status_code == 204
        assert installations(database) == [(fake_product.client_key, fake_product.base_url, 1, 1)]
        assert driver.webhook("jira:issue_created").status_code == 204
    assert_logged_without_secrets(caplog, fake_product.shared_secret)


def test_an_update_while_the_database_is_unavailable_leaves_the_tenant_as_it_was(
    fake_product: FakeProduct, settings: Settings, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """No half-written update: the old shared secret keeps working until a retried update succeeds."""
    with (
        caplog.at_level(logging.ERROR),
        running_app(settings, fake_product.key_provider()) as client,
    ):
        driver = fake_product.drive(client)
        assert driver.install().status_code == 204
        assert driver.webhook("jira:issue_created").status_code == 204
        old_secret = fake_product.shared_secret
        before = installations(database)

        with database_locked(database, "IMMEDIATE"):
            assert_database_unavailable(driver.update(baseUrl="https://moved-site.atlassian.net"))
            # Reads still work under this lock: the tenant's page and API keep answering.
            listed = driver.context_call("GET", "/api/events", shared_secret=old_secret)
            assert listed.status_code == 200
            # Its one event is about an issue, left out (and counted) with live calls off: Jira confirmed nothing.
            assert (listed.json(), listed.headers["X-Events-Withheld"]) == ([], "1")
        new_secret = fake_product.shared_secret
        assert installations(database) == before
        assert driver.webhook("jira:issue_updated", shared_secret=old_secret).status_code == 204
        assert_refused(driver.webhook("jira:issue_updated", shared_secret=new_secret), "INVALID_SIGNATURE")

        assert driver.install(baseUrl="https://moved-site.atlassian.net").status_code == 204
        assert installations(database) == [(fake_product.client_key, "https://moved-site.atlassian.net", 1, 1)]
        assert driver.webhook("jira:issue_updated").status_code == 204
        assert_refused(driver.webhook("jira:issue_updated", shared_secret=old_secret), "INVALID_SIGNATURE")
        assert len(stored_events(database)) == 3
    assert_logged_without_secrets(caplog, old_secret, new_secret)


def test_a_webhook_while_the_database_is_unavailable_gets_a_503_the_product_retries(
    fake_product: FakeProduct, settings: Settings, database: Database
) -> None:
    with running_app(settings, fake_product.key_provider()) as client:
        driver = fake_product.drive(client)
        assert driver.install().status_code == 204
        with database_locked(database, "IMMEDIATE"):
            assert_database_unavailable(driver.webhook("jira:issue_created"))
        assert stored_events(database) == []
        assert driver.webhook("jira:issue_created").status_code == 204
        assert stored_events(database) == [(fake_product.client_key, "jira:issue_created", "DEMO-1")]


# -- the app's own write failing after the delivery was remembered --------------------------------


@pytest.fixture
def deliveries_apart(settings: Settings, database: Database, request: pytest.FixtureRequest) -> Settings:
    """Delivery ids where the event tables' fault does not reach: PostgreSQL's own table, on SQLite Redis.

    SQLite locks the whole file, its delivery ids with it (that fault is the webhook test's above).
    """
    if database.server is not None:
        return settings
    return replace(settings, redis_url=request.getfixturevalue("redis_url"), redis_prefix=f"faults-{uuid.uuid4().hex}")


@contextmanager
def events_unwritable(database: Database) -> Iterator[None]:
    """Another connection holds the app's event tables (PostgreSQL) or the whole SQLite file; delivery ids stay writable."""
    if database.server is None:
        with database_locked(database, "IMMEDIATE"):
            yield
        return
    with database.server.holding("LOCK TABLE events, forge_events IN EXCLUSIVE MODE", database=database.name):
        yield


def test_a_webhook_whose_write_fails_after_it_was_remembered_is_forgotten_and_jiras_retry_stored(
    fake_product: FakeProduct, deliveries_apart: Settings, database: Database
) -> None:
    """Remembered, then the event's write failed (503): forgotten, so Jira's retry is stored, once."""
    with running_app(deliveries_apart, fake_product.key_provider()) as client:
        driver = fake_product.drive(client)
        assert driver.install().status_code == 204
        with events_unwritable(database):
            first = driver.webhook("jira:issue_created")
            assert_database_unavailable(first)
        assert stored_events(database) == []
        assert driver.retry_webhook(first).status_code == 204
        assert driver.retry_webhook(first).status_code == 204  # stored already: not again
        assert stored_events(database) == [(fake_product.client_key, "jira:issue_created", "DEMO-1")]


def test_a_forge_event_whose_write_fails_after_it_was_remembered_is_forgotten_and_forges_retry_stored(
    fake_product: FakeProduct, deliveries_apart: Settings, database: Database
) -> None:
    """Remembered, then the event's write failed (503): forgotten, so Forge's retry (a new FIT) is stored, once."""
    forge = FakeForge()
    settings = replace(deliveries_apart, forge_app_id=forge.app_id, product_api_timeout=0)
    app = create_app(
        settings,
        key_provider=fake_product.key_provider(),
        forge_key_provider=forge.key_provider(),
        forge_transport=forge.api_transport,
    )
    event = {"eventType": "avi:jira:created:issue", "issue": {"id": "10001", "key": "F-1"}, "timestamp": 1765000000000}
    with TestClient(app, base_url=APP_URL) as client:
        driver = forge.drive(client)
        with events_unwritable(database):
            first = driver.event("/forge/events", event)
            assert_database_unavailable(first)
        assert database.rows("SELECT count(*) FROM forge_events") == [(0,)]
        retried = driver.retry_event(first)
        assert retried.status_code == 204
        assert driver.retry_event(retried).status_code == 204  # stored already: not again
        assert database.rows("SELECT installation_id FROM forge_events") == [(forge.installation_id,)]
