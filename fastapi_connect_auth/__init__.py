"""Atlassian Connect authentication for FastAPI.

Trust every call an Atlassian product (Jira, Confluence, Bitbucket Cloud) makes
to a Connect app: signed lifecycle callbacks, webhooks, page loads and calls
from the app's own iframe, each verified by a FastAPI dependency.
"""

from ._connect._dependencies import ConnectInstall, ConnectLifecycle, ConnectRequest, request_target
from ._connect._environments import ConnectEnvironment, ProductHosts
from ._connect._flow import (
    AuthorizationMethod,
    ConnectAuth,
    CredentialsLoader,
    CredentialsSource,
    QshMode,
    RequestTarget,
)
from ._connect._keys import ATLASSIAN_KID_FORMATS, AtlassianKeyProvider, PublicKeyProvider
from ._connect._models import (
    ConnectClaims,
    ConnectContext,
    ConnectUser,
    Credentials,
    InstallationType,
    InstallPayload,
    LifecyclePayload,
    VerifiedInstallation,
    VerifiedLifecycle,
    VerifiedRequest,
)
from ._connect._qsh import CONTEXT_QSH, canonical_request, query_string_hash
from ._connect._redelivery import WEBHOOK_IDENTIFIER_HEADER, WEBHOOK_RETRY_HEADER, remember_webhook_delivery
from ._containers._config import ContainerSettings
from ._containers._dependencies import ForgeContainerRequest
from ._containers._egress import EgressProduct, ForgeContainerInstallation
from ._containers._flow import ForgeContainers
from ._containers._header import proxy_authorization
from ._containers._health import add_health_route
from ._containers._logging import ForgeInvocationLogFilter
from ._containers._models import (
    ForgeContainerApp,
    ForgeContainerCallContext,
    ForgeContainerContext,
    ForgeContainerInvocation,
    ForgeContainerInvocationKind,
    ForgeUserAccess,
)
from ._errors import AuthError, AuthErrorCode
from ._events import RejectionEvent, RejectionKind
from ._forge._dependencies import ForgeLifecycle, ForgeRequest
from ._forge._flow import FORGE_API_HOSTS, FORGE_ISSUER, ForgeAuth, forge_app_ari
from ._forge._jwks import FORGE_JWKS_URL, FORGE_STAGING_JWKS_URL, ForgeKeyProvider, JwksKeyProvider
from ._forge._lifecycle import (
    ForgeInstalledPayload,
    ForgeLifecycleApp,
    ForgeLifecycleEnvironment,
    ForgeLifecycleEvent,
    ForgeLifecyclePayload,
    ForgePreUninstallContext,
    ForgePreUninstallPayload,
    ForgeRetryContext,
    ForgeUpgradedPayload,
    VerifiedForgeLifecycle,
)
from ._forge._models import (
    ForgeApp,
    ForgeClaims,
    ForgeContext,
    ForgeEnvironment,
    ForgeInstallation,
    ForgeInstallationContext,
    ForgeInvocation,
    ForgeInvocationKind,
    ForgeLicense,
    ForgeModule,
)
from ._forge._redelivery import ForgeEventSource, remember_forge_delivery, remember_forge_event
from ._logs import RedactTokens, redact_access_logs
from ._openapi import auth_error_responses
from ._outbound import (
    FORGE_GRAPHQL_URL,
    FORGE_GRAPHQL_URLS,
    FORGE_TOKEN_MAX_LIFETIME,
    ConnectAppAuth,
    ConnectUserAuth,
    ForgeBearerAuth,
    ForgeStoredToken,
    ForgeTokenStore,
    InMemoryForgeTokenStore,
    IssueWrites,
    OfflineUserTokens,
    ProductAPIError,
    RateLimitedError,
    RateLimitInfo,
    RetryPolicy,
    TokenRequestError,
    UnsafeRedirectError,
    UnsafeRequestError,
    UserGrant,
    UserTokenProvider,
    api_path,
    authorization_server_for,
    context_token,
    forge_product_client,
    product_client,
    remember_forge_tokens,
    stored_forge_client,
    sync_product_client,
)
from ._redelivery import InMemoryRedeliveryStore, RedeliveryStore, remember_delivery
from ._routers import LifecycleRouter, lifecycle_router
from ._telemetry import Telemetry

