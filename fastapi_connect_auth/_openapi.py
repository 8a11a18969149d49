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

from ._errors import AuthError, AuthErrorCode

# FastAPI 0.16x keeps included routers nested in `app.routes` and walks them with this; older
# versions copy their routes into `app.routes`.
_iter_route_contexts: Callable[[list[BaseRoute]], Iterable[Any]] | None = getattr(
    fastapi.routing, "iter_route_contexts", None
)

__all__ = [
    "AuthErrorResponse",
    "DocumentedDependency",
    "GuardedRoute",
    "auth_error_responses",
    "document_errors",
    "guarded_routes",
]

_REF = "#/components/schemas/{model}"

ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "A malformed lifecycle payload (`INVALID_INSTALL_PAYLOAD`).",
    401: "The call is not trusted: see `code` (`MISSING_JWT`, `INVALID_SIGNATURE`, `TOKEN_EXPIRED`...).",
    403: "The route acts as the invocation's user, and the invocation has none (`USER_REQUIRED`).",
    408: "The body did not arrive within the route's time limit (`BODY_TIMEOUT`); the connection is closed.",
    413: "The body exceeds the route's limit (`PAYLOAD_TOO_LARGE`).",
    422: "The verified body does not validate against the route's body model.",
}
"""What each status means, for the statuses whose meaning does not depend on what answered it (not 503)."""

ATLASSIAN_KEY_OUTAGE = "Atlassian's public key could not be obtained (`FAILED_TO_OBTAIN_PUBLIC_KEY`): retry later."
FORGE_KEY_OUTAGE = "Forge's key set (its JWKS) could not be obtained (`FAILED_TO_OBTAIN_PUBLIC_KEY`): retry later."
STORE_OUTAGE = "The app's store is unavailable (`STORE_UNAVAILABLE`): nothing was changed; retry later."
_REASONS: dict[AuthErrorCode, str] = {
    AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY: ATLASSIAN_KEY_OUTAGE,
    AuthErrorCode.STORE_UNAVAILABLE: STORE_OUTAGE,
    AuthErrorCode.DELIVERY_CONFLICT: "The delivery was seen before with another body (`DELIVERY_CONFLICT`).",
}
"""A code's meaning in a response description, where `ERROR_DESCRIPTIONS` does not say it."""


class AuthErrorResponse(BaseModel):
    """The body of every rejection, Connect's and Forge's: a message safe to show, and why, as a code."""

    detail: str
    code: AuthErrorCode


class DocumentedDependency:
    """A dependency that says which error statuses it can answer, which body it reads, and what it needs."""

    challenge: ClassVar[str] = "JWT"
    """The `WWW-Authenticate` scheme of its 401s."""
    key_outage: ClassVar[str] = ATLASSIAN_KEY_OUTAGE
    """What its 503 means when its signing keys cannot be had."""

    def openapi_statuses(self, app: FastAPI) -> set[int]:
        """The statuses this dependency may answer on `app` (with the configuration installed there, if any)."""
        raise NotImplementedError

    def openapi_outages(self, app: FastAPI) -> set[str]:
        """Why it may answer 503 on `app`, one sentence each: its keys (when it answers 503 at all), by default."""
        return {self.key_outage} if 503 in self.openapi_statuses(app) else set()

    def openapi_body(self) -> TypeAdapter[Any] | None:
        """The type of the body this dependency reads, if it reads one."""
        return None

    def missing_configuration(self, app: FastAPI) -> str | None:
        """Why this dependency could not run on `app` (no configuration passed or installed), or `None`."""
        return None


def auth_error_responses(*codes: AuthErrorCode) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route's own rejections: each code's status, with the `AuthErrorResponse` body.

    ```python
    @app.post("/sync", responses=auth_error_responses(AuthErrorCode.STORE_UNAVAILABLE))
    async def sync(call: ForgeEventCall) -> None: ...
    ```

    The errors of the library's dependencies are documented without it; a route
    that raises `AuthError` itself (a store it reads, a delivery it remembers)
    says so with this. Codes of one status share its entry, each on its line.
    """
    reasons: dict[int, list[str]] = {}
    for code in codes:
        status = AuthError(code, "").status_code
        described = ERROR_DESCRIPTIONS.get(status, "")
        reason = _REASONS.get(code) or (described if f"`{code.value}`" in described else f"`{code.value}`. {described}")
        reasons.setdefault(status, [])
        if reason not in reasons[status]:
            reasons[status].append(reason)
    return {
        status: {"model": AuthErrorResponse, "description": _join(lines)} for status, lines in sorted(reasons.items())
    }


def _join(reasons: Iterable[str]) -> str:
    """Reasons as one description, a paragraph each (`_reasons` splits it again)."""
    return "\n\n".join(sorted(set(reasons)))


def _reasons(description: str) -> set[str]:
    return {reason for reason in description.split("\n\n") if reason}


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
        outages = set().union(*(dependency.openapi_outages(app) for dependency in dependencies))
        statuses |= {503} if outages else set()
        challenge = ", ".join(sorted({dependency.challenge for dependency in dependencies}))
        bodies = [body for dependency in dependencies if (body := dependency.openapi_body()) is not None]
        for method in sorted(route.methods):
            operation = schema.get("paths", {}).get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                response = responses.setdefault(str(status), _response(status, challenge, components, outages))
                if status == 503:  # the route's own 503s (`auth_error_responses`) and its dependencies', together
                    response["description"] = _join(_reasons(response.get("description", "")) | outages)
            if bodies and "requestBody" not in operation:
                operation["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": _schema_of(bodies[0], components)}},
                }


def _response(status: int, challenge: str, components: dict[str, Any], outages: set[str]) -> dict[str, Any]:
    if status == 422:
        components.setdefault("ValidationError", validation_error_definition)
        components.setdefault("HTTPValidationError", validation_error_response_definition)
        model = "HTTPValidationError"
    else:
        _schema_of(TypeAdapter(AuthErrorResponse), components)
        model = "AuthErrorResponse"
    response: dict[str, Any] = {
        "description": _join(outages) if status == 503 else ERROR_DESCRIPTIONS[status],
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
