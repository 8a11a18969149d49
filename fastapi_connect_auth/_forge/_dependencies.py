"""FastAPI dependencies `ForgeRequest` and `ForgeLifecycle`: verify a call from Forge to a remote backend.

Each is a `SecurityBase` with an HTTP bearer scheme (`ForgeInvocationToken` in
OpenAPI); it reads the headers Forge sends, hands them to the framework-free
`ForgeAuth.verify_invocation`, and only then reads the body: streamed under a
cap, kept on the request, parsed strictly and validated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar, Literal

from fastapi import FastAPI, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from pydantic import TypeAdapter

from .._bodies import read_kept
from .._errors import AuthError
from .._json import validate_body
from .._openapi import FORGE_KEY_OUTAGE, DocumentedDependency
from ._flow import ForgeAuth, forge_headers
from ._lifecycle import (
    ANY_LIFECYCLE_PAYLOAD,
    ForgeInstalledPayload,
    ForgeLifecycleEvent,
    ForgePreUninstallPayload,
    ForgeUpgradedPayload,
    VerifiedForgeLifecycle,
    check_installation,
    lifecycle_event_of,
)
from ._models import ForgeInvocation, ForgeInvocationKind, with_body

__all__ = ["DEFAULT_MAX_BODY_SIZE", "ForgeLifecycle", "ForgeRequest"]

DEFAULT_MAX_BODY_SIZE = 1024 * 1024
"""The largest body a Forge route reads unless told otherwise: 1 MiB."""

_SCHEME_NAME = "ForgeInvocationToken"
_DESCRIPTION = "A Forge Invocation Token (FIT), sent by Forge as `Authorization: Bearer <token>`."
_INVOCATIONS = ("ui", "backend", "event", "trigger", "lifecycle")
_LIFECYCLE_BODIES: dict[ForgeLifecycleEvent | Literal["any"], TypeAdapter[Any]] = {
    "installed": TypeAdapter(ForgeInstalledPayload),
    "upgraded": TypeAdapter(ForgeUpgradedPayload),
    "pre-uninstall": TypeAdapter(ForgePreUninstallPayload),
    "any": ANY_LIFECYCLE_PAYLOAD,
}


class _ForgeSecurity(SecurityBase, DocumentedDependency):
    """What Forge's dependencies share: the bearer scheme, the configuration, verifying, then reading the body."""

    challenge: ClassVar[str] = "Bearer"
    """The `WWW-Authenticate` scheme of its 401s."""
    key_outage: ClassVar[str] = FORGE_KEY_OUTAGE
    """Its 503: Forge's key set, not Atlassian's install keys."""

    def __init__(
        self,
        *,
        invocation: ForgeInvocationKind | None,
        module_keys: Iterable[str] | None,
        body: TypeAdapter[Any] | None,
        read_body: bool,
        max_body_size: int,
        scheme_name: str | None,
        description: str | None,
        config: ForgeAuth | None,
    ) -> None:
        if invocation is not None and invocation not in _INVOCATIONS:
            raise ValueError(f"invocation must be one of {_INVOCATIONS}, not {invocation!r}")
        if isinstance(module_keys, str):
            raise ValueError("module_keys is a collection of module keys, not one string")
        if body is not None and read_body:
            raise ValueError("body= keeps the raw bytes too (ForgeInvocation.raw_body): drop read_body=True")
        if max_body_size <= 0:
            raise ValueError("max_body_size must be a positive number of bytes")
        self.model = HTTPBearerModel(bearerFormat="JWT", description=description or _DESCRIPTION)
        """The OpenAPI security scheme: a JWT bearer token."""
        self.scheme_name = scheme_name or _SCHEME_NAME
        """The scheme's name in OpenAPI."""
        self.invocation: ForgeInvocationKind | None = invocation
        """Which calls the route takes (`None`: any verified FIT)."""
        self.module_keys: frozenset[str] | None = None if module_keys is None else frozenset(module_keys)
        """The manifest module keys (`app.module.key`) the route takes (`None`: any)."""
        self.body = body
        """What the body is validated into, read only after the token is verified."""
        self.read_body = read_body
        """Whether the raw body is read (after the token is verified) and kept on the invocation."""
        self.max_body_size = max_body_size
        """The largest body read, in bytes."""
        self.config = config
        """The `ForgeAuth` to use; `None` takes the one installed on the app."""

    def openapi_statuses(self, app: FastAPI) -> set[int]:
        """401, 503 (Forge's keys unavailable); 408 and 413 when it reads the body, 422 when it validates one."""
        reads = self.body is not None or self.read_body
        return {401, 503} | ({408, 413} if reads else set()) | ({422} if self.body is not None else set())

    def openapi_body(self) -> TypeAdapter[Any] | None:
        """The body's model, if the route validates one."""
        return self.body

    def missing_configuration(self, app: FastAPI) -> str | None:
        """Why this dependency cannot run on `app`: no `config=` and no `ForgeAuth` installed there."""
        if self.config is not None or ForgeAuth.installed_on(app) is not None:
            return None
        return f"no ForgeAuth is installed on this app: {ForgeAuth.install_hint}, or pass config= to the dependency"

    @staticmethod
    def extract_token(request: Request) -> str | None:
        """The FIT from `Authorization: Bearer <token>` (scheme case-insensitive); `None` for anything else."""
        scheme, _, credentials = forge_headers(request.scope).get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return credentials.strip() or None

    async def verified(self, request: Request) -> ForgeInvocation:
        """The request's verified invocation, with its body read, parsed and validated as this dependency says."""
        headers = forge_headers(request.scope)
        config = self.config or ForgeAuth.of(request)
        try:
            invocation = await config.verify_invocation(
                self.extract_token(request),
                system_token=headers.get("x-forge-oauth-system"),
                user_token=headers.get("x-forge-oauth-user"),
                trace_id=headers.get("x-b3-traceid"),
                span_id=headers.get("x-b3-spanid"),
                invocation=self.invocation,
                module_keys=self.module_keys,
                scope=request.scope,
            )
        except AuthError as exc:
            if exc.status_code == 401:
                exc.headers = {"WWW-Authenticate": "Bearer"}
            raise
        if self.body is None and not self.read_body:
            return invocation
        raw = await read_kept(request, self.max_body_size)
        body = raw if self.body is None else validate_body(self.body, raw)
        return with_body(invocation, body, raw)


