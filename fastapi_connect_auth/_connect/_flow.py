"""`ConnectAuth`: the one configuration object, and the verification flows it runs.

The flows are framework-free (they take a token, the request target and the
body) so they mirror the Node library's `verifyInstallation` and
`verifyRequest`; the FastAPI dependencies only adapt a request to them.

Each flow rejects with the cheapest checks first (shape, algorithm, times,
audience, issuer, QSH) and touches storage or the network only after them.
"""

from __future__ import annotations

import hmac
import inspect
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeGuard, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from .._bodies import DEFAULT_BODY_TIMEOUT, BodySource, too_large
from .._errors import AuthError, AuthErrorCode
from .._events import RejectionCallback, RejectionEvent, RejectionKind, call_details, deliver
from .._tokens import check_kid, check_times
from .._wiring import AppConfig
from ._environments import ConnectEnvironment, ProductHosts
from ._keys import AtlassianKeyProvider, PublicKeyProvider
from ._models import (
    Credentials,
    InstallationType,
    InstallPayload,
    LifecycleEvent,
    LifecyclePayload,
    VerifiedInstallation,
    VerifiedLifecycle,
    VerifiedRequest,
    verified_request,
)
from ._qsh import CONTEXT_QSH, canonical_request, target_hash
from ._tokens import Algorithm, ParsedToken, check_algorithm, parse_token, verify_signature

if TYPE_CHECKING:  # telemetry's module is imported by `Telemetry`'s users only; cryptography at the first install
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    from .._telemetry import Telemetry, Verification

__all__ = [
    "AuthorizationMethod",
    "ConnectAuth",
    "CredentialsLoader",
    "QshMode",
    "RequestTarget",
]

logger = logging.getLogger("fastapi_connect_auth")

QshMode = Literal["computed", "context", "any", "skip"]
"""How a route checks the `qsh` claim (the Node library's `queryStringHashType`)."""

AuthorizationMethod = Literal["publicKey", "sharedSecret", "any"]
"""How lifecycle callbacks are signed (the Node library's `authorizationMethod`)."""

CredentialsLoader = Callable[[str], "Credentials[Any] | Awaitable[Credentials[Any] | None] | None"]
"""`loader(client_key)`, sync or async: the tenant's `Credentials` (`installed=False` once it uninstalled),
or `None` if never seen."""


class CredentialsSource(Protocol):
    """Anything with a `credentials` loader: the library's stores.

    One that also has `fresh_credentials` (the library's stores do) is read
    through it, never a cache, to decide whether an unsigned install is a first one.
    """

    @property
    def credentials(self) -> CredentialsLoader:
        """`loader(client_key)` returning the tenant's `Credentials` or `None`."""
        ...


MAX_CLIENT_KEY_LENGTH = 255
"""The longest `iss`/`clientKey` passed to a loader; Atlassian's are far shorter (UUIDs and the like)."""

PayloadT = TypeVar("PayloadT", bound=BaseModel)

_RS256: frozenset[Algorithm] = frozenset({"RS256"})
_HS256: frozenset[Algorithm] = frozenset({"HS256"})
_EITHER: frozenset[Algorithm] = frozenset({"HS256", "RS256"})
_ALGORITHMS_BY_METHOD: dict[AuthorizationMethod, frozenset[Algorithm]] = {
    "publicKey": _RS256,
    "sharedSecret": _HS256,
    "any": _EITHER,
}


@dataclass(frozen=True, slots=True)
class RequestTarget:
    """What the QSH covers: the method, the path as sent (percent-encoded) and the raw query."""

    method: str
    """The HTTP method, as sent."""
    path: str
    """The path as sent, still percent-encoded."""
    query: str = ""
    """The raw query string, without the `?`."""


def _is_async_callable(function: Any) -> bool:
    """Whether calling `function` returns a coroutine: an `async def`, or an object with an async `__call__`."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(getattr(function, "__call__", None))  # noqa: B004


def _is_local(url: str) -> bool:
    """Whether `url` is plain http, or https on a loopback host: where `debug=True` may run."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _normalise_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"base_url must be an absolute http(s) URL without query or fragment, not {url!r}")
    return url.rstrip("/")


