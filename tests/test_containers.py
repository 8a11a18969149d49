"""Forge Containers inbound: `ContainerSettings`, `ForgeContainerRequest` and the sidecar's context, end to end.

The sidecar is the kit's `FakeSidecar`, reached through an httpx2 `MockTransport`
(or, where said, on loopback); contexts are written here from the documented shape.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any

import anyio
import httpx2
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel
from starlette.requests import Request

from fastapi_connect_auth import (
    AuthError,
    AuthErrorCode,
    ContainerSettings,
    ForgeContainerInvocation,
    ForgeContainerRequest,
    ForgeContainers,
    ForgeInvocationLogFilter,
    add_health_route,
)
from fastapi_connect_auth.testing import FakeForge, FakeSidecar

pytest_plugins = ["fastapi_connect_auth.testing.plugin"]

APP = "ari:cloud:ecosystem::app/d60dfafb-0b6a-4a8b-9a6e-1f4c3c0a7b11"
ENV = "ari:cloud:ecosystem::environment/d60dfafb-0b6a-4a8b-9a6e-1f4c3c0a7b11/e62535ae-5a4e-4a7f-8b35-2ef1f5b9c0d2"
Call = Annotated[ForgeContainerInvocation, Depends(ForgeContainerRequest())]


class Comment(BaseModel):
    text: str


def documented_webtrigger(sidecar: FakeSidecar) -> dict[str, Any]:
    """The one context Forge documents (a web trigger's), for this sidecar's app and environment."""
    return {
        "app": {
            "id": sidecar.app_ari,
            "installationId": sidecar.installation_id,
            "environment": {"type": "DEVELOPMENT", "id": sidecar.env_ari},
            "module": {"key": "container-webtrigger", "type": "core:webtrigger"},
        },
        "context": {"cloudId": sidecar.cloud_id, "moduleKey": "container-webtrigger", "userAccess": {"enabled": False}},
    }


def describe(call: ForgeContainerInvocation | None) -> dict[str, Any] | None:
    if call is None:
        return None
    return {
        "installationId": call.installation_id,
        "installationUuid": call.installation_uuid,
        "appId": call.app_id,
        "cloudId": call.cloud_id,
        "workspaceId": call.workspace_id,
        "siteUrl": call.site_url,
        "accountId": call.account_id,
        "principal": call.principal,
        "moduleKey": call.module_key,
        "moduleType": call.module.type if call.module else None,
        "environment": call.environment.type if call.environment else None,
        "kind": call.kind,
        "webTrigger": call.web_trigger,
        "authenticated": call.authenticated,
        "userAccess": call.user_access,
        "traceId": call.trace_id,
        "spanId": call.span_id,
        "log": dict(call.log_attributes) if call.log_attributes else None,
        "body": call.body if not isinstance(call.body, BaseModel | bytes) else repr(call.body),
        "raw": len(call.raw_body) if call.raw_body is not None else None,
    }


def make_app(containers: ForgeContainers) -> FastAPI:
    app = FastAPI(lifespan=containers.lifespan)
    containers.install(app)

    @app.get("/any")
    async def any_call(call: Call) -> Any:
        return describe(call)

    @app.get("/optional")
    async def optional(
        call: Annotated[ForgeContainerInvocation | None, Depends(ForgeContainerRequest(auto_error=False))],
    ) -> Any:
        return describe(call)

    @app.post("/hook")
    async def hook(
        call: Annotated[ForgeContainerInvocation, Depends(ForgeContainerRequest(web_trigger=True, read_body=True))],
    ) -> Any:
        return describe(call)

    @app.post("/webtrigger-only")
    async def webtrigger_only(
        call: Annotated[
            ForgeContainerInvocation, Depends(ForgeContainerRequest(invocation="webtrigger", web_trigger=True))
        ],
    ) -> Any:
        return describe(call)

    @app.post("/events")
    async def events(
        call: Annotated[ForgeContainerInvocation, Depends(ForgeContainerRequest(invocation="event", body=Comment))],
    ) -> Any:
        return describe(call)

    @app.get("/panel")
    async def panel(
        call: Annotated[ForgeContainerInvocation, Depends(ForgeContainerRequest(module_keys=["issue-panel"]))],
    ) -> Any:
        return describe(call)

    @app.get("/me")
    async def me(call: Annotated[ForgeContainerInvocation, Depends(ForgeContainerRequest(require_user=True))]) -> Any:
        return describe(call)

    return app


@pytest.fixture
def containers(fake_sidecar: FakeSidecar) -> ForgeContainers:
    return fake_sidecar.containers()


@pytest.fixture
def client(containers: ForgeContainers) -> Iterator[TestClient]:
    with TestClient(make_app(containers)) as client:
        yield client


def refusal(response: httpx2.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


# -- configuration ------------------------------------------------------------------------------


def test_settings_come_from_the_environment_forge_sets() -> None:
    settings = ContainerSettings.from_env(
        {
            "FORGE_EGRESS_PROXY_URL": "http://localhost:7072/",
            "FORGE_APP_ARI": APP,
            "FORGE_ENV_ARI": ENV,
            "FORGE_SERVICE_KEY": "my-service",
            "FORGE_CONTAINER_KEY": "my_container",
        }
    )

    assert settings == ContainerSettings("http://localhost:7072", APP, ENV, 8080, "my-service", "my_container")
    assert ContainerSettings("http://[::1]:7072", APP, ENV).egress_proxy_url == "http://[::1]:7072"
    assert ContainerSettings("http://127.0.0.1", APP, ENV, server_port=9000).server_port == 9000


def test_every_missing_variable_is_named_in_one_error() -> None:
    with pytest.raises(ValueError, match="FORGE_EGRESS_PROXY_URL is not set; FORGE_APP_ARI is not set") as raised:
        ContainerSettings.from_env({"FORGE_ENV_ARI": ENV, "SERVER_PORT": "http"})
    assert "SERVER_PORT must be a port number" in str(raised.value)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"FORGE_EGRESS_PROXY_URL": "https://localhost:7072"}, "FORGE_EGRESS_PROXY_URL must be http://localhost"),
        ({"FORGE_EGRESS_PROXY_URL": "http://sidecar.example.com:7072"}, "FORGE_EGRESS_PROXY_URL must be"),
        ({"FORGE_EGRESS_PROXY_URL": "http://user@localhost:7072"}, "FORGE_EGRESS_PROXY_URL must be"),
        ({"FORGE_EGRESS_PROXY_URL": "http://localhost:7072/base"}, "FORGE_EGRESS_PROXY_URL must be"),
        ({"FORGE_EGRESS_PROXY_URL": "http://localhost:7072/?x=1"}, "FORGE_EGRESS_PROXY_URL must be"),
        ({"FORGE_EGRESS_PROXY_URL": "http://localhost:99999"}, "FORGE_EGRESS_PROXY_URL is not a URL"),
        ({"FORGE_APP_ARI": "d60dfafb-0b6a-4a8b-9a6e-1f4c3c0a7b11"}, "FORGE_APP_ARI must be"),
        ({"FORGE_APP_ARI": "ari:cloud:ecosystem::app/" + "-" * 36}, "FORGE_APP_ARI must be"),
        ({"FORGE_APP_ARI": "ari:cloud:ecosystem::app/"}, "FORGE_APP_ARI must be"),
        ({"FORGE_APP_ARI": "ari:cloud:ecosystem::app/a,b"}, "FORGE_APP_ARI must be"),
        ({"FORGE_ENV_ARI": "ari:cloud:ecosystem::environment/x"}, "FORGE_ENV_ARI must be"),
        (
            {
                "FORGE_ENV_ARI": ENV.replace(
                    "d60dfafb-0b6a-4a8b-9a6e-1f4c3c0a7b11", "11111111-0b6a-4a8b-9a6e-1f4c3c0a7b11"
                )
            },
            "FORGE_ENV_ARI is an environment of another app",
        ),
        ({"SERVER_PORT": "0"}, "SERVER_PORT must be a port number"),
        ({"FORGE_SERVICE_KEY": "a b"}, "FORGE_SERVICE_KEY must be a manifest key"),
    ],
)
def test_a_malformed_setting_stops_startup(change: dict[str, str], problem: str) -> None:
    env = {"FORGE_EGRESS_PROXY_URL": "http://localhost:7072", "FORGE_APP_ARI": APP, "FORGE_ENV_ARI": ENV, **change}

    with pytest.raises(ValueError, match=problem):
        ContainerSettings.from_env(env)


def test_forge_containers_reads_os_environ_by_default(fake_sidecar: FakeSidecar) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in fake_sidecar.environ().items():
            patch.setenv(name, value)
        settings = ForgeContainers().settings
    assert (settings.egress_proxy_url, settings.app_ari, settings.env_ari) == (
        fake_sidecar.url,
        fake_sidecar.app_ari,
        fake_sidecar.env_ari,
    )
    assert (settings.service_key, settings.container_key) == ("fake-service", "fake-container")


@pytest.mark.parametrize("option", ["context_ttl", "max_contexts", "timeout", "max_context_size"])
def test_forge_containers_refuses_non_positive_limits(fake_sidecar: FakeSidecar, option: str) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        ForgeContainers(fake_sidecar.settings(), **{option: 0})


def test_a_route_without_forge_containers_stops_startup() -> None:
    forge = FakeSidecar(FakeForge())
    app = FastAPI(lifespan=forge.containers().lifespan)

    @app.get("/x")
    async def x(call: Call) -> None: ...

    with pytest.raises(RuntimeError, match="no ForgeContainers is installed"), TestClient(app):
        pass


# -- accepted calls ------------------------------------------------------------------------------


def test_a_ui_invocation_is_who_the_sidecar_says(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    invocation_id = fake_sidecar.invocation("ui")
    headers = fake_sidecar.drive(client).headers(invocation_id)

    response = client.get("/any", headers=headers)

    assert response.status_code == 200
    body = response.json()
    assert body["installationId"] == fake_sidecar.installation_id
    assert body["installationUuid"] == fake_sidecar.forge.installation_uuid
    assert (body["appId"], body["cloudId"], body["workspaceId"]) == (fake_sidecar.app_ari, fake_sidecar.cloud_id, None)
    assert body["accountId"] == body["principal"] == fake_sidecar.account_id
    assert (body["moduleKey"], body["moduleType"], body["kind"]) == ("issue-panel", "jira:issuePanel", "ui")
    assert (body["environment"], body["webTrigger"], body["authenticated"]) == ("DEVELOPMENT", False, True)
    assert body["siteUrl"] == "https://fake-site.atlassian.net"
    assert (body["traceId"], body["spanId"]) == (headers["x-b3-traceid"], headers["x-b3-spanid"])
    assert body["log"]["id"] == invocation_id
    assert body["userAccess"] is False
    (fetch,) = fake_sidecar.context_fetches
    assert (fetch.url, fetch.authorization) == ("/invocation/context", f"Forge id={invocation_id}")


def test_the_module_key_falls_back_to_the_apps_module(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    context = fake_sidecar.context_document("ui")
    del context["context"]
    context["app"]["module"]["key"] = "issue-panel"

    body = fake_sidecar.drive(client).invoke("ui", "/panel", invocation_id=fake_sidecar.invocation(context=context))

    assert body.json()["moduleKey"] == "issue-panel"
    assert (body.json()["accountId"], body.json()["cloudId"], body.json()["siteUrl"]) == (None, None, None)


def test_user_access_and_malformed_trace_ids(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    context = fake_sidecar.context_document("ui")
    context["context"]["userAccess"] = {"enabled": True}
    invocation_id = fake_sidecar.invocation(context=context)

    body = client.get("/any", headers={"x-forge-invocation-id": invocation_id, "x-b3-traceid": "not hex"}).json()

    assert (body["userAccess"], body["traceId"], body["log"]) == (True, None, None)


def test_without_the_header_auto_error_false_gives_none(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    assert client.get("/optional").json() is None
    assert fake_sidecar.calls == []


def test_an_event_route_takes_an_event_and_its_body(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    response = fake_sidecar.drive(client).event("/events", {"text": "hello"})

    assert response.status_code == 200
    assert (response.json()["kind"], response.json()["accountId"], response.json()["raw"]) == ("event", None, 16)
    assert response.json()["body"] == "Comment(text='hello')"


# -- refusals -----------------------------------------------------------------------------------


def test_a_call_without_the_header_is_refused_before_any_io(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    response = client.get("/any")

    assert refusal(response) == (401, "MISSING_INVOCATION_ID")
    assert response.headers["WWW-Authenticate"] == "ForgeInvocationId"
    assert fake_sidecar.calls == []


@pytest.mark.parametrize(
    "invocation_id",
    ["", "a,as=user", "id=x", "abc def", "abc;x", "-starts-with-dash", "x" * 257, "abc%0d%0ax"],
)
def test_a_malformed_invocation_id_is_refused_before_any_io(
    client: TestClient, fake_sidecar: FakeSidecar, invocation_id: str
) -> None:
    response = client.get("/any", headers={"x-forge-invocation-id": invocation_id})

    assert refusal(response) == (401, "INVALID_INVOCATION_ID")
    assert fake_sidecar.calls == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    "raw", [b"abc\r\nx-forge-invocation-id: other", b"abc\nas=user", b"abc\x00", b"a b", "ü".encode()]
)
async def test_line_breaks_in_the_id_never_reach_the_sidecar(fake_sidecar: FakeSidecar, raw: bytes) -> None:
    containers = fake_sidecar.containers()
    app = FastAPI()
    containers.install(app)
    request = Request(
        {"type": "http", "method": "GET", "path": "/", "headers": [(b"x-forge-invocation-id", raw)], "app": app}
    )

    with pytest.raises(AuthError) as raised:
        await ForgeContainerRequest()(request)

    assert raised.value.code is AuthErrorCode.INVALID_INVOCATION_ID
    assert fake_sidecar.calls == []


@pytest.mark.anyio
async def test_forge_containers_never_sends_a_malformed_id(fake_sidecar: FakeSidecar) -> None:
    containers = fake_sidecar.containers()

    with pytest.raises(AuthError) as raised:
        await containers.context("abc,as=user")

    assert raised.value.code is AuthErrorCode.INVALID_INVOCATION_ID
    assert fake_sidecar.calls == []


def test_a_repeated_invocation_id_is_refused(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    one, two = fake_sidecar.invocation(), fake_sidecar.invocation()

    response = client.get("/any", headers=[("x-forge-invocation-id", one), ("x-forge-invocation-id", two)])

    assert refusal(response) == (401, "INVALID_INVOCATION_ID")
    assert fake_sidecar.calls == []


def test_an_id_the_sidecar_does_not_know_is_refused(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    response = client.get("/any", headers={"x-forge-invocation-id": "5f6c7b46-unknown"})

    assert refusal(response) == (401, "UNKNOWN_INVOCATION")
    assert response.headers["WWW-Authenticate"] == "ForgeInvocationId"
    assert [call.status for call in fake_sidecar.context_fetches] == [404]


@pytest.mark.parametrize(
    "change",
    [
        lambda doc: doc["app"].update(id="ari:cloud:ecosystem::app/11111111-2222-4333-8444-555555555555"),
        lambda doc: doc["app"]["environment"].update(id=doc["app"]["environment"]["id"][:-1] + "0"),
        lambda doc: doc["app"].pop("environment"),
    ],
    ids=["another app", "another environment", "no environment"],
)
def test_a_context_of_another_app_or_environment_is_refused(
    client: TestClient, fake_sidecar: FakeSidecar, change: Any
) -> None:
    context = fake_sidecar.context_document("ui")
    change(context)

    response = client.get("/any", headers={"x-forge-invocation-id": fake_sidecar.invocation(context=context)})

    assert refusal(response) == (401, "CONTEXT_MISMATCH")


def test_a_web_trigger_is_refused_unless_the_route_opts_in(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    invocation_id = fake_sidecar.invocation(context=documented_webtrigger(fake_sidecar))

    response = client.get("/any", headers={"x-forge-invocation-id": invocation_id})

    assert refusal(response) == (401, "WRONG_INVOCATION")


def test_a_web_trigger_on_an_opted_in_route_is_never_authenticated(
    client: TestClient, fake_sidecar: FakeSidecar
) -> None:
    context = documented_webtrigger(fake_sidecar)
    context["context"]["accountId"] = "557058:attacker-chosen"  # never presented as a user

    response = fake_sidecar.drive(client).invoke(
        "webtrigger",
        "/hook",
        method="POST",
        json={"anything": True},
        headers={"x-caller": "anyone"},
        invocation_id=fake_sidecar.invocation(context=context),
    )

    body = response.json()
    assert (body["webTrigger"], body["authenticated"], body["accountId"], body["principal"]) == (
        True,
        False,
        None,
        None,
    )
    assert body["kind"] == "webtrigger"
    assert body["raw"] == len(b'{"anything":true}')
    assert fake_sidecar.drive(client).web_trigger("/webtrigger-only").json()["webTrigger"] is True
    assert refusal(fake_sidecar.drive(client).ui("/webtrigger-only", method="POST")) == (401, "WRONG_INVOCATION")


def test_a_context_that_does_not_say_what_called_counts_as_a_web_trigger(
    client: TestClient, fake_sidecar: FakeSidecar
) -> None:
    context = fake_sidecar.context_document("ui")
    del context["app"]["module"]
    invocation_id = fake_sidecar.invocation(context=context)

    assert refusal(client.get("/any", headers={"x-forge-invocation-id": invocation_id})) == (401, "WRONG_INVOCATION")
    assert client.post("/hook", headers={"x-forge-invocation-id": invocation_id}).json()["accountId"] is None


def test_kind_and_module_restrictions(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    drive = fake_sidecar.drive(client)

    assert refusal(drive.ui("/events", method="POST", json={"text": "x"})) == (401, "WRONG_INVOCATION")
    assert refusal(drive.invoke("trigger", "/events", method="POST", json={"text": "x"})) == (401, "WRONG_INVOCATION")
    assert drive.ui("/panel").status_code == 200
    assert refusal(drive.ui("/panel", module_key="other-panel")) == (401, "WRONG_INVOCATION")
    assert drive.invoke("trigger", "/any").json()["kind"] == "trigger"


def test_a_route_acting_as_the_user_needs_one(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    drive = fake_sidecar.drive(client)

    assert drive.ui("/me").json()["accountId"] == fake_sidecar.account_id
    assert refusal(drive.ui("/me", account_id=None)) == (403, "USER_REQUIRED")
    assert refusal(drive.invoke("event", "/me")) == (403, "USER_REQUIRED")


def test_the_body_is_read_only_after_the_sidecar_vouched(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    drive = fake_sidecar.drive(client)
    huge = {"text": "x" * (2 * 1024 * 1024)}

    assert refusal(client.post("/events", json=huge, headers={"x-forge-invocation-id": "unknown"})) == (
        401,
        "UNKNOWN_INVOCATION",
    )
    assert refusal(drive.event("/events", huge)) == (413, "PAYLOAD_TOO_LARGE")
    invalid = drive.event("/events", {"text": 1})
    assert invalid.status_code == 422
    assert "1" not in json.dumps(invalid.json().get("detail", [{}])[0].get("input", ""))


# -- the sidecar down, slow, or answering garbage ---------------------------------------------------


def test_the_sidecar_down_is_a_503(client: TestClient, fake_sidecar: FakeSidecar, caplog: Any) -> None:
    invocation_id = fake_sidecar.invocation()
    fake_sidecar.down = True

    with caplog.at_level(logging.WARNING, "fastapi_connect_auth.containers"):
        response = client.get("/any", headers={"x-forge-invocation-id": invocation_id})

    assert refusal(response) == (503, "SIDECAR_UNAVAILABLE")
    assert "WWW-Authenticate" not in response.headers
    assert "could not be reached" in caplog.text
    assert invocation_id not in caplog.text
    fake_sidecar.down = False  # failures are not kept: the next call asks again
    assert client.get("/any", headers={"x-forge-invocation-id": invocation_id}).status_code == 200


def test_a_slow_sidecar_is_a_503_within_the_timeout(fake_sidecar: FakeSidecar) -> None:
    fake_sidecar.delay = 0.5
    with TestClient(make_app(fake_sidecar.containers(timeout=0.05))) as client:
        response = client.get("/any", headers={"x-forge-invocation-id": fake_sidecar.invocation()})

    assert refusal(response) == (503, "SIDECAR_UNAVAILABLE")
    assert "in time" in response.json()["detail"]


@pytest.mark.parametrize(
    "garbage",
    [b"not json", b"[]", b'{"app": {"id": 1}}', b'{"app": null}', b"\xff\xfe", b"[" * 10_000, b'{"a": NaN}'],
)
def test_garbage_from_the_sidecar_is_a_503(client: TestClient, fake_sidecar: FakeSidecar, garbage: bytes) -> None:
    fake_sidecar.garbage = garbage

    response = client.get("/any", headers={"x-forge-invocation-id": fake_sidecar.invocation()})

    assert refusal(response) == (503, "SIDECAR_UNAVAILABLE")


def test_a_huge_context_is_refused_at_the_cap(fake_sidecar: FakeSidecar) -> None:
    context = fake_sidecar.context_document("ui")
    context["context"]["padding"] = "x" * 5000
    with TestClient(make_app(fake_sidecar.containers(max_context_size=4096))) as client:
        response = client.get("/any", headers={"x-forge-invocation-id": fake_sidecar.invocation(context=context)})

    assert refusal(response) == (503, "SIDECAR_UNAVAILABLE")
    assert "too large" in response.json()["detail"]


def sidecar_answering(*responses: httpx2.Response) -> ForgeContainers:
    settings = ContainerSettings("http://localhost:7072", APP, ENV)
    answers = iter(responses)
    return ForgeContainers(settings, transport=httpx2.MockTransport(lambda request: next(answers)))


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (httpx2.Response(500), (503, "SIDECAR_UNAVAILABLE")),
        (httpx2.Response(429), (503, "SIDECAR_UNAVAILABLE")),
        (httpx2.Response(408), (503, "SIDECAR_UNAVAILABLE")),
        (httpx2.Response(302, headers={"Location": "http://evil.example.com/"}), (503, "SIDECAR_UNAVAILABLE")),
        (
            httpx2.Response(200, content=__import__("gzip").compress(b"{}"), headers={"Content-Encoding": "gzip"}),
            (503, "SIDECAR_UNAVAILABLE"),
        ),
        (httpx2.Response(200, content=b"{}", headers={"Content-Length": "99999999"}), (503, "SIDECAR_UNAVAILABLE")),
        (httpx2.Response(400), (401, "UNKNOWN_INVOCATION")),
        (httpx2.Response(403), (401, "UNKNOWN_INVOCATION")),
    ],
)
def test_what_the_sidecar_answers_decides_401_or_503(answer: httpx2.Response, expected: tuple[int, str]) -> None:
    with TestClient(make_app(sidecar_answering(answer))) as client:
        assert refusal(client.get("/any", headers={"x-forge-invocation-id": "abc"})) == expected


# -- one fetch per invocation ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_calls_of_one_invocation_share_one_fetch(fake_sidecar: FakeSidecar) -> None:
    fake_sidecar.delay = 0.05
    ticks = itertools.count()  # every look-up is a second later: nothing stays cached, only the fetch is shared
    containers = fake_sidecar.containers(context_ttl=0.5, clock=lambda: float(next(ticks)))
    invocation_id = fake_sidecar.invocation()
    statuses: list[int] = []
    transport = httpx2.ASGITransport(app=make_app(containers))

    async with httpx2.AsyncClient(transport=transport, base_url="http://container") as client:

        async def one() -> None:
            response = await client.get("/any", headers={"x-forge-invocation-id": invocation_id})
            statuses.append(response.status_code)

        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(one)
        assert (len(fake_sidecar.context_fetches), containers.fetches) == (1, 1)
        await one()  # alone, later: fetched again (the cache did not serve the fifty)
        await containers.aclose()

    assert statuses == [200] * 51
    assert (len(fake_sidecar.context_fetches), containers.fetches) == (2, 2)


@pytest.mark.anyio
async def test_concurrent_waiters_share_a_failure_each_with_its_own_error(fake_sidecar: FakeSidecar) -> None:
    fake_sidecar.delay = 0.05
    fake_sidecar.down = True
    containers = fake_sidecar.containers()
    errors: list[AuthError] = []

    async def one() -> None:
        try:
            await containers.context("same-id")
        except AuthError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(one)
    await containers.aclose()

    assert [error.code for error in errors] == [AuthErrorCode.SIDECAR_UNAVAILABLE] * 5
    assert len({id(error) for error in errors}) == 5
    assert containers.fetches == 1


@pytest.mark.anyio
async def test_a_cancelled_fetch_fails_its_waiters_with_a_503(fake_sidecar: FakeSidecar) -> None:
    fake_sidecar.delay = 10
    containers = fake_sidecar.containers()
    invocation_id = fake_sidecar.invocation()
    errors: list[AuthError] = []

    async def waiter() -> None:
        try:
            await containers.context(invocation_id)
        except AuthError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as outer, anyio.create_task_group() as leader:
        leader.start_soon(containers.context, invocation_id)
        await anyio.sleep(0.01)
        outer.start_soon(waiter)
        await anyio.sleep(0.01)
        leader.cancel_scope.cancel()
    await containers.aclose()

    assert [error.code for error in errors] == [AuthErrorCode.SIDECAR_UNAVAILABLE]
    assert "cancelled" in errors[0].message


@pytest.mark.anyio
async def test_contexts_are_kept_briefly_and_boundedly(fake_sidecar: FakeSidecar) -> None:
    now = [0.0]
    containers = fake_sidecar.containers(context_ttl=30, max_contexts=2, clock=lambda: now[0])
    one, two, three = (fake_sidecar.invocation() for _ in range(3))

    await containers.context(one)
    await containers.context(one)
    assert containers.fetches == 1
    now[0] = 31.0
    await containers.context(one)
    assert containers.fetches == 2
    await containers.context(two)
    await containers.context(three)  # the least recently used, `one`, goes
    await containers.context(one)
    assert containers.fetches == 5
    await containers.aclose()
    await containers.aclose()


# -- the invocation id stays in the header ------------------------------------------------------------


def test_the_invocation_id_never_goes_into_a_url(client: TestClient, fake_sidecar: FakeSidecar) -> None:
    drive = fake_sidecar.drive(client)
    ids = [fake_sidecar.invocation() for _ in range(3)]
    for invocation_id in ids:
        drive.invoke("ui", "/any?x=1", invocation_id=invocation_id)

    assert len(fake_sidecar.calls) == 3
    assert all(not any(invocation_id in call.url for invocation_id in ids) for call in fake_sidecar.calls)


# -- OpenAPI, constructor checks, health, logs -----------------------------------------------------------


def test_openapi_documents_the_scheme_and_the_refusals(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()

    assert schema["components"]["securitySchemes"]["ForgeInvocationId"] == {
        "type": "apiKey",
        "in": "header",
        "name": "x-forge-invocation-id",
        "description": "The invocation id Forge's sidecar sends (`x-forge-invocation-id`); the sidecar is asked who it is.",
    }
    assert set(schema["paths"]["/any"]["get"]["responses"]) == {"200", "401", "503"}
    assert set(schema["paths"]["/me"]["get"]["responses"]) == {"200", "401", "403", "503"}
    assert set(schema["paths"]["/events"]["post"]["responses"]) == {"200", "401", "408", "413", "422", "503"}
    assert "ForgeInvocationId" in json.dumps(schema["paths"]["/any"]["get"]["responses"]["401"])
    assert schema["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Comment"
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"invocation": "lifecycle"}, "invocation must be one of"),
        ({"invocation": "webtrigger"}, "web_trigger=True"),
        ({"module_keys": "issue-panel"}, "not one string"),
        ({"body": dict, "read_body": True}, "drop read_body"),
        ({"max_body_size": 0}, "positive"),
    ],
)
def test_the_dependency_refuses_contradictory_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ForgeContainerRequest(**options)


def test_a_dependency_can_carry_its_own_configuration(fake_sidecar: FakeSidecar) -> None:
    containers = fake_sidecar.containers()
    app = FastAPI()

    @app.get("/x")
    async def x(
        call: ForgeContainerInvocation = Depends(ForgeContainerRequest(config=containers, scheme_name="S")),  # noqa: B008
    ) -> str:
        return call.installation_id

    with TestClient(app) as client:
        response = fake_sidecar.drive(client).ui("/x")
        assert response.json() == fake_sidecar.installation_id
        assert "S" in client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_the_health_route_needs_no_header_and_does_no_io(fake_sidecar: FakeSidecar) -> None:
    app = FastAPI()
    ready = [True]

    async def check() -> bool:
        return ready[0]

    add_health_route(app)
    add_health_route(app, "/ready", check=check)
    with TestClient(app) as client:
        assert (client.get("/healthz").status_code, client.get("/healthz").json()) == (200, {"status": "ok"})
        assert client.get("/ready").status_code == 200
        ready[0] = False
        assert client.get("/ready").status_code == 503
        assert "/healthz" not in client.get("/openapi.json").json()["paths"]
    assert fake_sidecar.calls == []


def test_log_records_carry_the_invocations_attributes(fake_sidecar: FakeSidecar) -> None:
    containers = fake_sidecar.containers()
    app = FastAPI()
    containers.install(app)
    records: list[logging.LogRecord] = []
    logger = logging.getLogger("tests.containers.route")
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(ForgeInvocationLogFilter())
    logger.addHandler(handler)

    @app.get("/log")
    async def log(call: Call) -> None:
        logger.warning("handled")

    try:
        with TestClient(app) as client:
            invocation_id = fake_sidecar.invocation()
            fake_sidecar.drive(client).invoke("ui", "/log", invocation_id=invocation_id)
            logger.warning("outside")
    finally:
        logger.removeHandler(handler)

    assert records[0].forge_invocation["id"] == invocation_id
    assert set(records[0].forge_invocation) == {"id", "ctx", "traceId"}
    assert records[1].forge_invocation is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            base64.b64encode(b'{"id": "a", "ctx": "b", "traceId": "c", "other": "d"}').decode(),
            {"id": "a", "ctx": "b", "traceId": "c"},
        ),
        (base64.b64encode(b'{"id": "a\\nforged", "ctx": 1, "traceId": "ok"}').decode(), {"traceId": "ok"}),
        (base64.b64encode(b'{"id": 1}').decode(), None),
        (base64.b64encode(b"[1]").decode(), None),
        (base64.b64encode(b"not json").decode(), None),
        ("not base64!", None),
        ("A" * 5000, None),
    ],
)
def test_log_attributes_from_the_wire_are_decoded_strictly(header: str, expected: Any) -> None:
    from fastapi_connect_auth._containers._logging import decode_log_attributes

    assert decode_log_attributes(header) == expected


# -- redeliveries by content ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_event_is_remembered_by_installation_and_content_without_its_retry_context() -> None:
    from dataclasses import dataclass

    from fastapi_connect_auth import InMemoryRedeliveryStore, remember_forge_event

    @dataclass
    class Delivered:
        installation_id: str
        raw_body: bytes | None
        body: Any = None

    store = InMemoryRedeliveryStore()
    first = b'{"eventType": "avi:jira:created:issue", "payload": {"issue": 1}}'
    retried = (
        b'{"retryContext": {"retryCount": 1}, "payload": {"retryContext": {"retryCount": 1}, "issue": 1},'
        b' "eventType": "avi:jira:created:issue"}'
    )

    assert await remember_forge_event(store, Delivered("install-1", first)) is True
    assert await remember_forge_event(store, Delivered("install-1", retried)) is False
    assert await remember_forge_event(store, Delivered("install-2", first)) is True  # another installation
    assert await remember_forge_event(store, Delivered("install-1", None, Comment(text="a"))) is True
    assert await remember_forge_event(store, Delivered("install-1", None, {"text": "a"})) is False
    assert await remember_forge_event(store, Delivered("install-1", b"not json")) is True
    assert await remember_forge_event(store, Delivered("install-1", b"not json")) is False
    assert await remember_forge_event(store, Delivered("install-1", b"[1, 2]")) is True
    assert await remember_forge_event(store, Delivered("install-1", first), {"other": True}) is True
    expired = InMemoryRedeliveryStore()
    assert await remember_forge_event(expired, Delivered("i", first), retention=-1) is True
    assert await remember_forge_event(expired, Delivered("i", first)) is True


def test_every_refusal_is_reported_without_the_invocation_id(fake_sidecar: FakeSidecar, caplog: Any) -> None:
    from fastapi_connect_auth import RejectionEvent

    events: list[RejectionEvent] = []
    with (
        caplog.at_level(logging.WARNING, "fastapi_connect_auth"),
        TestClient(make_app(fake_sidecar.containers(on_rejection=events.append))) as client,
    ):
        drive = fake_sidecar.drive(client)
        client.get("/any")
        web = fake_sidecar.invocation("webtrigger")
        drive.invoke("webtrigger", "/any", invocation_id=web)
        assert drive.ui("/any").status_code == 200

    assert [(event.code.value, event.kind, event.installation_id) for event in events] == [
        ("MISSING_INVOCATION_ID", "forge", None),
        ("WRONG_INVOCATION", "forge", fake_sidecar.installation_id),
    ]
    assert events[1].route == "/any"
    assert "Rejected Forge container call: WRONG_INVOCATION" in caplog.text
    assert web not in caplog.text


@pytest.mark.anyio
async def test_on_loopback_a_huge_or_slow_sidecar_is_cut_off(fake_sidecar: FakeSidecar) -> None:
    huge = fake_sidecar.context_document("ui")
    huge["context"]["padding"] = "x" * (1024 * 1024)
    with fake_sidecar.serve() as url:
        containers = ForgeContainers(fake_sidecar.settings(), timeout=0.2)
        async with containers:
            context = await containers.context(fake_sidecar.invocation())
            assert context.app.installation_id == fake_sidecar.installation_id
            with pytest.raises(AuthError, match="too large") as raised:
                await containers.context(fake_sidecar.invocation(context=huge))
            assert raised.value.code is AuthErrorCode.SIDECAR_UNAVAILABLE
            fake_sidecar.delay = 1.0
            with pytest.raises(AuthError, match="in time"):
                await containers.context(fake_sidecar.invocation())
    closed = ContainerSettings(url, fake_sidecar.app_ari, fake_sidecar.env_ari)
    unreachable = ForgeContainers(closed)  # the sidecar's port is closed now
    with pytest.raises(AuthError, match="could not be reached"):
        await unreachable.context(fake_sidecar.invocation())
    await unreachable.aclose()
