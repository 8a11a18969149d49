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

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from cachetools import LRUCache
from pydantic import SecretStr, ValidationError

from .._errors import AuthError, AuthErrorCode
from .._events import RejectionCallback, RejectionEvent, call_details, deliver
from .._telemetry import Telemetry, Verification
from .._tokens import RawToken, check_kid, check_times, invalid_claims, split_token, verify_rs256
from .._wiring import AppConfig
from ._jwks import FORGE_JWKS_URL, FORGE_STAGING_JWKS_URL, ForgeKeyProvider, JwksKeyProvider
from ._models import ForgeClaims, ForgeInvocation, ForgeInvocationKind, forge_invocation

__all__ = [
    "FORGE_API_HOSTS",
    "FORGE_ISSUER",
    "IC_LABEL",
    "STAGING_API_HOST",
    "ForgeAuth",
    "check_invocation",
    "forge_app_ari",
]

FORGE_ISSUER = "forge/invocation-token"
"""The `iss` of every Forge Invocation Token."""
FORGE_API_HOSTS = frozenset({"api.atlassian.com", "api.bitbucket.org"})
"""Hosts a FIT's `app.apiBaseUrl` may name: the app sends its tokens there."""
STAGING_API_HOST = "api.stg.atlassian.com"
"""The API host of Forge's staging environment (`app.apiBaseUrl` of staging FITs)."""
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_APP_ARI_PREFIX = "ari:cloud:ecosystem::app/"
IC_LABEL = re.compile(r"[a-z0-9_-]{1,50}")
"""What an Isolated Cloud label must fully match before it goes into any URL (Forge's own rule)."""
_UNSAFE_IN_URL = re.compile(r"[^!-~]|[?#\\]")  # anything but printable ASCII, and ? # \
_TRACE_ID = re.compile(r"[0-9a-fA-F]{1,32}")
_MAX_HEADER_TOKEN = 16 * 1024
_KNOWN_API_BASE_URLS = 1024  # accepted app.apiBaseUrls remembered: one per installation
_validate_claims_json = ForgeClaims.__pydantic_validator__.validate_json
"""`ForgeClaims.model_validate_json` without its per-call Python wrapper: this runs once per call."""
_FORGE_HEADERS = frozenset(
    {b"authorization", b"x-forge-oauth-system", b"x-forge-oauth-user", b"x-b3-traceid", b"x-b3-spanid"}
)


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


logger = logging.getLogger("fastapi_connect_auth")


async def _run_hook(hook: Callable[[ForgeInvocation], Awaitable[None]], invocation: ForgeInvocation) -> None:
    """Await `on_invocation`; its failure is the app's to fix, never the caller's: logged by class, not raised."""
    try:
        await hook(invocation)
    except Exception as exc:
        logger.error(
            "on_invocation failed for Forge installation %r: %s", invocation.installation_id, type(exc).__name__
        )


