"""FastAPI dependencies: `ConnectInstall`, `ConnectLifecycle` and `ConnectRequest`.

Each is a `SecurityBase`, so protected routes show the `AtlassianConnectJWT`
scheme in OpenAPI and `/docs`. They adapt a Starlette request to the
framework-free flows of `ConnectAuth`; to read the token from elsewhere,
subclass and override `extract_token` (the Node library's `AuthDataProvider`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote

from fastapi import FastAPI, Request
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.security.base import SecurityBase
from pydantic import TypeAdapter

from .._bodies import BodySource, read_kept
from .._errors import AuthError, AuthErrorCode
from .._json import validate_body
from .._openapi import STORE_OUTAGE, DocumentedDependency
from ._flow import AuthorizationMethod, ConnectAuth, QshMode, RequestTarget
from ._models import (
    WEBHOOK_IDENTIFIER_HEADER,
    InstallPayload,
    LifecycleEvent,
    LifecyclePayload,
    VerifiedInstallation,
    VerifiedLifecycle,
    VerifiedRequest,
)

__all__ = ["ConnectInstall", "ConnectLifecycle", "ConnectRequest", "request_target"]

_SCHEME_NAME = "AtlassianConnectJWT"
_DESCRIPTION = "An Atlassian Connect JWT, sent as `Authorization: JWT <token>` or in the `jwt` query parameter."
_QSH_MODES = ("computed", "context", "any", "skip")
_LIFECYCLE_EVENTS = ("uninstalled", "enabled", "disabled")
_INSTALL_BODY: TypeAdapter[Any] = TypeAdapter(InstallPayload)
_LIFECYCLE_BODY: TypeAdapter[Any] = TypeAdapter(LifecyclePayload)


def request_target(request: Request) -> RequestTarget:
    """The method, path as the product sent it, and raw query of `request`.

    The QSH covers the path as sent, percent-encoding included, so the raw path
    is used, with any `root_path` (a mount or a proxy prefix) in front of it.
    """
    scope = request.scope
    method: str = scope["method"]
    path: str = scope["path"]
    raw_path: bytes | None = scope.get("raw_path")
    query: bytes = scope.get("query_string", b"")
    root_path: str = scope.get("root_path", "")
    if len(path) + len(query) <= _MEMO_MAX_TARGET:
        return _memoised_target(method, path, raw_path, query, root_path)
    return _target(method, path, raw_path, query, root_path)


def _target(method: str, path: str, raw_path: bytes | None, query_string: bytes, root_path: str) -> RequestTarget:
    query = query_string.decode("utf-8", "replace")
    if raw_path is not None:
        raw = raw_path.decode("latin-1")
        for candidate in (raw, root_path + raw):
            if unquote(candidate) == path:
                return RequestTarget(method, candidate, query)
    return RequestTarget(method, quote(path, safe="/:@!$&'()*+,;=~"), query)


_MEMO_MAX_TARGET = 1024
"""Targets up to this many characters (path plus query) are memoised; longer ones are built each time."""
_memoised_target = lru_cache(maxsize=512)(_target)
"""A route's requests repeat a handful of targets (a webhook's URL, a page's query): each is worked out once.

`RequestTarget` is frozen, so one may serve every request it describes; the QSH
memo (`_qsh.target_hash`) is keyed on the same strings and hits with it.
"""


def _authorization(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The first `Authorization` header of an ASGI scope's, as `request.headers.get("authorization")` finds it.

    Read from the scope's list: Starlette's `Headers` would be built for this one look-up.
    ASGI servers send header names lower-cased, which is what `Headers` relies on too.
    """
    for name, value in headers:
        if name == b"authorization":
            return value.decode("latin-1")
    return None


