"""OpenAPI: protected routes declare the `AtlassianConnectJWT` scheme and the errors they answer.

`/docs` shows how a route is called and what each refusal looks like; the
example app's whole document is pinned by a snapshot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from example_app.main import create_app
from example_app.settings import Settings
from fastapi_connect_auth import AuthErrorCode
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
