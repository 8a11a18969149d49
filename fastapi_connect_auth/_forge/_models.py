"""Pydantic models of a Forge Invocation Token's claims, and the verified `ForgeInvocation`.

Field names are snake_case in Python and camelCase on the wire; unknown fields
are kept, since Atlassian adds claims over time. Required claims are the ones
the verifier relies on: a FIT without them is refused as `FAILED_TO_DECODE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictStr,
    StringConstraints,
    field_validator,
)
from pydantic.alias_generators import to_camel

from .._tokens import NumericDate

__all__ = [
    "ForgeApp",
    "ForgeClaims",
    "ForgeContext",
    "ForgeEnvironment",
    "ForgeInstallation",
    "ForgeInstallationContext",
    "ForgeInvocation",
    "ForgeInvocationKind",
    "ForgeLicense",
    "ForgeModule",
]

ShortText = Annotated[StrictStr, StringConstraints(max_length=2048)]
"""A string of at most 2,048 characters (field types: the reference shows these names, so they are not private)."""
Identifier = Annotated[StrictStr, StringConstraints(min_length=1, max_length=512)]
"""A non-empty string of at most 512 characters: an id or an ARI."""

ForgeInvocationKind = Literal["ui", "backend", "event", "trigger", "lifecycle"]
"""Which calls a route takes (`ForgeRequest(invocation=...)`).

`"ui"`: calls from the app's UI (`invokeRemote` from the frontend, `requestRemote`),
whose FIT carries a `principal` or a `context` and may have passed through the
user's browser. `"backend"` (`invokeRemote` from a Forge function), `"event"`
(product events), `"trigger"` (scheduled triggers) and `"lifecycle"` (installed,
upgraded, preUninstall) all require a FIT with neither: Forge sends them the same
way, so they name the route's intent; tell them apart with `module_keys`.
"""

_CONFIG = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ForgeEnvironment(BaseModel):
    """`app.environment`: `type` is `DEVELOPMENT`, `STAGING` or `PRODUCTION`."""

    model_config = _CONFIG

    type: ShortText | None = None
    """`DEVELOPMENT`, `STAGING` or `PRODUCTION`."""
    id: ShortText | None = None
    """The environment's id."""


class ForgeModule(BaseModel):
    """`app.module`: the manifest module that was invoked."""

    model_config = _CONFIG

    type: ShortText | None = None
    """The module's type, as in the manifest (e.g. `jira:issuePanel`)."""
    key: ShortText | None = None
    """The module's key, as in the manifest."""


class ForgeLicense(BaseModel):
    """`app.license` (paid production apps only). `active` falls back to the older `isActive`."""

    model_config = _CONFIG

    active: StrictBool | None = Field(default=None, validation_alias=AliasChoices("active", "isActive"))
    """Whether the license is active (`isActive` in older tokens)."""
    is_evaluation: StrictBool | None = None
    """Whether the license is an evaluation."""
    type: ShortText | None = None
    """The license type, as sent."""


class ForgeInstallationContext(BaseModel):
    """One site or workspace of `app.installation.contexts`."""

    model_config = _CONFIG

    name: ShortText | None = None
    """The context's ARI (a site or workspace)."""
    api_base_url: ShortText | None = None
    """Where the app calls this context's product."""
    cloud_id: ShortText | None = None
    """The site's cloud id (Atlassian sites)."""
    workspace_id: ShortText | None = None
    """The workspace id (Bitbucket)."""


class ForgeInstallation(BaseModel):
    """`app.installation`: its `id` must equal `app.installationId`."""

    model_config = _CONFIG

    id: Identifier | None = None
    """The installation's id: must equal `app.installationId`."""
    # A lambda, not `list`: pydantic would tokenize a builtin's signature text at import (about 8 ms).
    contexts: list[ForgeInstallationContext] = Field(default_factory=lambda: [], max_length=100)
    """The sites or workspaces the app is installed in."""