class _ConnectSecurity(SecurityBase, DocumentedDependency):
    def __init__(self, *, scheme_name: str | None, description: str | None, config: ConnectAuth | None) -> None:
        self.model = APIKey(**{"in": APIKeyIn.header}, name="Authorization", description=description or _DESCRIPTION)
        """The OpenAPI security scheme: an `Authorization` header carrying a JWT."""
        self.scheme_name = scheme_name or _SCHEME_NAME
        """The scheme's name in OpenAPI."""
        self.config = config
        """The `ConnectAuth` to use; `None` takes the one installed on the app."""

    def extract_token(self, request: Request) -> str | None:
        """The JWT from `Authorization: JWT <token>`, else from the one `jwt` query parameter."""
        authorization = _authorization(request.scope["headers"])
        if authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "jwt" and credentials.strip():
                return credentials.strip()
        values = request.query_params.getlist("jwt")
        if len(values) > 1:
            raise AuthError(AuthErrorCode.FAILED_TO_DECODE, "The request carries more than one 'jwt' query parameter.")
        return values[0] if values else None

    def configured(self, app: FastAPI) -> ConnectAuth | None:
        """The `ConnectAuth` this dependency checks with on `app`, if one is set (for OpenAPI, outside a request)."""
        return self.config or ConnectAuth.installed_on(app)

    def openapi_outages(self, app: FastAPI) -> set[str]:
        """Atlassian's key when it fetches one; the store when `ConnectAuth(store=...)` reads credentials from one."""
        config = self.configured(app)
        return super().openapi_outages(app) | (
            {STORE_OUTAGE} if config is not None and config.store is not None else set()
        )

    def missing_configuration(self, app: FastAPI) -> str | None:
        """Why this dependency cannot run on `app`: no `config=` and no `ConnectAuth` installed there."""
        if self.configured(app) is not None:
            return None
        return f"no ConnectAuth is installed on this app: {ConnectAuth.install_hint}, or pass config= to the dependency"

    def connect_auth(self, request: Request) -> ConnectAuth:
        """The `ConnectAuth` this dependency checks with: its own `config`, else the app's."""
        return self.config or ConnectAuth.of(request)

    def read_callback(self, request: Request) -> tuple[ConnectAuth, str | None, RequestTarget, BodySource]:
        """What a lifecycle flow needs: the config, the token, the target and a capped reader of the body.

        The flow reads the body only after the checks that do not need it, and
        never more than `max_body_size` bytes of it, whatever the headers say, nor
        for longer than `body_timeout` seconds.
        """
        config = self.connect_auth(request)

        async def body() -> bytes:
            return await read_kept(request, config.max_body_size, time_limit=config.body_timeout)

        return config, self.extract_token(request), request_target(request), body


class ConnectRequest(_ConnectSecurity):
    """Verify a webhook, page load or iframe call; returns a `VerifiedRequest`.

    ```python
    @app.get("/api/events")
    async def events(call: Annotated[VerifiedRequest, Depends(ConnectRequest(qsh="context"))]): ...
    ```

    * `qsh`: `"computed"` (the default: the token is bound to this method and
      URL), `"context"` (tokens from `AP.context.getToken()`), `"any"` (either),
      `"skip"` (no QSH check: only for routes whose URL the product cannot know).
    * `authorization_method`: `"sharedSecret"` (HS256, the default); `"publicKey"`
      or `"any"` also admit Atlassian-signed (RS256) tokens.
    * `auto_error=False`: a request with no token at all yields `None` instead of
      401, for routes that serve anonymous callers too. A token that is present
      but not valid is still rejected.
    * `body`: a webhook's body type (a Pydantic model, or any type Pydantic
      validates), returned as `VerifiedRequest.body`. The body is read only once
      the token is verified, streamed and capped at `max_body_size` bytes and
      `body_timeout` seconds (the config's by default), then validated: 401,
      then 413 (or 408), then 422. Never
      declare a webhook body as a route parameter: FastAPI would read and parse
      it, for anyone and at any size, before the token is looked at.

    ```python
    @app.post("/webhooks")
    async def webhook(call: Annotated[VerifiedRequest, Depends(ConnectRequest(body=IssueEvent))]):
        event: IssueEvent = call.body
    ```
    """

    def __init__(
        self,
        *,
        qsh: QshMode = "computed",
        authorization_method: AuthorizationMethod = "sharedSecret",
        auto_error: bool = True,
        body: Any = None,
        max_body_size: int | None = None,
        body_timeout: float | None = None,
        scheme_name: str | None = None,
        description: str | None = None,
        config: ConnectAuth | None = None,
    ) -> None:
        if qsh not in _QSH_MODES:
            raise ValueError(f"qsh must be one of {_QSH_MODES}, not {qsh!r}")
        if body is not None and not auto_error:
            raise ValueError("a route that takes a body needs a token: body= and auto_error=False do not mix")
        super().__init__(scheme_name=scheme_name, description=description, config=config)
        self.qsh: QshMode = qsh
        """How the token is bound to the request: `computed`, `context`, `any` or `skip`."""
        self.authorization_method: AuthorizationMethod = authorization_method
        """`sharedSecret` (HS256) or, opting in, `publicKey`/`any` for RS256 tokens."""
        self.auto_error = auto_error
        """Whether a missing token is an error (else the dependency gives `None`)."""
        self.body: TypeAdapter[Any] | None = None if body is None else TypeAdapter(body)
        """The pydantic model the body is validated into, read only after the token is verified."""
        self.max_body_size = max_body_size
        """The largest body read for `body`, in bytes; `None` for the config's."""
        self.body_timeout = body_timeout
        """Seconds the body for `body` may take to arrive; `None` for the config's."""

    def openapi_statuses(self, app: FastAPI) -> set[int]:
        """401; 503 when RS256 is accepted; 408, 413 and 422 when it reads a `body`."""
        signed = {503} if self.authorization_method != "sharedSecret" else set()
        return {401} | signed | ({408, 413, 422} if self.body is not None else set())

    def openapi_body(self) -> TypeAdapter[Any] | None:
        """The `body` model, if any."""
        return self.body

    async def __call__(self, request: Request) -> VerifiedRequest[Any] | None:
        token = self.extract_token(request)
        if token is None and not self.auto_error:
            return None
        verified = await self.connect_auth(request).verify_request(
            token,
            request_target(request),
            qsh=self.qsh,
            authorization_method=self.authorization_method,
            scope=request.scope,
        )
        if self.body is None:
            return verified
        return await self._with_body(request, verified, self.body)

    async def _with_body(
        self, request: Request, verified: VerifiedRequest[Any], body_type: TypeAdapter[Any]
    ) -> VerifiedRequest[Any]:
        """`verified` with its body: streamed under the cap and the deadline, then parsed strictly and validated (422).

        The raw bytes and the webhook's identifier are kept too, for `remember_webhook_delivery`.
        """
        config = self.connect_auth(request)
        raw = await read_kept(
            request, self.max_body_size or config.max_body_size, time_limit=self.body_timeout or config.body_timeout
        )
        return VerifiedRequest(
            verified.claims,
            verified.stored_entity,
            validate_body(body_type, raw),
            raw_body=raw,
            webhook_identifier=request.headers.get(WEBHOOK_IDENTIFIER_HEADER),
        )