class ForgeRequest(_ForgeSecurity):
    """Verify a Forge Remote call (UI call, product event, scheduled trigger); returns a `ForgeInvocation`.

    ```python
    @app.post("/forge/events")
    async def events(call: Annotated[ForgeInvocation, Depends(ForgeRequest(invocation="event", body=IssueEvent))]):
        event: IssueEvent = call.body
    ```

    A rejected call is answered 401 with `WWW-Authenticate: Bearer` (503 when
    Forge's keys cannot be had), with `{"detail", "code"}` once
    `ForgeAuth.install(app)` has run.

    * `invocation`: which calls the route takes. `"ui"` only UI calls (their FIT
      carries a `principal` or a `context`); `"event"`, `"trigger"`,
      `"lifecycle"` or `"backend"` only calls whose FIT has neither, so never a
      FIT that went through a user's browser (`requestRemote`). Anything else is
      `WRONG_INVOCATION` (401), refused before any key lookup. `None`: any.
    * `module_keys`: the manifest module keys (`app.module.key`) the route takes;
      for events, triggers and backend calls the FIT names the manifest endpoint
      (`{"type": "core:endpoint", "key": ...}`), the only thing that tells them
      apart: `module_keys={"forge-events"}`. Another is `WRONG_INVOCATION` (401).
    * `body`: the body's type (a Pydantic model, or any type Pydantic validates),
      returned as `ForgeInvocation.body`, with its bytes in `raw_body`. It is read
      only once the FIT is verified, streamed and capped at `max_body_size` bytes
      (1 MiB by default), parsed as strict JSON (no `NaN` or `Infinity`, finite
      numbers, at most 64 levels deep), then validated: 401, then 413, then 422,
      whose errors never echo the input. Never declare the body as a route
      parameter: FastAPI would read and parse it, for anyone and at any size,
      before the token is looked at.
    * `read_body=True`: the raw bytes instead, in `ForgeInvocation.body`, for
      routes that parse the body themselves.

    The body read is kept on the request: the route may `await request.body()`
    too, and two dependencies on one route may both read it.
    """

    def __init__(
        self,
        *,
        invocation: ForgeInvocationKind | None = None,
        module_keys: Iterable[str] | None = None,
        body: Any = None,
        read_body: bool = False,
        max_body_size: int = DEFAULT_MAX_BODY_SIZE,
        scheme_name: str | None = None,
        description: str | None = None,
        config: ForgeAuth | None = None,
    ) -> None:
        super().__init__(
            invocation=invocation,
            module_keys=module_keys,
            body=None if body is None else TypeAdapter(body),
            read_body=read_body,
            max_body_size=max_body_size,
            scheme_name=scheme_name,
            description=description,
            config=config,
        )

    async def __call__(self, request: Request) -> ForgeInvocation:
        return await self.verified(request)


