"""`make demo`: a simulated Jira installs the example app and calls it; the library verifies every step.

The app runs in its own process (uvicorn, a fresh SQLite database in a temporary
folder, or DATABASE_URL when set: `make demo DATABASE_URL=postgresql://…`), fetching install keys from the test kit's loopback key server. The
simulated Jira's REST API runs on loopback too (allow-listed for the app with
CONNECT_EXTRA_PRODUCT_HOSTS), and answers the app only with a valid app JWT.
Exits non-zero if any step misbehaves, and always stops the app.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.engine import make_url

from example_app.db import create_engine
from fastapi_connect_auth import ForgeAuth, forge_product_client
from fastapi_connect_auth.testing import (
    DEFAULT_ACCOUNT_ID,
    ConnectAppDriver,
    FakeForge,
    FakeProduct,
    ForgeAppDriver,
    generate_rsa_key,
)

READY_TIMEOUT = 30.0
LIVE_SUMMARY = "Live summary from Jira's REST API"
OTHER_USER = "account-of-another-user"  # a user of the same tenant, whom Jira does not show DEMO-1 to


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextmanager
def run_app(
    folder: Path,
    keys_url: str,
    *,
    env: Mapping[str, str] | None = None,
    server_options: Sequence[str] = (),
    source: Path | None = None,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the example app with uvicorn on a free loopback port; yield its URL and process once it answers; stop it.

    `env` adds to (or overrides) the app's settings, `server_options` to uvicorn's command line;
    `source` runs the app and library of another checkout (a benchmark's baseline) instead of this one.
    """
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    app_env = {
        **os.environ,
        "CONNECT_BASE_URL": base_url,
        "CONNECT_KEYS_URL": keys_url,
        "CONNECT_EXTRA_PRODUCT_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{folder / 'demo.db'}",
        "SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
        **(env or {}),
    }
    command = [sys.executable, "-m", "uvicorn", "example_app.main:app", "--host", "127.0.0.1", "--port", str(port)]
    log_path = folder / "app.log"
    with log_path.open("wb") as log:
        if source is not None:
            app_env["PYTHONPATH"] = str(source)
        process = subprocess.Popen(  # noqa: S603
            [*command, *server_options], env=app_env, stdout=log, stderr=subprocess.STDOUT, cwd=source
        )
    try:
        wait_until_ready(process, base_url)
        yield base_url, process
    except BaseException:
        print(f"\nThe app's log:\n{log_path.read_text(errors='replace')[-4000:]}", file=sys.stderr)
        raise
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until_ready(process: subprocess.Popen[bytes], base_url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"The app exited with code {process.returncode} before it was ready.")
        try:
            httpx2.get(f"{base_url}/atlassian-connect.json", timeout=1.0)
            return
        except httpx2.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"The app did not answer within {READY_TIMEOUT:.0f} seconds.")


class Steps:
    """Runs and prints each step with its verified outcome; remembers whether any misbehaved."""

    def __init__(self) -> None:
        self.passed = self.failed = 0

    def expect(
        self,
        title: str,
        response: httpx2.Response,
        status: int,
        code: str | None = None,
        check: Callable[[httpx2.Response], bool] = lambda response: True,
    ) -> None:
        """The step went as expected if the app answered `status`, the error `code` (when refused) and `check`."""
        outcome = f"{status}" + (f" {code}" if code else "")
        try:
            answered_code = response.json().get("code") if response.status_code >= 400 else None
            as_expected = response.status_code == status and answered_code == code and check(response)
        except (ValueError, KeyError, TypeError, AttributeError):
            as_expected = False
        if as_expected:
            self.passed += 1
            print(f"  ✓ {title} ({outcome})")
        else:
            self.failed += 1
            print(f"  ✗ {title}: expected {outcome}, got {response.status_code} {response.text[:200]}")


def _event_names(response: httpx2.Response) -> list[str]:
    return [event["event"] for event in response.json()]


def _summaries_are(summary: str, source: str) -> Callable[[httpx2.Response], bool]:
    return lambda response: all(
        (event["current_summary"], event["summary_source"]) == (summary, source) for event in response.json()
    )


def _jira_answered_the_user(product: FakeProduct, account_id: str, status: int) -> bool:
    """The fake Jira's last REST call carried a user token it issued for `account_id`, and got `status`."""
    return bool(product.api_calls) and (product.api_calls[-1].account_id, product.api_calls[-1].status) == (
        account_id,
        status,
    )


def _withheld(count: int) -> Callable[[httpx2.Response], bool]:
    return lambda response: response.json() == [] and response.headers.get("X-Events-Withheld") == str(count)


