"""Pydantic models of what Atlassian sends, and the results our dependencies return."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictStr,
    StringConstraints,
    field_validator,
)
from pydantic.alias_generators import to_camel

from .._tokens import NumericDate

__all__ = [
    "WEBHOOK_IDENTIFIER_HEADER",
    "WEBHOOK_RETRY_HEADER",
    "ConnectClaims",
    "ConnectContext",
    "ConnectUser",
    "Credentials",
    "InstallPayload",
    "InstallationType",
    "LifecyclePayload",
    "VerifiedInstallation",
    "VerifiedLifecycle",
    "VerifiedRequest",
]

WEBHOOK_IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"
"""The header Jira sends with each webhook, the same on every retry of it (`VerifiedRequest.webhook_identifier`)."""
WEBHOOK_RETRY_HEADER = "X-Atlassian-Webhook-Retry"
"""The header Jira adds to a retried webhook: the retry's number (absent on the first try)."""

EntityT = TypeVar("EntityT")

ShortText = Annotated[StrictStr, StringConstraints(max_length=2048)]
"""A string of at most 2,048 characters (field types: the reference shows these names, so they are not private)."""
Identifier = Annotated[StrictStr, StringConstraints(min_length=1, max_length=255)]
"""A non-empty string of at most 255 characters: an app key, a `clientKey`, an event type."""


class ConnectUser(BaseModel):
    """`context.user` of a Connect JWT. Unknown fields are kept."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True)

    account_id: StrictStr | None = None
    """The user's Atlassian account id."""
    account_type: StrictStr | None = None
    """The kind of account (`atlassian`, `app`, `customer`)."""
    # Deprecated by Atlassian's GDPR migration, still sent by some products.
    user_key: StrictStr | None = None
    """Deprecated by Atlassian's GDPR migration, still sent by some products."""
    username: StrictStr | None = None
    """Deprecated by Atlassian's GDPR migration, still sent by some products."""


class ConnectContext(BaseModel):
    """The `context` claim. `jira`, `confluence` and other keys are kept as sent."""

    model_config = ConfigDict(extra="allow", frozen=True)

    user: ConnectUser | None = None
    """The user the product acts for, if any."""


class ConnectClaims(BaseModel):
    """The claims of a verified Connect JWT, with `alg` and `kid` from its header.

    `alg` and `kid` are properties fed from the header only (`claims_from_token`),
    so a payload claim of the same name can never stand in for them. They live in
    pydantic's private storage, which equality and copies include and dumps leave
    out, without declared private attributes: those cost more per token than the
    rest of the validation's Python work.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    iss: StrictStr
    """The issuer: the tenant's `clientKey`."""
    sub: StrictStr | None = None
    """The subject: the acting user's account id, when a user acts."""
    # A lambda, not `list`: pydantic reads a builtin's signature by tokenizing its text, which compiles the
    # tokenizer's patterns at import (about 8 ms of a Connect app's start).
    aud: list[StrictStr] = Field(default_factory=lambda: [])
    """The audience, always a list (a single string is wrapped); signed installs name the app."""
    exp: NumericDate
    """Expiry, seconds since the epoch; required."""
    iat: NumericDate | None = None
    """Issued at, seconds since the epoch."""
    nbf: NumericDate | None = None
    """Not before, seconds since the epoch."""
    qsh: StrictStr | None = None
    """The query string hash binding the token to a request, or `context-qsh`."""
    context: ConnectContext | None = None
    """The `context` claim: the user, and product keys (`jira`, `confluence`) as sent."""

    @field_validator("aud", mode="before")
    @classmethod
    def _audience_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def alg(self) -> str:
        """The signing algorithm named in the token's header ("" when not parsed from a token)."""
        header = self.__pydantic_private__
        return header["_alg"] if header else ""

    @property
    def kid(self) -> str | None:
        """The key id named in the token's header (signed installs only)."""
        header = self.__pydantic_private__
        return header["_kid"] if header else None

    @property
    def account_id(self) -> str | None:
        """The acting user: `context.user.accountId`, else `sub`."""
        user = self.context.user if self.context else None
        if user is not None and user.account_id:
            return user.account_id
        return self.sub


_validate_claims_json = ConnectClaims.__pydantic_validator__.validate_json
"""`ConnectClaims.model_validate_json` without its per-call Python wrapper: this runs once per request."""


