"""Pydantic models of a Forge Invocation Token's claims, and the verified `ForgeInvocation`.

Field names are snake_case in Python and camelCase on the wire; unknown fields
are kept, since Atlassian adds claims over time. Required claims are the ones
the verifier relies on: a FIT without them is refused as `FAILED_TO_DECODE`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

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

from ._models import _NumericDate

__all__ = [
    "ForgeApp",
    "ForgeClaims",
    "ForgeContext",
    "ForgeEnvironment",
    "ForgeInstallation",
    "ForgeInstallationContext",
    "ForgeInvocation",
    "ForgeLicense",
    "ForgeModule",
]

_Text = Annotated[StrictStr, StringConstraints(max_length=2048)]
_Id = Annotated[StrictStr, StringConstraints(min_length=1, max_length=512)]
_CONFIG = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True)


class ForgeEnvironment(BaseModel):
    """`app.environment`: `type` is `DEVELOPMENT`, `STAGING` or `PRODUCTION`."""

    model_config = _CONFIG

    type: _Text | None = None
    id: _Text | None = None


class ForgeModule(BaseModel):
    """`app.module`: the manifest module that was invoked."""

    model_config = _CONFIG

    type: _Text | None = None
    key: _Text | None = None


class ForgeLicense(BaseModel):
    """`app.license` (paid production apps only). `active` falls back to the older `isActive`."""

    model_config = _CONFIG

    active: StrictBool | None = Field(default=None, validation_alias=AliasChoices("active", "isActive"))
    is_evaluation: StrictBool | None = None
    type: _Text | None = None


class ForgeInstallationContext(BaseModel):
    """One site or workspace of `app.installation.contexts`."""

    model_config = _CONFIG

    name: _Text | None = None
    api_base_url: _Text | None = None
    cloud_id: _Text | None = None
    workspace_id: _Text | None = None


class ForgeInstallation(BaseModel):
    """`app.installation`: its `id` must equal `app.installationId`."""

    model_config = _CONFIG

    id: _Id | None = None
    contexts: list[ForgeInstallationContext] = Field(default_factory=list, max_length=100)


class ForgeApp(BaseModel):
    """The `app` claim."""

    model_config = _CONFIG

    id: _Id
    installation_id: _Id
    api_base_url: _Text
    app_version: _Text | None = Field(default=None, validation_alias=AliasChoices("appVersion", "version"))
    environment: ForgeEnvironment | None = None
    module: ForgeModule | None = None
    license: ForgeLicense | None = None
    installation: ForgeInstallation | None = None


class ForgeContext(BaseModel):
    """The `context` claim, sent with calls from the UI only."""

    model_config = _CONFIG

    cloud_id: _Text | None = None
    workspace_id: _Text | None = None
    site_url: _Text | None = None
    local_id: _Text | None = None
    module_key: _Text | None = None
    extension: dict[str, Any] | None = None


class ForgeClaims(BaseModel):
    """The claims of a Forge Invocation Token, with `alg` and `kid` kept from its header by the verifier."""

    model_config = _CONFIG

    iss: StrictStr
    aud: list[StrictStr] = Field(max_length=16)
    exp: _NumericDate
    iat: _NumericDate
    nbf: _NumericDate
    jti: _Id
    app: ForgeApp
    context: ForgeContext | None = None
    principal: _Text | None = None
    ic_label: _Text | None = None

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
    system_token: SecretStr | None = field(default=None, repr=False)
    user_token: SecretStr | None = field(default=None, repr=False)
    trace_id: str | None = None
    span_id: str | None = None
    body: bytes | None = field(default=None, repr=False)
    """The raw request body, read after verification when the dependency asks for it (`ForgeRequest(read_body=True)`)."""

    @property
    def app_id(self) -> str:
        return self.claims.app.id

    @property
    def installation_id(self) -> str:
        return self.claims.app.installation_id

    @property
    def api_base_url(self) -> str:
        """Where the app calls the product with the tokens; on the verifier's allow-list."""
        return self.claims.app.api_base_url

    @property
    def jti(self) -> str:
        return self.claims.jti

    @property
    def app_version(self) -> str | None:
        return self.claims.app.app_version

    @property
    def environment(self) -> ForgeEnvironment | None:
        return self.claims.app.environment

    @property
    def module(self) -> ForgeModule | None:
        return self.claims.app.module

    @property
    def license(self) -> ForgeLicense | None:
        return self.claims.app.license

    @property
    def installation_contexts(self) -> list[ForgeInstallationContext]:
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
    def ic_label(self) -> str | None:
        """The Isolated Cloud label, already checked against `^[a-z0-9_-]{1,50}$`."""
        return self.claims.ic_label

    @property
    def cloud_id(self) -> str | None:
        """The site: the UI context's `cloudId`, else the first installation context's."""
        if self.claims.context is not None and self.claims.context.cloud_id:
            return self.claims.context.cloud_id
        return next((ctx.cloud_id for ctx in self.installation_contexts if ctx.cloud_id), None)
