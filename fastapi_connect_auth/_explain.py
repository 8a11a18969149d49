"""Why a token would be accepted or rejected: the engine of `fastapi-connect-auth explain`.

The verdict is never computed here: the token goes through the library's own
flows (`ConnectAuth.verify_request`, `ForgeAuth.verify_invocation`) configured
as the command line says, with an in-memory credentials loader for the secret
and a key provider over the given JWKS. What this module adds is the account of
it: the header and claims, times relative to now, the canonical request and,
when the `qsh` does not match, which usual mistake would have produced the
token's `qsh` (tried with the library's `canonical_request`).

Nothing printed from here contains the token, its signature or the secret.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from ._connect._environments import ConnectEnvironment
from ._connect._flow import ConnectAuth, QshMode, RequestTarget
from ._connect._models import Credentials
from ._connect._qsh import CONTEXT_QSH, canonical_path, canonical_query, canonical_request, parse_query
from ._errors import AuthError, AuthErrorCode
from ._forge._flow import FORGE_ISSUER, ForgeAuth
from ._forge._jwks import FORGE_JWKS_URL, JwksKeyProvider, _parse_jwks, _Unavailable
from ._logs import redact_tokens
from ._tokens import MAX_TOKEN_LENGTH

__all__ = ["Explanation", "UsageProblem", "explain", "load_jwks"]

TROUBLESHOOTING_URL = "https://github.com/fastapi-connect-auth/fastapi-connect-auth/blob/main/docs/troubleshooting.md"
"""Where each code's troubleshooting entry lives (`#<code in lower case>`)."""

Kind = Literal["Connect HS256", "signed RS256", "context", "Forge"]

CONNECT_LEEWAY = 30.0
FORGE_LEEWAY = 10.0
_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
_COMMON_PREFIXES = ("/api", "/app", "/jira", "/confluence", "/wiki", "/connect", "/atlassian")
"""Path prefixes proxies commonly strip, tried besides the base URL's own path."""
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_CHECKS: dict[AuthErrorCode, str] = {
    AuthErrorCode.MISSING_JWT: "token present",
    AuthErrorCode.FAILED_TO_DECODE: "token well-formed",
    AuthErrorCode.INVALID_ALGORITHM: "algorithm",
    AuthErrorCode.MISSING_KID: "key id (kid)",
    AuthErrorCode.INVALID_KID: "key id (kid)",
    AuthErrorCode.TOKEN_EXPIRED: "expiry (exp)",
    AuthErrorCode.TOKEN_NOT_YET_VALID: "not before (nbf, iat)",
    AuthErrorCode.WRONG_AUDIENCE: "audience (aud)",
    AuthErrorCode.WRONG_ISSUER: "issuer (iss)",
    AuthErrorCode.UNKNOWN_ISSUER: "issuer (iss)",
    AuthErrorCode.MISSING_QSH: "query string hash (qsh)",
    AuthErrorCode.INVALID_QSH: "query string hash (qsh)",
    AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY: "signing key",
    AuthErrorCode.INVALID_SIGNATURE: "signature",
    AuthErrorCode.UNTRUSTED_API_HOST: "API host (app.apiBaseUrl)",
    AuthErrorCode.INVALID_IC_LABEL: "Isolated Cloud label (icLabel)",
    AuthErrorCode.INSTALLATION_MISMATCH: "installation (app.installation.id)",
    AuthErrorCode.INVALID_TOKEN_LIFETIME: "lifetime (exp - iat)",
    AuthErrorCode.WRONG_ENVIRONMENT: "environment (app.environment.type)",
    AuthErrorCode.WRONG_INVOCATION: "invocation kind",
}