def run_lifecycle(jira: ConnectAppDriver, steps: Steps) -> None:
    product = jira.product
    if not isinstance(product, FakeProduct):  # its fake REST API answers the app's calls to Jira
        raise TypeError("the demo drives a FakeProduct")
    descriptor = jira.descriptor
    print(f"Jira read the descriptor of {descriptor['key']!r} at {jira.app_base_url}\n")

    print("Install")
    steps.expect("Signed install (RS256, kid, aud, QSH) accepted", jira.install(), 204)
    forged = product.signed_token("POST", "/installed", app_base_url=jira.app_base_url, private_key=generate_rsa_key())
    steps.expect("Install signed with another key refused", jira.install(token=forged), 401, "INVALID_SIGNATURE")
    steps.expect(
        "Install whose clientKey is not the token's iss refused",
        jira.install(clientKey="someone-else"),
        401,
        "WRONG_ISSUER",
    )
    steps.expect(
        "Install body that is not JSON refused", jira.install(content=b"not json"), 400, "INVALID_INSTALL_PAYLOAD"
    )

    print("Webhooks")
    steps.expect("jira:issue_created accepted and stored", jira.webhook("jira:issue_created"), 204)
    steps.expect("jira:issue_updated accepted and stored", jira.webhook("jira:issue_updated"), 204)
    steps.expect(
        "Webhook signed with a wrong secret refused",
        jira.webhook("jira:issue_created", shared_secret=product.new_shared_secret()),
        401,
        "INVALID_SIGNATURE",
    )

    print("Page and iframe")
    steps.expect(
        "Inbox page loads with Jira's query parameters (computed QSH)",
        jira.load_page("inbox"),
        200,
        check=lambda response: "AP.context.getToken()" in response.text,
    )
    steps.expect(
        "Context call GET /api/events lists both events, newest first",
        jira.context_call("GET", "/api/events"),
        200,
        check=lambda response: _event_names(response) == ["jira:issue_updated", "jira:issue_created"],
    )
    steps.expect(
        "Inbox shows the live issue summary fetched from Jira's REST API as the user (user token from the JWT bearer grant)",
        jira.context_call("GET", "/api/events"),
        200,
        check=lambda response: (
            _summaries_are(LIVE_SUMMARY, "live")(response) and _jira_answered_the_user(product, DEFAULT_ACCOUNT_ID, 200)
        ),
    )
    product.api.restrict("DEMO-1", DEFAULT_ACCOUNT_ID)
    steps.expect(
        "User A, allowed to see the restricted issue, sees it in the inbox",
        jira.context_call("GET", "/api/events"),
        200,
        check=lambda response: (
            _summaries_are(LIVE_SUMMARY, "live")(response) and _jira_answered_the_user(product, DEFAULT_ACCOUNT_ID, 200)
        ),
    )
    steps.expect(
        "User B, whom Jira hides the issue from (404 as that user), does not see it (nor the webhook's copy)",
        jira.context_call("GET", "/api/events", account_id=OTHER_USER),
        200,
        check=lambda response: _withheld(2)(response) and _jira_answered_the_user(product, OTHER_USER, 404),
    )
    live_summary = product.issues.pop("DEMO-1")
    steps.expect(
        "Jira's REST API cannot find the issue (404): its events are left out, never shown from the webhook",
        jira.context_call("GET", "/api/events"),
        200,
        check=lambda response: _withheld(2)(response) and _jira_answered_the_user(product, DEFAULT_ACCOUNT_ID, 404),
    )
    product.issues["DEMO-1"] = live_summary
    steps.expect(
        "Context call with an anonymous context token (no user) refused",
        jira.request("GET", "/api/events", token=product.shared_secret_token("GET", "/api/events", qsh="context-qsh")),
        403,
        "UNAUTHORIZED_REQUEST",
    )
    steps.expect(
        "Page URL with a context token refused",
        jira.request("GET", "/inbox", token=product.context_token()),
        401,
        "INVALID_QSH",
    )

    print("Update")
    old_secret = product.shared_secret
    steps.expect("Re-install with a new shared secret accepted", jira.update(), 204)
    steps.expect(
        "Webhook signed with the old secret refused",
        jira.webhook("jira:issue_created", shared_secret=old_secret),
        401,
        "INVALID_SIGNATURE",
    )
    steps.expect("Webhook signed with the new secret accepted", jira.webhook("jira:issue_created"), 204)

    print("Uninstall")
    steps.expect("Signed uninstall accepted", jira.uninstall(), 204)
    steps.expect(
        "Webhook from the uninstalled tenant refused", jira.webhook("jira:issue_created"), 401, "UNKNOWN_ISSUER"
    )
    steps.expect(
        "Context call from the uninstalled tenant refused",
        jira.context_call("GET", "/api/events"),
        401,
        "UNKNOWN_ISSUER",
    )

    print("Re-install")
    steps.expect("Signed install accepted again", jira.install(), 204)
    steps.expect(
        "The tenant's 3 events are still there",
        jira.context_call("GET", "/api/events"),
        200,
        check=lambda response: len(response.json()) == 3,
    )


