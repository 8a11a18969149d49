"""The fake product's REST API: `GET /rest/api/{2,3}/issue/{key}`, answered only to a correctly signed app JWT.

An app calls its tenant back with `product_client`; this lets a test or a demo
check that call end to end. The token is checked as Jira checks it: HS256 with
the tenant's current shared secret, `iss` the installed app's key, `aud` the
tenant's client key, not expired by the product's clock, and a `qsh` of this
very request relative to the product's base URL. Anything else gets 401.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import jwt

from .._qsh import query_string_hash
from ._keyserver import running

if TYPE_CHECKING:
    from ._product import FakeProduct

__all__ = ["ProductAPICall", "answer_api_request", "serve_api"]

_ISSUE_PATH = re.compile(r"/rest/api/[23]/issue/(?P<key>[^/]+)")


@dataclass(frozen=True)
class ProductAPICall:
    """A call the fake product's REST API received, and what it answered.

    `claims` are those of the verified token (`None` if it was refused), and
    `refusal` says why a call got 401, so a test can assert that the app's token
    was checked rather than merely present.
    """

    method: str
    url: str
    status: int
    claims: dict[str, Any] | None = None
    refusal: str | None = None


def _verified_claims(product: FakeProduct, request: httpx.Request) -> dict[str, Any] | str:
    """The claims of the request's app JWT if Jira would accept it, else why not."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != "JWT" or not token:
        return "no Authorization: JWT header"
    if product.app_key is None:
        return "no app is installed"
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            product.shared_secret,
            algorithms=["HS256"],
            audience=product.client_key,
            issuer=product.app_key,
            options={"require": ["iss", "aud", "iat", "exp", "qsh"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidTokenError as exc:
        return f"invalid token ({type(exc).__name__})"
    if not isinstance(claims["exp"], int) or claims["exp"] <= product.clock():
        return "token expired"
    expected_qsh = query_string_hash(request.method, request.url.raw_path.decode("ascii"), product.base_url)
    if not isinstance(claims["qsh"], str) or not hmac.compare_digest(claims["qsh"], expected_qsh):
        return "qsh does not match the request"
    return claims


def _issue_key(product: FakeProduct, request: httpx.Request) -> str | None:
    """The issue key of `GET <base path>/rest/api/3/issue/<key>`, else `None`."""
    base_path = urlsplit(product.base_url).path.rstrip("/")
    path = request.url.path
    if request.method != "GET" or not path.startswith(base_path + "/"):
        return None
    match = _ISSUE_PATH.fullmatch(path[len(base_path) :])
    return match["key"] if match else None


def answer_api_request(product: FakeProduct, request: httpx.Request) -> httpx.Response:
    """Answer `request` as the product's REST API would, and record it in `product.api_calls`."""
    url = request.url.raw_path.decode("ascii")
    verified = _verified_claims(product, request)
    if isinstance(verified, str):
        call = ProductAPICall(request.method, url, 401, refusal=verified)
        response = httpx.Response(
            401, json={"errorMessages": ["Authentication failed."]}, headers={"WWW-Authenticate": "JWT"}
        )
    else:
        key = _issue_key(product, request)
        summary = product.issues.get(key) if key is not None else None
        if key is None or summary is None:
            response = httpx.Response(
                404, json={"errorMessages": ["Issue does not exist or you do not have permission to see it."]}
            )
        else:
            response = httpx.Response(200, json={"key": key, "fields": {"summary": summary}})
        call = ProductAPICall(request.method, url, response.status_code, claims=verified)
    with product.lock:
        product.api_calls.append(call)
    return response


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
        response = answer_api_request(self.server.product, request)
        self.send_response(response.status_code)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.content)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: `FakeProduct.api_calls` records what was asked."""


class _APIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, product: FakeProduct) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        host, port = self.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self.product = product


@contextmanager
def serve_api(product: FakeProduct) -> Iterator[str]:
    """Serve `product`'s REST API on 127.0.0.1; within the block its `base_url` is there (same path)."""
    server = _APIServer(product)
    original = product.base_url
    product.base_url = server.url + urlsplit(original).path
    try:
        with running(server):
            yield product.base_url
    finally:
        product.base_url = original