class ConnectAuth(AppConfig):
    """The app's Connect configuration, attached to the app once with `install(app)`.

    ```python
    connect = ConnectAuth(base_url="https://my-app.example.com", credentials_loader=load_tenant)
    app = FastAPI(lifespan=connect.lifespan)
    connect.install(app)
    ```

    * `base_url`: the app's base URL as its descriptor declares it; several for
      one app reachable at several (a public URL and a tunnel). Signed installs
      must name one of them as `aud`; the request's own host is never trusted.
    * `credentials_loader`: `loader(client_key)` (sync or async) returns the
      tenant's `Credentials`, with `installed=False` once it uninstalled, or
      `None` for a tenant never seen. It is only called with a printable
      `client_key` of at most 255 characters; anything else is refused first.
    * `store`: a store of `fastapi_connect_auth.stores` instead: its
      `credentials` is the loader (pass one or the other).
    * `sync_loader_in_thread`: a sync loader runs in a worker thread, as FastAPI
      runs sync dependencies, so a blocking database call stalls no other request.
      Pass `False` for a loader that never blocks (an in-memory dict): it then
      runs on the event loop, without the thread hop.
    * `authorization_method`: how `installed`/`uninstalled` are verified:
      `"publicKey"` (signed installs, the default), `"sharedSecret"` (legacy),
      or `"any"` (during a transition).
    * `product_hosts`: the allow-list of product hosts that may install the app.
    * `leeway`: seconds of clock skew tolerated on `exp` and `nbf`.
    * `max_body_size`, `body_timeout`: the largest lifecycle body read, in bytes,
      and the seconds it may take to arrive, whole (408 `BODY_TIMEOUT` after, the
      connection closed); also the defaults of `ConnectRequest(body=...)`.
    * `on_rejection`: `callback(event)`, sync or async, given a `RejectionEvent`
      for each refused call (after it is logged); if it raises, that is logged and
      the call is refused all the same.
    * `telemetry`: a `Telemetry` to record a span, counters and the verification
      time of each call with OpenTelemetry; `None` (the default) records nothing.
    * `debug`: **never in production.** Logs the canonical request computed with
      each QSH mismatch (never in the answer). Refused at startup when a base URL
      is https on a host other than a loopback one.
    """

    state_name = "connect_auth"
    """The `app.state` attribute `install(app)` sets."""
    install_hint = "call connect.install(app)"
    """What an error says to do when no `ConnectAuth` is installed."""

    def __init__(
        self,
        *,
        base_url: str | Sequence[str],
        credentials_loader: CredentialsLoader | None = None,
        store: CredentialsSource | None = None,
        sync_loader_in_thread: bool = True,
        key_provider: PublicKeyProvider | None = None,
        authorization_method: AuthorizationMethod = "publicKey",
        product_hosts: ProductHosts | None = None,
        leeway: float = 30.0,
        max_body_size: int = 64 * 1024,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        clock: Callable[[], float] = time.time,
        on_rejection: RejectionCallback | None = None,
        telemetry: Telemetry | None = None,
        debug: bool = False,
    ) -> None:
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("ConnectAuth needs at least one base_url")
        if (credentials_loader is None) == (store is None):
            raise ValueError("ConnectAuth takes credentials_loader= or store=, one of them")
        loader = credentials_loader if credentials_loader is not None else store.credentials  # type: ignore[union-attr]
        if authorization_method not in _ALGORITHMS_BY_METHOD:
            raise ValueError(f"authorization_method must be one of {sorted(_ALGORITHMS_BY_METHOD)}")
        self.base_urls: tuple[str, ...] = tuple(dict.fromkeys(_normalise_base_url(url) for url in urls))
        """The app's base URLs, normalised (no trailing slash): the only accepted `aud`."""
        self._base_paths = tuple(dict.fromkeys(urlsplit(url).path for url in self.base_urls))
        self.credentials_loader: CredentialsLoader = loader
        """`loader(client_key)` returning the tenant's `Credentials` or `None`."""
        self.store = store
        """The store credentials are read from, when given as `store=` (its outages answer 503)."""
        self._loader_in_thread = sync_loader_in_thread and not _is_async_callable(loader)
        self._fresh_loader: Callable[[str], Awaitable[Credentials[Any] | None]] | None = getattr(
            store, "fresh_credentials", None
        )
        self.key_provider: PublicKeyProvider = key_provider or AtlassianKeyProvider()
        """Where Atlassian's install keys come from (`AtlassianKeyProvider` by default)."""
        self.authorization_method: AuthorizationMethod = authorization_method
        """How `installed`/`uninstalled` are verified: `publicKey`, `sharedSecret` or `any`."""
        self.product_hosts = product_hosts or ProductHosts()
        """The allow-list of product hosts that may install the app."""
        self.leeway = leeway
        """Seconds of clock skew tolerated on `exp` and `nbf`."""
        self.max_body_size = max_body_size
        """The largest lifecycle body accepted, in bytes."""
        self.body_timeout = body_timeout
        """Seconds a body may take to arrive, whole."""
        self.clock = clock
        """The clock tokens are checked against (seconds since the epoch)."""
        self.on_rejection = on_rejection
        """Called with a `RejectionEvent` for each refused call."""
        self.telemetry = telemetry
        """Records each verification with OpenTelemetry when set."""
        public = [url for url in self.base_urls if not _is_local(url)]
        if debug and public:
            raise ValueError(
                f"debug=True is for local development only (it logs canonical requests), not with {public[0]!r}"
            )
        self.debug = debug
        """Whether QSH mismatches log the canonical request computed (local development only)."""

    # -- flows --------------------------------------------------------------------------

    async def verify_request(
        self,
        token: str | None,
        target: RequestTarget,
        *,
        qsh: QshMode = "computed",
        authorization_method: AuthorizationMethod = "sharedSecret",
        scope: Mapping[str, Any] | None = None,
    ) -> VerifiedRequest[Any]:
        """Verify a webhook, page load or iframe call (the Node library's `verifyRequest`).

        HS256 with the tenant's shared secret, unless `authorization_method` also
        admits Atlassian-signed (RS256) tokens. `scope`, the call's ASGI scope, is
        read only when the call is refused: its route and trace ids go in the event.
        """
        timing = self.telemetry.start("request", self.key_provider) if self.telemetry is not None else None
        parsed: ParsedToken | None = None
        try:
            parsed = self._parse(token)
            alg = check_algorithm(parsed, _ALGORITHMS_BY_METHOD[authorization_method])
            claims = parsed.claims
            if alg == "HS256":  # the cheap checks before the loader's I/O; a signed token's come in _verify_signed
                check_times(claims, self.clock(), self.leeway)
                self._check_qsh(claims.qsh, target, qsh)
            found = self._lookup(claims.iss)
            credentials = _installed(found if _answered(found) else await _awaited(found))
            if alg == "RS256":
                environment = self._environment(credentials.base_url) if credentials.base_url else None
                kid = self._precheck_signed(parsed, target, "skip" if qsh == "skip" else "computed")
                await self._verify_signed(parsed, kid, claims.iss, environment)
            else:
                verify_signature(parsed, credentials.shared_secret)
            verified = verified_request(claims, credentials.stored_entity)
        except AuthError as exc:
            await self._rejected("request", exc, parsed, target, scope, timing)
            raise
        if timing is not None:
            timing.end(tenant=claims.iss, signed=alg == "RS256", key_provider=self.key_provider)
        return verified

    async def verify_installation(
        self,
        token: str | None,
        target: RequestTarget,
        body: bytes | BodySource,
        *,
        scope: Mapping[str, Any] | None = None,
    ) -> VerifiedInstallation[Any]:
        """Verify an `installed` callback (the Node library's `verifyInstallation`).

        Signed installs (RS256) are checked against Atlassian's key for the token's
        `kid`, with `aud` one of our base URLs and `iss` the body's `clientKey`.
        Legacy installs follow the Node library: a first install needs no token; an
        update must be signed with the tenant's stored shared secret.

        `body` is the body, or a reader of it (`BodySource`) called only once the
        checks that do not need the body have passed.
        """
        timing = self.telemetry.start("install", self.key_provider) if self.telemetry is not None else None
        parsed: ParsedToken | None = None
        try:
            parsed = self._parse(token) if token is not None or self.authorization_method == "publicKey" else None
            signed = self.authorization_method == "publicKey" or (
                self.authorization_method == "any" and parsed is not None and parsed.alg == "RS256"
            )
            kid = ""
            if parsed is not None:
                check_algorithm(parsed, _RS256 if signed else _HS256)
                self._check_issued_at(parsed)
                if signed:
                    kid = self._precheck_signed(parsed, target, "computed")
            payload = self.parse_payload(await _read(body), InstallPayload)
            environment = self._environment(payload.base_url)
            if parsed is not None and signed:
                await self._verify_signed(parsed, kid, payload.client_key, environment)
                credentials = await self._load(payload.client_key)
                claims = parsed.claims
            else:
                credentials, claims = await self._verify_legacy_install(parsed, target, payload.client_key)
            verified = VerifiedInstallation(
                InstallationType.UPDATE if credentials and credentials.installed else InstallationType.NEW_INSTALLATION,
                payload,
                claims,
                credentials.stored_entity if credentials else None,
            )
        except AuthError as exc:
            await self._rejected("install", exc, parsed, target, scope, timing)
            raise
        if timing is not None:
            timing.end(tenant=payload.client_key, signed=signed, key_provider=self.key_provider)
        return verified

    async def verify_lifecycle(
        self,
        event: LifecycleEvent,
        token: str | None,
        target: RequestTarget,
        body: bytes | BodySource,
        *,
        scope: Mapping[str, Any] | None = None,
    ) -> VerifiedLifecycle[Any]:
        """Verify an `uninstalled`, `enabled` or `disabled` callback from a known tenant.

        `uninstalled` is signed like `installed` (per `authorization_method`);
        `enabled` and `disabled` are signed with the tenant's shared secret.
        A context token is never enough: the QSH must be the computed one, and an
        `iat` in the future beyond the leeway is refused. A tenant that already
        uninstalled is verified against its kept secret all the same: a late or
        repeated callback is answered 2xx and the store changes nothing.
        """
        timing = self.telemetry.start("lifecycle", self.key_provider) if self.telemetry is not None else None
        parsed: ParsedToken | None = None
        try:
            parsed = self._parse(token)
            allowed = _ALGORITHMS_BY_METHOD[self.authorization_method] if event == "uninstalled" else _HS256
            signed = check_algorithm(parsed, allowed) == "RS256"
            self._check_issued_at(parsed)
            kid = self._precheck_signed(parsed, target, "computed") if signed else ""
            if not signed:
                self._precheck_shared_secret(parsed, target)
            payload = self.parse_payload(await _read(body), LifecyclePayload)
            if payload.event_type != event:
                raise AuthError(
                    AuthErrorCode.INVALID_INSTALL_PAYLOAD,
                    f"This route takes {event!r} callbacks, not {payload.event_type[:32]!r}.",
                )
            if signed:
                environment = self._environment(payload.base_url)
                await self._verify_signed(parsed, kid, payload.client_key, environment)
                credentials = _known(await self._load(payload.client_key))
            else:
                self._check_issuer(parsed, payload.client_key)
                credentials = _known(await self._load(payload.client_key))
                verify_signature(parsed, credentials.shared_secret)
            verified = VerifiedLifecycle(
                event, payload, parsed.claims, credentials.stored_entity, installed=credentials.installed
            )
        except AuthError as exc:
            await self._rejected(event, exc, parsed, target, scope, timing)
            raise
        if timing is not None:
            timing.end(tenant=payload.client_key, signed=signed, key_provider=self.key_provider)
        return verified

    # -- steps --------------------------------------------------------------------------

    def check_body_size(self, size: int) -> None:
        """Refuse a lifecycle body of `size` bytes over `max_body_size` (`PAYLOAD_TOO_LARGE`, 413)."""
        if size > self.max_body_size:
            raise too_large(self.max_body_size)

    def parse_payload(self, body: bytes, model: type[PayloadT]) -> PayloadT:
        """Validate a lifecycle body; a malformed one is a 4xx `AuthError` naming the fields."""
        self.check_body_size(len(body))
        try:
            return model.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
                for error in exc.errors()[:10]
            )
            raise AuthError(AuthErrorCode.INVALID_INSTALL_PAYLOAD, f"Invalid lifecycle payload: {problems}.") from None

    def _parse(self, token: str | None) -> ParsedToken:
        if not token:
            raise AuthError(
                AuthErrorCode.MISSING_JWT, "No JWT: expected 'Authorization: JWT <token>' or a 'jwt' query parameter."
            )
        return parse_token(token)

    def _lookup(self, client_key: str) -> Credentials[Any] | Awaitable[Credentials[Any] | None] | None:
        """The loader's answer for a well-formed `client_key`, or an awaitable of it; any other key is refused first.

        A sync loader's answer comes back as it is, not wrapped in one more coroutine per request.
        """
        _check_client_key(client_key)
        if self._loader_in_thread:  # a sync loader, so it returns its answer
            return run_in_threadpool(
                cast("Callable[[str], Credentials[Any] | None]", self.credentials_loader), client_key
            )
        return self.credentials_loader(client_key)

    async def _load(self, client_key: str) -> Credentials[Any] | None:
        """The loader's answer for a well-formed `client_key` (`_lookup`), awaited if need be."""
        found = self._lookup(client_key)
        return found if _answered(found) else await _awaited(found)

    def _environment(self, product_base_url: str) -> ConnectEnvironment:
        environment = self.product_hosts.environment_of(product_base_url)
        if environment is None:
            raise AuthError(
                AuthErrorCode.UNTRUSTED_PRODUCT_HOST,
                "The product's baseUrl is not on this app's allow-list of Atlassian product hosts.",
            )
        return environment

    @staticmethod
    def _check_issuer(parsed: ParsedToken, client_key: str) -> None:
        if not hmac.compare_digest(parsed.claims.iss.encode(), client_key.encode()):
            raise AuthError(AuthErrorCode.WRONG_ISSUER, "The JWT's issuer is not the clientKey of the payload.")

    def _check_audience(self, parsed: ParsedToken) -> None:
        audiences = parsed.claims.aud
        if not audiences:
            raise AuthError(AuthErrorCode.WRONG_AUDIENCE, "The signed JWT has no audience (aud).")
        if not any(aud.rstrip("/") in self.base_urls for aud in audiences):
            raise AuthError(AuthErrorCode.WRONG_AUDIENCE, "The JWT's audience is not this app's base URL.")

    def _check_qsh(self, qsh: str | None, target: RequestTarget, mode: QshMode) -> None:
        if mode == "skip":
            return
        if qsh is None:
            raise AuthError(AuthErrorCode.MISSING_QSH, "The JWT has no query string hash (qsh).")
        if qsh == CONTEXT_QSH:
            if mode in ("context", "any"):
                return
            raise AuthError(AuthErrorCode.INVALID_QSH, "A context token (qsh 'context-qsh') is not accepted here.")
        if mode == "context":
            raise AuthError(AuthErrorCode.INVALID_QSH, "This route only accepts context tokens (qsh 'context-qsh').")
        expected = qsh.encode()
        for base_path in self._base_paths:
            if hmac.compare_digest(target_hash(target.method, target.path, target.query, base_path), expected):
                return
        raise AuthError(
            AuthErrorCode.INVALID_QSH,
            "The query string hash does not match this request (was the URL rewritten by a proxy?).",
        )

    def _check_issued_at(self, parsed: ParsedToken) -> None:
        """Refuse a lifecycle token issued in the future beyond the leeway: its `iat` orders the store's writes."""
        iat = parsed.claims.iat
        if iat is not None and iat > self.clock() + self.leeway:
            raise AuthError(AuthErrorCode.TOKEN_NOT_YET_VALID, "The JWT is not valid yet (iat is in the future).")

    def _precheck_signed(self, parsed: ParsedToken, target: RequestTarget, qsh: QshMode) -> str:
        """Atlassian-signed (RS256), what needs no body: kid, times, audience, QSH; returns the kid."""
        kid = check_kid(parsed.claims.kid)
        check_times(parsed.claims, self.clock(), self.leeway)
        self._check_audience(parsed)
        self._check_qsh(parsed.claims.qsh, target, qsh)
        return kid

    async def _verify_signed(
        self, parsed: ParsedToken, kid: str, client_key: str, environment: ConnectEnvironment | None
    ) -> None:
        """Atlassian-signed (RS256), after `_precheck_signed`: the issuer, then the key and the signature."""
        self._check_issuer(parsed, client_key)
        key = await self._public_key(kid, environment or ConnectEnvironment.PRODUCTION)
        verify_signature(parsed, key)

    async def _public_key(self, kid: str, environment: ConnectEnvironment) -> RSAPublicKey:
        """The provider's key for `kid`; any failure other than an `AuthError` is a 503, never a 500.

        A custom provider may raise anything (an httpx2 error, a `RuntimeError`); the
        Node library answers any of them with `FAILED_TO_OBTAIN_PUBLIC_KEY`. Only the
        exception's type is logged: its text may hold a URL or a credential.
        """
        try:
            return await self.key_provider.get_public_key(kid, environment)
        except AuthError:
            raise
        except Exception as exc:
            logger.error(
                "The key provider %s failed for kid %r (%s): %s",
                type(self.key_provider).__name__,
                kid,
                environment.value,
                type(exc).__name__,
            )
            raise AuthError(
                AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY,
                "Could not obtain Atlassian's public key: the key provider failed.",
                status_code=503,
            ) from exc

    def _precheck_shared_secret(self, parsed: ParsedToken, target: RequestTarget) -> None:
        """A shared-secret (HS256) lifecycle token, what needs no secret: times and the computed QSH."""
        check_times(parsed.claims, self.clock(), self.leeway)
        self._check_qsh(parsed.claims.qsh, target, "computed")

    def _verify_shared_secret(self, parsed: ParsedToken, target: RequestTarget, shared_secret: str) -> None:
        self._precheck_shared_secret(parsed, target)
        verify_signature(parsed, shared_secret)

    async def _verify_legacy_install(
        self, parsed: ParsedToken | None, target: RequestTarget, client_key: str
    ) -> tuple[Credentials[Any] | None, Any]:
        if parsed is not None:
            check_algorithm(parsed, _HS256)
            self._check_issuer(parsed, client_key)
        # Read the store, never a cache: a "never seen" cached on this replica may be stale (the store's
        # unsigned create is atomic too, so a race between replicas still creates the tenant once).
        fresh = self._fresh_loader
        credentials = await fresh(_check_client_key(client_key)) if fresh is not None else await self._load(client_key)
        if credentials is None:
            return None, None  # a first legacy install carries nothing to verify it with
        if parsed is None:  # installed or not: a known clientKey is never re-claimed unsigned
            raise AuthError(
                AuthErrorCode.UNAUTHORIZED_REQUEST,
                "An install for a known clientKey must be signed with its shared secret.",
            )
        self._verify_shared_secret(parsed, target, credentials.shared_secret)
        return credentials, parsed.claims

    async def _rejected(
        self,
        kind: Literal["request", "install"] | LifecycleEvent,
        exc: AuthError,
        parsed: ParsedToken | None,
        target: RequestTarget,
        scope: Mapping[str, Any] | None,
        timing: Verification | None,
    ) -> None:
        """The one place a Connect rejection is reported: its event logged and given to `on_rejection`, its span."""
        issuer = parsed.claims.iss if parsed is not None else None
        route, headers = call_details(scope)
        event_kind: RejectionKind = "request" if kind == "request" else "install" if kind == "install" else "lifecycle"
        debug_detail = None
        if self.debug and exc.code is AuthErrorCode.INVALID_QSH:
            canonicals = (canonical_request(target.method, target.path, target.query, b) for b in self._base_paths)
            debug_detail = f"(debug) The canonical request we computed: {' | '.join(canonicals)}"
        event = RejectionEvent.of(
            exc,
            event_kind,
            route=route or target.path,
            headers=headers,
            issuer=issuer,
            lifecycle_event=kind if event_kind == "lifecycle" else None,
            debug_detail=debug_detail,
        )
        if timing is not None:
            signed = parsed is not None and parsed.alg == "RS256"
            timing.end(code=exc.code.value, tenant=issuer, signed=signed, key_provider=self.key_provider)
        if exc.code is AuthErrorCode.CLIENT_DISCONNECTED:  # no one to refuse: the body reader logged the hang-up
            return
        message = f"Rejected Connect {kind}: {exc.code.value} (iss={event.issuer!r}): {event.detail}"
        await deliver(event, message, self.on_rejection)


