"""The sidecar's invocation context (`GET /invocation/context`) and the typed `ForgeContainerInvocation`.

The models share Forge Remote's (`ForgeEnvironment`, `ForgeModule`, `ForgeContext`)
where a field means the same; names are snake_case in Python, camelCase on the wire,
and unknown fields are kept, since only a web trigger's context is documented.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, StrictBool

from .._forge._models import _CONFIG, ForgeContext, ForgeEnvironment, ForgeModule, Identifier, ShortText

__all__ = [
    "WEB_TRIGGER_MODULE",
    "ForgeContainerApp",
    "ForgeContainerCallContext",
    "ForgeContainerContext",
    "ForgeContainerInvocation",
    "ForgeContainerInvocationKind",
    "ForgeUserAccess",
    "invocation_kind",
]

WEB_TRIGGER_MODULE = "core:webtrigger"
"""The `app.module.type` of a web trigger's context (the one context Forge documents)."""

ForgeContainerInvocationKind = Literal["ui", "event", "trigger", "webtrigger"]
"""What called, read from the context's `app.module.type` (`ForgeContainerRequest(invocation=...)`).

`"webtrigger"`: `core:webtrigger`, or no module type at all (fail closed: a context
that does not say what called is treated as the unauthenticated kind). `"event"`:
`core:trigger` (product events); `"trigger"`: `core:scheduledTrigger`; `"ui"`: any
other module type. Only the web trigger's context is documented; the others follow
the manifest's module types and are an inference: pin routes with `module_keys` too.
"""

_KINDS: dict[str, ForgeContainerInvocationKind] = {
    WEB_TRIGGER_MODULE: "webtrigger",
    "core:trigger": "event",
    "core:scheduledTrigger": "trigger",
}


class ForgeContainerApp(BaseModel):
    """The context's `app`: the app, its installation, environment and invoked module."""

    model_config = _CONFIG

    id: Identifier
    """The app's ARI: must be `FORGE_APP_ARI`."""
    installation_id: Identifier
    """The installation's ARI (`ari:cloud:ecosystem::installation/<uuid>`)."""
    environment: ForgeEnvironment | None = None
    """The environment: its `id` must be `FORGE_ENV_ARI`."""
    module: ForgeModule | None = None
    """The module that was invoked."""


class ForgeUserAccess(BaseModel):
    """The context's `userAccess`."""

    model_config = _CONFIG

    enabled: StrictBool | None = None
    """Whether the module runs with user access."""


class ForgeContainerCallContext(ForgeContext):
    """The context's `context`: Forge Remote's `ForgeContext`, plus the user and the user access."""

    account_id: ShortText | None = None
    """The account id of the user who acted, if any."""
    user_access: ForgeUserAccess | None = None
    """Whether user access is enabled."""


class ForgeContainerContext(BaseModel):
    """What the sidecar answers to `GET /invocation/context`."""

    model_config = _CONFIG

    app: ForgeContainerApp
    """The app, installation, environment and module."""
    context: ForgeContainerCallContext | None = None
    """The site, the user and the module's context."""


def invocation_kind(context: ForgeContainerContext) -> ForgeContainerInvocationKind:
    """What called, from `app.module.type`: no type at all counts as a web trigger (see `ForgeContainerInvocationKind`)."""
    module_type = context.app.module.type if context.app.module else None
    if not module_type:
        return "webtrigger"
    return _KINDS.get(module_type, "ui")


@dataclass(frozen=True, slots=True)
class ForgeContainerInvocation:
    """An invocation the sidecar vouched for: who called (app, installation, site, user), and how to call back.

    Its names are `ForgeInvocation`'s where they mean the same (`installation_id`,
    `cloud_id`, `principal`, `environment`, `module`, `body`, `raw_body`), so a route
    moves from Forge Remote to Containers by changing its dependency. A web trigger
    (`web_trigger`) is anyone on the internet: it has no user (`account_id` is `None`
    even if the context names one) and is never `authenticated`.
    """

    context: ForgeContainerContext
    """The sidecar's context of the invocation."""
    invocation_id: str = field(repr=False)
    """The `x-forge-invocation-id`, which outbound calls carry (`forge-proxy-authorization`)."""
    web_trigger: bool = False
    """Whether this is a web trigger: an unauthenticated caller, with headers and body of its choosing."""
    trace_id: str | None = None
    """The call's trace id (`x-b3-traceid`), when well-formed."""
    span_id: str | None = None
    """The call's span id (`x-b3-spanid`), when well-formed."""
    log_attributes: Mapping[str, str] | None = None
    """`x-forge-invocation-log-attributes`, decoded (string values only), for logs."""
    body: Any = field(default=None, repr=False)
    """The validated body (`body=Model`), the raw bytes (`read_body=True`), or `None`."""
    raw_body: bytes | None = field(default=None, repr=False)
    """The body's bytes as received, whenever the dependency read it (to recognise a redelivery by them)."""

    @property
    def authenticated(self) -> bool:
        """Whether a Forge product or user made this call (everything but a web trigger)."""
        return not self.web_trigger

    @property
    def kind(self) -> ForgeContainerInvocationKind:
        """What called (`invocation_kind`)."""
        return invocation_kind(self.context)

    @property
    def app_id(self) -> str:
        """The app's ARI."""
        return self.context.app.id

    @property
    def installation_id(self) -> str:
        """The installation's id (ARI), as the sidecar names it."""
        return self.context.app.installation_id

    @property
    def installation_uuid(self) -> str:
        """The installation's bare UUID: what offline calls (`installationId=`) and `/v1/installations` use."""
        return self.installation_id.rpartition("/")[2]

    @property
    def environment(self) -> ForgeEnvironment | None:
        """The app's environment."""
        return self.context.app.environment

    @property
    def module(self) -> ForgeModule | None:
        """The module that was invoked."""
        return self.context.app.module

    @property
    def module_key(self) -> str | None:
        """The invoked module's key: the context's `moduleKey`, else `app.module.key`."""
        if self.context.context is not None and self.context.context.module_key:
            return self.context.context.module_key
        return self.module.key if self.module else None

    @property
    def cloud_id(self) -> str | None:
        """The site's cloud id."""
        return self.context.context.cloud_id if self.context.context else None

    @property
    def workspace_id(self) -> str | None:
        """The Bitbucket workspace's id."""
        return self.context.context.workspace_id if self.context.context else None

    @property
    def site_url(self) -> str | None:
        """The site's URL."""
        return self.context.context.site_url if self.context.context else None

    @property
    def account_id(self) -> str | None:
        """The user's account id; `None` without a user, and always for a web trigger."""
        if self.web_trigger or self.context.context is None:
            return None
        return self.context.context.account_id

    @property
    def principal(self) -> str | None:
        """`account_id`, under `ForgeInvocation`'s name."""
        return self.account_id

    @property
    def user_access(self) -> bool:
        """Whether the module runs with user access (`userAccess.enabled`)."""
        context = self.context.context
        return bool(context and context.user_access and context.user_access.enabled)