_CLOCK_HINT = (
    "check the server's clock (NTP); from the iframe, get a fresh token for each call with "
    "AP.context.getToken() instead of keeping one."
)
_CONNECT_HINTS: dict[AuthErrorCode, str] = {
    AuthErrorCode.MISSING_JWT: "no token: pass it as the first argument, '-' to read it from standard input, or "
    "leave it in the URL's jwt parameter; from the iframe, send 'Authorization: JWT <AP.context.getToken()>'.",
    AuthErrorCode.FAILED_TO_DECODE: "not a JWT: three base64url segments separated by dots, at most 16 KiB; check "
    "that nothing (a shell, a proxy, a logger) cut, quoted or re-encoded the token.",
    AuthErrorCode.MISSING_QSH: "the token has no qsh: only routes whose URL the product cannot know may skip the "
    "check (ConnectRequest(qsh='skip')).",
    AuthErrorCode.TOKEN_EXPIRED: _CLOCK_HINT,
    AuthErrorCode.TOKEN_NOT_YET_VALID: _CLOCK_HINT,
    AuthErrorCode.INVALID_ALGORITHM: "Connect tokens are HS256 (the tenant's shared secret) or RS256 (signed "
    "installs); anything else, 'none' included, is refused on every route.",
    AuthErrorCode.INVALID_SIGNATURE: "the secret does not match: the stored shared secret is stale (store each "
    "installed callback's secret at once), decrypted with the wrong key, or the token is for another tenant.",
}
"""The hints that depend on the code alone."""


class UsageProblem(Exception):
    """The command line cannot be explained as given (exit status 2): the message says what to pass."""


@dataclass
class Explanation:
    """What `explain` found: the verdict of the library's own flow, and the account of it."""

    valid: bool
    code: AuthErrorCode | None
    message: str | None
    kind: Kind | None
    header: dict[str, Any] | None
    claims: dict[str, Any] | None
    canonical_request: str | None
    qsh: dict[str, Any] | None = None
    facts: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    @property
    def failed_check(self) -> str | None:
        """The check that failed, in words."""
        return _CHECKS.get(self.code) if self.code else None

    @property
    def troubleshooting(self) -> str | None:
        """The troubleshooting entry of the code."""
        return f"{TROUBLESHOOTING_URL}#{self.code.value.lower()}" if self.code else None

    def as_json(self) -> dict[str, Any]:
        """The `--json` object: `valid`, `code`, `kind`, `claims`, `canonical_request`, `hints` and the rest."""
        return {
            "valid": self.valid,
            "code": self.code.value if self.code else None,
            "message": self.message,
            "check": self.failed_check,
            "kind": self.kind,
            "header": self.header,
            "claims": self.claims,
            "canonical_request": self.canonical_request,
            "qsh": self.qsh,
            "facts": self.facts,
            "hints": self.hints,
            "troubleshooting": self.troubleshooting,
        }


# -- keys -------------------------------------------------------------------------------------------------------


class _StaticKeys:
    """A key provider over a JWKS document already read: a Connect `PublicKeyProvider` and a `ForgeKeyProvider`."""

    def __init__(self, keys: dict[str, RSAPublicKey]) -> None:
        self.keys = keys

    def _key(self, kid: str) -> RSAPublicKey:
        key = self.keys.get(kid)
        if key is None:
            raise AuthError(AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY, "The JWT's kid is not in the given JWKS.")
        return key

    async def get_public_key(self, kid: str, environment: ConnectEnvironment) -> RSAPublicKey:
        return self._key(kid)

    async def get_signing_key(self, kid: str, jwks_url: str) -> RSAPublicKey:
        return self._key(kid)