def forge_headers(scope: Mapping[str, Any]) -> dict[str, str]:
    """The call's Forge headers (`Authorization`, the OAuth tokens, the trace ids), by name, in one pass.

    The first of each name, as `request.headers.get` gives it (ASGI servers send
    names lower-cased, which Starlette's `Headers` relies on too); `request.headers`
    would be built for these look-ups and walk the headers once per name, raising
    and catching a `KeyError` for each absent one (most calls lack two or more).
    """
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _FORGE_HEADERS:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


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
    * `isolated_cloud_jwks_url` and `isolated_cloud_labels`: a template such as
      `https://…/{ic_label}/jwks.json`, and the Isolated Cloud labels you serve
      (both given at onboarding). A token whose `icLabel` is not on the list is
      refused before any URL is built; without them, every Isolated Cloud token is.
    * `api_hosts`: extra hosts allowed in `app.apiBaseUrl` (a test product; plain
      http is allowed for loopback hosts only).
    * `environments`: the `app.environment.type`s accepted, such as
      `{"PRODUCTION"}` for a production backend (`None`, the default: any).
    * `max_token_lifetime`: the longest `exp - iat` accepted (600 s; Forge's FITs
      live about 25 s).
    * `leeway`: seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
    * `on_rejection`: `callback(event)`, sync or async, given a `RejectionEvent`
      for each refused call (after it is logged); if it raises, that is logged and
      the call is refused all the same.
    * `telemetry`: a `Telemetry` to record a span, counters and the verification
      time of each call with OpenTelemetry; `None` (the default) records nothing.
    * `on_invocation`: `await hook(invocation)` after each verified invocation,
      before the route runs (`ConnectLinker` links installations this way); if it
      raises, that is logged and the call goes on all the same.

    The keys in `jwks_url` are the only ones trusted for production tokens: point
    it (or `key_provider`) at a test JWKS in tests only, never in production.
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
        isolated_cloud_labels: Iterable[str] = (),
        api_hosts: Iterable[str] = (),
        environments: Iterable[str] | None = None,
        max_token_lifetime: float = 600.0,
        leeway: float = 10.0,
        clock: Callable[[], float] = time.time,
        on_rejection: RejectionCallback | None = None,
        telemetry: Telemetry | None = None,
        on_invocation: Callable[[ForgeInvocation], Awaitable[None]] | None = None,
    ) -> None:
        ids = [app_id] if isinstance(app_id, str) else list(app_id)
        if not ids:
            raise ValueError("ForgeAuth needs at least one app_id")
        labels = frozenset(isolated_cloud_labels)
        if isolated_cloud_jwks_url is not None and "{ic_label}" not in isolated_cloud_jwks_url:
            raise ValueError("isolated_cloud_jwks_url must contain '{ic_label}'")
        if (isolated_cloud_jwks_url is None) != (not labels):
            raise ValueError("isolated_cloud_jwks_url and isolated_cloud_labels go together: the labels you serve")
        if any(IC_LABEL.fullmatch(label) is None for label in labels):
            raise ValueError("an Isolated Cloud label matches ^[a-z0-9_-]{1,50}$")
        if not 0 < max_token_lifetime < float("inf"):
            raise ValueError("max_token_lifetime must be a positive number of seconds")
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
        self.isolated_cloud_labels: frozenset[str] = labels
        """The Isolated Cloud labels accepted; any other `icLabel` is refused before a URL is built."""
        self.environments: frozenset[str] | None = (
            None if environments is None else frozenset(name.upper() for name in environments)
        )
        """The `app.environment.type`s accepted (`None`: any)."""
        self.max_token_lifetime = max_token_lifetime
        """The longest `exp - iat` accepted, in seconds."""
        extra = {host.strip().lower() for host in api_hosts if host.strip()}
        self.api_hosts: frozenset[str] = FORGE_API_HOSTS | extra | ({STAGING_API_HOST} if staging else set())
        """Hosts a FIT's `app.apiBaseUrl` may name."""
        self._loopback_hosts = extra & _LOOPBACK_HOSTS
        self.leeway = leeway
        """Seconds of clock skew tolerated on `exp`, `nbf` and `iat`."""
        self.clock = clock
        """The clock tokens are checked against (seconds since the epoch)."""
        self.on_rejection = on_rejection
        """Called with a `RejectionEvent` for each refused call."""
        self.telemetry = telemetry
        """Records each verification with OpenTelemetry when set."""
        self._api_base_urls: LRUCache[str, str] = LRUCache(_KNOWN_API_BASE_URLS)
        self.on_invocation = on_invocation
        """Awaited with each verified invocation; what it raises is logged, never fails the call."""

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
        scope: Mapping[str, Any] | None = None,
    ) -> ForgeInvocation:
        """Verify a Forge Invocation Token; return the call's `ForgeInvocation` or raise `AuthError`.

        `system_token` and `user_token` are the `x-forge-oauth-system` and
        `x-forge-oauth-user` headers, kept as secrets; they are not verified (they
        are opaque to the app) and are only trusted because the FIT is.

        `invocation` and `module_keys` restrict which calls are taken (see
        `ForgeRequest`); a FIT of another kind is `WRONG_INVOCATION`, refused
        before any key lookup. `scope`, the call's ASGI scope, is read only when
        the call is refused: its route and trace ids go in the event.
        """
        timing = self.telemetry.start("forge", self.key_provider) if self.telemetry is not None else None
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
            self._check_environment(claims)
            self._check_issuer_and_audience(claims)
            self._check_installation(claims)
            if invocation is not None or module_keys is not None:
                check_invocation(claims, invocation, module_keys)
            jwks_url = self._jwks_url(claims)
            key = await self.key_provider.get_signing_key(kid, jwks_url)
            verify_rs256(raw.signing_input, raw.signature, key)
        except AuthError as exc:
            installation = claims.app.installation_id if claims is not None else None
            if scope is None:  # called directly: the trace ids it was given
                traced = [(b"x-b3-traceid", (trace_id or "").encode()), (b"x-b3-spanid", (span_id or "").encode())]
                scope = {"headers": traced}
            await self.report_rejection(exc, installation_id=installation, scope=scope, timing=timing)
            raise
        if timing is not None:
            timing.end(installation_id=claims.app.installation_id, signed=True, key_provider=self.key_provider)
        verified = forge_invocation(
            claims, _secret(system_token), _secret(user_token), _trace(trace_id), _trace(span_id)
        )
        if self.on_invocation is not None:
            await _run_hook(self.on_invocation, verified)
        return verified

    async def report_rejection(
        self,
        exc: AuthError,
        *,
        installation_id: str | None,
        scope: Mapping[str, Any] | None = None,
        timing: Verification | None = None,
    ) -> None:
        """The one place a Forge rejection is reported: its event logged and given to `on_rejection`, its span.

        The flow calls it for every refused FIT; `ForgeLifecycle` for a verified FIT
        whose payload names another installation.
        """
        if timing is not None:
            timing.end(
                code=exc.code.value, installation_id=installation_id, signed=True, key_provider=self.key_provider
            )
        route, headers = call_details(scope)
        event = RejectionEvent.of(exc, "forge", route=route, headers=headers, installation_id=installation_id)
        message = (
            f"Rejected Forge invocation: {exc.code.value} (installation={event.installation_id!r}): {event.detail}"
        )
        await deliver(event, message, self.on_rejection)

    # -- steps --------------------------------------------------------------------------

    @staticmethod
    def _claims(raw: RawToken) -> ForgeClaims:
        try:
            return _validate_claims_json(raw.payload)  # type: ignore[no-any-return]
        except ValidationError as exc:
            raise invalid_claims(exc) from None

    def _check_issued_at(self, claims: ForgeClaims) -> None:
        if claims.iat > self.clock() + self.leeway:
            raise AuthError(AuthErrorCode.TOKEN_NOT_YET_VALID, "The FIT is issued in the future (iat).")
        if not 0 <= claims.exp - claims.iat <= self.max_token_lifetime:
            raise AuthError(
                AuthErrorCode.INVALID_TOKEN_LIFETIME,
                f"The FIT's lifetime (exp - iat) is not between 0 and {self.max_token_lifetime:g} seconds.",
            )

    def _check_environment(self, claims: ForgeClaims) -> None:
        if self.environments is None:
            return
        environment = claims.app.environment
        if environment is None or environment.type not in self.environments:
            raise AuthError(
                AuthErrorCode.WRONG_ENVIRONMENT, "The FIT's app.environment.type is not one this app accepts."
            )

    def _check_issuer_and_audience(self, claims: ForgeClaims) -> None:
        if claims.iss != FORGE_ISSUER:  # public, like the audience: no secret to time
            raise AuthError(AuthErrorCode.WRONG_ISSUER, f"The FIT's issuer is not {FORGE_ISSUER!r}.")
        if self.app_ids.isdisjoint(claims.aud):
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

    def _api_host(self, api_base_url: str) -> str:
        """The host of a FIT's `app.apiBaseUrl`, if the URL is one the app may send its tokens to.

        https on an allowed host and its default port (plain http, any port, on
        a configured loopback host), a path and nothing else: no userinfo, query,
        fragment, backslash, whitespace, control or non-ASCII character. A URL
        accepted once is remembered (bounded): an installation's never changes.
        """
        host = self._api_base_urls.get(api_base_url)
        if host is None:
            host = self._api_base_urls[api_base_url] = self._check_api_base_url(api_base_url)
        return host

    def _check_api_base_url(self, api_base_url: str) -> str:
        parts = urlsplit(api_base_url)
        host = (parts.hostname or "").lower()
        try:
            port = parts.port
        except ValueError:
            port = -1
        loopback = parts.scheme == "http" and host in self._loopback_hosts
        if (
            not (loopback or (parts.scheme == "https" and port in (None, 443)))
            or host not in self.api_hosts
            or "@" in parts.netloc
            or _UNSAFE_IN_URL.search(api_base_url) is not None
        ):
            raise AuthError(
                AuthErrorCode.UNTRUSTED_API_HOST,
                "The FIT's app.apiBaseUrl is not an https URL on this app's allow-list of Atlassian API hosts.",
            )
        return host

    def _jwks_url(self, claims: ForgeClaims) -> str:
        """Check `app.apiBaseUrl` and `icLabel`, and pick the JWKS that must have signed this token."""
        host = self._api_host(claims.app.api_base_url)
        if claims.ic_label is not None:
            if IC_LABEL.fullmatch(claims.ic_label) is None:
                raise AuthError(AuthErrorCode.INVALID_IC_LABEL, "The FIT's icLabel is not a valid label.")
            if self.isolated_cloud_jwks_url is None or claims.ic_label not in self.isolated_cloud_labels:
                raise AuthError(
                    AuthErrorCode.INVALID_IC_LABEL,
                    "The FIT is from an Isolated Cloud this app is not configured for.",
                )
            return self.isolated_cloud_jwks_url.format(ic_label=claims.ic_label)
        if self.staging and host == STAGING_API_HOST:
            return self.staging_jwks_url
        return self.jwks_url
