"""`ForgeAuth`: the Forge Remote configuration, and `verify_invocation`, the framework-free flow it runs.

A Forge Remote backend receives every call with a Forge Invocation Token (FIT):
an RS256 JWT from `forge/invocation-token` whose audience is the app's ARI. The
flow refuses the cheapest things first (shape, algorithm, kid, times, issuer,
audience, installation, API host, Isolated Cloud label) and only then resolves
the signing key, so junk never reaches the JWKS endpoint.

The expected audience is always the configured app id, never read from the token:
code that passes `audience=decode(token).app.id` accepts every Forge app's tokens.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from urllib.parse import urlsplit

from pydantic import SecretStr, ValidationError

from .._errors import AuthError, AuthErrorCode
from .._tokens import RawToken, check_kid, check_times, invalid_claims, split_token, verify_rs256
from .._wiring import AppConfig
from ._jwks import FORGE_JWKS_URL, FORGE_STAGING_JWKS_URL, ForgeKeyProvider, JwksKeyProvider
from ._models import ForgeClaims, ForgeInvocation, ForgeInvocationKind

__all__ = ["FORGE_API_HOSTS", "FORGE_ISSUER", "ForgeAuth", "check_invocation", "forge_app_ari", "log_rejection"]

logger = logging.getLogger("fastapi_connect_auth")

FORGE_ISSUER = "forge/invocation-token"
"""The `iss` of every Forge Invocation Token."""
FORGE_API_HOSTS = frozenset({"api.atlassian.com", "api.bitbucket.org"})
"""Hosts a FIT's `app.apiBaseUrl` may name: the app sends its tokens there."""
_STAGING_API_HOST = "api.stg.atlassian.com"
_STAGING_API_PREFIX = f"https://{_STAGING_API_HOST}/"
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_APP_ARI_PREFIX = "ari:cloud:ecosystem::app/"
_IC_LABEL = re.compile(r"[a-z0-9_-]{1,50}")
_TRACE_ID = re.compile(r"[0-9a-fA-F]{1,32}")
_MAX_HEADER_TOKEN = 16 * 1024


def forge_app_ari(app_id: str) -> str:
    """The app's ARI, `ari:cloud:ecosystem::app/<uuid>`, from the ARI itself or the bare UUID."""
    raw = app_id.strip()
    bare = raw.removeprefix(_APP_ARI_PREFIX)
    try:
        parsed = uuid.UUID(bare)
    except ValueError:
        raise ValueError(f"a Forge app id is a UUID or {_APP_ARI_PREFIX}<uuid>, not {app_id!r}") from None
    if str(parsed) != bare.lower():
        raise ValueError(f"a Forge app id is a UUID or {_APP_ARI_PREFIX}<uuid>, not {app_id!r}")
    return _APP_ARI_PREFIX + bare.lower()


def log_rejection(exc: AuthError, installation_id: str | None) -> None:
    """Log a refused Forge call: its code, its installation (as the FIT claims it) and why; never a token."""
    installation = installation_id[:128] if installation_id is not None else None
    logger.warning("Rejected Forge invocation: %s (installation=%r): %s", exc.code, installation, exc.message)


def check_invocation(
    claims: ForgeClaims, invocation: ForgeInvocationKind | None, module_keys: Collection[str] | None
) -> None:
    """Refuse a FIT of another kind than `invocation`, or of a module not in `module_keys` (`WRONG_INVOCATION`).

    A UI call carries a `principal` or a `context`; Forge sends every other kind
    (product events, triggers, lifecycle events, backend `invokeRemote`) without
    either, and nothing else in a FIT tells those apart: `module_keys` does.
    """
    from_browser = claims.principal is not None or claims.context is not None
    if invocation == "ui" and not from_browser:
        raise AuthError(AuthErrorCode.WRONG_INVOCATION, "This route takes UI calls only; the FIT is not one.")
    if invocation is not None and invocation != "ui" and from_browser:
        raise AuthError(
            AuthErrorCode.WRONG_INVOCATION,
            f"This route takes {invocation} calls only; the FIT carries a principal or a context (a UI call).",
        )
    module = claims.app.module
    if module_keys is not None and (module is None or module.key not in module_keys):
        raise AuthError(AuthErrorCode.WRONG_INVOCATION, "The FIT's app.module.key is not one this route takes.")