class ForgeApp(BaseModel):
    """The `app` claim."""

    model_config = _CONFIG

    id: Identifier
    """The app's id (an ARI): must be one of `ForgeAuth.app_ids`."""
    installation_id: Identifier
    """The installation's id."""
    api_base_url: ShortText
    """Where the app calls the product with the tokens sent alongside."""
    app_version: ShortText | None = Field(default=None, validation_alias=AliasChoices("appVersion", "version"))
    """The app's deployed version."""
    environment: ForgeEnvironment | None = None
    """The app's environment."""
    module: ForgeModule | None = None
    """The module that was invoked."""
    license: ForgeLicense | None = None
    """The app's license (paid production apps only)."""
    installation: ForgeInstallation | None = None
    """The installation and its contexts."""


class ForgeContext(BaseModel):
    """The `context` claim, sent with calls from the UI only."""

    model_config = _CONFIG

    cloud_id: ShortText | None = None
    """The site's cloud id."""
    workspace_id: ShortText | None = None
    """The Bitbucket workspace's id."""
    site_url: ShortText | None = None
    """The site's URL."""
    local_id: ShortText | None = None
    """The id of the module's instance on the page."""
    module_key: ShortText | None = None
    """The key of the module that called."""
    extension: dict[str, Any] | None = None
    """What the product says about where the module runs (the issue, the space...)."""


class ForgeClaims(BaseModel):
    """The claims of a Forge Invocation Token, with `alg` and `kid` kept from its header by the verifier."""

    model_config = _CONFIG

    iss: StrictStr
    """The issuer: always `forge/invocation-token`."""
    aud: list[StrictStr] = Field(max_length=16)
    """The audience: the app's id (ARI), as a list."""
    exp: NumericDate
    """Expiry, seconds since the epoch."""
    iat: NumericDate
    """Issued at, seconds since the epoch."""
    nbf: NumericDate
    """Not before, seconds since the epoch."""
    jti: Identifier
    """The token's unique id."""
    app: ForgeApp
    """The app, its installation and where to call the product."""
    context: ForgeContext | None = None
    """The UI context (calls from the UI only)."""
    principal: ShortText | None = None
    """The account id of the user who acted, if any."""
    ic_label: ShortText | None = None
    """The Isolated Cloud label, for tokens from an Isolated Cloud."""

    @field_validator("aud", mode="before")
    @classmethod
    def _audience_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


