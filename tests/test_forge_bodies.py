"""Forge bodies: `ForgeRequest(body=Model)` like `ConnectRequest(body=Model)`, strict JSON, bodies read twice.

The order of answers is 401 (nothing read, nothing validated), then 413, then
422 without the input echoed. JSON is strict on both sides: `NaN`, `Infinity`,
numbers out of range and nesting past 64 levels are a 422, never a 500. A body
read by a dependency can be read again, by another dependency or by the route.
"""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace
from typing import Annotated, Any

import httpx2
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI, Request
from fastapi.testclient import TestClient
from jwt.utils import base64url_decode
from pydantic import BaseModel, SecretStr, field_validator

from fastapi_connect_auth import ForgeClaims, ForgeInvocation, ForgeRequest
from fastapi_connect_auth._forge._models import forge_invocation, with_body
from fastapi_connect_auth._json import MAX_JSON_DEPTH, loads
from fastapi_connect_auth.testing import FakeForge
from tests.conftest import HOSTILE_JSON, MIB, Upload, asgi_post

NOW = 1_700_000_000.0
CAP = 2048
VALIDATED: list[str] = []


class IssueEvent(BaseModel):
    eventType: str
    issue: dict[str, Any] = {}
    weight: float = 0.0

    @field_validator("eventType")
    @classmethod
    def _count(cls, value: str) -> str:
        VALIDATED.append(value)
        return value


EVENT_ROUTE = ForgeRequest(invocation="event", body=IssueEvent, max_body_size=CAP)
RAW_ROUTE = ForgeRequest(read_body=True, max_body_size=CAP)
BIG_ROUTE = ForgeRequest(body=IssueEvent, max_body_size=300_000)


async def route_first(request: Request) -> bytes:
    return await request.body()


async def streams_it_away(request: Request) -> int:
    return sum([len(chunk) async for chunk in request.stream()])


@pytest.fixture
def forge(signing_key: rsa.RSAPrivateKey) -> FakeForge:
    VALIDATED.clear()
    return FakeForge(private_key=signing_key, clock=lambda: NOW)


def forge_app(forge: FakeForge) -> FastAPI:
    config = forge.forge_auth(clock=lambda: NOW)
    app = FastAPI(lifespan=config.lifespan)
    config.install(app)

    @app.post("/forge/events")
    async def events(call: Annotated[ForgeInvocation, Depends(EVENT_ROUTE)]) -> dict[str, Any]:
        body: IssueEvent = call.body
        return {"eventType": body.eventType, "raw": len(call.raw_body or b"")}

    @app.post("/forge/twice")
    async def twice(
        first: Annotated[ForgeInvocation, Depends(EVENT_ROUTE)],
        second: Annotated[ForgeInvocation, Depends(RAW_ROUTE)],
    ) -> dict[str, Any]:
        return {"same": first.raw_body == second.body, "eventType": first.body.eventType}

    @app.post("/forge/then-route-reads")
    async def then_route_reads(
        call: Annotated[ForgeInvocation, Depends(EVENT_ROUTE)], request: Request
    ) -> dict[str, Any]:
        return {"same": await request.body() == call.raw_body, "json": await request.json()}

    @app.post("/forge/route-reads-first")
    async def route_reads_first(
        raw: Annotated[bytes, Depends(route_first)], call: Annotated[ForgeInvocation, Depends(EVENT_ROUTE)]
    ) -> dict[str, Any]:
        return {"same": raw == call.raw_body}

    @app.post("/forge/big")
    async def big(
        call: Annotated[ForgeInvocation, Depends(BIG_ROUTE)],
    ) -> None: ...

    @app.post("/forge/streamed-away")
    async def streamed_away(
        size: Annotated[int, Depends(streams_it_away)], call: Annotated[ForgeInvocation, Depends(EVENT_ROUTE)]
    ) -> None: ...

    return app


@pytest.fixture
def client(forge: FakeForge) -> Any:
    with TestClient(forge_app(forge)) as client:
        yield client


def post(
    client: TestClient, forge: FakeForge, content: bytes, *, fit: str | None = None, path: str = "/forge/events"
) -> httpx2.Response:
    headers = {**forge.drive(client).headers(fit or forge.mint_fit("event")), "Content-Type": "application/json"}
    return client.post(path, content=content, headers=headers)


EVENT = json.dumps({"eventType": "avi:jira:created:issue", "issue": {"key": "DEMO-1"}}).encode()


# -- Forge: the order of answers -------------------------------------------------------------


def test_a_verified_body_is_validated_into_the_model(client: TestClient, forge: FakeForge) -> None:
    response = post(client, forge, EVENT)
    assert response.status_code == 200, response.text
    assert response.json() == {"eventType": "avi:jira:created:issue", "raw": len(EVENT)}


@pytest.mark.parametrize("fit", ["garbage", None], ids=["bad token", "no token"])
def test_an_unverified_body_is_401_and_never_validated(client: TestClient, forge: FakeForge, fit: str | None) -> None:
    headers = {} if fit is None else {"Authorization": f"Bearer {fit}"}
    response = client.post("/forge/events", content=b"{not json", headers=headers)
    assert (response.status_code, response.headers["WWW-Authenticate"]) == (401, "Bearer")
    assert VALIDATED == []


def test_a_ui_fit_on_an_event_route_is_refused_before_the_body_is_read(client: TestClient, forge: FakeForge) -> None:
    response = post(client, forge, EVENT, fit=forge.mint_fit("ui"))
    assert (response.status_code, response.json()["code"]) == (401, "WRONG_INVOCATION")
    assert VALIDATED == []


