"""Forge's lifecycle events as a remote receives them: the payload models and the check that binds them to the FIT.

A `trigger` module with `endpoint:` POSTs `avi:forge:installed:app` and
`avi:forge:upgraded:app` (major versions only) to the remote, and a
`preUninstall` module with `endpoint:` POSTs its payload when an uninstall
starts; each comes with a FIT that has no `principal` and no `context`. The
payload is not signed: only the FIT is, so the installation the payload names
must be the FIT's (`check_installation`), and what is kept comes from the FIT.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, SecretStr, StrictInt, Tag, TypeAdapter
from pydantic.alias_generators import to_camel

from .._errors import AuthError, AuthErrorCode
from ._models import ForgeInvocation, Identifier, ShortText

__all__ = [
    "ANY_LIFECYCLE_PAYLOAD",
    "INSTALLATION_ARI_PREFIX",
    "ForgeInstalledPayload",
    "ForgeLifecycleApp",
    "ForgeLifecycleEnvironment",
    "ForgeLifecycleEvent",
    "ForgeLifecyclePayload",
    "ForgePreUninstallContext",
    "ForgePreUninstallPayload",
    "ForgeRetryContext",
    "ForgeUpgradedPayload",
    "VerifiedForgeLifecycle",
    "check_installation",
    "lifecycle_event_of",
]

INSTALLATION_ARI_PREFIX = "ari:cloud:ecosystem::installation/"
"""How a FIT's `app.installationId` starts; lifecycle payloads name the same installation by its bare UUID."""

ForgeLifecycleEvent = Literal["installed", "upgraded", "pre-uninstall"]
"""The lifecycle events a Forge remote receives: `avi:forge:installed:app`, `avi:forge:upgraded:app`, preUninstall."""

_CONFIG = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ForgeRetryContext(BaseModel):
    """`retryContext`: present when Forge redelivers an event (up to 4 times, 60 s apart)."""

    model_config = _CONFIG

    retry_count: Annotated[StrictInt, Field(ge=0, le=1000)]
    """How many times the event was delivered before this one."""
    retry_reason: ShortText | None = None
    """`INVALID_REMOTE_INVOCATION_ERROR` (a non-2xx answer), `TIMEOUT_ERROR` or `INVALID_FORGE_INVOCATION_TOKEN` (a 401)."""
    retry_data: Any = None
    """Always `null` for remote events."""


class ForgeLifecycleApp(BaseModel):
    """The `app` of an installed or upgraded event, as the payload says it (unsigned: identity comes from the FIT)."""

    model_config = _CONFIG

    id: Identifier
    """The app's id (a bare UUID in Atlassian's example)."""
    version: ShortText | None = None
    """The version installed."""
    name: ShortText | None = None
    """The app's name."""
    owner_account_id: ShortText | None = None
    """The account that owns the app."""


class ForgeLifecycleEnvironment(BaseModel):
    """The `environment` of an installed or upgraded event."""

    model_config = _CONFIG

    id: ShortText | None = None
    """The environment's id."""


class _ForgeAppEvent(BaseModel):
    model_config = _CONFIG

    id: Identifier
    """The installation, as a bare UUID (the FIT names it as an ARI): must be the FIT's installation."""
    app: ForgeLifecycleApp
    """The app installed or upgraded."""
    environment: ForgeLifecycleEnvironment | None = None
    """The app's environment."""
    retry_context: ForgeRetryContext | None = None
    """Present on a redelivery."""


class ForgeInstalledPayload(_ForgeAppEvent):
    """`avi:forge:installed:app`: the app was installed on a site (`id` is the installation).

    It may arrive before the app's permissions have propagated: 401 or 403 from
    the product right after an install are expected for a while (minutes on
    large sites). Answer non-2xx to be redelivered, up to 4 times, 60 s apart.
    """

    installer_account_id: ShortText | None = None
    """Who installed the app."""
    event_type: Literal["avi:forge:installed:app"] | None = None
    """The event's name, when Forge sends it; any other is refused."""


class ForgeUpgradedPayload(_ForgeAppEvent):
    """`avi:forge:upgraded:app`: the installation moved to a new major version (minor and patch upgrades send none)."""

    upgrader_account_id: ShortText | None = None
    """Who upgraded the app."""
    permissions: dict[str, Any] | None = None
    """The scopes and egress permissions the app now has."""
    event_type: Literal["avi:forge:upgraded:app"] | None = None
    """The event's name, when Forge sends it; any other is refused."""


class ForgePreUninstallContext(BaseModel):
    """The `context` of a preUninstall payload."""

    model_config = _CONFIG

    cloud_id: Identifier
    """The site the app is being uninstalled from."""
    module_key: Identifier
    """The key of the `preUninstall` module in the manifest."""


class ForgePreUninstallPayload(BaseModel):
    """The preUninstall module's payload: an uninstall has started (55 s to clean up; failures are ignored).

    `context_token` is Atlassian's own token for the invocation: meaningless to
    the app, kept secret (never shown in a repr, a log line or an error).
    """

    model_config = _CONFIG

    context: ForgePreUninstallContext
    """The site and the module."""
    context_token: SecretStr = Field(repr=False)
    """Atlassian's token identifying the invocation: opaque, secret."""
    retry_context: ForgeRetryContext | None = None
    """Present on a redelivery."""