def claims_from_token(payload: bytes, alg: str, kid: str | None) -> ConnectClaims:
    """Validate a token's JSON payload and attach its header's `alg` and `kid`.

    Raises pydantic's `ValidationError` for a payload that is not valid claims.
    """
    claims: ConnectClaims = _validate_claims_json(payload)
    object.__setattr__(claims, "__pydantic_private__", {"_alg": alg, "_kid": kid})
    return claims


def _is_web_url(value: str) -> bool:
    if not value.isprintable():  # NUL and control characters: no product sends them, PostgreSQL refuses NUL
        return False
    parts = urlsplit(value)
    return (
        parts.scheme in ("https", "http")
        and bool(parts.hostname)
        and parts.username is None
        and parts.password is None
        and not parts.query
        and not parts.fragment
    )


class LifecyclePayload(BaseModel):
    """The body of a lifecycle callback (`installed`, `uninstalled`, `enabled`, `disabled`).

    Field names are snake_case in Python and camelCase on the wire. Unknown fields
    are kept. `shared_secret` is a `SecretStr`: it never appears in a repr or a log.
    """

    # Built at the first lifecycle callback, not at import: most starts (a webhook waking the app) never see one.
    model_config = ConfigDict(
        extra="allow", alias_generator=to_camel, populate_by_name=True, frozen=True, defer_build=True
    )

    key: Identifier
    """The app's key, as its descriptor declares it."""
    client_key: Identifier
    """The tenant's identifier: the `iss` of its tokens."""
    shared_secret: SecretStr | None = Field(default=None, max_length=1024)
    """The tenant's HS256 secret (`installed` only); never shown in a repr."""
    base_url: ShortText
    """The product's base URL (`https://<site>.atlassian.net`, with `/wiki` for Confluence)."""
    display_url: ShortText | None = None
    """The URL users see the product at, when it differs from `base_url`."""
    product_type: ShortText | None = None
    """`jira`, `confluence` or `bitbucket`."""
    description: ShortText | None = None
    """The product's description of the tenant."""
    service_entitlement_number: ShortText | None = None
    """The app's entitlement (license) number, for a paid app."""
    oauth_client_id: ShortText | None = Field(
        default=None, validation_alias=AliasChoices("oauthClientId", "oauth_client_id")
    )
    """The app's OAuth client id, used to act as a user."""
    event_type: Identifier
    """`installed`, `uninstalled`, `enabled` or `disabled`."""
    server_version: ShortText | None = None
    """The product's build number."""
    plugins_version: ShortText | None = None
    """The Connect framework's version in the product."""
    cloud_id: ShortText | None = None
    """The site's cloud id."""
    installation_id: ShortText | None = None
    """The installation's id (an ARI), on newer products."""
    public_key: StrictStr | None = Field(default=None, deprecated="Atlassian no longer sends usable public keys.")
    """Deprecated: Atlassian no longer sends a usable public key."""

    @field_validator("base_url", "display_url")
    @classmethod
    def _web_url(cls, value: str | None) -> str | None:
        if value is not None and not _is_web_url(value):
            raise ValueError("must be an http(s) URL without credentials, query, fragment or control characters")
        return value


class InstallPayload(LifecyclePayload):
    """The body of an `installed` callback: the tenant's shared secret is required."""

    shared_secret: SecretStr = Field(max_length=1024)
    """The tenant's HS256 secret: required in an `installed` callback."""

    def dump_for_storage(self) -> dict[str, Any]:
        """The install as the product sent it (camelCase, JSON types), shared secret in clear: what a store keeps.

        `model_dump_json(by_alias=True)` masks the secret (`"**********"`), and a store
        fed that fails every later call with `INVALID_SIGNATURE`. Encrypt the secret
        before it reaches the database; `InstallPayload.model_validate(stored)` reads
        the record back.

        ```python
        record = install.payload.dump_for_storage()
        secret = cipher.encrypt(record.pop("sharedSecret").encode())
        ```
        """
        record = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        record["sharedSecret"] = self.shared_secret.get_secret_value()
        return record


@dataclass(frozen=True, slots=True)
class Credentials(Generic[EntityT]):
    """What a credentials loader returns for a known tenant, installed or not.

    `base_url` (the product's base URL, optional) picks the install-keys environment
    when a request signed with RS256 is verified outside a lifecycle callback.

    `installed=False` marks a tenant that uninstalled the app: every call of its is
    refused (`UNKNOWN_ISSUER`), and installing it again needs a valid signature
    (RS256, or HS256 with this stored secret in the legacy modes), never none.
    Return that, not `None`, for a tenant whose row you keep: `None` means "never
    seen", and a legacy first install is accepted unsigned.
    """

    shared_secret: str = field(repr=False)
    """The tenant's shared secret, as received in its last `installed` callback."""
    stored_entity: EntityT | None = None
    """Whatever the loader wants the route to get back (a row, a model)."""
    base_url: str | None = None
    """The product's base URL: picks the key environment for RS256 request tokens."""
    installed: bool = True
    """`False` for a tenant that uninstalled the app: its calls are refused, its re-install is new."""