class ConnectInstall(_ConnectSecurity):
    """Verify an `installed` callback; returns a `VerifiedInstallation` (new or update).

    Persist `result.payload` (its `shared_secret` replaces any stored one at once).
    """

    def __init__(
        self, *, scheme_name: str | None = None, description: str | None = None, config: ConnectAuth | None = None
    ) -> None:
        super().__init__(scheme_name=scheme_name, description=description, config=config)

    def openapi_statuses(self, app: FastAPI) -> set[int]:
        """400, 401, 408, 413; 503 when installs are signed (Atlassian's key is fetched)."""
        config = self.configured(app)
        signed = config is None or config.authorization_method != "sharedSecret"
        return {400, 401, 408, 413} | ({503} if signed else set())

    def openapi_body(self) -> TypeAdapter[Any] | None:
        """The install payload."""
        return _INSTALL_BODY

    async def __call__(self, request: Request) -> VerifiedInstallation[Any]:
        config, token, target, body = self.read_callback(request)
        return await config.verify_installation(token, target, body, scope=request.scope)


class ConnectLifecycle(_ConnectSecurity):
    """Verify an `uninstalled`, `enabled` or `disabled` callback; returns a `VerifiedLifecycle`.

    ```python
    @app.post("/uninstalled")
    async def uninstalled(event: Annotated[VerifiedLifecycle, Depends(ConnectLifecycle("uninstalled"))]): ...
    ```
    """

    def __init__(
        self,
        event: LifecycleEvent,
        *,
        scheme_name: str | None = None,
        description: str | None = None,
        config: ConnectAuth | None = None,
    ) -> None:
        if event not in _LIFECYCLE_EVENTS:
            raise ValueError(f"event must be one of {_LIFECYCLE_EVENTS}; 'installed' is ConnectInstall's")
        super().__init__(scheme_name=scheme_name, description=description, config=config)
        self.event: LifecycleEvent = event
        """The lifecycle event this route takes: `uninstalled`, `enabled` or `disabled`."""

    def openapi_statuses(self, app: FastAPI) -> set[int]:
        """400, 401, 408, 413; 503 for a signed `uninstalled`."""
        config = self.configured(app)
        signed = self.event == "uninstalled" and (config is None or config.authorization_method != "sharedSecret")
        return {400, 401, 408, 413} | ({503} if signed else set())

    def openapi_body(self) -> TypeAdapter[Any] | None:
        """The lifecycle payload."""
        return _LIFECYCLE_BODY

    async def __call__(self, request: Request) -> VerifiedLifecycle[Any]:
        config, token, target, body = self.read_callback(request)
        return await config.verify_lifecycle(self.event, token, target, body, scope=request.scope)
