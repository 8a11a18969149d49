"""`FakeRestAPI`: the fake product's REST API, answered only to a correctly signed app JWT.

An app calls its tenant back with `product_client`; this lets a test or a demo
check that call end to end. The token is checked as the product checks it: HS256
with the tenant's current shared secret, `iss` the installed app's key, `aud` the
tenant's client key, not expired by the product's clock, and a `qsh` of this
very request relative to the product's base URL. Anything else gets 401.

Behind that check, routes answer: a fake Jira has `GET /rest/api/{2,3}/issue/{key}`,
and a test adds its own with `FakeRestAPI.route`. `FakeRestAPI.throttle` makes
the next calls answer 429 or 503 with the headers a test chooses, as a
rate-limited product does.
"""

from __future__ import annotations

import hmac
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from .._qsh import query_string_hash
from ._keyserver import running
from ._tenant import FakeTenant

__all__ = ["APIRequest", "FakeRestAPI", "ProductAPICall", "RouteHandler", "issue_route"]

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


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
    """Why a call got 401, else `None`."""


@dataclass(frozen=True)
class APIRequest:
    """A verified call to the fake REST API, as a route handler receives it.

    `params` are the path parameters the route named (`{key}`), and `claims`
    those of the app's verified token.
    """

    request: httpx.Request
    """The request as the API received it."""
    params: dict[str, str]
    """The path parameters the route named (`{key}` gives `params["key"]`)."""
    claims: dict[str, Any]
    """The claims of the app's verified token."""


RouteHandler = Callable[[APIRequest], httpx.Response]
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


def issue_route(issues: Mapping[str, str]) -> RouteHandler:
    """Jira's `GET /rest/api/{version}/issue/{key}`: the summary in `issues`, else Jira's 404."""

    def answer(call: APIRequest) -> httpx.Response:
        summary = issues.get(call.params["key"])
        if call.params["version"] not in ("2", "3") or summary is None:
            return httpx.Response(
                404, json={"errorMessages": ["Issue does not exist or you do not have permission to see it."]}
            )
        return httpx.Response(200, json={"key": call.params["key"], "fields": {"summary": summary}})

    return answer


class FakeRestAPI:
    """The REST API of a fake product: verifies the app's JWT, then answers from its routes.

    Every call is recorded in `calls`. A route's path is relative to the
    product's base URL, with `{name}` matching one path segment:

    ```python
    @product.api.route("GET", "/rest/api/content/{id}")
    def page(call: APIRequest) -> httpx.Response:
        return httpx.Response(200, json={"id": call.params["id"], "title": "Home"})
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
        self._routes: list[tuple[str, re.Pattern[str], RouteHandler]] = []
        self._throttles: list[_Throttle] = []

    def add_route(self, method: str, path: str, handler: RouteHandler) -> None:
        """Answer `method path` (`{name}` placeholders allowed) with `handler`, once the token is verified."""
        self._routes.append((method.upper(), _path_pattern(path), handler))

    def throttle(
        self,
        status: int = 429,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        headers: Mapping[str, str] | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `times` verified calls (of `method` to `path`, if given) with `status`, then as usual.

        `retry_after` (seconds, or an HTTP-date) and `headers` (such as
        `RateLimit-Reason` or `X-RateLimit-Remaining`) go on each answer.
        Schedules queue up in order: a call gets the first one that matches it.

        ```python
        product.api.throttle(429, times=2, retry_after=1, headers={"RateLimit-Reason": "jira-burst-based"})
        product.api.throttle(503)  # then one 503, then the routes answer again
        ```
        """
        answer_headers = dict(headers or {})
        if retry_after is not None:
            answer_headers["Retry-After"] = retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
        pattern = _path_pattern(path) if path is not None else None
        with self.lock:
            self._throttles.append(_Throttle(status, answer_headers, times, method and method.upper(), pattern))

    def _throttled(self, request: httpx.Request) -> httpx.Response | None:
        """The scheduled 429/503 for `request`, using one of its `times`; `None` if none applies."""
        relative = request.url.path[len(urlsplit(self.tenant.base_url).path.rstrip("/")) :]
        with self.lock:
            for throttle in self._throttles:
                if throttle.matches(request.method, relative):
                    throttle.times -= 1
                    if throttle.times <= 0:
                        self._throttles.remove(throttle)
                    message = "Rate limit exceeded." if throttle.status == 429 else "Service unavailable."
                    return httpx.Response(throttle.status, headers=throttle.headers, json={"errorMessages": [message]})
        return None

    def route(self, method: str, path: str) -> Callable[[RouteHandler], RouteHandler]:
        """The decorator form of `add_route`."""

        def register(handler: RouteHandler) -> RouteHandler:
            self.add_route(method, path, handler)
            return handler

        return register

    def _verified_claims(self, request: httpx.Request) -> dict[str, Any] | str:
        """The claims of the request's app JWT if the product would accept it, else why not."""
        tenant = self.tenant
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
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

    def _route(self, request: httpx.Request, claims: dict[str, Any]) -> httpx.Response:
        base_path = urlsplit(self.tenant.base_url).path.rstrip("/")
        path = request.url.path
        if path.startswith(base_path + "/"):
            relative = path[len(base_path) :]
            for method, pattern, handler in reversed(self._routes):
                match = pattern.fullmatch(relative)
                if method == request.method and match:
                    return handler(APIRequest(request, match.groupdict(), claims))
        return httpx.Response(404, json={"errorMessages": [f"The fake product has no route for {request.method}."]})

    def answer(self, request: httpx.Request) -> httpx.Response:
        """Answer `request` as the product's REST API would, and record it in `calls`."""
        url = request.url.raw_path.decode("ascii")
        verified = self._verified_claims(request)
        if isinstance(verified, str):
            call = ProductAPICall(request.method, url, 401, refusal=verified)
            response = httpx.Response(
                401, json={"errorMessages": ["Authentication failed."]}, headers={"WWW-Authenticate": "JWT"}
            )
        else:
            response = self._throttled(request) or self._route(request, verified)
            call = ProductAPICall(request.method, url, response.status_code, claims=verified)
        with self.lock:
            self.calls.append(call)
        return response

    @property
    def transport(self) -> httpx.MockTransport:
        """An httpx transport that answers this API in-process (`product_client(transport=...)`)."""
        return httpx.MockTransport(self.answer)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve this API on 127.0.0.1; within the block the tenant's `base_url` is there (same path)."""
        server = _APIServer(self)
        original = self.tenant.base_url
        self.tenant.base_url = server.url + urlsplit(original).path
        try:
            with running(server):
                yield self.tenant.base_url
        finally:
            self.tenant.base_url = original


class _Handler(BaseHTTPRequestHandler):
    server: _APIServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = httpx.Request(
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


class _APIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api: FakeRestAPI) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        host, port = self.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self.api = api