def test_an_oversized_body_is_413_before_validation(client: TestClient, forge: FakeForge) -> None:
    body = json.dumps({"eventType": "x", "issue": {"summary": "s" * CAP}}).encode()
    response = post(client, forge, body)
    assert (response.status_code, response.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert VALIDATED == []


def test_a_chunked_body_is_cut_off_at_the_cap(forge: FakeForge) -> None:
    app = forge_app(forge)
    with TestClient(app) as client:
        upload = Upload(50 * MIB)
        status, answer = asgi_post(
            SimpleNamespace(client=client),  # type: ignore[arg-type]
            "/forge/events",
            forge.drive(client).headers(forge.mint_fit("event")),
            upload,
        )
    assert (status, answer["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert upload.pulled == 1


def test_an_invalid_body_is_422_without_echoing_it(client: TestClient, forge: FakeForge) -> None:
    response = post(client, forge, b'{"issue": {"secret-looking-input": 1}}')
    assert response.status_code == 422
    assert [error["loc"] for error in response.json()["detail"]] == [["body", "eventType"]]
    assert "secret-looking-input" not in response.text


def test_the_body_and_its_cap_are_in_openapi(forge: FakeForge) -> None:
    operation = forge_app(forge).openapi()["paths"]["/forge/events"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IssueEvent"
    }
    assert {"401", "413", "422", "503"} <= set(operation["responses"])


def test_read_body_keeps_the_raw_bytes(forge: FakeForge) -> None:
    config = forge.forge_auth(clock=lambda: NOW)
    app = FastAPI()
    config.install(app)

    @app.post("/raw")
    async def raw(call: Annotated[ForgeInvocation, Depends(RAW_ROUTE)]) -> dict[str, Any]:
        return {"body": call.body.decode(), "same": call.body == call.raw_body}

    with TestClient(app) as client:
        response = post(client, forge, b"not even json", path="/raw")
    assert response.json() == {"body": "not even json", "same": True}


def test_options_that_contradict_each_other_are_refused() -> None:
    with pytest.raises(ValueError, match="raw_body"):
        ForgeRequest(body=IssueEvent, read_body=True)
    with pytest.raises(ValueError, match="invocation"):
        ForgeRequest(invocation="webhook")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="module keys"):
        ForgeRequest(module_keys="remote-events")
    with pytest.raises(ValueError, match="max_body_size"):
        ForgeRequest(body=IssueEvent, max_body_size=0)


# -- a body read twice -----------------------------------------------------------------------


def test_two_dependencies_read_the_same_body(client: TestClient, forge: FakeForge) -> None:
    response = post(client, forge, EVENT, path="/forge/twice")
    assert response.json() == {"same": True, "eventType": "avi:jira:created:issue"}


def test_the_route_reads_the_body_after_the_dependency(client: TestClient, forge: FakeForge) -> None:
    response = post(client, forge, EVENT, path="/forge/then-route-reads")
    assert response.json() == {"same": True, "json": json.loads(EVENT)}


def test_the_dependency_reads_the_body_after_the_route_did(client: TestClient, forge: FakeForge) -> None:
    response = post(client, forge, EVENT, path="/forge/route-reads-first")
    assert response.json() == {"same": True}


def test_a_body_streamed_away_by_other_code_is_a_clear_error(client: TestClient, forge: FakeForge) -> None:
    with pytest.raises(RuntimeError, match=r"request\.stream\(\).*await request\.body\(\)"):
        post(client, forge, EVENT, path="/forge/streamed-away")


# -- strict JSON (Connect's side: tests/test_bodies.py) --------------------------------------------------------------


@pytest.mark.parametrize("case", HOSTILE_JSON)
def test_hostile_json_is_422_on_a_forge_route(client: TestClient, forge: FakeForge, case: str) -> None:
    response = post(client, forge, HOSTILE_JSON[case], path="/forge/big")
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert VALIDATED == []


def test_64_levels_are_accepted_and_65_are_not() -> None:
    assert loads(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH) is not None
    with pytest.raises(ValueError, match="nested deeper than 64"):
        loads(b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1))
    assert loads(b'{"a": 1.5, "b": [1, {"c": null}]}') == {"a": 1.5, "b": [1, {"c": None}]}


def test_an_invocation_built_on_the_hot_path_is_the_one_its_constructor_builds(forge: FakeForge) -> None:
    """`forge_invocation` and `with_body` store the fields through the slots: every field, as the constructor would."""
    payload = forge.mint_fit("event").split(".")[1]
    claims = ForgeClaims.model_validate_json(base64url_decode(payload))
    fields = (claims, SecretStr("system"), SecretStr("user"), "a" * 32, "b" * 16, {"n": 1}, b'{"n": 1}')
    built, constructed = forge_invocation(*fields), ForgeInvocation(*fields)

    assert [field.name for field in dataclasses.fields(ForgeInvocation)] == [
        "claims", "system_token", "user_token", "trace_id", "span_id", "body", "raw_body",
    ]  # fmt: skip
    assert built == constructed
    assert [getattr(built, field.name) for field in dataclasses.fields(built)] == list(fields)
    assert type(built) is ForgeInvocation
    assert with_body(ForgeInvocation(*fields[:5]), {"n": 1}, b'{"n": 1}') == constructed
    assert forge_invocation(*fields[:5]) == ForgeInvocation(*fields[:5])  # body and raw_body default to None
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.body = "x"  # type: ignore[misc]