class _UrlKeys:
    """Connect's `PublicKeyProvider` over a JWKS URL, fetched (once per run) by the library's `JwksKeyProvider`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.provider = JwksKeyProvider()

    async def get_public_key(self, kid: str, environment: ConnectEnvironment) -> RSAPublicKey:
        return await self.provider.get_signing_key(kid, self.url)


def load_jwks(source: str) -> dict[str, RSAPublicKey] | str:
    """The keys of the JWKS file `source`, or `source` itself when it is an http(s) URL (fetched when needed)."""
    if urlsplit(source).scheme in ("http", "https"):
        return source
    path = Path(source)
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise UsageProblem(f"--jwks: cannot read {source!r} ({exc.strerror or type(exc).__name__})") from None
    try:
        return _parse_jwks(body)
    except _Unavailable as exc:
        raise UsageProblem(f"--jwks: {source!r} is not a usable JWKS: {exc}") from None


# -- reading the token without trusting it ----------------------------------------------------------------------


def _segment(text: str) -> Any:
    padded = text + "=" * (-len(text) % 4)
    return json.loads(binascii.a2b_base64(padded.translate(str.maketrans("-_", "+/")).encode("ascii")))


def _peek(token: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The header and payload, decoded without any check, for display only; `None` for what does not decode."""
    if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        return None, None
    parts = token.split(".")
    decoded: list[dict[str, Any] | None] = []
    for text in parts[:2]:
        try:
            value = _segment(text)
        except (ValueError, UnicodeError, RecursionError):
            value = None
        decoded.append(value if isinstance(value, dict) else None)
    return decoded[0], decoded[1]


def _kind(header: dict[str, Any] | None, claims: dict[str, Any] | None, forge: bool) -> Kind | None:
    if forge:
        return "Forge"
    if header is None:
        return None
    if header.get("alg") == "RS256":
        return "signed RS256"
    if claims is not None and claims.get("qsh") == CONTEXT_QSH:
        return "context"
    return "Connect HS256"