def _trace(value: str | None) -> str | None:
    return value if value is not None and _TRACE_ID.fullmatch(value) else None


def _secret(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value and len(value) <= _MAX_HEADER_TOKEN else None


class ForgeAuth(AppConfig):
    """The app's Forge Remote configuration, attached to the app once with `install(app)`.

    ```python
    forge = ForgeAuth(app_id="ari:cloud:ecosystem::app/6c9a...")
    app = FastAPI(lifespan=forge.lifespan)
    forge.install(app)
    ```

    * `app_id`: the app's id (ARI or bare UUID), or several (one backend serving
      several apps). A FIT's `aud` must contain one of them and `app.id` must be it.
    * `key_provider`: resolves signing keys (default: a `JwksKeyProvider`).
    * `jwks_url`: the production JWKS (replace it with a mirror or a test server).
    * `staging`: also accept tokens of Forge's staging environment (their
      `app.apiBaseUrl` is on `api.stg.atlassian.com`), checked with staging keys.
    * `isolated_cloud_jwks_url`: a template such as `https://…/{ic_label}/jwks.json`;
      without it, Isolated Cloud tokens (with `icLabel`) are refused.
    * `api_hosts`: extra hosts allowed in `app.apiBaseUrl` (a test product; plain
      http is allowed for loopback hosts only).
    * `leeway`: seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    """

    state_name = "forge_auth"
    """The `app.state` attribute `install(app)` sets."""
    install_hint = "call forge.install(app)"
    """What an error says to do when no `ForgeAuth` is installed."""

    def __init__(
        self,
        *,
        app_id: str | Sequence[str],
        key_provider: ForgeKeyProvider | None = None,
        jwks_url: str = FORGE_JWKS_URL,
        staging: bool = False,
        staging_jwks_url: str = FORGE_STAGING_JWKS_URL,
        isolated_cloud_jwks_url: str | None = None,
        api_hosts: Iterable[str] = (),
        leeway: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        ids = [app_id] if isinstance(app_id, str) else list(app_id)
        if not ids:
            raise ValueError("ForgeAuth needs at least one app_id")
        if isolated_cloud_jwks_url is not None and "{ic_label}" not in isolated_cloud_jwks_url:
            raise ValueError("isolated_cloud_jwks_url must contain '{ic_label}'")
        self.app_ids: frozenset[str] = frozenset(forge_app_ari(value) for value in ids)
        """The app ids (ARIs) a FIT's `aud` and `app.id` may name."""
        self.key_provider: ForgeKeyProvider = key_provider or JwksKeyProvider()
        """Resolves Forge's signing keys (a `JwksKeyProvider` by default)."""
        self.jwks_url = jwks_url
        """The production JWKS URL."""
        self.staging = staging
        """Whether tokens of Forge's staging environment are accepted."""
        self.staging_jwks_url = staging_jwks_url
        """The staging JWKS URL, used only when `staging` is on."""
        self.isolated_cloud_jwks_url = isolated_cloud_jwks_url
        """A template with `{ic_label}` for Isolated Cloud keys; `None` refuses them."""
        extra = {host.strip().lower() for host in api_hosts if host.strip()}
        self.api_hosts: frozenset[str] = FORGE_API_HOSTS | extra | ({_STAGING_API_HOST} if staging else set())
        """Hosts a FIT's `app.apiBaseUrl` may name."""
        self._loopback_hosts = extra & _LOOPBACK_HOSTS
        self.leeway = leeway
        """Seconds of clock skew tolerated on `exp`, `nbf` and `iat`."""
        self.clock = clock
        """The clock tokens are checked against (seconds since the epoch)."""

    # -- the flow -----------------------------------------------------------------------

    async def verify_invocation(
        self,
        token: str | None,
        *,
        system_token: str | None = None,
        user_token: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        invocation: ForgeInvocationKind | None = None,
        module_keys: Collection[str] | None = None,
    ) -> ForgeInvocation:
        """Verify a Forge Invocation Token; return the call's `ForgeInvocation` or raise `AuthError`.

        `system_token` and `user_token` are the `x-forge-oauth-system` and
        `x-forge-oauth-user` headers, kept as secrets; they are not verified (they
        are opaque to the app) and are only trusted because the FIT is.

        `invocation` and `module_keys` restrict which calls are taken (see
        `ForgeRequest`); a FIT of another kind is `WRONG_INVOCATION`, refused
        before any key lookup.
        """
        claims: ForgeClaims | None = None
        try:
            if not token:
                raise AuthError(
                    AuthErrorCode.MISSING_JWT, "No Forge Invocation Token: expected 'Authorization: Bearer'."
                )
            raw = split_token(token)
            if raw.alg != "RS256":
                raise AuthError(
                    AuthErrorCode.INVALID_ALGORITHM, f"The FIT is signed with {raw.alg[:16]!r}; RS256 is required."
                )
            kid = check_kid(raw.kid)
            claims = self._claims(raw)
            check_times(claims, self.clock(), self.leeway)
            self._check_issued_at(claims)
            self._check_issuer_and_audience(claims)
            self._check_installation(claims)
            if invocation is not None or module_keys is not None:
                check_invocation(claims, invocation, module_keys)
            jwks_url = self._jwks_url(claims)
            key = await self.key_provider.get_signing_key(kid, jwks_url)
            verify_rs256(raw.signing_input, raw.signature, key)
        except AuthError as exc:
            log_rejection(exc, claims.app.installation_id if claims is not None else None)
            raise
        return ForgeInvocation(claims, _secret(system_token), _secret(user_token), _trace(trace_id), _trace(span_id))

    # -- steps --------------------------------------------------------------------------

    @staticmethod
    def _claims(raw: RawToken) -> ForgeClaims:
        try:
            return ForgeClaims.model_validate_json(raw.payload)
        except ValidationError as exc:
            raise invalid_claims(exc) from None

    def _check_issued_at(self, claims: ForgeClaims) -> None:
        if claims.iat > self.clock() + self.leeway:
            raise AuthError(AuthErrorCode.TOKEN_NOT_YET_VALID, "The FIT is issued in the future (iat).")

    def _check_issuer_and_audience(self, claims: ForgeClaims) -> None:
        if not hmac.compare_digest(claims.iss.encode(), FORGE_ISSUER.encode()):
            raise AuthError(AuthErrorCode.WRONG_ISSUER, f"The FIT's issuer is not {FORGE_ISSUER!r}.")
        if not any(aud in self.app_ids for aud in claims.aud):
            raise AuthError(AuthErrorCode.WRONG_AUDIENCE, "The FIT's audience is not this app.")
        if claims.app.id not in claims.aud or claims.app.id not in self.app_ids:
            raise AuthError(AuthErrorCode.WRONG_AUDIENCE, "The FIT's app.id is not this app's audience.")

    @staticmethod
    def _check_installation(claims: ForgeClaims) -> None:
        installation = claims.app.installation
        if installation is not None and installation.id is not None and installation.id != claims.app.installation_id:
            raise AuthError(
                AuthErrorCode.INSTALLATION_MISMATCH, "The FIT's app.installation.id is not its app.installationId."
            )

    def _jwks_url(self, claims: ForgeClaims) -> str:
        """Check `app.apiBaseUrl` and `icLabel`, and pick the JWKS that must have signed this token."""
        api_base_url = claims.app.api_base_url
        parts = urlsplit(api_base_url)
        host = (parts.hostname or "").lower()
        https = parts.scheme == "https" or (parts.scheme == "http" and host in self._loopback_hosts)
        if not https or host not in self.api_hosts or parts.username is not None or parts.password is not None:
            raise AuthError(
                AuthErrorCode.UNTRUSTED_API_HOST,
                "The FIT's app.apiBaseUrl is not an https URL on this app's allow-list of Atlassian API hosts.",
            )
        if claims.ic_label is not None:
            if _IC_LABEL.fullmatch(claims.ic_label) is None:
                raise AuthError(AuthErrorCode.INVALID_IC_LABEL, "The FIT's icLabel is not a valid label.")
            if self.isolated_cloud_jwks_url is None:
                raise AuthError(
                    AuthErrorCode.INVALID_IC_LABEL,
                    "The FIT is from an Isolated Cloud, which this app is not configured for.",
                )
            return self.isolated_cloud_jwks_url.format(ic_label=claims.ic_label)
        if self.staging and api_base_url.startswith(_STAGING_API_PREFIX):
            return self.staging_jwks_url
        return self.jwks_url