__all__ = [
    "ATLASSIAN_KID_FORMATS",
    "CONTEXT_QSH",
    "FORGE_API_HOSTS",
    "FORGE_GRAPHQL_URL",
    "FORGE_GRAPHQL_URLS",
    "FORGE_ISSUER",
    "FORGE_JWKS_URL",
    "FORGE_STAGING_JWKS_URL",
    "FORGE_TOKEN_MAX_LIFETIME",
    "WEBHOOK_IDENTIFIER_HEADER",
    "WEBHOOK_RETRY_HEADER",
    "AtlassianKeyProvider",
    "AuthError",
    "AuthErrorCode",
    "AuthorizationMethod",
    "ConnectAppAuth",
    "ConnectAuth",
    "ConnectClaims",
    "ConnectContext",
    "ConnectEnvironment",
    "ConnectInstall",
    "ConnectLifecycle",
    "ConnectRequest",
    "ConnectUser",
    "ConnectUserAuth",
    "ContainerSettings",
    "Credentials",
    "CredentialsLoader",
    "CredentialsSource",
    "EgressProduct",
    "ForgeApp",
    "ForgeAuth",
    "ForgeBearerAuth",
    "ForgeClaims",
    "ForgeContainerApp",
    "ForgeContainerCallContext",
    "ForgeContainerContext",
    "ForgeContainerInstallation",
    "ForgeContainerInvocation",
    "ForgeContainerInvocationKind",
    "ForgeContainerRequest",
    "ForgeContainers",
    "ForgeContext",
    "ForgeEnvironment",
    "ForgeEventSource",
    "ForgeInstallation",
    "ForgeInstallationContext",
    "ForgeInstalledPayload",
    "ForgeInvocation",
    "ForgeInvocationKind",
    "ForgeInvocationLogFilter",
    "ForgeKeyProvider",
    "ForgeLicense",
    "ForgeLifecycle",
    "ForgeLifecycleApp",
    "ForgeLifecycleEnvironment",
    "ForgeLifecycleEvent",
    "ForgeLifecyclePayload",
    "ForgeModule",
    "ForgePreUninstallContext",
    "ForgePreUninstallPayload",
    "ForgeRequest",
    "ForgeRetryContext",
    "ForgeStoredToken",
    "ForgeTokenStore",
    "ForgeUpgradedPayload",
    "ForgeUserAccess",
    "InMemoryForgeTokenStore",
    "InMemoryRedeliveryStore",
    "InstallPayload",
    "InstallationType",
    "IssueWrites",
    "JwksKeyProvider",
    "LifecyclePayload",
    "LifecycleRouter",
    "OfflineUserTokens",
    "ProductAPIError",
    "ProductHosts",
    "PublicKeyProvider",
    "QshMode",
    "RateLimitInfo",
    "RateLimitedError",
    "RedactTokens",
    "RedeliveryStore",
    "RejectionEvent",
    "RejectionKind",
    "RequestTarget",
    "RetryPolicy",
    "Telemetry",
    "TokenRequestError",
    "UnsafeRedirectError",
    "UnsafeRequestError",
    "UserGrant",
    "UserTokenProvider",
    "VerifiedForgeLifecycle",
    "VerifiedInstallation",
    "VerifiedLifecycle",
    "VerifiedRequest",
    "add_health_route",
    "api_path",
    "auth_error_responses",
    "authorization_server_for",
    "canonical_request",
    "context_token",
    "forge_app_ari",
    "forge_product_client",
    "lifecycle_router",
    "product_client",
    "proxy_authorization",
    "query_string_hash",
    "redact_access_logs",
    "remember_delivery",
    "remember_forge_delivery",
    "remember_forge_event",
    "remember_forge_tokens",
    "remember_webhook_delivery",
    "request_target",
    "stored_forge_client",
    "sync_product_client",
]

__version__ = "0.1.0"
"""The package's version: the one source of it (pyproject.toml reads it from here)."""