class ForgeLifecycle(_ForgeSecurity):
    """Verify a Forge lifecycle event; returns a `VerifiedForgeLifecycle` with its typed payload.

    ```python
    @app.post("/forge/lifecycle/installed", status_code=204)
    async def installed(event: Annotated[VerifiedForgeLifecycle, Depends(ForgeLifecycle("installed"))]) -> None:
        await store.installed(event.installation_id, event.invocation.installation_contexts)
    ```

    `"installed"` takes `avi:forge:installed:app` (`ForgeInstalledPayload`),
    `"upgraded"` takes `avi:forge:upgraded:app` (`ForgeUpgradedPayload`) and
    `"pre-uninstall"` takes the preUninstall module's payload
    (`ForgePreUninstallPayload`). `"any"` takes all three at one route, as a
    manifest's single lifecycle endpoint sends them (an `endpoint` module has one
    `route.path`): told apart by `eventType`, or, for preUninstall, by its
    `contextToken` and `context` without one; a body that is plainly none of
    them is a 422 (`unknown_forge_lifecycle_event`), never guessed. The FIT must have no `principal` and no
    `context` (`WRONG_INVOCATION`: never a FIT from a browser), and the payload
    must name the FIT's installation, by its bare UUID or its ARI
    (`INSTALLATION_MISMATCH`); the body is read as `ForgeRequest(body=...)` reads
    it (401, then 413, then 422). `module_keys` pins the route to the
    manifest endpoints its trigger or preUninstall module sends to (the FIT's
    `app.module.key`): without it a product event's or a trigger's FIT, which
    carries no principal either, passes too. Lifecycle bodies are small: the
    cap is 64 KiB unless `max_body_size` says otherwise.
    """

    def __init__(
        self,
        event: ForgeLifecycleEvent | Literal["any"],
        *,
        module_keys: Iterable[str] | None = None,
        max_body_size: int = 64 * 1024,
        scheme_name: str | None = None,
        description: str | None = None,
        config: ForgeAuth | None = None,
    ) -> None:
        if event not in _LIFECYCLE_BODIES:
            raise ValueError(f"event must be one of {tuple(_LIFECYCLE_BODIES)}, not {event!r}")
        super().__init__(
            invocation="lifecycle",
            module_keys=module_keys,
            body=_LIFECYCLE_BODIES[event],
            read_body=False,
            max_body_size=max_body_size,
            scheme_name=scheme_name,
            description=description,
            config=config,
        )
        self.event: ForgeLifecycleEvent | Literal["any"] = event
        """The lifecycle event this route takes (`"any"`: each of them)."""

    async def __call__(self, request: Request) -> VerifiedForgeLifecycle:
        invocation = await self.verified(request)
        try:
            check_installation(invocation, invocation.body)
        except AuthError as exc:
            await (self.config or ForgeAuth.of(request)).report_rejection(
                exc, installation_id=invocation.installation_id, scope=request.scope
            )
            exc.headers = {"WWW-Authenticate": "Bearer"}
            raise
        return VerifiedForgeLifecycle(lifecycle_event_of(invocation.body), invocation, invocation.body)
