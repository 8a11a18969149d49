"""The example app in container mode (`python -m example_app.container`): its pinned contract, in-process and served.

In-process the app reaches the kit's sidecar through a `MockTransport`; served, a
real uvicorn subprocess reaches the kit's sidecar on loopback, both configured
only through the environment, as Forge configures a container.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient

from example_app.container import create_container_app
from example_app.settings import Settings
from fastapi_connect_auth.testing import ContainerAppDriver, FakeSidecar
from tests.served import wait_until_healthy

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

WHOAMI_KEYS = {"installationId", "cloudId", "accountId", "environmentType", "moduleKey"}
EVENT = {"eventType": "avi:jira:created:issue", "issue": {"key": "DEMO-1"}, "atlassianId": "557058:x"}


@pytest.fixture
def client(fake_sidecar: FakeSidecar, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/container.db")
    with TestClient(create_container_app(settings, containers=fake_sidecar.containers())) as client:
        yield client


def code(response: httpx2.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


def check_contract(sidecar: FakeSidecar, client: httpx2.Client, stop_sidecar: Any) -> None:
    """The pinned contract, black-box: what other checks rely on."""
    drive = ContainerAppDriver(sidecar, client)
    health = client.get("/healthz", headers={})
    assert health.status_code == 200

    who = drive.ui("/container/whoami").json()
    assert set(who) == WHOAMI_KEYS
    assert (who["installationId"], who["cloudId"], who["accountId"]) == (
        sidecar.installation_id,
        sidecar.cloud_id,
        sidecar.account_id,
    )
    assert (who["environmentType"], who["moduleKey"]) == ("DEVELOPMENT", "issue-panel")
    assert drive.invoke("event", "/container/whoami").json()["accountId"] is None
    assert code(client.get("/container/whoami")) == (401, "MISSING_INVOCATION_ID")
    assert code(client.get("/container/whoami", headers={"x-forge-invocation-id": "unknown-id"})) == (
        401,
        "UNKNOWN_INVOCATION",
    )
    other = sidecar.context_document("ui")
    other["app"]["id"] = "ari:cloud:ecosystem::app/11111111-2222-4333-8444-555555555555"
    response = client.get("/container/whoami", headers={"x-forge-invocation-id": sidecar.invocation(context=other)})
    assert code(response) == (401, "CONTEXT_MISMATCH")

    invocation_id = sidecar.invocation("ui")
    me = client.get("/container/myself", headers={"x-forge-invocation-id": invocation_id})
    assert me.json() == {"accountId": sidecar.account_id, "tokenKind": "user"}
    assert sidecar.proxy_calls[-1].url == "/jira/rest/api/3/myself"
    assert sidecar.proxy_calls[-1].authorization == f"Forge as=user,id={invocation_id}"
    before = len(sidecar.proxy_calls)
    assert code(drive.ui("/container/myself", account_id=None)) == (403, "USER_REQUIRED")
    assert len(sidecar.proxy_calls) == before  # no outbound call

    assert drive.event("/container/events", EVENT).status_code == 204
    retry = {**EVENT, "retryContext": {"retryCount": 1, "retryReason": "TIMEOUT_ERROR", "retryData": None}}
    assert drive.event("/container/events", retry).status_code == 204
    assert drive.event("/container/events", EVENT).status_code == 204
    assert drive.event("/container/events", {**EVENT, "eventType": "avi:jira:updated:issue"}).status_code == 204
    listed = drive.ui("/container/events").json()
    assert [event["eventType"] for event in listed] == ["avi:jira:created:issue", "avi:jira:updated:issue"]

    every_id = [call_id for call_id in sidecar.contexts]
    assert not any(call_id in call.url for call in sidecar.calls for call_id in every_id)

    waiting = sidecar.invocation("ui")
    stop_sidecar()
    assert code(client.get("/container/whoami", headers={"x-forge-invocation-id": waiting})) == (
        503,
        "SIDECAR_UNAVAILABLE",
    )


def test_the_pinned_contract_in_process(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    def down() -> None:
        fake_sidecar.down = True

    check_contract(fake_sidecar, client, down)


def test_events_belong_to_the_installation_the_sidecar_names(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    drive = fake_sidecar.drive(client)
    assert drive.event("/container/events", EVENT).status_code == 204
    elsewhere = fake_sidecar.context_document("ui")
    elsewhere["app"]["installationId"] = "ari:cloud:ecosystem::installation/0f9e8d7c-6b5a-4321-8fed-cba987654321"
    other_id = fake_sidecar.invocation(context=elsewhere)

    assert drive.ui("/container/events", headers={"x-installation-id": "ignored"}).json()[0]["eventType"]
    assert drive.invoke("ui", "/container/events", invocation_id=other_id).json() == []


def test_events_refuse_web_triggers_and_malformed_bodies(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    drive = fake_sidecar.drive(client)

    assert code(drive.web_trigger("/container/events", json=EVENT)) == (401, "WRONG_INVOCATION")
    assert drive.event("/container/events", {"issue": {}}).status_code == 422
    assert drive.invoke("event", "/container/events", method="POST", json=[1]).status_code == 422
    assert drive.ui("/container/events").json() == []


def test_myself_when_jira_fails_is_a_503_with_a_code(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    drive = fake_sidecar.drive(client)
    fake_sidecar.forge.api.add_route("GET", "/rest/api/3/myself", lambda call: httpx2.Response(500))

    assert code(drive.ui("/container/myself")) == (503, "SIDECAR_UNAVAILABLE")
    invocation_id = fake_sidecar.invocation("ui")
    assert drive.invoke("ui", "/container/whoami", invocation_id=invocation_id).status_code == 200
    fake_sidecar.down = True  # the context is cached; the outbound call fails
    assert code(drive.invoke("ui", "/container/myself", invocation_id=invocation_id)) == (503, "SIDECAR_UNAVAILABLE")


def test_a_web_trigger_on_whoami_has_no_user(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    who = fake_sidecar.drive(client).web_trigger("/container/whoami", method="GET").json()

    assert (who["accountId"], who["moduleKey"]) == (None, "container-webtrigger")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_pinned_contract_served_by_uvicorn_against_the_sidecar_on_loopback(
    fake_sidecar: FakeSidecar, tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "server.log"
    with ExitStack() as sidecar:
        sidecar.enter_context(fake_sidecar.serve())
        env = {
            **os.environ,
            **fake_sidecar.environ(SERVER_PORT=str(port), HOST="127.0.0.1"),
            "DATABASE_URL": f"sqlite:///{tmp_path}/served.db",
        }
        env.pop("PYTHONPATH", None)
        root = Path(__file__).resolve().parents[1]
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "example_app.container"],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=tmp_path,
                env={**env, "PYTHONPATH": str(root)},
            )
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_healthy(f"{url}/healthz", process, log)
            with httpx2.Client(base_url=url, timeout=10) as client:
                check_contract(fake_sidecar, client, sidecar.close)
        finally:
            process.terminate()  # SIGTERM, as Forge stops a container: uvicorn drains, then exits
            assert process.wait(15) in (0, -15), log.read_text()
    assert "Application shutdown complete" in log.read_text()
    assert "Traceback" not in log.read_text()


def test_the_container_refuses_to_start_without_its_environment(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FORGE_", "SERVER_PORT"))}
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-m", "example_app.container"],
        capture_output=True,
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(root)},
        timeout=60,
        check=False,
    )

    assert result.returncode != 0
    assert b"FORGE_EGRESS_PROXY_URL is not set; FORGE_APP_ARI is not set; FORGE_ENV_ARI is not set" in result.stderr


def test_the_documented_dockerfile_meets_forges_image_rules() -> None:
    """linux/amd64, UID/GID 1000, nothing written at run time, the app's own port from SERVER_PORT."""
    dockerfile = (Path(__file__).resolve().parents[1] / "docs_src" / "containers.Dockerfile").read_text()
    instructions = [line for line in dockerfile.splitlines() if line and not line.startswith("#")]

    assert instructions[0].startswith("FROM --platform=linux/amd64 ")
    assert "USER 1000:1000" in instructions
    assert instructions.index("USER 1000:1000") > max(
        i for i, line in enumerate(instructions) if line.startswith("RUN")
    )
    assert "PYTHONDONTWRITEBYTECODE=1" in dockerfile  # no .pyc written on a read-only root file system
    assert not any(line.startswith(("EXPOSE", "VOLUME")) for line in instructions)  # SERVER_PORT decides
    assert instructions[-1] == 'CMD ["python", "-m", "app.container"]'
