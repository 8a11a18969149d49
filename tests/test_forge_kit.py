"""The Forge test kit: `fake_forge`, its FIT shapes, its driver (lifecycle included) and its product API.

Each shape is checked against what Forge's docs say it sends (module types, who has a
`principal` and a `context`), and against the library's own verifier; the product API
is driven with real clients, in-process and on loopback.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx2
import jwt
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient

from fastapi_connect_auth import (
    ForgeInvocation,
    ForgeLifecycle,
    ForgeRequest,
    OfflineUserTokens,
    VerifiedForgeLifecycle,
    forge_product_client,
)
from fastapi_connect_auth.testing import FAKE_FORGE_UI_ORIGIN, APIRequest, FakeForge, FitShape

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

SERVER_SIDE: list[FitShape] = ["backend", "event", "trigger", "lifecycle"]


def claims(fit: str) -> dict[str, Any]:
    return jwt.decode(fit, options={"verify_signature": False})


@pytest.mark.parametrize(
    ("product", "module_type", "site"),
    [
        ("jira", "jira:issuePanel", "cloudId"),
        ("confluence", "xen:macro", "cloudId"),
        ("bitbucket", "bitbucket:workspaceGlobalPage", "workspaceId"),
    ],
)
@pytest.mark.parametrize("shape", ["ui", "request-remote"])
def test_ui_fits_carry_the_products_ui_module_a_principal_and_a_context(
    fake_forge_signing_key: Any, product: Any, module_type: str, site: str, shape: FitShape
) -> None:
    forge = FakeForge(product=product, private_key=fake_forge_signing_key)
    fit = claims(forge.mint_fit(shape))
    assert fit["app"]["module"]["type"] == module_type
    assert fit["context"]["extension"]["type"] == module_type
    assert fit["context"]["moduleKey"] == fit["app"]["module"]["key"]
    assert site in fit["context"]
    assert fit["principal"] == forge.account_id
    (context,) = fit["app"]["installation"]["contexts"]
    assert (context["name"], context["apiBaseUrl"]) == (product, forge.api_base_url)
    assert site in context
    expected_base = (
        "https://api.bitbucket.org" if product == "bitbucket" else f"https://api.atlassian.com/ex/{product}/"
    )
    assert forge.api_base_url.startswith(expected_base)


@pytest.mark.parametrize("shape", SERVER_SIDE)
def test_server_side_fits_have_no_principal_nor_context_and_an_endpoint_module(
    fake_forge: FakeForge, shape: FitShape
) -> None:
    fit = claims(fake_forge.mint_fit(shape))
    assert "principal" not in fit
    assert "context" not in fit
    assert fit["app"]["module"]["type"] == "core:endpoint"
    assert fit["exp"] - fit["iat"] == 25
    assert (
        fit["app"]["installationId"]
        == fake_forge.installation_id
        == f"ari:cloud:ecosystem::installation/{fake_forge.installation_uuid}"
    )


@pytest.mark.anyio
@pytest.mark.parametrize("shape", ["ui", "request-remote", *SERVER_SIDE])
async def test_every_shape_verifies_and_says_whether_a_browser_saw_it(fake_forge: FakeForge, shape: FitShape) -> None:
    invocation = await fake_forge.forge_auth().verify_invocation(fake_forge.mint_fit(shape))
    assert invocation.browser_visible == (shape in ("ui", "request-remote"))


EVENTS = ForgeRequest(invocation="event")
UI = ForgeRequest(invocation="ui")
INSTALLED = ForgeLifecycle("installed")
UPGRADED = ForgeLifecycle("upgraded")
PRE_UNINSTALL = ForgeLifecycle("pre-uninstall")


def kit_app(forge: FakeForge) -> tuple[FastAPI, list[Any]]:
    config = forge.forge_auth()
    app = FastAPI(lifespan=config.lifespan)
    config.install(app)
    seen: list[Any] = []

    @app.post("/events")
    async def events(call: Annotated[ForgeInvocation, Depends(EVENTS)]) -> None:
        seen.append(call)

    @app.api_route("/ui", methods=["GET", "POST"])
    async def ui(call: Annotated[ForgeInvocation, Depends(UI)], request: Request) -> dict[str, Any]:
        seen.append(call)
        tokens = {"system": call.system_token is not None, "user": call.user_token is not None}
        return {**tokens, "origin": request.headers.get("origin"), "traced": call.trace_id is not None}

    @app.post("/lifecycle/installed")
    async def installed(event: Annotated[VerifiedForgeLifecycle, Depends(INSTALLED)]) -> None:
        seen.append(event)

    @app.post("/lifecycle/upgraded")
    async def upgraded(event: Annotated[VerifiedForgeLifecycle, Depends(UPGRADED)]) -> None:
        seen.append(event)

    @app.post("/lifecycle/pre-uninstall")
    async def pre_uninstall(event: Annotated[VerifiedForgeLifecycle, Depends(PRE_UNINSTALL)]) -> None:
        seen.append(event)

    return app, seen


def test_the_driver_delivers_lifecycle_events_and_pre_uninstall(fake_forge: FakeForge) -> None:
    app, seen = kit_app(fake_forge)
    with TestClient(app) as client:
        driver = fake_forge.drive(client)
        assert driver.lifecycle("/lifecycle/installed", "installed").status_code == 200
        assert driver.lifecycle("/lifecycle/upgraded", "upgraded", retry_count=1).status_code == 200
        assert driver.lifecycle("/lifecycle/pre-uninstall", "pre-uninstall").status_code == 200
        other = fake_forge.installed_payload(id="0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
        assert driver.lifecycle("/lifecycle/installed", "installed", other).json()["code"] == "INSTALLATION_MISMATCH"
    installed, upgraded, pre_uninstall = seen
    assert [event.event for event in seen] == ["installed", "upgraded", "pre-uninstall"]
    assert all(event.installation_id == fake_forge.installation_id for event in seen)
    assert all(event.invocation.system_token is not None for event in seen)
    assert installed.retry_context is None
    assert upgraded.retry_context is not None
    assert upgraded.retry_context.retry_count == 1
    assert pre_uninstall.payload.context.cloud_id == fake_forge.cloud_id


def test_lifecycle_payloads_are_sent_as_forge_sends_them_and_retried_with_a_fresh_fit(fake_forge: FakeForge) -> None:
    assert fake_forge.installed_payload()["eventType"] == "avi:forge:installed:app"
    assert fake_forge.upgraded_payload()["eventType"] == "avi:forge:upgraded:app"
    app, seen = kit_app(fake_forge)
    with TestClient(app) as client:
        driver = fake_forge.drive(client)
        wrong = driver.lifecycle("/lifecycle/installed", "upgraded")  # nothing added on the way: production's 422
        assert wrong.status_code == 422, wrong.text
        late = fake_forge.mint_fit("lifecycle")  # minted now, sent after the others
        payload = fake_forge.installed_payload()
        assert driver.lifecycle("/lifecycle/installed", "installed", payload).status_code == 200
        retried = driver.lifecycle(
            "/lifecycle/installed", "installed", payload, retry_count=2, retry_reason="TIMEOUT_ERROR"
        )
        assert retried.status_code == 200
        assert driver.lifecycle("/lifecycle/installed", "installed", payload, fit=late).status_code == 200
    first, retry, delivered_late = seen
    assert len({first.invocation.jti, retry.invocation.jti, delivered_late.invocation.jti}) == 3
    assert retry.retry_context is not None
    assert (retry.retry_context.retry_count, retry.retry_context.retry_reason) == (2, "TIMEOUT_ERROR")
    assert first.payload.model_dump(exclude={"retry_context"}) == retry.payload.model_dump(exclude={"retry_context"})
    assert delivered_late.invocation.claims.iat <= first.invocation.claims.iat


def test_fits_name_the_endpoint_chosen_per_call(fake_forge: FakeForge) -> None:
    defaults = {shape: claims(fake_forge.mint_fit(shape))["app"]["module"]["key"] for shape in SERVER_SIDE}
    assert defaults == {
        "backend": "remote-resolver",
        "event": "forge-events",
        "trigger": "hourly-sync",
        "lifecycle": "forge-lifecycle",
    }
    assert claims(fake_forge.mint_fit("trigger", module_key="forge-events"))["app"]["module"] == {
        "type": "core:endpoint",
        "key": "forge-events",
    }
    assert claims(fake_forge.mint_fit("ui", module_key="my-panel"))["app"]["module"]["key"] == "my-panel"


def test_request_remote_comes_from_the_browser_without_oauth_tokens(fake_forge: FakeForge) -> None:
    app, _ = kit_app(fake_forge)
    with TestClient(app) as client:
        driver = fake_forge.drive(client)
        from_browser = driver.request_remote("/ui").json()
        proxied = driver.ui_call("/ui", system_token=fake_forge.system_token(), user_token=fake_forge.user_token())
        assert driver.backend_call("/events", json_body={"n": 1}).status_code == 200
        assert driver.request_remote("/events", method="POST").json()["code"] == "WRONG_INVOCATION"
    assert from_browser == {"system": False, "user": False, "origin": FAKE_FORGE_UI_ORIGIN, "traced": False}
    assert proxied.json() == {"system": True, "user": True, "origin": None, "traced": True}


@pytest.mark.anyio
async def test_the_product_api_has_routes_throttles_users_and_records_token_kinds(fake_forge: FakeForge) -> None:
    fake_forge.issues.update({"DEMO-1": "Printer on fire", "DEMO-2": "Secret"})
    fake_forge.api.restrict("DEMO-2", "557058:allowed")

    @fake_forge.api.route("POST", "/rest/api/3/issue/{key}/comment")
    def comment(call: APIRequest) -> httpx2.Response:
        return httpx2.Response(201, json={"issue": call.params["key"], "by": call.account_id})

    fake_forge.api.throttle(429, retry_after=3, path="/rest/api/3/issue/{key}/comment")
    system, other, allowed = (
        fake_forge.system_token(),
        fake_forge.user_token(),
        fake_forge.user_token(account_id="557058:allowed"),
    )
    config = fake_forge.forge_auth()
    as_system = await config.verify_invocation(fake_forge.mint_fit("event"), system_token=system)
    as_other = await config.verify_invocation(fake_forge.mint_fit("ui"), user_token=other)
    as_allowed = await config.verify_invocation(
        fake_forge.mint_fit("ui", principal="557058:allowed"), user_token=allowed
    )
    statuses = []
    async with forge_product_client(as_system, transport=fake_forge.api_transport, retries=None) as app:
        statuses.append((await app.get("/rest/api/3/issue/DEMO-2")).status_code)
        throttled = await app.post("/rest/api/3/issue/DEMO-1/comment")
        statuses.append((await app.post("/rest/api/3/issue/DEMO-1/comment")).status_code)
    for invocation in (as_other, as_allowed):
        async with forge_product_client(invocation, as_user=True, transport=fake_forge.api_transport) as user:
            statuses.append((await user.get("/rest/api/3/issue/DEMO-2")).status_code)

    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "3")
    assert statuses == [200, 201, 404, 200]
    assert [(call.status, call.token_kind, call.account_id) for call in fake_forge.api_calls] == [
        (200, "system", None),
        (429, "system", None),
        (201, "system", None),
        (404, "user", fake_forge.account_id),
        (200, "user", "557058:allowed"),
    ]


@pytest.mark.anyio
async def test_a_revoked_or_expired_token_is_refused_and_recorded(fake_forge: FakeForge) -> None:
    system = fake_forge.system_token()
    expired = fake_forge.system_token(exp=fake_forge.clock() - 1)
    fake_forge.revoke(system)
    for token in (system, expired, "not-a-token"):
        call = await fake_forge.forge_auth().verify_invocation(fake_forge.mint_fit("event"), system_token=token)
        async with forge_product_client(call, transport=fake_forge.api_transport, retries=None) as app:
            assert (await app.get("/rest/api/3/myself")).status_code == 401
    assert [(call.status, call.token_kind, call.refusal) for call in fake_forge.api_calls] == [
        (401, None, "not a live token of this fake Forge")
    ] * 3


@pytest.mark.anyio
async def test_the_product_api_and_gateway_on_loopback(fake_forge: FakeForge) -> None:
    with fake_forge.serve_api() as base_url:
        assert base_url == fake_forge.api_base_url
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith(f"/ex/jira/{fake_forge.cloud_id}")
        config = fake_forge.forge_auth(api_hosts=["127.0.0.1"])
        call = await config.verify_invocation(fake_forge.mint_fit("trigger"), system_token=fake_forge.system_token())
        assert call.api_base_url == base_url
        gateway = base_url.split("/ex/", 1)[0] + "/graphql"
        tokens = OfflineUserTokens(graphql_urls={"127.0.0.1": gateway}, retries=None)
        async with await tokens.client(call, "557058:user", context_ids=["ari:cloud:jira::site/x"]) as user:
            me = (await user.get("/rest/api/3/myself")).json()
        async with forge_product_client(call) as app:
            system = (await app.get("/rest/api/3/myself")).json()
    assert me == {"accountId": "557058:user", "tokenKind": "offline"}
    assert system == {"accountId": "app-system-user", "tokenKind": "system"}
    assert [call.url for call in fake_forge.api_calls] == [
        "/graphql",
        f"/ex/jira/{fake_forge.cloud_id}/rest/api/3/myself",
        f"/ex/jira/{fake_forge.cloud_id}/rest/api/3/myself",
    ]
    assert fake_forge.api_base_url.startswith("https://api.atlassian.com/")  # restored


def test_the_jwks_on_loopback_counts_its_fetches(fake_forge: FakeForge) -> None:
    with fake_forge.serve_jwks() as jwks:
        response = httpx2.get(jwks.url)
    assert response.json() == fake_forge.jwks()
    assert jwks.requests == 1


def echo_app(forge: FakeForge) -> FastAPI:
    config = forge.forge_auth()
    app = FastAPI(lifespan=config.lifespan)
    config.install(app)

    @app.post("/echo")
    async def echo(
        call: Annotated[ForgeInvocation, Depends(ForgeRequest(invocation="event", body=dict[str, Any]))],
    ) -> dict[str, Any]:
        return {"jti": call.jti, "body": call.body}

    return app


def test_the_driver_retries_an_event_as_forge_does_with_a_new_fit_and_a_retry_context(fake_forge: FakeForge) -> None:
    event = {"eventType": "avi:jira:created:issue", "issue": {"id": "10001"}, "timestamp": 1765000000000}
    with TestClient(echo_app(fake_forge)) as client:
        driver = fake_forge.drive(client)
        first = driver.event("/echo", event)
        retried = driver.retry_event(first, retry_reason="TIMEOUT_ERROR")
        again = driver.retry_event(retried)
    jtis = {response.json()["jti"] for response in (first, retried, again)}
    assert len(jtis) == 3  # each delivery has a FIT of its own
    assert first.json()["body"] == event
    assert retried.json()["body"] == {
        **event,
        "retryContext": {"retryCount": 1, "retryReason": "TIMEOUT_ERROR", "retryData": None},
    }
    assert again.json()["body"]["retryContext"] == {
        "retryCount": 2,
        "retryReason": "INVALID_REMOTE_INVOCATION_ERROR",
        "retryData": None,
    }


def test_a_retry_context_goes_inside_a_top_level_payload_unless_told_otherwise(fake_forge: FakeForge) -> None:
    event = {"payload": {"issue": {"id": "1"}}, "eventType": "avi:jira:updated:issue"}
    context = {"retryCount": 3, "retryReason": "INVALID_FORGE_INVOCATION_TOKEN", "retryData": None}
    with TestClient(echo_app(fake_forge)) as client:
        driver = fake_forge.drive(client)
        inside = driver.event("/echo", event, retry_count=3, retry_reason="INVALID_FORGE_INVOCATION_TOKEN")
        on_top = driver.event("/echo", event, retry_count=1, retry_context_in="top").json()["body"]
        retried_inside = driver.retry_event(inside).json()["body"]
        with pytest.raises(ValueError, match="no top-level payload"):
            driver.event("/echo", {"issue": {"id": "1"}}, retry_count=1, retry_context_in="payload")
    assert inside.json()["body"] == {**event, "payload": {**event["payload"], "retryContext": context}}
    assert on_top == {
        **event,
        "retryContext": {**context, "retryCount": 1, "retryReason": "INVALID_REMOTE_INVOCATION_ERROR"},
    }
    assert retried_inside["payload"]["retryContext"]["retryCount"] == 4
    assert "retryContext" not in retried_inside


def test_request_remote_sends_a_fit_and_no_oauth_token_headers(fake_forge: FakeForge) -> None:
    app, _ = kit_app(fake_forge)
    with TestClient(app) as client:
        sent = fake_forge.drive(client).request_remote("/ui").request
    assert sent.headers["Authorization"].startswith("Bearer ")
    assert claims(sent.headers["Authorization"].removeprefix("Bearer "))["principal"] == fake_forge.account_id
    assert not [name for name in sent.headers if name.lower().startswith("x-forge-oauth")]
