"""`FakeRestAPI`: the fake product's REST API, answered only to a correctly signed app JWT.

An app calls its tenant back with `product_client`; this lets a test or a demo
check that call end to end. The token is checked as the product checks it: HS256
with the tenant's current shared secret, `iss` the installed app's key, `aud` the
tenant's client key, not expired by the product's clock, and a `qsh` of this
very request relative to the product's base URL. Anything else gets 401.

It is also the tenant's OAuth 2.0 authorization server (`POST /oauth2/token`,
the JWT bearer grant an app uses to act as a user): the assertion is checked as
Atlassian checks it, and the access token it answers is accepted as
`Authorization: Bearer` for that user only, who sees only the issues
`FakeRestAPI.restrict` lets them see.

Behind that check, routes answer: a fake Jira has `GET /rest/api/{2,3}/issue/{key}`,
and a test adds its own with `FakeRestAPI.route`. `FakeRestAPI.throttle` makes
the next calls answer 429 or 503 with the headers a test chooses, as a
rate-limited product does.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import httpx2
import jwt

from .._connect._qsh import query_string_hash
from ._keyserver import running
from ._tenant import FakeTenant

__all__ = ["FAKE_AUTHORIZATION_SERVER", "APIRequest", "FakeRestAPI", "ProductAPICall", "RouteHandler", "issue_route"]

_PLACEHOLDER = re.compile(r"\{(\w+)\}")

FAKE_AUTHORIZATION_SERVER = "https://oauth-2-authorization-server.fake-product.test"
"""The fake authorization server's URL in-process (`FakeRestAPI.transport`); served, it is the API's own origin."""

USER_TOKEN_LIFETIME = 900
"""Seconds an access token from the fake authorization server is valid (Atlassian's: 15 minutes)."""

_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_CLIENT_ID_PREFIX = "urn:atlassian:connect:clientid:"
_ACCOUNT_PREFIX = "urn:atlassian:connect:useraccountid:"
_MAX_ASSERTION_LIFETIME = 60
_NOT_FOUND = {"errorMessages": ["Issue does not exist or you do not have permission to see it."]}


@dataclass(frozen=True)
class ProductAPICall:
    """A call the fake product's REST API received, and what it answered.

    `claims` are those of the verified token (`None` if it was refused), and
    `refusal` says why a call got 401, so a test can assert that the app's token
    was checked rather than merely present.
    """

    method: str
    """The request's method."""
    url: str
    """The request's path and query."""
    status: int
    """The status the API answered."""
    claims: dict[str, Any] | None = None
    """The verified token's claims, `None` when it was refused."""
    refusal: str | None = None
    """Why a call got 401 (or a token request 400), else `None`."""
    account_id: str | None = None
    """The user the call acted as (a Bearer user token), `None` for the app's JWT."""
    token_kind: str | None = None
    """Which token the call carried, once verified: `"jwt"` (the app's) or `"user"` here;
    Forge's fake API says `"system"`, `"user"` or `"offline"`."""


@dataclass(frozen=True)
class APIRequest:
    """A verified call to the fake REST API, as a route handler receives it.

    `params` are the path parameters the route named (`{key}`), and `claims`
    those of the app's verified token.
    """

    request: httpx2.Request
    """The request as the API received it."""
    params: dict[str, str]
    """The path parameters the route named (`{key}` gives `params["key"]`)."""
    claims: dict[str, Any]
    """The claims of the verified token (for a user token: `sub`, the account id, and `exp`)."""
    account_id: str | None = None
    """The user the call acts as (a Bearer user token); `None` for the app's JWT, which sees everything."""


RouteHandler = Callable[[APIRequest], httpx2.Response]
"""A route of the fake REST API: a verified call in, the product's answer out."""


def _path_pattern(path: str) -> re.Pattern[str]:
    """`path` with each `{name}` matching one path segment."""
    parts = _PLACEHOLDER.split(path)  # literal, name, literal, name, ...
    return re.compile(
        "".join(f"(?P<{part}>[^/]+)" if index % 2 else re.escape(part) for index, part in enumerate(parts))
    )


@dataclass
class _Throttle:
    """The answer the next `times` matching calls get instead of their route's."""

    status: int
    headers: dict[str, str]
    times: int
    method: str | None
    path: re.Pattern[str] | None = field(default=None)

    def matches(self, method: str, relative_path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or self.path.fullmatch(relative_path) is not None
        )


def issue_route(issues: Mapping[str, str], viewers: Mapping[str, Collection[str]] | None = None) -> RouteHandler:
    """Jira's `GET /rest/api/{version}/issue/{key}`: the summary in `issues`, else Jira's 404.

    An issue in `viewers` is restricted: a user not listed for it gets the same
    404 as for a missing issue (Jira does not say which). The app's JWT sees all.
    """

    def answer(call: APIRequest) -> httpx2.Response:
        key = call.params["key"]
        summary = issues.get(key)
        allowed = (viewers or {}).get(key)
        hidden = call.account_id is not None and allowed is not None and call.account_id not in allowed
        if call.params["version"] not in ("2", "3") or summary is None or hidden:
            return httpx2.Response(404, json=_NOT_FOUND)
        return httpx2.Response(200, json={"key": key, "fields": {"summary": summary}})

    return answer


class FakeRestAPI:
    """The REST API of a fake product: verifies the app's JWT, then answers from its routes.

    Every call is recorded in `calls`. A route's path is relative to the
    product's base URL, with `{name}` matching one path segment:

    ```python
    @product.api.route("GET", "/rest/api/content/{id}")
    def page(call: APIRequest) -> httpx2.Response:
        return httpx2.Response(200, json={"id": call.params["id"], "title": "Home"})
    ```

    A route added later wins over an earlier one for the same path; a path no
    route matches gets 404.
    """

    def __init__(self, tenant: FakeTenant) -> None:
        self.tenant = tenant
        """The tenant whose secret, client key and installed app the tokens are checked against."""
        self.calls: list[ProductAPICall] = []
        """Every call received, in order."""
        self.lock = threading.Lock()
        """Guards `calls` when the API is served on a thread."""
        self.viewers: dict[str, set[str]] = {}
        """`{issue key: account ids}` of restricted issues (`restrict`); an issue not here is seen by every user."""
        self.authorization_server = FAKE_AUTHORIZATION_SERVER
        """Where `POST /oauth2/token` is answered: `FAKE_AUTHORIZATION_SERVER`, or the server's URL while served."""
        self._user_tokens: dict[str, tuple[str, int]] = {}
        self._routes: list[tuple[str, re.Pattern[str], RouteHandler]] = []
        self._throttles: list[_Throttle] = []

    def restrict(self, issue_key: str, *account_ids: str) -> None:
        """Let only `account_ids` see `issue_key` when acting as users; others get Jira's 404."""
        with self.lock:
            self.viewers[issue_key] = set(account_ids)

    def add_route(self, method: str, path: str, handler: RouteHandler) -> None:
        """Answer `method path` (`{name}` placeholders allowed) with `handler`, once the token is verified."""
        self._routes.append((method.upper(), _path_pattern(path), handler))

    def throttle(
        self,
        status: int = 429,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        beta_retry_after: float | str | None = None,
        reason: str | None = None,
        reset: datetime | str | None = None,
        headers: Mapping[str, str] | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `times` verified calls (of `method` to `path`, if given) with `status`, then as usual.

        Each answer carries, when given: `retry_after` as `Retry-After` and
        `beta_retry_after` as `Beta-Retry-After` (seconds, or any text: an
        HTTP-date, or a malformed value to see it refused), `reason` as
        `RateLimit-Reason` (`jira-burst-based`, `jira-per-issue-on-write`,
        `jira-quota-tenant-based`...), `reset` as `X-RateLimit-Reset` (a `datetime`
        is written as Jira does, `2026-12-02T15:00Z`), and `headers` as they are.
        Schedules queue up in order: a call gets the first one that matches it.

        ```python
        product.api.throttle(429, times=2, retry_after=1, reason="jira-burst-based")
        product.api.throttle(429, reason="jira-quota-tenant-based", reset=next_hour)
        product.api.throttle(503)  # then one 503, then the routes answer again
        ```
        """
        answer_headers = {
            name: value if isinstance(value, str) else f"{value:g}"
            for name, value in (("Retry-After", retry_after), ("Beta-Retry-After", beta_retry_after))
            if value is not None
        }
        if reason is not None:
            answer_headers["RateLimit-Reason"] = reason
        if reset is not None:
            answer_headers["X-RateLimit-Reset"] = (
                reset if isinstance(reset, str) else reset.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
            )
        answer_headers.update(headers or {})
        pattern = _path_pattern(path) if path is not None else None
        with self.lock:
            self._throttles.append(_Throttle(status, answer_headers, times, method and method.upper(), pattern))

    def _throttled(self, request: httpx2.Request) -> httpx2.Response | None:
        """The scheduled 429/503 for `request`, using one of its `times`; `None` if none applies."""
        relative = request.url.path[len(urlsplit(self.tenant.base_url).path.rstrip("/")) :]
        with self.lock:
            for throttle in self._throttles:
                if throttle.matches(request.method, relative):
                    throttle.times -= 1
                    if throttle.times <= 0:
                        self._throttles.remove(throttle)
                    message = "Rate limit exceeded." if throttle.status == 429 else "Service unavailable."
                    return httpx2.Response(throttle.status, headers=throttle.headers, json={"errorMessages": [message]})
        return None

    def route(self, method: str, path: str) -> Callable[[RouteHandler], RouteHandler]:
        """The decorator form of `add_route`."""

        def register(handler: RouteHandler) -> RouteHandler:
            self.add_route(method, path, handler)
            return handler

        return register

    def _verified_claims(self, request: httpx2.Request) -> dict[str, Any] | str:
        """The claims of the request's app JWT or user token if the product would accept it, else why not."""
        tenant = self.tenant
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Bearer" and token:
            return self._user_claims(token)
        if scheme != "JWT" or not token:
            return "no Authorization: JWT header"
        if tenant.app_key is None:
            return "no app is installed"
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                tenant.shared_secret,
                algorithms=["HS256"],
                audience=tenant.client_key,
                issuer=tenant.app_key,
                options={"require": ["iss", "aud", "iat", "exp", "qsh"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.InvalidTokenError as exc:
            return f"invalid token ({type(exc).__name__})"
        if not isinstance(claims["exp"], int) or claims["exp"] <= tenant.clock():
            return "token expired"
        expected_qsh = query_string_hash(request.method, request.url.raw_path.decode("ascii"), tenant.base_url)
        if not isinstance(claims["qsh"], str) or not hmac.compare_digest(claims["qsh"], expected_qsh):
            return "qsh does not match the request"
        return claims

    def _token_kind(self, request: httpx2.Request, claims: dict[str, Any]) -> str:
        """Which kind of token a verified call carried: the app's JWT, or a user's Bearer token."""
        return "user" if request.headers["Authorization"].startswith("Bearer ") else "jwt"

    def _user_claims(self, token: str) -> dict[str, Any] | str:
        """`sub` (the account id) and `exp` of a user access token this server issued and that is still valid."""
        with self.lock:
            issued = self._user_tokens.get(token)
        if issued is None:
            return "unknown Bearer token"
        account_id, expires = issued
        if expires <= self.tenant.clock():
            return "Bearer token expired"
        return {"sub": account_id, "exp": expires}

    def _grant(self, request: httpx2.Request) -> dict[str, Any] | str:
        """The account id of a JWT bearer grant the authorization server accepts, else why not."""
        tenant = self.tenant
        form = {name: values[0] for name, values in parse_qs(request.content.decode("ascii", "replace")).items()}
        if form.get("grant_type") != _GRANT_TYPE or not form.get("assertion"):
            return "not a JWT bearer grant"
        if tenant.app_key is None:
            return "no app is installed"
        try:
            claims: dict[str, Any] = jwt.decode(
                form["assertion"],
                tenant.shared_secret,
                algorithms=["HS256"],
                audience=self.authorization_server,
                issuer=_CLIENT_ID_PREFIX + tenant.oauth_client_id,
                options={
                    "require": ["iss", "sub", "tnt", "aud", "iat", "exp"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            return f"invalid assertion ({type(exc).__name__})"
        now, expires, issued = tenant.clock(), claims["exp"], claims["iat"]
        if not isinstance(expires, int) or not isinstance(issued, int) or expires <= now:
            return "assertion expired"
        if expires - issued > _MAX_ASSERTION_LIFETIME:
            return "assertion lives too long"
        if claims["tnt"] != tenant.base_url:
            return "tnt is not this tenant"
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject.startswith(_ACCOUNT_PREFIX) or subject == _ACCOUNT_PREFIX:
            return "sub names no account"
        return {"sub": subject.removeprefix(_ACCOUNT_PREFIX), "scope": form.get("scope", "")}

    def _token(self, request: httpx2.Request) -> tuple[httpx2.Response, ProductAPICall]:
        """Answer `POST /oauth2/token`: an access token bound to the grant's account, or 400 `invalid_grant`."""
        url = request.url.raw_path.decode("ascii")
        grant = self._grant(request)
        if isinstance(grant, str):
            refused = {"error": "invalid_grant", "error_description": "The assertion was refused."}
            return httpx2.Response(400, json=refused), ProductAPICall(request.method, url, 400, refusal=grant)
        token, expires = secrets.token_urlsafe(32), int(self.tenant.clock()) + USER_TOKEN_LIFETIME
        with self.lock:
            self._user_tokens[token] = (grant["sub"], expires)
        body: dict[str, Any] = {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": USER_TOKEN_LIFETIME,
            "scope": grant["scope"],
        }
        return httpx2.Response(200, json=body), ProductAPICall(request.method, url, 200, grant, account_id=grant["sub"])

    def _is_token_request(self, request: httpx2.Request) -> bool:
        server = httpx2.URL(self.authorization_server)
        return (
            request.method == "POST"
            and request.url.path == "/oauth2/token"
            and (request.url.scheme, request.url.host, request.url.port) == (server.scheme, server.host, server.port)
        )

    def _route(self, request: httpx2.Request, claims: dict[str, Any], account_id: str | None) -> httpx2.Response:
        base_path = urlsplit(self.tenant.base_url).path.rstrip("/")
        path = request.url.path
        if path.startswith(base_path + "/"):
            relative = path[len(base_path) :]
            for method, pattern, handler in reversed(self._routes):
                match = pattern.fullmatch(relative)
                if method == request.method and match:
                    return handler(APIRequest(request, match.groupdict(), claims, account_id))
        return httpx2.Response(404, json={"errorMessages": [f"The fake product has no route for {request.method}."]})

    def answer(self, request: httpx2.Request) -> httpx2.Response:
        """Answer `request` as the product's REST API would, and record it in `calls`."""
        url = request.url.raw_path.decode("ascii")
        if self._is_token_request(request):
            response, call = self._token(request)
        elif isinstance(verified := self._verified_claims(request), str):
            call = ProductAPICall(request.method, url, 401, refusal=verified)
            response = httpx2.Response(
                401, json={"errorMessages": ["Authentication failed."]}, headers={"WWW-Authenticate": "JWT"}
            )
        else:
            account_id = verified["sub"] if request.headers["Authorization"].startswith("Bearer ") else None
            response = self._throttled(request) or self._route(request, verified, account_id)
            call = ProductAPICall(
                request.method,
                url,
                response.status_code,
                claims=verified,
                account_id=account_id,
                token_kind=self._token_kind(request, verified),
            )
        with self.lock:
            self.calls.append(call)
        return response

    @property
    def transport(self) -> httpx2.MockTransport:
        """An httpx2 transport that answers this API in-process (`product_client(transport=...)`)."""
        return httpx2.MockTransport(self.answer)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve this API on 127.0.0.1; within the block the tenant's `base_url` is there (same path)."""
        server = _APIServer(self)
        original, original_server = self.tenant.base_url, self.authorization_server
        self.tenant.base_url = server.url + urlsplit(original).path
        self.authorization_server = server.url
        try:
            with running(server):
                yield self.tenant.base_url
        finally:
            self.tenant.base_url, self.authorization_server = original, original_server


class _Handler(BaseHTTPRequestHandler):
    server: _APIServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = httpx2.Request(
            self.command,
            self.server.url + self.path,
            headers=list(self.headers.items()),
            content=self.rfile.read(length) if length else b"",
        )
        response = self.server.api.answer(request)
        self.send_response(response.status_code)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: `FakeRestAPI.calls` records what was asked."""


class _Answers(Protocol):
    """What a loopback server answers with: a `FakeRestAPI`, or the fake Containers sidecar."""

    def answer(self, request: httpx2.Request) -> httpx2.Response: ...


class _APIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: _Answers) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        host, port = self.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self.api = api