def database_problem(url: str) -> str | None:
    """`None` if the database at `url` answers a query within 10 seconds, else one line saying why not."""

    async def probe() -> None:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        finally:
            await engine.dispose()

    try:
        asyncio.run(asyncio.wait_for(probe(), timeout=10))
    except Exception as exc:  # whatever the driver raises, the demo says it in one line
        where = make_url(url).render_as_string(hide_password=True)
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        return f"make demo: cannot reach DATABASE_URL {where}: {type(exc).__name__}: {reason}"
    return None


async def _call_product_as_the_app(forge: FakeForge) -> httpx2.Response:
    """Verify a FIT as the app does, then call the fake product with the system token it came with."""
    config = ForgeAuth(app_id=forge.app_id, key_provider=forge.key_provider())
    invocation = await config.verify_invocation(forge.mint_fit("ui"), system_token=forge.system_token())
    async with forge_product_client(invocation, transport=forge.api_transport) as product:
        return await product.get("/rest/api/3/myself")


def _forge_events_stored(database_url: str, installation_id: str) -> int:
    """How many Forge events the app stored for the installation, read back from its database."""

    async def count() -> int:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                query = text("SELECT count(*) FROM forge_events WHERE installation_id = :id")
                return int((await connection.execute(query, {"id": installation_id})).scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())


def run_forge(forge: FakeForge, jira: ConnectAppDriver, client: httpx2.Client, steps: Steps, database_url: str) -> None:
    """Connect on Forge: the Connect tenant installed with its Forge installation id, then Forge's own calls."""
    product, driver = jira.product, forge.drive(client)
    print("\nConnect on Forge")
    steps.expect(
        "Connect-on-Forge install (installationId in the installed payload) accepted",
        jira.install(installationId=forge.installation_id),
        204,
    )
    fit = forge.mint_fit("event")
    first = driver.event("/forge/events", {"issue": {"key": "DEMO-1"}}, fit=fit)
    steps.expect("Forge product event (FIT: RS256, kid, iss, aud, app) accepted and stored", first, 204)
    steps.expect(
        "Forge's retry (a new FIT, retryContext added) accepted, stored once (the same event)",
        driver.retry_event(first),
        204,
        check=lambda response: _forge_events_stored(database_url, forge.installation_id) == 1,
    )
    steps.expect(
        "The same FIT with another body refused (the FIT signs no body)",
        driver.event("/forge/events", {"issue": {"key": "DEMO-2"}}, fit=fit),
        409,
        "DELIVERY_CONFLICT",
    )
    steps.expect(
        "A UI call's FIT on the event route refused (it may come from a browser)",
        driver.event("/forge/events", {"issue": {"key": "DEMO-1"}}, fit=forge.mint_fit("ui")),
        401,
        "WRONG_INVOCATION",
    )
    steps.expect(
        "Forge UI call GET /forge/whoami linked to the Connect tenant",
        driver.ui_call("/forge/whoami"),
        200,
        check=lambda response: response.json()["connectClientKey"] == product.client_key,
    )
    run_forge_lifecycle(forge, driver, client, steps)
    steps.expect(
        "The system token calls the fake product API (Bearer, pinned to app.apiBaseUrl)",
        asyncio.run(_call_product_as_the_app(forge)),
        200,
        check=lambda response: response.json()["tokenKind"] == "system",
    )
    steps.expect(
        "FIT signed with another key refused",
        driver.event("/forge/events", {}, fit=forge.mint_fit("event", key=generate_rsa_key())),
        401,
        "INVALID_SIGNATURE",
    )
    other_app = "ari:cloud:ecosystem::app/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
    steps.expect(
        "Another Forge app's FIT refused (the audience is configured, never read from the token)",
        driver.event("/forge/events", {}, fit=forge.mint_fit("event", aud=other_app, app={"id": other_app})),
        401,
        "WRONG_AUDIENCE",
    )