# -- times ------------------------------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    """`seconds` (either sign) in words: `42 s`, `10 minutes`, `3 hours`, `2 days`."""
    seconds = abs(seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    count, unit = (
        (round(seconds / 60), "minute")
        if seconds < 90 * 60
        else (round(seconds / 3600), "hour")
        if seconds < 36 * 3600
        else (round(seconds / 86400), "day")
    )
    return f"{count} {unit}{'s' if count != 1 else ''}"


def _time_note(name: str, value: float, now: float, leeway: float) -> str:
    delta = value - now
    if name == "exp":
        if delta > 0:
            return f"expires in {duration(delta)}"
        within = f", within the {leeway:g} s leeway" if -delta < leeway else f", beyond the {leeway:g} s leeway"
        return f"expired {duration(delta)} ago{within}"
    if name == "nbf":
        if delta <= 0:
            return f"valid since {duration(delta)} ago"
        within = f", within the {leeway:g} s leeway" if delta <= leeway else f", beyond the {leeway:g} s leeway"
        return f"not valid for another {duration(delta)}{within}"
    if delta <= 0:
        return f"issued {duration(delta)} ago"
    return f"issued {duration(delta)} in the future"


def _annotated_claims(claims: dict[str, Any], now: float, leeway: float) -> dict[str, Any]:
    """The claims as sent, with `<name>_relative` beside each time claim that is a number."""
    shown = dict(claims)
    for name in ("iat", "nbf", "exp"):
        value = claims.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < 1e11:
            shown[f"{name}_relative"] = _time_note(name, float(value), now, leeway)
    return shown


# -- the query string hash --------------------------------------------------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _qsh_candidates(method: str, path: str, query: str, base_path: str) -> Iterator[tuple[str, str]]:
    """`(hint, canonical request)` for each usual way a token's `qsh` comes to differ from ours."""
    method = method.upper()
    relative = canonical_path(path, base_path)
    pairs = [(key, value) for key, value in parse_query(query) if key != "jwt"]

    for other in _METHODS:
        if other != method:
            yield (
                f"method: the token was made for {other}, not {method}: the caller used another method "
                "than the one it signed (or a redirect changed it).",
                canonical_request(other, path, query, base_path),
            )

    segments = relative.split("/")[1:]
    for count in range(1, len(segments)):
        prefix = "/" + "/".join(segments[:count])
        rest = relative[len(prefix) :]
        yield (
            f"path prefix added: the token was made for {rest}, but the app sees {prefix}{rest}: a proxy or a "
            f"mount added {prefix!r} in front. Put {prefix!r} in the path of base_url, or let the proxy "
            "pass the original path.",
            canonical_request(method, rest, query),
        )

    base_prefixes = ["/".join(base_path.rstrip("/").split("/")[:count]) for count in range(2, base_path.count("/") + 2)]
    for prefix in dict.fromkeys([*base_prefixes, *_COMMON_PREFIXES]):
        if prefix and not relative.startswith(prefix + "/"):
            yield (
                f"path prefix stripped: the token was made for {prefix}{relative}, but the app computes "
                f"{relative}: a proxy removed {prefix!r} before the app, or the descriptor's baseUrl has a "
                "different path from base_url.",
                canonical_request(method, prefix + relative, query),
            )

    if relative != "/":
        yield (
            f"trailing slash: the token was made for {relative}/ with its trailing slash kept; Atlassian's "
            "canonical request drops one trailing slash, so the signer does not follow it (or added a slash).",
            f"{method}&{relative}/&{canonical_query(pairs)}",
        )

    decoded = unquote(path)
    encodings = {
        decoded: "the decoded path",
        quote(decoded, safe="/"): "the path fully percent-encoded",
        quote(decoded, safe="/:@!$&'()*+,;=~"): "the path percent-encoded as a browser does",
        _PERCENT.sub(lambda match: match[0].swapcase(), path): "the path with its %-escapes in the other case",
    }
    for variant, what in encodings.items():
        if variant != path:
            yield (
                f"percent-encoding of the path: the token was made for {what} ({canonical_path(variant, base_path)}), "
                f"the app sees {relative}: a proxy or client decoded or re-encoded the path. The QSH covers the "
                "path as sent.",
                canonical_request(method, variant, query, base_path),
            )

    for raw, replacement, what in (
        ("+", "%2B", "with '+' read as a literal plus (%2B)"),
        ("%20", "%2B", "with spaces written '+' and then read as a literal plus (%2B)"),
        ("%2B", "+", "with '%2B' read as a space"),
    ):
        if raw in query:
            yield (
                f"'+' vs '%20': the token was made {what}; Atlassian reads '+' in a query as a space (%20) and "
                "'%2B' as a plus.",
                canonical_request(method, path, query.replace(raw, replacement), base_path),
            )

    keys = list(dict.fromkeys(key for key, _ in pairs))
    for key in keys:
        yield (
            f"query parameter added: the token was made without the parameter {key!r}: it was added after the "
            "token was signed (a proxy, a redirect, the client).",
            canonical_request(method, path, [(k, v) for k, v in pairs if k != key], base_path),
        )
        values = [value for k, value in pairs if k == key]
        if len(values) > 1:
            for kept in (values[0], values[-1]):
                yield (
                    f"query parameter dropped: the token was made with only one value of {key!r}: something "
                    "between the signer and the app kept a repeated parameter's values, or the signer dropped them.",
                    canonical_request(method, path, [(k, v) for k, v in pairs if k != key] + [(key, kept)], base_path),
                )
    if len(keys) > 1:
        yield (
            "query string added: the token was made for the URL without its query string.",
            canonical_request(method, path, "", base_path),
        )


def qsh_hints(token_qsh: str, method: str, path: str, query: str, base_path: str) -> list[str]:
    """The usual causes whose canonical request hashes to `token_qsh`; a fallback hint when none does."""
    found = list(
        dict.fromkeys(
            hint
            for hint, canonical in _qsh_candidates(method, path, query, base_path)
            if _sha256(canonical) == token_qsh
        )
    )
    if found:
        return found
    return [
        "none of the usual causes (proxy prefix, trailing slash, percent-encoding, '+' vs '%20', a query parameter "
        "added, the method) gives the token's qsh: compare the canonical request above with the one the signer "
        "computed (the path relative to its baseUrl, the query sorted, without jwt)."
    ]


# -- the explanation --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What the command line says about the call: the token, the request, the secret and the keys."""

    token: str | None
    method: str
    url: str
    secret: str | None = None
    base_url: str | None = None
    qsh: QshMode = "computed"
    app_id: str | None = None
    jwks: dict[str, RSAPublicKey] | str | None = None
    clock: Callable[[], float] = time.time


def _token_of(request: Request) -> str | None:
    """The positional token, else the `jwt` query parameter of the URL (the server's rule: at most one)."""
    if request.token is not None:
        return request.token.strip()
    values = [value for key, value in parse_query(urlsplit(request.url).query) if key == "jwt"]
    if len(values) > 1:
        raise AuthError(AuthErrorCode.FAILED_TO_DECODE, "The request carries more than one 'jwt' query parameter.")
    return values[0] if values else None


def _target(request: Request) -> tuple[RequestTarget, str]:
    """The request target the server would see, and the base URL to check against."""
    parts = urlsplit(request.url)
    if parts.scheme and parts.scheme not in ("http", "https"):
        raise UsageProblem(f"--url must be an http(s) URL or a path, not {redact_tokens(request.url)!r}")
    if not parts.path.startswith("/") and parts.path:
        raise UsageProblem("--url must be an absolute URL or a path starting with '/'")
    if not re.fullmatch(r"[A-Za-z]{1,16}", request.method):
        raise UsageProblem(f"--method must be an HTTP method such as GET or POST, not {request.method[:20]!r}")
    base_url = request.base_url or (f"{parts.scheme}://{parts.netloc}" if parts.netloc else "http://localhost")
    return RequestTarget(request.method.upper(), parts.path or "/", parts.query), base_url


async def explain(request: Request) -> Explanation:
    """Run the library's verification on `request`'s token and say why it passes or fails.

    Raises `UsageProblem` when the command line cannot be explained as given (no
    secret for an HS256 token that passes every other check, a FIT without an app id).
    """
    try:
        token = _token_of(request)
    except AuthError as exc:
        return Explanation(False, exc.code, exc.message, None, None, None, None)
    header, claims = _peek(token) if token else (None, None)
    forge = request.app_id is not None or (claims is not None and claims.get("iss") == FORGE_ISSUER)
    if forge:
        return await _explain_forge(request, token, header, claims)
    return await _explain_connect(request, token, header, claims)


async def _explain_connect(
    request: Request, token: str | None, header: dict[str, Any] | None, claims: dict[str, Any] | None
) -> Explanation:
    target, base_url = _target(request)
    now = request.clock()
    loaded: list[str] = []

    def loader(client_key: str) -> Credentials[None] | None:
        loaded.append(client_key)
        if request.secret is None and (header or {}).get("alg") != "RS256":
            return None
        return Credentials(request.secret or "")

    keys: Any = None
    if isinstance(request.jwks, dict):
        keys = _StaticKeys(request.jwks)
    elif isinstance(request.jwks, str):
        keys = _UrlKeys(request.jwks)
    try:
        config = ConnectAuth(
            base_url=base_url,
            credentials_loader=loader,
            sync_loader_in_thread=False,
            key_provider=keys,
            clock=request.clock,
        )
    except ValueError as exc:
        raise UsageProblem(f"--base-url: {exc}") from None
    base_path = urlsplit(config.base_urls[0]).path
    ours = canonical_request(target.method, target.path, target.query, base_path)
    result = Explanation(
        True,
        None,
        None,
        _kind(header, claims, forge=False),
        header,
        _annotated_claims(claims, now, config.leeway) if claims is not None else None,
        ours,
    )
    try:
        async with config.lifespan():
            await config.verify_request(token, target, qsh=request.qsh, authorization_method="any")
    except AuthError as exc:
        if exc.code is AuthErrorCode.UNKNOWN_ISSUER and loaded and request.secret is None:
            raise UsageProblem(
                "the token passes every check that needs no secret; pass --secret-env NAME (an environment "
                "variable holding the tenant's shared secret) to check its signature"
            ) from None
        result.valid, result.code, result.message = False, exc.code, exc.message
    _connect_facts(result, request, config, target, claims, ours, base_path)
    return result


def _connect_facts(
    result: Explanation,
    request: Request,
    config: ConnectAuth,
    target: RequestTarget,
    claims: dict[str, Any] | None,
    ours: str,
    base_path: str,
) -> None:
    code = result.code
    if code in _CONNECT_HINTS:
        result.hints.append(_CONNECT_HINTS[code])
    if claims is None:
        return
    token_qsh = claims.get("qsh")
    computed = _sha256(ours)
    if isinstance(token_qsh, str):
        result.qsh = {"token": token_qsh, "computed": computed, "matches": token_qsh == computed}
    result.facts.append(f"leeway on exp and nbf: {config.leeway:g} s")
    if isinstance(claims.get("aud"), (str, list)):
        result.facts.append(f"audience (aud): {claims['aud']!r}; base_url: {config.base_urls[0]!r}")
    if code is AuthErrorCode.INVALID_QSH and isinstance(token_qsh, str):
        if token_qsh == CONTEXT_QSH:
            result.hints.append(
                "context-qsh: this is a context token (from AP.context.getToken() in the app's iframe), and the "
                "route takes only tokens bound to the request; protect routes the iframe calls with "
                "ConnectRequest(qsh='context') (or 'any')."
            )
        elif request.qsh == "context":
            result.hints.append(
                "this route takes only context tokens (qsh='context'), and this token is bound to a request "
                "(a page load or webhook): use qsh='any' on routes that take both."
            )
        else:
            result.hints.extend(qsh_hints(token_qsh, target.method, target.path, target.query, base_path))
    elif code is AuthErrorCode.WRONG_AUDIENCE:
        result.hints.append(
            f"the token's aud is {claims.get('aud')!r}: set base_url (here {config.base_urls[0]!r}, from "
            "--base-url or the URL's origin) to the descriptor's baseUrl exactly; list both URLs after a move."
        )
    elif code is AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY and isinstance(request.jwks, dict):
        kid = (result.header or {}).get("kid")
        result.hints.append(f"the kid {kid!r} is not in the JWKS given (its kids: {sorted(request.jwks)!r}).")
    elif code is None and result.kind == "signed RS256":
        result.hints.append(
            "an Atlassian-signed token: lifecycle routes take it; a request route must opt in with "
            "ConnectRequest(authorization_method='publicKey')."
        )


async def _explain_forge(
    request: Request, token: str | None, header: dict[str, Any] | None, claims: dict[str, Any] | None
) -> Explanation:
    if request.app_id is None:
        raise UsageProblem("a Forge Invocation Token needs --app-id (the app's id, ARI or UUID) to check its audience")
    keys: Any = _StaticKeys(request.jwks) if isinstance(request.jwks, dict) else None
    jwks_url = request.jwks if isinstance(request.jwks, str) else FORGE_JWKS_URL
    try:
        config = ForgeAuth(app_id=request.app_id, key_provider=keys, jwks_url=jwks_url, clock=request.clock)
    except ValueError as exc:
        raise UsageProblem(f"--app-id: {exc}") from None
    now = request.clock()
    result = Explanation(
        True,
        None,
        None,
        "Forge",
        header,
        _annotated_claims(claims, now, config.leeway) if claims is not None else None,
        None,
    )
    try:
        async with config.lifespan():
            await config.verify_invocation(token)
    except AuthError as exc:
        result.valid, result.code, result.message = False, exc.code, exc.message
    if claims is not None:
        _forge_facts(result, config, header or {}, claims, request.jwks)
    elif result.code is AuthErrorCode.FAILED_TO_DECODE:
        result.hints.append("not a JWT: three base64url segments separated by dots, at most 16 KiB.")
    return result


def claims_lifetime(claims: dict[str, Any]) -> float:
    """`exp - iat` of claims read without checks (0 when either is not a number)."""
    exp, iat = claims.get("exp"), claims.get("iat")
    return float(exp - iat) if isinstance(exp, (int, float)) and isinstance(iat, (int, float)) else 0.0


def _forge_facts(
    result: Explanation,
    config: ForgeAuth,
    header: dict[str, Any],
    claims: dict[str, Any],
    jwks: dict[str, RSAPublicKey] | str | None,
) -> None:
    app = claims.get("app") if isinstance(claims.get("app"), dict) else {}
    assert isinstance(app, dict)
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    ours = sorted(config.app_ids)
    result.facts.append(f"audience (aud): {audiences!r}; --app-id: {ours!r}")
    kid = header.get("kid")
    if isinstance(jwks, dict):
        present = "present" if kid in jwks else "absent"
        result.facts.append(f"kid {kid!r}: {present} in the JWKS (its kids: {sorted(jwks)!r})")
    api_base_url = app.get("apiBaseUrl")
    host = urlsplit(api_base_url).hostname if isinstance(api_base_url, str) else None
    allowed = "on" if host in config.api_hosts else "not on"
    result.facts.append(f"app.apiBaseUrl {api_base_url!r}: host {allowed} the allow-list {sorted(config.api_hosts)!r}")
    module = app.get("module") if isinstance(app.get("module"), dict) else {}
    module_type = str((module or {}).get("type") or "")
    if claims.get("principal") is not None or claims.get("context") is not None:
        shape = "a UI call (requestRemote or a UI resolver): it may have passed through a user's browser"
    elif "trigger" in module_type.lower() or "event" in module_type.lower():
        shape = f"a product event or scheduled trigger (module {module_type!r})"
    else:
        shape = "a backend call (invokeRemote): no principal, no context"
    result.facts.append(f"invocation: {shape}")
    environment = app.get("environment") if isinstance(app.get("environment"), dict) else None
    if environment:
        result.facts.append(f"environment: {environment.get('type')!r}")
    if lifetime := claims_lifetime(claims):
        result.facts.append(f"lifetime: {duration(lifetime)} (Forge's are about 25 s)")
    code = result.code
    if code is AuthErrorCode.WRONG_AUDIENCE:
        result.hints.append(
            f"the FIT is for {audiences!r} (app.id {app.get('id')!r}), not {ours!r}: pass the app id of the "
            "manifest (ARI or UUID) to ForgeAuth(app_id=...), never the token's own."
        )
    elif code is AuthErrorCode.UNTRUSTED_API_HOST:
        staging = host == "api.stg.atlassian.com"
        result.hints.append(
            "a staging app's FIT: ForgeAuth(staging=True)."
            if staging
            else "the app would send its tokens there: only Atlassian's API hosts are allowed (a local fake "
            "product: ForgeAuth(api_hosts=[...]))."
        )
    elif code is AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY:
        result.hints.append(
            f"the kid {kid!r} is not among the JWKS's keys: a staging FIT against production keys, or the "
            "other way round; or a token not signed by Forge."
        )
    elif code in (AuthErrorCode.TOKEN_EXPIRED, AuthErrorCode.TOKEN_NOT_YET_VALID):
        result.hints.append("FITs live about 25 s: check the server's clock (NTP); never store a FIT to reuse it.")
    elif code is AuthErrorCode.INVALID_TOKEN_LIFETIME:
        result.hints.append(
            f"the FIT claims to live {duration(claims_lifetime(claims))}, Forge's live about 25 s: not a token "
            "Forge made, or ForgeAuth(max_token_lifetime=...) is set lower than your test tokens need."
        )
    elif code is AuthErrorCode.WRONG_ISSUER:
        result.hints.append(f"a FIT's iss is {FORGE_ISSUER!r}: this is not a Forge Invocation Token.")
