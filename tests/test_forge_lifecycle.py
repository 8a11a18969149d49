"""Forge lifecycle events: `ForgeLifecycle("installed" | "upgraded" | "pre-uninstall" | "any")` on a small app.

Payloads are built here from Atlassian's documented shapes (events-reference/life-cycle,
the preUninstall module); FITs with PyJWT through the kit. Every refusal is checked
for its code and status, and for nothing having been recorded.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Annotated, Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from fastapi_connect_auth import (
    ForgeInstalledPayload,
    ForgeLifecycle,
    ForgePreUninstallPayload,
    ForgeUpgradedPayload,
    VerifiedForgeLifecycle,
)
from fastapi_connect_auth.testing import FakeForge, generate_rsa_key

NOW = 1_700_000_000.0
INSTALLATION_UUID = "0a3a7799-53ae-4a5b-9e7e-03338980abb5"
INSTALLATION_ARI = f"ari:cloud:ecosystem::installation/{INSTALLATION_UUID}"
CONTEXT_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJjb250ZXh0Ijp7fX0.c2VjcmV0LWNvbnRleHQtdG9rZW4tc2lnbmF0dXJl"

INSTALLED = ForgeLifecycle("installed")
UPGRADED = ForgeLifecycle("upgraded")
PRE_UNINSTALL = ForgeLifecycle("pre-uninstall", module_keys={"lifecycle-endpoint"})
ANY = ForgeLifecycle("any", module_keys={"lifecycle-endpoint"})


@pytest.fixture
def forge(signing_key: rsa.RSAPrivateKey) -> FakeForge:
    return FakeForge(private_key=signing_key, installation_id=INSTALLATION_ARI, clock=lambda: NOW)


def make_app(forge: FakeForge) -> tuple[FastAPI, list[VerifiedForgeLifecycle]]:
    config = forge.forge_auth(clock=lambda: NOW)
    app = FastAPI()
    config.install(app)
    recorded: list[VerifiedForgeLifecycle] = []

    @app.post("/forge/lifecycle/installed", status_code=204)
    async def installed(event: Annotated[VerifiedForgeLifecycle, Depends(INSTALLED)]) -> None:
        recorded.append(event)

    @app.post("/forge/lifecycle/upgraded", status_code=204)
    async def upgraded(event: Annotated[VerifiedForgeLifecycle, Depends(UPGRADED)]) -> None:
        recorded.append(event)

    @app.post("/forge/lifecycle/pre-uninstall", status_code=204)
    async def pre_uninstall(event: Annotated[VerifiedForgeLifecycle, Depends(PRE_UNINSTALL)]) -> None:
        recorded.append(event)

    @app.post("/forge/lifecycle/any", status_code=204)
    async def any_event(event: Annotated[VerifiedForgeLifecycle, Depends(ANY)]) -> None:
        recorded.append(event)

    return app, recorded


def installed_payload(**overrides: Any) -> dict[str, Any]:
    payload = {
        "id": INSTALLATION_UUID,
        "installerAccountId": "4ad9aa0c52dc1b420a791d12",
        "app": {"id": "406d303d-0393-4ec4-ad7c-1435be94583a", "version": "9.0.0", "name": "My App"},
        "environment": {"id": "23863033-1de4-4ebf-b30d-c906264a1e92"},
        **overrides,
    }
    return {name: value for name, value in payload.items() if value is not None}


def pre_uninstall_payload(forge: FakeForge, **context: Any) -> dict[str, Any]:
    return {"context": {"cloudId": forge.cloud_id, "moduleKey": "cleanup", **context}, "contextToken": CONTEXT_TOKEN}


def lifecycle_fit(forge: FakeForge, **overrides: Any) -> str:
    return forge.mint_fit("event", app={"module": {"type": "core:endpoint", "key": "lifecycle-endpoint"}}, **overrides)


def send(client: TestClient, forge: FakeForge, path: str, body: Any, fit: str | None = None) -> httpx2.Response:
    headers = forge.drive(client).headers(fit or lifecycle_fit(forge), system_token=forge.system_token())
    return client.post(f"/forge/lifecycle/{path}", content=json.dumps(body), headers=headers)


# -- accepted -------------------------------------------------------------------------------


@pytest.mark.parametrize("named", [INSTALLATION_UUID, INSTALLATION_ARI, INSTALLATION_UUID.upper()])
def test_installed_names_the_installation_by_uuid_or_ari(forge: FakeForge, named: str) -> None:
    app, recorded = make_app(forge)
    with TestClient(app) as client:
        response = send(client, forge, "installed", installed_payload(id=named))
    assert response.status_code == 204, response.text
    (event,) = recorded
    assert event.event == "installed"
    assert event.installation_id == INSTALLATION_ARI
    assert isinstance(event.payload, ForgeInstalledPayload)
    assert event.payload.installer_account_id == "4ad9aa0c52dc1b420a791d12"
    assert event.payload.app.version == "9.0.0"
    assert event.retry_context is None
    assert event.invocation.system_token is not None
    assert not event.invocation.browser_visible


def test_upgraded_and_a_redelivery_with_its_retry_context(forge: FakeForge) -> None:
    body = installed_payload(
        installerAccountId=None,
        upgraderAccountId="4ad9aa0c52dc1b420a791d12",
        permissions={"scopes": ["read:jira-work"]},
        eventType="avi:forge:upgraded:app",
        retryContext={"retryCount": 2, "retryReason": "INVALID_REMOTE_INVOCATION_ERROR", "retryData": None},
    )
    app, recorded = make_app(forge)
    with TestClient(app) as client:
        assert send(client, forge, "upgraded", body).status_code == 204
    (event,) = recorded
    assert isinstance(event.payload, ForgeUpgradedPayload)
    assert event.payload.upgrader_account_id == "4ad9aa0c52dc1b420a791d12"
    assert event.payload.permissions == {"scopes": ["read:jira-work"]}
    assert event.retry_context is not None
    assert (event.retry_context.retry_count, event.retry_context.retry_reason) == (2, "INVALID_REMOTE_INVOCATION_ERROR")


def test_pre_uninstall_keeps_its_context_token_secret(forge: FakeForge, caplog: pytest.LogCaptureFixture) -> None:
    app, recorded = make_app(forge)
    with TestClient(app) as client, caplog.at_level(logging.DEBUG):
        assert send(client, forge, "pre-uninstall", pre_uninstall_payload(forge)).status_code == 204
        refused = send(client, forge, "pre-uninstall", pre_uninstall_payload(forge, cloudId=str(uuid.uuid4())))
    (event,) = recorded
    assert isinstance(event.payload, ForgePreUninstallPayload)
    assert event.payload.context.cloud_id == forge.cloud_id
    assert event.payload.context_token.get_secret_value() == CONTEXT_TOKEN
    assert CONTEXT_TOKEN not in repr(event) + repr(event.payload) + event.payload.model_dump_json()
    assert (refused.status_code, refused.json()["code"]) == (401, "INSTALLATION_MISMATCH")
    assert CONTEXT_TOKEN not in caplog.text + refused.text


# -- one route for every event (a manifest endpoint has one route) ------------------------


@pytest.mark.parametrize(
    ("body", "event", "model"),
    [
        (installed_payload(eventType="avi:forge:installed:app"), "installed", ForgeInstalledPayload),
        (
            installed_payload(eventType="avi:forge:upgraded:app", upgraderAccountId="4ad9aa0c52dc1b420a791d12"),
            "upgraded",
            ForgeUpgradedPayload,
        ),
        (None, "pre-uninstall", ForgePreUninstallPayload),  # no eventType: a contextToken and a context
    ],
)
def test_one_route_tells_each_event_by_what_forge_sends(
    forge: FakeForge, body: dict[str, Any] | None, event: str, model: type[Any]
) -> None:
    app, recorded = make_app(forge)
    with TestClient(app) as client:
        response = send(client, forge, "any", body or pre_uninstall_payload(forge))
    assert response.status_code == 204, response.text
    (verified,) = recorded
    assert (verified.event, type(verified.payload)) == (event, model)
    assert verified.installation_id == INSTALLATION_ARI


@pytest.mark.parametrize(
    "body",
    [
        installed_payload(),  # no eventType: installed or upgraded? never guessed
        installed_payload(eventType="avi:jira:created:issue"),  # a product event's
        installed_payload(eventType="avi:forge:uninstalled:app"),
        installed_payload(eventType=["avi:forge:installed:app"]),
        installed_payload(eventType="avi:forge:installed:app", event_type="avi:forge:upgraded:app"),
        installed_payload(eventType="avi:forge:installed:app", contextToken=CONTEXT_TOKEN),  # both shapes
        {"contextToken": CONTEXT_TOKEN},  # a preUninstall's token without its context
        {"context": {"cloudId": "x", "moduleKey": "cleanup"}},
        [installed_payload(eventType="avi:forge:installed:app")],
        "avi:forge:installed:app",
    ],
)
def test_one_route_refuses_a_body_that_is_plainly_no_event(forge: FakeForge, body: Any) -> None:
    app, recorded = make_app(forge)
    with TestClient(app) as client:
        response = send(client, forge, "any", body)
    assert response.status_code == 422, response.text
    assert [error["type"] for error in response.json()["detail"]] == ["unknown_forge_lifecycle_event"]
    assert CONTEXT_TOKEN not in response.text
    assert recorded == []


@pytest.mark.parametrize(
    ("body", "fit", "code"),
    [
        (installed_payload(eventType="avi:forge:installed:app", id=str(uuid.uuid4())), None, "INSTALLATION_MISMATCH"),
        (installed_payload(eventType="avi:forge:installed:app"), "product event", "WRONG_INVOCATION"),
        (installed_payload(eventType="avi:forge:installed:app"), "ui", "WRONG_INVOCATION"),
    ],
)
def test_one_route_checks_the_fit_as_each_events_route_does(
    forge: FakeForge, body: dict[str, Any], fit: str | None, code: str
) -> None:
    fits = {None: lambda: None, "product event": lambda: forge.mint_fit("event"), "ui": lambda: forge.mint_fit("ui")}
    app, recorded = make_app(forge)
    with TestClient(app) as client:
        response = send(client, forge, "any", body, fits[fit]())
    assert (response.status_code, response.json()["code"]) == (401, code)
    assert recorded == []


# -- refused, nothing recorded --------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "fit", "status", "code"),
    [
        ("installed", {"id": str(uuid.uuid4())}, None, 401, "INSTALLATION_MISMATCH"),
        ("installed", {"id": f"ari:cloud:ecosystem::installation/{uuid.uuid4()}"}, None, 401, "INSTALLATION_MISMATCH"),
        ("installed", {"id": "not-a-uuid"}, None, 401, "INSTALLATION_MISMATCH"),
        ("installed", {"id": INSTALLATION_UUID[:-1]}, None, 401, "INSTALLATION_MISMATCH"),
        ("upgraded", {"id": str(uuid.uuid4())}, None, 401, "INSTALLATION_MISMATCH"),
        ("installed", {}, "ui", 401, "WRONG_INVOCATION"),
        ("upgraded", {}, "ui", 401, "WRONG_INVOCATION"),
        ("pre-uninstall", {}, "ui", 401, "WRONG_INVOCATION"),
        ("pre-uninstall", {}, "other module", 401, "WRONG_INVOCATION"),
        ("installed", {}, "unsigned", 401, "MISSING_JWT"),
        ("installed", {}, "forged", 401, "INVALID_SIGNATURE"),
        ("installed", {"eventType": "avi:forge:upgraded:app"}, None, 422, None),
        ("upgraded", {"eventType": "avi:forge:installed:app"}, None, 422, None),
        ("installed", {"id": None}, None, 422, None),
        ("installed", {"app": None}, None, 422, None),
        ("installed", {"id": 42}, None, 422, None),
        ("installed", {"retryContext": {"retryCount": -1}}, None, 422, None),
        ("installed", {"retryContext": {"retryCount": float("nan")}}, None, 422, None),
    ],
)
def test_refused_with_the_right_code(
    forge: FakeForge, path: str, body: dict[str, Any], fit: str | None, status: int, code: str | None
) -> None:
    fits = {
        None: lambda: None,
        "ui": lambda: forge.mint_fit("ui"),
        "other module": lambda: forge.mint_fit("event"),
        "forged": lambda: lifecycle_fit(forge, key=generate_rsa_key()),
    }
    payload = pre_uninstall_payload(forge) if path == "pre-uninstall" else installed_payload(**body)
    app, recorded = make_app(forge)
    with TestClient(app) as client:
        if fit == "unsigned":
            response = client.post(f"/forge/lifecycle/{path}", content=json.dumps(payload))
        else:
            response = send(client, forge, path, payload, fits[fit]())
    assert response.status_code == status, response.text
    if code is not None:
        assert response.json()["code"] == code
        assert response.headers["WWW-Authenticate"] == "Bearer"
    assert recorded == []


def test_a_strict_json_body_on_a_lifecycle_route(forge: FakeForge) -> None:
    app, recorded = make_app(forge)
    with TestClient(app) as client:
        headers = forge.drive(client).headers(lifecycle_fit(forge))
        nan = client.post("/forge/lifecycle/installed", content=b'{"id": NaN}', headers=headers)
        deep = client.post(
            "/forge/lifecycle/installed", content=b'{"app": ' + b"[" * 70 + b"]" * 70 + b"}", headers=headers
        )
        large = client.post("/forge/lifecycle/installed", content=b" " * (64 * 1024 + 1), headers=headers)
    assert (nan.status_code, deep.status_code, large.status_code) == (422, 422, 413)
    assert recorded == []


def test_an_unknown_event_is_refused_when_the_route_is_declared() -> None:
    with pytest.raises(ValueError, match="pre-uninstall"):
        ForgeLifecycle("uninstalled")  # type: ignore[arg-type]


def test_openapi_documents_each_payload(forge: FakeForge) -> None:
    app, _ = make_app(forge)
    paths = app.openapi()["paths"]
    schemas = {
        path.rsplit("/", 1)[1]: paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        for path in paths
    }
    models = {
        "installed": "#/components/schemas/ForgeInstalledPayload",
        "upgraded": "#/components/schemas/ForgeUpgradedPayload",
        "pre-uninstall": "#/components/schemas/ForgePreUninstallPayload",
    }
    assert {path: schemas[path]["$ref"] for path in models} == models
    assert [member["$ref"] for member in schemas["any"]["oneOf"]] == list(models.values())