class InstallationType(str, enum.Enum):
    """Whether an `installed` callback is for a new tenant or a known one."""

    NEW_INSTALLATION = "newInstallation"
    """The loader knew no such tenant: a first install."""
    UPDATE = "update"
    """The loader knew the tenant: a re-install, upgrade or re-enable."""


@dataclass(frozen=True, slots=True)
class VerifiedInstallation(Generic[EntityT]):
    """A verified `installed` callback.

    `claims` is `None` only for a legacy (unsigned) first install, which
    `authorization_method="sharedSecret"` or `"any"` accept as Atlassian sent them.
    """

    type: InstallationType
    """A new installation or an update of a known tenant."""
    payload: InstallPayload
    """The verified body, with the tenant's shared secret."""
    claims: ConnectClaims | None
    """The verified token's claims (`None` for a legacy unsigned first install)."""
    stored_entity: EntityT | None = None
    """The loader's entity for a known tenant (an update), else `None`."""

    @property
    def client_key(self) -> str:
        """The tenant's client key, from the verified payload."""
        return self.payload.client_key


LifecycleEvent = Literal["uninstalled", "enabled", "disabled"]


@dataclass(frozen=True, slots=True)
class VerifiedLifecycle(Generic[EntityT]):
    """A verified `uninstalled`, `enabled` or `disabled` callback for a known tenant, installed or not."""

    event: LifecycleEvent
    """`uninstalled`, `enabled` or `disabled`."""
    payload: LifecyclePayload
    """The verified body."""
    claims: ConnectClaims
    """The verified token's claims."""
    stored_entity: EntityT | None = None
    """The loader's entity for the tenant."""
    installed: bool = True
    """`False` when the tenant had already uninstalled: a late or repeated callback, to answer 2xx and ignore."""

    @property
    def client_key(self) -> str:
        """The tenant's client key, from the verified payload."""
        return self.payload.client_key


@dataclass(frozen=True, slots=True)
class VerifiedRequest(Generic[EntityT]):
    """A verified webhook, page load or iframe call."""

    claims: ConnectClaims
    """The verified token's claims."""
    stored_entity: EntityT | None = None
    """The loader's entity for the tenant."""
    body: Any = None
    """The validated body of a `ConnectRequest(body=Model)` route, read only after the token was verified."""
    raw_body: bytes | None = field(default=None, repr=False)
    """The body's bytes as received, when `ConnectRequest(body=...)` read them (a redelivery is recognised by them)."""
    webhook_identifier: str | None = None
    """The `X-Atlassian-Webhook-Identifier` a `ConnectRequest(body=...)` route was sent: the same on Jira's retries."""

    @property
    def client_key(self) -> str:
        """The tenant's client key: the verified token's `iss`."""
        return self.claims.iss

    @property
    def account_id(self) -> str | None:
        """`context.user.accountId`, else `sub`: the user the product acts for, if any."""
        return self.claims.account_id


_new_object = object.__new__
_set_claims = VerifiedRequest.__dict__["claims"].__set__
_set_stored_entity = VerifiedRequest.__dict__["stored_entity"].__set__
_set_body = VerifiedRequest.__dict__["body"].__set__
_set_raw_body = VerifiedRequest.__dict__["raw_body"].__set__
_set_webhook_identifier = VerifiedRequest.__dict__["webhook_identifier"].__set__


def verified_request(claims: ConnectClaims, stored_entity: Any) -> VerifiedRequest[Any]:
    """`VerifiedRequest(claims, stored_entity)`, built once per verified request at two thirds of the cost.

    A frozen dataclass's `__init__` stores each field through `object.__setattr__`,
    looked up anew for each; the slots' own descriptors make the same stores directly.
    The result is the same frozen object (`tests/test_models.py` compares them field by field).
    """
    verified: VerifiedRequest[Any] = _new_object(VerifiedRequest)
    _set_claims(verified, claims)
    _set_stored_entity(verified, stored_entity)
    _set_body(verified, None)
    _set_raw_body(verified, None)
    _set_webhook_identifier(verified, None)
    return verified
