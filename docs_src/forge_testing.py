"""Tests of `forge_remote.py` and `forge_lifecycle.py` with the test kit: the
`fake_forge` fixture comes from its pytest plugin."""

from __future__ import annotations

from typing import Any

import httpx2
from fastapi.testclient import TestClient

from docs_src import forge_lifecycle, forge_remote
from fastapi_connect_auth import InMemoryForgeTokenStore
from fastapi_connect_auth.testing import APIRequest, FakeForge


def test_an_event_from_the_browser_is_refused(fake_forge: FakeForge) -> None:
    @fake_forge.api.route("POST", "/rest/api/3/issue/{key}/comment")
    def comment(call: APIRequest) -> httpx2.Response:
        return httpx2.Response(201, json={"id": "10000", "issue": call.params["key"]})

    app = forge_remote.create_app(
        fake_forge.forge_auth(),
        InMemoryForgeTokenStore(),
        product_transport=fake_forge.api_transport,
    )
    event = {"eventType": "avi:jira:created:issue", "issue": {"key": "DEMO-1"}}
    with TestClient(app) as client:
        driver = fake_forge.drive(client)
        sent = driver.event(
            "/forge/issue-created", event, system_token=fake_forge.system_token()
        )
        assert sent.status_code == 204
        replayed = driver.request_remote(
            "/forge/issue-created", method="POST", json_body=event
        )
        assert replayed.json()["code"] == "WRONG_INVOCATION"
    # One comment, as the app: the replayed body never reached the product.
    calls = [(call.status, call.token_kind) for call in fake_forge.api_calls]
    assert calls == [(201, "system")]


def test_installed_waits_for_the_apps_permissions(fake_forge: FakeForge) -> None:
    installations: dict[str, dict[str, Any]] = {}
    app = forge_lifecycle.create_app(
        fake_forge.forge_auth(), installations, transport=fake_forge.api_transport
    )
    not_yet = fake_forge.system_token()
    fake_forge.revoke(not_yet)  # the product answers 401: permissions not there yet
    with TestClient(app) as client:
        driver = fake_forge.drive(client)
        path = "/forge/lifecycle"
        first = driver.lifecycle(path, "installed", system_token=not_yet)
        again = driver.lifecycle(path, "installed", retry_count=1)
    assert (first.status_code, again.status_code) == (503, 204)
    assert installations[fake_forge.installation_id] == {
        "state": "installed",
        "sites": [fake_forge.cloud_id],
        "app_user": "app-system-user",
    }
