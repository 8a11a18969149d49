"""OpenAPI: every route guarded by one of the library's dependencies documents the errors it can answer.

FastAPI lets a dependency add a security scheme but not responses, so
`ConnectAuth.install(app)` and `ForgeAuth.install(app)` wrap `app.openapi`: each
`DocumentedDependency` found in a route's dependency tree adds its statuses
(with the `AuthErrorResponse` model, whose `code` is the `AuthErrorCode` enum,
and the `WWW-Authenticate` challenge of its side: `JWT` for Connect, `Bearer`
for Forge) and the request body it reads, which FastAPI cannot see since it
never parses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import fastapi.routing
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import validation_error_definition, validation_error_response_definition
from fastapi.routing import APIRoute
from pydantic import BaseModel, TypeAdapter
from starlette.routing import BaseRoute

from ._errors import AuthErrorCode

# FastAPI 0.16x keeps included routers nested in `app.routes` and walks them with this; older
# versions copy their routes into `app.routes`.
_iter_route_contexts: Callable[[list[BaseRoute]], Iterable[Any]] | None = getattr(
    fastapi.routing, "iter_route_contexts", None
)

__all__ = ["AuthErrorResponse", "DocumentedDependency", "GuardedRoute", "document_errors", "guarded_routes"]

_REF = "#/components/schemas/{model}"

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "A malformed lifecycle payload (`INVALID_INSTALL_PAYLOAD`).",
    401: "The call is not trusted: see `code` (`MISSING_JWT`, `INVALID_SIGNATURE`, `TOKEN_EXPIRED`...).",
    403: "The route acts as the invocation's user, and the invocation has none (`USER_REQUIRED`).",
    408: "The body did not arrive within the route's time limit (`BODY_TIMEOUT`); the connection is closed.",
    413: "The body exceeds the route's limit (`PAYLOAD_TOO_LARGE`).",
    422: "The verified body does not validate against the route's body model.",
    503: "Atlassian's public key could not be obtained (`FAILED_TO_OBTAIN_PUBLIC_KEY`): retry later.",
}


class AuthErrorResponse(BaseModel):
    """The body of every rejection, Connect's and Forge's: a message safe to show, and why, as a code."""

    detail: str
    code: AuthErrorCode


class DocumentedDependency:
    """A dependency that says which error statuses it can answer, which body it reads, and what it needs."""

    challenge: ClassVar[str] = "JWT"
    """The `WWW-Authenticate` scheme of its 401s."""

    def openapi_statuses(self, app: FastAPI) -> set[int]:
        """The statuses this dependency may answer on `app` (with the configuration installed there, if any)."""
        raise NotImplementedError

    def openapi_body(self) -> TypeAdapter[Any] | None:
        """The type of the body this dependency reads, if it reads one."""
        return None

    def missing_configuration(self, app: FastAPI) -> str | None:
        """Why this dependency could not run on `app` (no configuration passed or installed), or `None`."""
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


@dataclass(frozen=True)
class GuardedRoute:
    """A route of an app as it is served (its included routers' prefix and dependencies applied), and its guards."""

    path_format: str
    methods: frozenset[str]
    include_in_schema: bool
    dependencies: list[DocumentedDependency]


def _api_routes(app: FastAPI) -> Iterator[tuple[Any, APIRoute]]:
    """Each `APIRoute` of `app`, with what serves it: itself, or (FastAPI 0.16x) its included router's context."""
    if _iter_route_contexts is None:  # older FastAPI copies included routes into `app.routes`
        yield from ((route, route) for route in app.routes if isinstance(route, APIRoute))
        return
    for context in _iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            yield context, context.original_route


def guarded_routes(app: FastAPI) -> Iterator[GuardedRoute]:
    """Each route of `app` (included routers' too) guarded by the library's dependencies, with them."""
    for served, route in _api_routes(app):
        dependant = getattr(served, "dependant", None) or route.dependant
        if dependencies := _dependencies(dependant):
            yield GuardedRoute(
                getattr(served, "path_format", None) or route.path_format,
                frozenset(getattr(served, "methods", None) or route.methods or ()),
                bool(getattr(served, "include_in_schema", route.include_in_schema)),
                dependencies,
            )


def _document(app: FastAPI, schema: dict[str, Any]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for route in guarded_routes(app):
        if not route.include_in_schema:
            continue
        dependencies = route.dependencies
        statuses = set().union(*(dependency.openapi_statuses(app) for dependency in dependencies))
        challenge = ", ".join(sorted({dependency.challenge for dependency in dependencies}))
        bodies = [body for dependency in dependencies if (body := dependency.openapi_body()) is not None]
        for method in sorted(route.methods):
            operation = schema.get("paths", {}).get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                responses.setdefault(str(status), _response(status, challenge, components))
            if bodies and "requestBody" not in operation:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _schema_of(bodies[0], components)}},
                }


def _response(status: int, challenge: str, components: dict[str, Any]) -> dict[str, Any]:
    if status == 422:
        components.setdefault("ValidationError", validation_error_definition)
        components.setdefault("HTTPValidationError", validation_error_response_definition)
        model = "HTTPValidationError"
    else:
        _schema_of(TypeAdapter(AuthErrorResponse), components)
        model = "AuthErrorResponse"
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model)}}},
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"description": f"`{challenge}`", "schema": {"type": "string"}}}
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
