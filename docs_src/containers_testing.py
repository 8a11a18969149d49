"""Tests of `containers_app.py` with the test kit: `fake_sidecar` plays Forge's sidecar."""

from __future__ import annotations

import secrets

from fastapi.testclient import TestClient

from docs_src import containers_app
from fastapi_connect_auth.testing import FakeSidecar


def test_the_panel_acts_as_the_user(fake_sidecar: FakeSidecar) -> None:
    app = containers_app.create_app(
        fake_sidecar.containers(), hook_secret=secrets.token_urlsafe()
    )
    with TestClient(app) as client:
        drive = fake_sidecar.drive(client)
        assert drive.ui("/issue-panel").json() == {
            "site": fake_sidecar.cloud_id,
            "me": fake_sidecar.account_id,
        }
        assert drive.ui("/issue-panel", account_id=None).status_code == 403
    (call,) = fake_sidecar.proxy_calls
    assert (call.url, call.acting_as) == ("/jira/rest/api/3/myself", "user")


def test_an_event_is_kept_once(fake_sidecar: FakeSidecar) -> None:
    app = containers_app.create_app(
        fake_sidecar.containers(), hook_secret=secrets.token_urlsafe()
    )
    event = {"eventType": "avi:jira:created:issue", "issue": {"key": "DEMO-1"}}
    retry = {**event, "retryContext": {"retryCount": 1}}
    with TestClient(app) as client:
        drive = fake_sidecar.drive(client)
        assert drive.event("/events", event).status_code == 204
        assert drive.event("/events", retry).status_code == 204
        assert drive.ui("/events", method="POST", json=event).status_code == 401
    assert app.state.seen == ["DEMO-1"]


def test_a_web_trigger_needs_its_own_secret(fake_sidecar: FakeSidecar) -> None:
    secret = secrets.token_urlsafe()
    app = containers_app.create_app(fake_sidecar.containers(), hook_secret=secret)
    with TestClient(app) as client:
        drive = fake_sidecar.drive(client)
        assert drive.web_trigger("/hook").status_code == 401
        ok = drive.web_trigger("/hook", headers={"x-hook-secret": secret})
        assert ok.json() == {"installation": fake_sidecar.installation_id}