ForgeLifecyclePayload = ForgeInstalledPayload | ForgeUpgradedPayload | ForgePreUninstallPayload
"""The payload of a `VerifiedForgeLifecycle`: one model per `ForgeLifecycleEvent`."""

_APP_EVENTS: dict[str, ForgeLifecycleEvent] = {
    "avi:forge:installed:app": "installed",
    "avi:forge:upgraded:app": "upgraded",
}
_EVENT_OF_MODEL: dict[type[BaseModel], ForgeLifecycleEvent] = {
    ForgeInstalledPayload: "installed",
    ForgeUpgradedPayload: "upgraded",
    ForgePreUninstallPayload: "pre-uninstall",
}


def _lifecycle_tag(value: Any) -> ForgeLifecycleEvent | None:
    """Which lifecycle event a body is, by what Forge sends; `None` (refused) when it is not plainly one.

    Installed and upgraded events say so in `eventType`; a preUninstall payload
    has none, but a `contextToken` and a `context`. A body with both, with
    another `eventType`, or with neither is no event this route can tell apart:
    it is never guessed.
    """
    if not isinstance(value, dict):
        return None
    event_types = [value[key] for key in ("eventType", "event_type") if key in value]
    uninstalling = any(key in value for key in ("contextToken", "context_token"))
    if event_types:
        if uninstalling or len(event_types) > 1 or not isinstance(event_types[0], str):
            return None
        return _APP_EVENTS.get(event_types[0])
    return "pre-uninstall" if uninstalling and "context" in value else None


ANY_LIFECYCLE_PAYLOAD: TypeAdapter[ForgeLifecyclePayload] = TypeAdapter(
    Annotated[
        Annotated[ForgeInstalledPayload, Tag("installed")]
        | Annotated[ForgeUpgradedPayload, Tag("upgraded")]
        | Annotated[ForgePreUninstallPayload, Tag("pre-uninstall")],
        Discriminator(
            _lifecycle_tag,
            custom_error_type="unknown_forge_lifecycle_event",
            custom_error_message="Not an installed, upgraded or preUninstall event: no eventType of one, "
            "or no contextToken and context",
        ),
    ]
)
"""Any of the three lifecycle payloads, told apart by `eventType`, or by `contextToken` and `context` without one."""


def lifecycle_event_of(payload: ForgeLifecyclePayload) -> ForgeLifecycleEvent:
    """The event a validated payload is (`ANY_LIFECYCLE_PAYLOAD` validated it into that event's model)."""
    return _EVENT_OF_MODEL[type(payload)]


@dataclass(frozen=True, slots=True)
class VerifiedForgeLifecycle:
    """A verified Forge lifecycle event: the FIT's invocation, which event, and its typed payload.

    Key what you keep by `installation_id` (the FIT's), never by anything the
    payload alone says.
    """

    event: ForgeLifecycleEvent
    """`installed`, `upgraded` or `pre-uninstall`."""
    invocation: ForgeInvocation
    """The verified call: the FIT's claims and the system token, if sent."""
    payload: ForgeLifecyclePayload
    """The validated payload, whose installation was checked against the FIT's."""

    @property
    def installation_id(self) -> str:
        """The installation (the FIT's `app.installationId`, an ARI)."""
        return self.invocation.installation_id

    @property
    def retry_context(self) -> ForgeRetryContext | None:
        """The payload's `retryContext`: `None` on a first delivery."""
        return self.payload.retry_context


def _same_installation(named: str, installation_id: str) -> bool:
    """Whether `named` (an ARI, or a bare UUID) is the FIT's `installation_id`."""
    if named == installation_id:
        return True
    if not installation_id.startswith(INSTALLATION_ARI_PREFIX):
        return False
    try:
        return uuid.UUID(named) == uuid.UUID(installation_id.removeprefix(INSTALLATION_ARI_PREFIX))
    except ValueError:
        return False


def check_installation(invocation: ForgeInvocation, payload: ForgeLifecyclePayload) -> None:
    """Refuse a payload that names another installation or site than its FIT (`INSTALLATION_MISMATCH`).

    Installed and upgraded payloads name the installation by `id`, a bare UUID
    or the ARI; a preUninstall payload names its site by `context.cloudId`, which
    must be one of the FIT's installation contexts when the FIT lists any.
    """
    if isinstance(payload, ForgePreUninstallPayload):
        cloud_ids = {context.cloud_id for context in invocation.installation_contexts if context.cloud_id}
        if cloud_ids and payload.context.cloud_id not in cloud_ids:
            raise AuthError(
                AuthErrorCode.INSTALLATION_MISMATCH, "The preUninstall payload's cloudId is not the FIT's site."
            )
    elif not _same_installation(payload.id, invocation.installation_id):
        raise AuthError(AuthErrorCode.INSTALLATION_MISMATCH, "The payload's id is not the FIT's installation.")
