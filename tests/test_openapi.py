"""OpenAPI: protected routes declare the `AtlassianConnectJWT` scheme and the errors they answer.

`/docs` shows how a route is called and what each refusal looks like; the
example app's whole document is pinned by a snapshot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import APIRouter, Depends, FastAPI

from example_app.main import create_app
from example_app.settings import Settings
from fastapi_connect_auth import (
    AuthErrorCode,
    ConnectAuth,
    ConnectRequest,
    ForgeAuth,
    ForgeInvocation,
    ForgeRequest,
    VerifiedRequest,
    auth_error_responses,
    lifecycle_router,
)
from fastapi_connect_auth.stores import MemoryStore
from tests.conftest import ConnectApp

PROTECTED = {
    ("post", "/installed"),
    ("post", "/uninstalled"),
    ("post", "/enabled"),
    ("post", "/disabled"),
    ("post", "/webhook"),
    ("get", "/computed"),
    ("get", "/context"),
    ("get", "/any"),
    ("get", "/skip"),
    ("get", "/optional"),
    ("get", "/signed"),
}


@pytest.fixture
def openapi(connect_app: ConnectApp) -> dict[str, Any]:
    response = connect_app.client.get("/openapi.json")
    assert response.status_code == 200
    schema: dict[str, Any] = response.json()
    return schema


def test_security_scheme_is_a_jwt_in_the_authorization_header(openapi: dict[str, Any]) -> None:
    scheme = openapi["components"]["securitySchemes"]["AtlassianConnectJWT"]

    assert scheme["type"] == "apiKey"
    assert scheme["in"] == "header"
    assert scheme["name"] == "Authorization"
    assert "JWT <token>" in scheme["description"]
    assert list(openapi["components"]["securitySchemes"]) == ["AtlassianConnectJWT"]


@pytest.mark.parametrize(("method", "path"), sorted(PROTECTED))
def test_each_protected_route_lists_the_scheme(openapi: dict[str, Any], method: str, path: str) -> None:
    assert openapi["paths"][path][method]["security"] == [{"AtlassianConnectJWT": []}]


def test_unprotected_route_lists_no_scheme(openapi: dict[str, Any]) -> None:
    assert "security" not in openapi["paths"]["/public"]["get"]


def test_dependencies_add_no_parameters_of_their_own(openapi: dict[str, Any]) -> None:
    """The token is read by the dependency, not declared as a query or header parameter."""
    for method, path in PROTECTED:
        assert "parameters" not in openapi["paths"][path][method], (method, path)


LIFECYCLE = {("post", "/installed"), ("post", "/uninstalled"), ("post", "/enabled"), ("post", "/disabled")}
SNAPSHOT = Path(__file__).parent / "snapshots" / "example_app_openapi.json"


def error_model(openapi: dict[str, Any], method: str, path: str, status: str) -> str:
    ref: str = openapi["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[1]


@pytest.mark.parametrize(("method", "path"), sorted(PROTECTED))
def test_each_protected_route_documents_its_401_with_the_error_model(
    openapi: dict[str, Any], method: str, path: str
) -> None:
    responses = openapi["paths"][path][method]["responses"]

    assert error_model(openapi, method, path, "401") == "AuthErrorResponse"
    assert "WWW-Authenticate" in responses["401"]["headers"]


def test_the_error_model_has_a_detail_and_an_enum_code(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]

    assert schemas["AuthErrorResponse"]["required"] == ["detail", "code"]
    assert schemas["AuthErrorResponse"]["properties"]["code"] == {"$ref": "#/components/schemas/AuthErrorCode"}
    assert schemas["AuthErrorCode"]["enum"] == [code.value for code in AuthErrorCode]


@pytest.mark.parametrize(("method", "path"), sorted(LIFECYCLE))
def test_lifecycle_routes_document_their_body_and_errors(openapi: dict[str, Any], method: str, path: str) -> None:
    operation = openapi["paths"][path][method]
    model = "InstallPayload" if path == "/installed" else "LifecyclePayload"

    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": f"#/components/schemas/{model}"
    }
    assert {"400", "401", "413"} <= set(operation["responses"])
    assert ("503" in operation["responses"]) == (path in ("/installed", "/uninstalled"))
    assert "clientKey" in openapi["components"]["schemas"][model]["properties"]


def test_only_routes_that_fetch_keys_document_a_503(openapi: dict[str, Any]) -> None:
    with_503 = {(method, path) for method, path in PROTECTED if "503" in openapi["paths"][path][method]["responses"]}
    assert with_503 == {("post", "/installed"), ("post", "/uninstalled"), ("get", "/signed")}


def test_example_app_openapi_matches_the_snapshot() -> None:
    """The whole document, so any change to what the example app promises is reviewed.

    After an intended change: `UPDATE_OPENAPI_SNAPSHOT=1 pytest tests/test_openapi.py`, and review the diff.
    """
    document = create_app(Settings(base_url="https://connect-app.example.test")).openapi()
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_OPENAPI_SNAPSHOT"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text)

    assert text == SNAPSHOT.read_text()


_CONNECT = ConnectAuth(base_url="https://app.example.test", credentials_loader=lambda key: None)
_INNER = APIRouter()
_OUTER = APIRouter(dependencies=[Depends(ConnectRequest())])


@_INNER.get("/guarded")
async def _guarded(call: Annotated[VerifiedRequest[Any], Depends(ConnectRequest(qsh="context"))]) -> None: ...


@_OUTER.get("/by-router")
async def _by_router() -> None: ...


_OUTER.include_router(_INNER, prefix="/inner")


def test_routes_of_included_routers_document_their_errors_too() -> None:
    """FastAPI 0.16x keeps an included router as one route of the app: its routes must be found inside it."""
    app = FastAPI()
    _CONNECT.install(app)
    app.include_router(_OUTER, prefix="/api")
    paths = app.openapi()["paths"]

    for path in ("/api/by-router", "/api/inner/guarded"):
        assert error_model({"paths": paths}, "get", path, "401") == "AuthErrorResponse", path
        assert "WWW-Authenticate" in paths[path]["get"]["responses"]["401"]["headers"]


# -- 503s: what is down, said by the route that may be down -------------------------------------------------------

FORGE_APP = "ari:cloud:ecosystem::app/6c9a4a8f-27c5-4b7e-8f5e-3b9f2d0c1a77"


def descriptions(document: dict[str, Any], path: str, method: str = "post") -> dict[str, str]:
    return {status: answer["description"] for status, answer in document["paths"][path][method]["responses"].items()}


def test_the_lifecycle_routers_routes_document_the_store_and_the_keys_each_may_be_down() -> None:
    store = MemoryStore()
    connect = ConnectAuth(base_url="https://app.example.test", store=store)
    forge = ForgeAuth(app_id=FORGE_APP)
    app = FastAPI()
    connect.install(app)
    forge.install(app)
    app.include_router(lifecycle_router(connect, store, forge, forge_module_keys={"forge-lifecycle"}))
    document = app.openapi()

    for path in ("/installed", "/uninstalled", "/enabled", "/disabled"):
        assert "`STORE_UNAVAILABLE`" in descriptions(document, path)["503"], path
    assert "Atlassian's public key" in descriptions(document, "/installed")["503"]
    assert "Atlassian's public key" not in descriptions(document, "/enabled")["503"]  # HS256: no key fetched
    for path in (
        "/forge/lifecycle",
        "/forge/lifecycle/installed",
        "/forge/lifecycle/upgraded",
        "/forge/lifecycle/pre-uninstall",
    ):
        outages = descriptions(document, path)["503"]
        assert "`STORE_UNAVAILABLE`" in outages
        assert "Forge's key set" in outages
        assert "Atlassian's" not in outages
    answer = document["paths"]["/installed"]["post"]["responses"]["503"]
    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AuthErrorResponse"}


def test_a_connect_route_over_a_store_documents_the_stores_503() -> None:
    for store, expected in ((MemoryStore(), True), (None, False)):
        connect = (
            ConnectAuth(base_url="https://app.example.test", store=store)
            if store is not None
            else ConnectAuth(base_url="https://app.example.test", credentials_loader=lambda key: None)
        )
        app = FastAPI()
        connect.install(app)

        @app.post("/webhook")
        async def webhook(call: Annotated[VerifiedRequest[Any], Depends(ConnectRequest())]) -> None: ...

        responses = descriptions(app.openapi(), "/webhook")
        assert ("503" in responses) is expected
        assert not expected or responses["503"] == (
            "The app's store is unavailable (`STORE_UNAVAILABLE`): nothing was changed; retry later."
        )


def test_a_forge_routes_503_names_forges_key_set() -> None:
    forge = ForgeAuth(app_id=FORGE_APP)
    app = FastAPI()
    forge.install(app)

    @app.post("/forge/events")
    async def event(call: Annotated[ForgeInvocation, Depends(ForgeRequest())]) -> None: ...

    assert descriptions(app.openapi(), "/forge/events")["503"] == (
        "Forge's key set (its JWKS) could not be obtained (`FAILED_TO_OBTAIN_PUBLIC_KEY`): retry later."
    )


def test_auth_error_responses_documents_a_routes_own_rejections_beside_its_dependencies() -> None:
    forge = ForgeAuth(app_id=FORGE_APP)
    app = FastAPI()
    forge.install(app)
    own = auth_error_responses(
        AuthErrorCode.STORE_UNAVAILABLE, AuthErrorCode.DELIVERY_CONFLICT, AuthErrorCode.PAYLOAD_TOO_LARGE
    )

    @app.post("/forge/events", responses=own)
    async def event(call: Annotated[ForgeInvocation, Depends(ForgeRequest())]) -> None: ...

    @app.get(
        "/status", responses=auth_error_responses(AuthErrorCode.STORE_UNAVAILABLE, AuthErrorCode.STORE_UNAVAILABLE)
    )
    async def status() -> None: ...

    document = app.openapi()
    responses = descriptions(document, "/forge/events")
    assert responses["503"].split("\n\n") == [
        "Forge's key set (its JWKS) could not be obtained (`FAILED_TO_OBTAIN_PUBLIC_KEY`): retry later.",
        "The app's store is unavailable (`STORE_UNAVAILABLE`): nothing was changed; retry later.",
    ]
    assert responses["409"] == "The delivery was seen before with another body (`DELIVERY_CONFLICT`)."
    assert responses["413"] == "The body exceeds the route's limit (`PAYLOAD_TOO_LARGE`)."
    unauthorized = auth_error_responses(AuthErrorCode.UNAUTHORIZED_REQUEST)[401]["description"]
    assert unauthorized.startswith("`UNAUTHORIZED_REQUEST`. The call is not trusted")
    conflict = document["paths"]["/forge/events"]["post"]["responses"]["409"]
    assert conflict["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/AuthErrorResponse"}
    assert descriptions(document, "/status", "get") == {
        "200": "Successful Response",
        "503": "The app's store is unavailable (`STORE_UNAVAILABLE`): nothing was changed; retry later.",
    }
    assert auth_error_responses() == {}
