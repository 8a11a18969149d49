"""Atlassian Connect authentication for FastAPI.

Trust every call an Atlassian product (Jira, Confluence, Bitbucket Cloud) makes
to a Connect app: signed lifecycle callbacks, webhooks, page loads and calls
from the app's own iframe, each verified by a FastAPI dependency.

Every public name is loaded on first use (PEP 562's module `__getattr__`), so an
app pays at start-up only for what it uses: a Connect-only app never imports the
Forge, outbound, stores, telemetry or CLI modules, nor httpx2 or cryptography until
it first needs them. To add a public name: one line in `_dynamic_imports` (name ->
its private module), one import under `TYPE_CHECKING` (what type checkers and the
reference read), and the name in `__all__`.
"""

import typing

if typing.TYPE_CHECKING:  # what type checkers and the reference read; at run time, `__getattr__` below
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
    from ._connect._redelivery import WEBHOOK_IDENTIFIER_HEADER, remember_webhook_delivery
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
    from ._forge._redelivery import remember_forge_delivery
    from ._logs import RedactTokens, redact_access_logs
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

_dynamic_imports: dict[str, str] = {
    "ATLASSIAN_KID_FORMATS": "._connect._keys",
    "CONTEXT_QSH": "._connect._qsh",
    "FORGE_API_HOSTS": "._forge._flow",
    "FORGE_GRAPHQL_URL": "._outbound",
    "FORGE_GRAPHQL_URLS": "._outbound",
    "FORGE_ISSUER": "._forge._flow",
    "FORGE_JWKS_URL": "._forge._jwks",
    "FORGE_STAGING_JWKS_URL": "._forge._jwks",
    "FORGE_TOKEN_MAX_LIFETIME": "._outbound",
    "WEBHOOK_IDENTIFIER_HEADER": "._connect._redelivery",
    "AtlassianKeyProvider": "._connect._keys",
    "AuthError": "._errors",
    "AuthErrorCode": "._errors",
    "AuthorizationMethod": "._connect._flow",
    "ConnectAppAuth": "._outbound",
    "ConnectAuth": "._connect._flow",
    "ConnectClaims": "._connect._models",
    "ConnectContext": "._connect._models",
    "ConnectEnvironment": "._connect._environments",
    "ConnectInstall": "._connect._dependencies",
    "ConnectLifecycle": "._connect._dependencies",
    "ConnectRequest": "._connect._dependencies",
    "ConnectUser": "._connect._models",
    "ConnectUserAuth": "._outbound",
    "Credentials": "._connect._models",
    "CredentialsLoader": "._connect._flow",
    "CredentialsSource": "._connect._flow",
    "ForgeApp": "._forge._models",
    "ForgeAuth": "._forge._flow",
    "ForgeBearerAuth": "._outbound",
    "ForgeClaims": "._forge._models",
    "ForgeContext": "._forge._models",
    "ForgeEnvironment": "._forge._models",
    "ForgeInstallation": "._forge._models",
    "ForgeInstallationContext": "._forge._models",
    "ForgeInstalledPayload": "._forge._lifecycle",
    "ForgeInvocation": "._forge._models",
    "ForgeInvocationKind": "._forge._models",
    "ForgeKeyProvider": "._forge._jwks",
    "ForgeLicense": "._forge._models",
    "ForgeLifecycle": "._forge._dependencies",
    "ForgeLifecycleApp": "._forge._lifecycle",
    "ForgeLifecycleEnvironment": "._forge._lifecycle",
    "ForgeLifecycleEvent": "._forge._lifecycle",
    "ForgeLifecyclePayload": "._forge._lifecycle",
    "ForgeModule": "._forge._models",
    "ForgePreUninstallContext": "._forge._lifecycle",
    "ForgePreUninstallPayload": "._forge._lifecycle",
    "ForgeRequest": "._forge._dependencies",
    "ForgeRetryContext": "._forge._lifecycle",
    "ForgeStoredToken": "._outbound",
    "ForgeTokenStore": "._outbound",
    "ForgeUpgradedPayload": "._forge._lifecycle",
    "InMemoryForgeTokenStore": "._outbound",
    "InMemoryRedeliveryStore": "._redelivery",
    "InstallPayload": "._connect._models",
    "InstallationType": "._connect._models",
    "IssueWrites": "._outbound",
    "JwksKeyProvider": "._forge._jwks",
    "LifecyclePayload": "._connect._models",
    "LifecycleRouter": "._routers",
    "OfflineUserTokens": "._outbound",
    "ProductAPIError": "._outbound",
    "ProductHosts": "._connect._environments",
    "PublicKeyProvider": "._connect._keys",
    "QshMode": "._connect._flow",
    "RateLimitInfo": "._outbound",
    "RateLimitedError": "._outbound",
    "RedactTokens": "._logs",
    "RedeliveryStore": "._redelivery",
    "RejectionEvent": "._events",
    "RejectionKind": "._events",
    "RequestTarget": "._connect._flow",
    "RetryPolicy": "._outbound",
    "Telemetry": "._telemetry",
    "TokenRequestError": "._outbound",
    "UnsafeRedirectError": "._outbound",
    "UnsafeRequestError": "._outbound",
    "UserGrant": "._outbound",
    "UserTokenProvider": "._outbound",
    "VerifiedForgeLifecycle": "._forge._lifecycle",
    "VerifiedInstallation": "._connect._models",
    "VerifiedLifecycle": "._connect._models",
    "VerifiedRequest": "._connect._models",
    "api_path": "._outbound",
    "authorization_server_for": "._outbound",
    "canonical_request": "._connect._qsh",
    "context_token": "._outbound",
    "forge_app_ari": "._forge._flow",
    "forge_product_client": "._outbound",
    "lifecycle_router": "._routers",
    "product_client": "._outbound",
    "query_string_hash": "._connect._qsh",
    "redact_access_logs": "._logs",
    "remember_delivery": "._redelivery",
    "remember_forge_delivery": "._forge._redelivery",
    "remember_forge_tokens": "._outbound",
    "remember_webhook_delivery": "._connect._redelivery",
    "request_target": "._connect._dependencies",
    "stored_forge_client": "._outbound",
    "sync_product_client": "._outbound",
}
"""Each public name and the private module (relative to this package) it is defined in."""

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
    "Credentials",
    "CredentialsLoader",
    "CredentialsSource",
    "ForgeApp",
    "ForgeAuth",
    "ForgeBearerAuth",
    "ForgeClaims",
    "ForgeContext",
    "ForgeEnvironment",
    "ForgeInstallation",
    "ForgeInstallationContext",
    "ForgeInstalledPayload",
    "ForgeInvocation",
    "ForgeInvocationKind",
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
    "api_path",
    "authorization_server_for",
    "canonical_request",
    "context_token",
    "forge_app_ari",
    "forge_product_client",
    "lifecycle_router",
    "product_client",
    "query_string_hash",
    "redact_access_logs",
    "remember_delivery",
    "remember_forge_delivery",
    "remember_forge_tokens",
    "remember_webhook_delivery",
    "request_target",
    "stored_forge_client",
    "sync_product_client",
]

__version__ = "0.1.0"
"""The package's version: the one source of it (pyproject.toml reads it from here)."""


def __getattr__(name: str) -> object:
    """Import a public name's module on first use and keep the name here (later look-ups skip this)."""
    module = _dynamic_imports.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names (loaded or not) and the module's own attributes."""
    return sorted({*globals(), *__all__})