def _answered(found: object) -> TypeGuard[Credentials[Any] | None]:
    """Whether a loader answered at once (a sync loader): then there is nothing to await."""
    return found is None or isinstance(found, Credentials)


async def _awaited(found: Any) -> Credentials[Any] | None:
    """An async loader's (or the thread's) answer."""
    return await found if inspect.isawaitable(found) else found  # type: ignore[no-any-return]


def _check_client_key(client_key: str) -> str:
    """`client_key` if a loader may be asked for it; anything else is refused first."""
    if len(client_key) > MAX_CLIENT_KEY_LENGTH or not client_key.isprintable():
        raise AuthError(
            AuthErrorCode.UNKNOWN_ISSUER, "The JWT's issuer is not a valid clientKey (too long or not printable)."
        )
    return client_key


def _known(credentials: Credentials[Any] | None) -> Credentials[Any]:
    """The loader's answer for a tenant that must be known, installed or not (a lifecycle callback)."""
    if credentials is None:
        raise AuthError(AuthErrorCode.UNKNOWN_ISSUER, "The JWT's issuer is not a known tenant.")
    return credentials


def _installed(credentials: Credentials[Any] | None) -> Credentials[Any]:
    """The loader's answer for a tenant that must be installed; a plain function, not another coroutine per request."""
    if credentials is None or not credentials.installed:
        raise AuthError(AuthErrorCode.UNKNOWN_ISSUER, "The JWT's issuer is not an installed tenant.")
    return credentials


async def _read(body: bytes | BodySource) -> bytes:
    return body if isinstance(body, bytes) else await body()
