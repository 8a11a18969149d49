"""OpenAPI: protected routes declare the `AtlassianConnectJWT` scheme, so `/docs` shows how they are called."""

from __future__ import annotations

from typing import Any

import pytest

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
