"""OpenAPI: every route guarded by a Connect dependency documents the errors it can answer.

FastAPI lets a dependency add a security scheme but not responses, so
`ConnectAuth.install(app)` wraps `app.openapi`: each `DocumentedDependency`
found in a route's dependency tree adds its statuses (with the
`ConnectAuthError` model, whose `code` is the `AuthErrorCode` enum) and the
request body it reads, which FastAPI cannot see since it never parses it.
"""

from __future__ import annotations

from typing import Any

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import validation_error_definition, validation_error_response_definition
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter

from ._errors import AuthErrorCode

__all__ = ["ConnectAuthError", "DocumentedDependency", "document_errors"]

_REF = "#/components/schemas/{model}"

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "A malformed lifecycle payload (`INVALID_INSTALL_PAYLOAD`).",
    401: "The call is not trusted: see `code` (`MISSING_JWT`, `INVALID_SIGNATURE`, `TOKEN_EXPIRED`...).",
    413: "The body exceeds the route's limit (`PAYLOAD_TOO_LARGE`).",
    422: "The verified body does not validate against the route's body model.",
    503: "Atlassian's public key could not be obtained (`FAILED_TO_OBTAIN_PUBLIC_KEY`): retry later.",
}


class ConnectAuthError(BaseModel):
    """The body of every rejection: a message safe to show, and why, as a code."""

    detail: str
    code: AuthErrorCode


class DocumentedDependency:
    """A dependency that says which error statuses it can answer, and which body it reads."""

    def openapi_statuses(self, app: FastAPI) -> set[int]:
        """The statuses this dependency may answer on `app` (with the configuration installed there, if any)."""
        raise NotImplementedError

    def openapi_body(self) -> TypeAdapter[Any] | None:
        """The type of the body this dependency reads, if it reads one."""
        return None


def document_errors(app: FastAPI) -> None:
    """Make `app.openapi()` document the errors and bodies of its guarded routes (once per app)."""
    if getattr(app.state, "auth_errors_documented", False):
        return
    app.state.auth_errors_documented = True
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _document(app, generate())
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def _dependencies(dependant: Dependant) -> list[DocumentedDependency]:
    found = [dependant.call] if isinstance(dependant.call, DocumentedDependency) else []
    for sub in dependant.dependencies:
        found += _dependencies(sub)
    return found


def _api_routes(app: FastAPI) -> list[tuple[APIRoute, str]]:
    """Each `APIRoute` of `app` with its path as served, the routes of included routers too.

    FastAPI 0.165 keeps an included router as one entry of `app.routes` and lists
    its routes through `fastapi.routing.iter_route_contexts`; earlier versions copy
    them into `app.routes`.
    """
    contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    found = []
    for entry in contexts(app.routes) if contexts is not None else app.routes:
        route = getattr(entry, "original_route", entry)
        if isinstance(route, APIRoute) and route.include_in_schema:
            found.append((route, getattr(entry, "path_format", None) or route.path_format))
    return found


def _document(app: FastAPI, schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for route, path in _api_routes(app):
        dependencies = _dependencies(route.dependant)
        if not dependencies:
            continue
        statuses = set().union(*(dependency.openapi_statuses(app) for dependency in dependencies))
        bodies = [body for dependency in dependencies if (body := dependency.openapi_body()) is not None]
        for method in route.methods or ():
            operation = schema.get("paths", {}).get(path, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                responses.setdefault(str(status), _response(status, components))
            if bodies and "requestBody" not in operation:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _schema_of(bodies[0], components)}},
                }


def _response(status: int, components: dict[str, Any]) -> dict[str, Any]:
    if status == 422:
        components.setdefault("ValidationError", validation_error_definition)
        components.setdefault("HTTPValidationError", validation_error_response_definition)
        model = "HTTPValidationError"
    else:
        _schema_of(TypeAdapter(ConnectAuthError), components)
        model = "ConnectAuthError"
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model)}}},
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"description": "`JWT`", "schema": {"type": "string"}}}
    return response


def _schema_of(adapter: TypeAdapter[Any], components: dict[str, Any]) -> dict[str, Any]:
    """`adapter`'s JSON schema, its named models moved into `components` (a `$ref` to them returned)."""
    schema = adapter.json_schema(ref_template=_REF, mode="validation")
    components.update(schema.pop("$defs", {}))
    title = schema.get("title")
    if schema.get("type") == "object" and isinstance(title, str) and "properties" in schema:
        components.setdefault(title, schema)
        return {"$ref": _REF.format(model=title)}
    return schema