@dataclass(frozen=True, slots=True)
class ForgeInvocation:
    """A verified call from Forge: who called (app, installation, site, user) and the tokens it sent.

    `system_token` and `user_token` (`x-forge-oauth-system` / `x-forge-oauth-user`)
    are `SecretStr`: opaque, never shown in a repr, never parsed for identity.
    """

    claims: ForgeClaims
    """The verified FIT's claims."""
    system_token: SecretStr | None = field(default=None, repr=False)
    """The app's system token (`x-forge-oauth-system`), if sent."""
    user_token: SecretStr | None = field(default=None, repr=False)
    """The user's token (`x-forge-oauth-user`), if sent."""
    trace_id: str | None = None
    """The call's trace id (`x-b3-traceid`), when well-formed."""
    span_id: str | None = None
    """The call's span id (`x-b3-spanid`), when well-formed."""
    body: Any = field(default=None, repr=False)
    """The body, read only once the FIT is verified: the validated model of `ForgeRequest(body=Model)`, or
    the raw bytes of `ForgeRequest(read_body=True)`; `None` when the route reads none."""
    raw_body: bytes | None = field(default=None, repr=False)
    """The body's bytes as received, whenever the dependency read it (to recognise a redelivery by them)."""

    @property
    def app_id(self) -> str:
        """The app's id (ARI)."""
        return self.claims.app.id

    @property
    def installation_id(self) -> str:
        """The installation's id."""
        return self.claims.app.installation_id

    @property
    def api_base_url(self) -> str:
        """Where the app calls the product with the tokens; on the verifier's allow-list."""
        return self.claims.app.api_base_url

    @property
    def jti(self) -> str:
        """The FIT's unique id."""
        return self.claims.jti

    @property
    def app_version(self) -> str | None:
        """The app's deployed version."""
        return self.claims.app.app_version

    @property
    def environment(self) -> ForgeEnvironment | None:
        """The app's environment."""
        return self.claims.app.environment

    @property
    def module(self) -> ForgeModule | None:
        """The module that was invoked."""
        return self.claims.app.module

    @property
    def license(self) -> ForgeLicense | None:
        """The app's license, if any."""
        return self.claims.app.license

    @property
    def installation_contexts(self) -> list[ForgeInstallationContext]:
        """The sites or workspaces of the installation."""
        installation = self.claims.app.installation
        return list(installation.contexts) if installation else []

    @property
    def context(self) -> ForgeContext | None:
        """The UI context (UI calls only)."""
        return self.claims.context

    @property
    def principal(self) -> str | None:
        """The user's account id (UI calls only)."""
        return self.claims.principal

    @property
    def browser_visible(self) -> bool:
        """Whether this FIT may have passed through a user's browser, which can resend it with anything.

        UI calls (`requestRemote` straight from the browser, or a UI resolver) carry a
        `principal` or a `context`; backend `invokeRemote` calls, product events,
        scheduled triggers and lifecycle events carry neither. Nothing lasting (a stored
        system token, an event) should be accepted from a browser-visible FIT.
        """
        return self.claims.principal is not None or self.claims.context is not None

    @property
    def ic_label(self) -> str | None:
        """The Isolated Cloud label, already checked against `^[a-z0-9_-]{1,50}$`."""
        return self.claims.ic_label

    @property
    def cloud_id(self) -> str | None:
        """The site: the UI context's `cloudId`, else the first installation context's."""
        if self.claims.context is not None and self.claims.context.cloud_id:
            return self.claims.context.cloud_id
        return next((ctx.cloud_id for ctx in self.installation_contexts if ctx.cloud_id), None)


_new_object = object.__new__
_SLOTS = ForgeInvocation.__dict__
_set_claims = _SLOTS["claims"].__set__
_set_system_token = _SLOTS["system_token"].__set__
_set_user_token = _SLOTS["user_token"].__set__
_set_trace_id = _SLOTS["trace_id"].__set__
_set_span_id = _SLOTS["span_id"].__set__
_set_body = _SLOTS["body"].__set__
_set_raw_body = _SLOTS["raw_body"].__set__


def forge_invocation(
    claims: ForgeClaims,
    system_token: SecretStr | None,
    user_token: SecretStr | None,
    trace_id: str | None,
    span_id: str | None,
    body: Any = None,
    raw_body: bytes | None = None,
) -> ForgeInvocation:
    """`ForgeInvocation(...)` as its constructor builds it, once per verified call, at a fraction of the cost.

    A frozen dataclass's `__init__` stores each of its seven fields through
    `object.__setattr__`, and `dataclasses.replace` (the body added after the
    FIT is verified) reads them all back first; the slots' own descriptors make
    the same stores directly. The result is the same frozen object
    (`tests/test_forge_bodies.py` compares them field by field).
    """
    invocation: ForgeInvocation = _new_object(ForgeInvocation)
    _set_claims(invocation, claims)
    _set_system_token(invocation, system_token)
    _set_user_token(invocation, user_token)
    _set_trace_id(invocation, trace_id)
    _set_span_id(invocation, span_id)
    _set_body(invocation, body)
    _set_raw_body(invocation, raw_body)
    return invocation


def with_body(invocation: ForgeInvocation, body: Any, raw_body: bytes) -> ForgeInvocation:
    """`dataclasses.replace(invocation, body=body, raw_body=raw_body)`, through `forge_invocation`."""
    return forge_invocation(
        invocation.claims,
        invocation.system_token,
        invocation.user_token,
        invocation.trace_id,
        invocation.span_id,
        body,
        raw_body,
    )