def run_forge_lifecycle(forge: FakeForge, driver: ForgeAppDriver, client: httpx2.Client, steps: Steps) -> None:
    """Forge's own lifecycle events (a trigger and the preUninstall module, both with `endpoint: forge-lifecycle`)."""
    print("\nForge lifecycle")
    installation = forge.installation_id.rsplit("/", 1)[1]  # the payload names it as a bare UUID

    def lifecycle(payload: dict[str, Any], fit: str | None = None) -> httpx2.Response:
        """POST to the manifest's one lifecycle endpoint, which tells the events apart by their payloads."""
        fit = fit or forge.mint_fit("lifecycle", module_key="forge-lifecycle")
        return client.post("/forge/lifecycle", json=payload, headers=driver.headers(fit))

    app = {"id": forge.app_id, "version": "2.4.0"}
    installed = {"eventType": "avi:forge:installed:app", "id": installation, "app": app}
    steps.expect("Forge installed event recorded", lifecycle(installed), 204)
    steps.expect(
        "GET /forge/whoami says the installation is installed",
        driver.ui_call("/forge/whoami"),
        200,
        check=lambda response: response.json()["installationState"] == "installed",
    )
    other = {"eventType": "avi:forge:upgraded:app", "id": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9", "app": app}
    steps.expect(
        "Upgraded event naming another installation refused, nothing recorded",
        lifecycle(other),
        401,
        "INSTALLATION_MISMATCH",
    )
    steps.expect(
        "Lifecycle event with a UI call's FIT refused",
        lifecycle(installed, fit=forge.mint_fit("ui")),
        401,
        "WRONG_INVOCATION",
    )
    steps.expect(
        "Lifecycle event with a product event's FIT refused",
        lifecycle(installed, fit=forge.mint_fit("event", module_key="forge-events")),
        401,
        "WRONG_INVOCATION",
    )
    leaving = {"context": {"cloudId": forge.cloud_id, "moduleKey": "pre-uninstall"}, "contextToken": "opaque"}
    steps.expect("preUninstall recorded", lifecycle(leaving), 204)
    steps.expect(
        "GET /forge/whoami says the installation is uninstalled",
        driver.ui_call("/forge/whoami"),
        200,
        check=lambda response: response.json()["installationState"] == "uninstalled",
    )
    steps.expect("A late installed event after the preUninstall answered 2xx, ignored", lifecycle(installed), 204)
    steps.expect(
        "GET /forge/whoami says the installation is still uninstalled",
        driver.ui_call("/forge/whoami"),
        200,
        check=lambda response: response.json()["installationState"] == "uninstalled",
    )


def main() -> int:
    database_url = os.environ.get("DATABASE_URL")
    if database_url:
        problem = database_problem(database_url)
        if problem:
            print(problem, file=sys.stderr)
            return 2
        print(f"Database: {make_url(database_url).render_as_string(hide_password=True)}")
    product = FakeProduct()
    product.issues["DEMO-1"] = LIVE_SUMMARY
    forge = FakeForge()
    steps = Steps()
    with (
        tempfile.TemporaryDirectory(prefix="connect-demo-") as folder,
        product.serve_api() as jira_url,
        product.serve_keys() as key_server,
        forge.serve_jwks() as jwks,
        run_app(
            Path(folder),
            key_server.url,
            env={
                "FORGE_APP_ID": forge.app_id,
                "FORGE_JWKS_URL": jwks.url,
                "CONNECT_AUTHORIZATION_SERVER": product.api.authorization_server,
                **({"DATABASE_URL": database_url} if database_url else {}),
            },
        ) as (
            app_url,
            _,
        ),
        httpx2.Client(base_url=app_url, timeout=10.0) as client,
    ):
        print(f"Simulated Jira (REST API) at {jira_url} (client key {product.client_key})")
        print(f"Install keys served at {key_server.url}; example app running at {app_url}")
        print(f"Simulated Forge: app {forge.app_id}, JWKS at {jwks.url}")
        run_lifecycle(product.drive(client), steps)
        run_forge(forge, product.drive(client), client, steps, database_url or f"sqlite:///{Path(folder) / 'demo.db'}")
        print(
            f"\nThe app fetched Forge's JWKS {jwks.requests} time(s) for every FIT, then served its keys from its cache."
        )
        fetched = len(key_server.requests)
        print(
            f"\nThe app fetched the install key {fetched} time(s) from the key server, then served it from its cache."
        )
        verified = sum(call.claims is not None for call in product.api_calls)
        print(f"The fake Jira verified the app's token on {verified} of {len(product.api_calls)} call(s).")
    print("Stopped the example app, the key server and the fake Jira.")
    if steps.failed:
        print(f"\n✗ {steps.failed} of {steps.passed + steps.failed} steps misbehaved.")
        return 1
    print(f"\n✓ All {steps.passed} steps verified.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
