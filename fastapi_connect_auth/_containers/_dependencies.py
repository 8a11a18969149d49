"""`ForgeContainerRequest`: the FastAPI dependency that trusts a call to a Forge container through its sidecar.

It is a `SecurityBase` with an API-key scheme on `x-forge-invocation-id`
(`ForgeInvocationId` in OpenAPI): the id is checked for shape before any I/O, the
sidecar says who the invocation is, the context must be the container's app and
environment, the route's restrictions apply, and only then is the body read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.security.base import SecurityBase
from pydantic import TypeAdapter

from .._bodies import read_kept
from .._errors import AuthError, AuthErrorCode
from .._forge._dependencies import DEFAULT_MAX_BODY_SIZE
from .._forge._flow import _trace
from .._json import validate_body
from .._openapi import DocumentedDependency
from ._flow import ForgeContainers
from ._header import is_invocation_id
from ._logging import current_log_attributes, decode_log_attributes
from ._models import ForgeContainerContext, ForgeContainerInvocation, ForgeContainerInvocationKind, invocation_kind

__all__ = ["INVOCATION_ID_HEADER", "ForgeContainerRequest"]

INVOCATION_ID_HEADER = "x-forge-invocation-id"
"""The header the sidecar names the invocation with."""

_SCHEME_NAME = "ForgeInvocationId"
_DESCRIPTION = "The invocation id Forge's sidecar sends (`x-forge-invocation-id`); the sidecar is asked who it is."
_KINDS = ("ui", "event", "trigger", "webtrigger")
_CHALLENGE = {"WWW-Authenticate": "ForgeInvocationId"}


class ForgeContainerRequest(SecurityBase, DocumentedDependency):
    """Trust a call to a Forge container; returns a `ForgeContainerInvocation` (`None` without an id if `auto_error=False`).

    ```python
    @app.get("/issue-panel")
    async def panel(call: Annotated[ForgeContainerInvocation, Depends(ForgeContainerRequest())]):
        return {"site": call.cloud_id, "user": call.account_id}
    ```

    Refusals, in order, each with its code: no `x-forge-invocation-id`
    (`MISSING_INVOCATION_ID`, 401), a malformed or repeated one
    (`INVALID_INVOCATION_ID`, 401, before any I/O), the sidecar answering 4xx
    (`UNKNOWN_INVOCATION`, 401) or down, slow or unreadable (`SIDECAR_UNAVAILABLE`,
    503), another app or environment (`CONTEXT_MISMATCH`, 401), a web trigger on a
    route that did not opt in, another kind or module (`WRONG_INVOCATION`, 401), no
    user where one is required (`USER_REQUIRED`, 403); then the body (413, 408, 422).

    * `invocation`: the kind the route takes (`ForgeContainerInvocationKind`); `None`: any.
    * `module_keys`: the manifest module keys the route takes.
    * `web_trigger=True`: the route also takes web triggers, which Forge does not
      authenticate: the caller is anyone, its headers and body its own. Such a call
      comes with `web_trigger=True`, `authenticated=False` and no `account_id`.
    * `require_user=True`: the invocation must have a user (routes that act as them).
    * `body`, `read_body`, `max_body_size`: as `ForgeRequest`'s, read after every check.
    * `auto_error=False`: a call without the header gets `None` instead of a 401.
    """

    challenge: ClassVar[str] = "ForgeInvocationId"
    """The `WWW-Authenticate` scheme of its 401s."""

    def __init__(
        self,
        *,
        invocation: ForgeContainerInvocationKind | None = None,
        module_keys: Iterable[str] | None = None,
        web_trigger: bool = False,
        require_user: bool = False,
        body: Any = None,
        read_body: bool = False,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        auto_error: bool = True,
        scheme_name: str | None = None,
        description: str | None = None,
        config: ForgeContainers | None = None,
    ) -> None:
        if invocation is not None and invocation not in _KINDS:
            raise ValueError(f"invocation must be one of {_KINDS}, not {invocation!r}")
        if invocation == "webtrigger" and not web_trigger:
            raise ValueError('invocation="webtrigger" takes unauthenticated calls: say so with web_trigger=True')
        if isinstance(module_keys, str):
            raise ValueError("module_keys is a collection of module keys, not one string")
        if body is not None and read_body:
            raise ValueError("body= keeps the raw bytes too (raw_body): drop read_body=True")
        if max_body_size <= 0:
            raise ValueError("max_body_size must be a positive number of bytes")
        self.model = APIKey(
            **{"in": APIKeyIn.header}, name=INVOCATION_ID_HEADER, description=description or _DESCRIPTION
        )
        """The OpenAPI security scheme: an id in a header."""
        self.scheme_name = scheme_name or _SCHEME_NAME
        """The scheme's name in OpenAPI."""
        self.invocation: ForgeContainerInvocationKind | None = invocation
        """The kind of call the route takes (`None`: any but, without `web_trigger`, web triggers)."""
        self.module_keys: frozenset[str] | None = None if module_keys is None else frozenset(module_keys)
        """The manifest module keys the route takes (`None`: any)."""
        self.web_trigger = web_trigger
        """Whether unauthenticated web-trigger calls are taken."""
        self.require_user = require_user
        """Whether the invocation must have a user."""
        self.body = None if body is None else TypeAdapter(body)
        """What the body is validated into."""
        self.read_body = read_body
        """Whether the raw body is read and kept."""
        self.max_body_size = max_body_size
        """The largest body read, in bytes."""
        self.auto_error = auto_error
        """Whether a call without the header is refused (else the route gets `None`)."""
        self.config = config
        """The `ForgeContainers` to use; `None` takes the one installed on the app."""

    def openapi_statuses(self, app: FastAPI) -> set[int]:
        """401, 503 (the sidecar down); 403 with `require_user`; 408 and 413 when reading a body, 422 validating one."""
        reads = self.body is not None or self.read_body
        statuses = {401, 503} | ({403} if self.require_user else set())
        return statuses | ({408, 413} if reads else set()) | ({422} if self.body is not None else set())

    def openapi_body(self) -> TypeAdapter[Any] | None:
        """The body's model, if the route validates one."""
        return self.body

    def missing_configuration(self, app: FastAPI) -> str | None:
        """Why this dependency cannot run on `app`: no `config=` and no `ForgeContainers` installed there."""
        if self.config is not None or ForgeContainers.installed_on(app) is not None:
            return None
        return f"no ForgeContainers is installed on this app: {ForgeContainers.install_hint}, or pass config="

    async def __call__(self, request: Request) -> ForgeContainerInvocation | None:
        ids = request.headers.getlist(INVOCATION_ID_HEADER)
        if not ids and not self.auto_error:
            return None
        config = self.config or ForgeContainers.of(request)
        installation_id = None
        try:
            context, attributes = await self._context(request, ids, config)
            installation_id = context.app.installation_id
            return await self._invocation(request, ids[0], context, attributes)
        except AuthError as exc:
            await config.report_rejection(exc, installation_id=installation_id, scope=request.scope)
            raise

    @staticmethod
    async def _context(
        request: Request, ids: list[str], config: ForgeContainers
    ) -> tuple[ForgeContainerContext, Mapping[str, str] | None]:
        """The sidecar's context of the call's one well-formed id, of this app and environment."""
        if not ids:
            raise _refused(AuthErrorCode.MISSING_INVOCATION_ID, "The call has no x-forge-invocation-id header.")
        if len(ids) > 1 or not is_invocation_id(ids[0]):
            raise _refused(AuthErrorCode.INVALID_INVOCATION_ID, "The x-forge-invocation-id is not a well-formed id.")
        attributes = decode_log_attributes(request.headers.get("x-forge-invocation-log-attributes"))
        current_log_attributes.set(attributes)
        try:
            context = await config.context(ids[0])
            config.check(context)
        except AuthError as exc:
            raise _challenged(exc) from None
        return context, attributes

    async def _invocation(
        self,
        request: Request,
        invocation_id: str,
        context: ForgeContainerContext,
        attributes: Mapping[str, str] | None,
    ) -> ForgeContainerInvocation:
        """The route's restrictions on a vouched-for call, then its body."""
        headers = request.headers
        kind = invocation_kind(context)
        self._check_kind(kind, context.app.module.key if context.app.module else None)
        call = ForgeContainerInvocation(
            context,
            invocation_id,
            web_trigger=kind == "webtrigger",
            trace_id=_trace(headers.get("x-b3-traceid")),
            span_id=_trace(headers.get("x-b3-spanid")),
            log_attributes=attributes,
        )
        if self.require_user and call.account_id is None:
            raise AuthError(AuthErrorCode.USER_REQUIRED, "This route acts as the invocation's user; it has none.")
        if self.body is None and not self.read_body:
            return call
        raw = await read_kept(request, self.max_body_size)
        body = raw if self.body is None else validate_body(self.body, raw)
        return dataclasses.replace(call, body=body, raw_body=raw)

    def _check_kind(self, kind: ForgeContainerInvocationKind, module_key: str | None) -> None:
        if kind == "webtrigger" and not self.web_trigger:
            raise _refused(
                AuthErrorCode.WRONG_INVOCATION,
                "This route does not take web triggers (unauthenticated calls): opt in with web_trigger=True.",
            )
        if self.invocation is not None and kind != self.invocation:
            raise _refused(AuthErrorCode.WRONG_INVOCATION, f"This route takes {self.invocation} calls only.")
        if self.module_keys is not None and module_key not in self.module_keys:
            raise _refused(AuthErrorCode.WRONG_INVOCATION, "The invoked module is not one this route takes.")


def _challenged(exc: AuthError) -> AuthError:
    if exc.status_code == 401:
        exc.headers = dict(_CHALLENGE)
    return exc


def _refused(code: AuthErrorCode, message: str) -> AuthError:
    return _challenged(AuthError(code, message))
