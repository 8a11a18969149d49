"""The app's framed pages: the routes Jira shows in an iframe, with their headers and their refusal page.

A page route is a `FramedPage`. Every answer it sends carries `page_headers`, a
refusal included: an error is framed like any page, so it must be framed only by
an allowed product and never hand its `?jwt=` URL on as a `Referer`. A browser
(Jira's iframe asks for `text/html`) gets a refusal as a short page that says
why; any other client gets the library's JSON, with its code.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from fastapi_connect_auth import AuthError, ConnectAuth, ProductHosts

__all__ = ["PAGE_RESPONSES", "FramedPage", "page_headers", "refusal_page"]

PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {
        "description": "The page load is not trusted: see `code`. A browser (`Accept: text/html`) gets a page"
        " saying why, with the code; other clients get the JSON.",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/AuthErrorResponse"}},
            "text/html": {"schema": {"type": "string"}},
        },
        "headers": {"WWW-Authenticate": {"description": "`JWT`", "schema": {"type": "string"}}},
    }
}
"""The refusal a page route documents: the library's JSON, or the page a browser gets."""

_REFUSAL = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>This page could not be loaded</title>
</head>
<body>
  <h1>This page could not be loaded</h1>
  <p id="reason">{message}</p>
  <p>Reload the page in Jira. If this happens again, give this code to the app's administrator:
    <code id="code">{code}</code></p>
</body>
</html>
"""


def page_headers(product_hosts: ProductHosts) -> dict[str, str]:
    """Headers for the app's framed pages: framed only by allowed products, and never leaking the URL's `jwt`.

    `no-referrer`: the page's URL carries its token, which a `Referer` would hand to every script host.
    """
    return {
        "Content-Security-Policy": f"frame-ancestors {product_hosts.frame_ancestors()}",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def refusal_page(error: AuthError) -> HTMLResponse:
    """The page a user sees in the iframe instead of a blank frame: what went wrong, and the code to report.

    The message is the library's, which never holds a token or a secret; it is escaped all the same.
    """
    body = _REFUSAL.format(message=html.escape(error.message), code=html.escape(error.code.value))
    return HTMLResponse(body, status_code=error.status_code, headers=error.headers)


def _asks_for_html(request: Request) -> bool:
    """Whether the caller is a browser loading the page: its `Accept` names `text/html` (a `fetch` sends `*/*`)."""
    accepted = request.headers.get("accept", "").split(",")
    return any(media_range.partition(";")[0].strip().lower() == "text/html" for media_range in accepted)


class FramedPage(APIRoute):
    """A route for a page the product frames: `page_headers` on every answer, and a refusal page for browsers.

    `app.router.add_api_route(path, endpoint, route_class_override=FramedPage)`; the headers follow the
    `ProductHosts` of the app's `ConnectAuth`.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        answer = super().get_route_handler()

        async def answer_or_refuse(request: Request) -> Response:
            try:
                return await answer(request)
            except AuthError as error:
                if not _asks_for_html(request):
                    raise
                return refusal_page(error)

        return answer_or_refuse

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to whatever this route answers: the page, a refusal, or another error's answer."""
        headers = page_headers(ConnectAuth.of(Request(scope)).product_hosts)

        async def send_framed(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(headers)
            await send(message)

        await super().handle(scope, receive, send_framed)
