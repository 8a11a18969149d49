"""`FakeSidecar`: a simulated Forge Containers sidecar and egress proxy, and `ContainerAppDriver`, which calls the app.

The sidecar issues invocation ids with a context of the test's choosing, answers
`GET /invocation/context` for them, and checks `forge-proxy-authorization` on every
proxied call the way the real one documents it: `/jira/…` and `/confluence/…` go
on to `FakeForge`'s product API with a system or a user token (recorded as
`"app"` or `"user"` in `proxy_calls`), `/proxy/<host>/…` only to `fetch_hosts`,
`/v1/installations` lists `installations`; anything else is blocked (403). It
answers in-process (`transport()`) or on a loopback port (`serve()`), and can be
slow (`delay`), down (`down`), or answer garbage (`garbage`).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import anyio
import httpx2
from cryptography.hazmat.primitives.asymmetric import rsa

from .._containers._config import ContainerSettings
from .._containers._flow import ForgeContainers
from ._forge import FakeForge
from ._keyserver import running
from ._profiles import DEFAULT_ACCOUNT_ID
from ._restapi import _APIServer

__all__ = ["FAKE_SIDECAR_URL", "ContainerAppDriver", "FakeSidecar", "SidecarCall", "SidecarKind"]

FAKE_SIDECAR_URL = "http://localhost:7072"
"""The `FORGE_EGRESS_PROXY_URL` of the in-process fake (Forge's documented example)."""

SidecarKind = Literal["ui", "event", "trigger", "webtrigger"]
"""The invocations `FakeSidecar.invocation` makes a context for (their `app.module.type`: the product's UI
module, `core:trigger`, `core:scheduledTrigger`, `core:webtrigger`)."""

_MODULES: dict[str, tuple[str, str]] = {
    "ui": ("jira:issuePanel", "issue-panel"),
    "event": ("core:trigger", "container-events"),
    "trigger": ("core:scheduledTrigger", "hourly-sync"),
    "webtrigger": ("core:webtrigger", "container-webtrigger"),
}
_PAIR = re.compile(r"(as|id|installationId|accountId)=([^,=\s]+)")


@dataclass(frozen=True)
class SidecarCall:
    """A call the fake sidecar received from the app, and what it answered."""

    method: str
    """The request's method."""
    url: str
    """The request's path and query, as sent."""
    status: int
    """What the sidecar answered."""
    authorization: str | None = None
    """The `forge-proxy-authorization` header, as sent."""
    acting_as: Literal["app", "user"] | None = None
    """Whom a proxied product call acted as, once its header was accepted."""
    account_id: str | None = None
    """The user it acted as."""
    refusal: str | None = None
    """Why the sidecar refused the call, if it did."""


def _parse_authorization(value: str | None) -> dict[str, str] | str:
    """The pairs of `Forge k=v,k=v`, or why the header is refused (malformed, repeated or unknown pairs)."""
    if value is None or not value.startswith("Forge "):
        return "no forge-proxy-authorization: Forge ... header"
    pairs: dict[str, str] = {}
    for part in value[len("Forge ") :].split(","):
        match = _PAIR.fullmatch(part)
        if match is None or match[1] in pairs:
            return "a malformed forge-proxy-authorization header"
        pairs[match[1]] = match[2]
    if ("id" in pairs) == ("installationId" in pairs):
        return "exactly one of id and installationId is required"
    if pairs.get("as", "app") not in ("app", "user") or ("accountId" in pairs and pairs.get("as") != "user"):
        return "as must be app or user, and user with accountId"
    return pairs


class FakeSidecar:
    """A fake Forge Containers sidecar for one app environment, installed in `forge`'s site.

    ```python
    sidecar = FakeSidecar()
    app = create_app(containers=sidecar.containers())
    with TestClient(app) as client:
        assert sidecar.drive(client).ui("/container/whoami").json()["accountId"] == sidecar.account_id
    ```
    """

    def __init__(
        self,
        forge: FakeForge | None = None,
        *,
        environment_type: str = "DEVELOPMENT",
        private_key: rsa.RSAPrivateKey | None = None,
    ) -> None:
        self.forge = forge or FakeForge(private_key=private_key)
        """The platform behind the sidecar: its product API answers the proxied `/jira/…` calls."""
        self.app_ari = self.forge.app_id
        """`FORGE_APP_ARI`."""
        self.env_ari = self.forge.environment_id
        """`FORGE_ENV_ARI`."""
        self.environment_type = environment_type
        """The environment's type in contexts."""
        self.url = FAKE_SIDECAR_URL
        """`FORGE_EGRESS_PROXY_URL`: the in-process URL, or the loopback one inside `serve()`."""
        self.contexts: dict[str, dict[str, Any]] = {}
        """`{invocation id: context}` the sidecar answers; add or change them freely."""
        self.installations: list[dict[str, Any]] = [
            {
                "id": self.forge.installation_uuid,
                "installationContext": f"ari:cloud:jira::site/{self.forge.cloud_id}",
                "version": "1.0.0",
                "secondaryInstallationContexts": [],
            }
        ]
        """What `/v1/installations` lists, page by page."""
        self.fetch_hosts: set[str] = set()
        """External hosts `/proxy/<host>/…` may reach (the manifest's `external.fetch.backend`)."""
        self.delay = 0.0
        """Seconds the sidecar waits before each answer (a slow sidecar)."""
        self.down = False
        """While true, connections to the sidecar are refused."""
        self.garbage: bytes | None = None
        """While set, `/invocation/context` answers these bytes with 200."""
        self.calls: list[SidecarCall] = []
        """Every call the sidecar answered, in order."""
        self.lock = threading.Lock()
        """Guards `calls` across threads."""

    @property
    def account_id(self) -> str:
        """The user of UI invocations unless told otherwise."""
        return self.forge.account_id

    @property
    def installation_id(self) -> str:
        """The installation's ARI, as contexts name it."""
        return self.forge.installation_id

    @property
    def cloud_id(self) -> str:
        """The site's cloud id."""
        return self.forge.cloud_id

    def settings(self) -> ContainerSettings:
        """The container's settings: this sidecar's URL, app and environment."""
        return ContainerSettings(egress_proxy_url=self.url, app_ari=self.app_ari, env_ari=self.env_ari)

    def environ(self, **extra: str) -> dict[str, str]:
        """The environment variables Forge would set (`FORGE_EGRESS_PROXY_URL`, `FORGE_APP_ARI`...), plus `extra`."""
        return {
            "FORGE_EGRESS_PROXY_URL": self.url,
            "FORGE_APP_ARI": self.app_ari,
            "FORGE_ENV_ARI": self.env_ari,
            "FORGE_SERVICE_KEY": "fake-service",
            "FORGE_CONTAINER_KEY": "fake-container",
            **extra,
        }

    def containers(self, **options: Any) -> ForgeContainers:
        """A `ForgeContainers` that reaches this sidecar in-process."""
        return ForgeContainers(self.settings(), transport=self.transport(), **options)

    def context_document(
        self, kind: SidecarKind = "ui", *, account_id: str | None = DEFAULT_ACCOUNT_ID, module_key: str | None = None
    ) -> dict[str, Any]:
        """A context as the sidecar documents it: a web trigger's shape, with the module and user of `kind`."""
        module_type, default_key = _MODULES[kind]
        key = module_key or default_key
        context: dict[str, Any] = {"cloudId": self.cloud_id, "moduleKey": key, "userAccess": {"enabled": False}}
        if kind == "ui" and account_id is not None:
            context["accountId"] = account_id
            context["siteUrl"] = "https://fake-site.atlassian.net"
        return {
            "app": {
                "id": self.app_ari,
                "installationId": self.installation_id,
                "environment": {"type": self.environment_type, "id": self.env_ari},
                "module": {"key": key, "type": module_type},
            },
            "context": context,
        }

    def invocation(
        self,
        kind: SidecarKind = "ui",
        *,
        account_id: str | None = DEFAULT_ACCOUNT_ID,
        module_key: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> str:
        """A new invocation id whose context is `context`, else `context_document(kind, ...)`."""
        invocation_id = str(uuid.uuid4())
        document = dict(context) if context is not None else None
        self.contexts[invocation_id] = document or self.context_document(
            kind, account_id=account_id, module_key=module_key
        )
        return invocation_id

    def log_attributes(self, invocation_id: str) -> str:
        """The `x-forge-invocation-log-attributes` of an invocation (base64 JSON: `id`, `ctx`, `traceId`)."""
        document = {"id": invocation_id, "ctx": f"ari:cloud:jira:{self.cloud_id}:workspace/{uuid.uuid4()}"}
        document["traceId"] = secrets.token_hex(16)
        return base64.b64encode(json.dumps(document).encode()).decode()

    @property
    def context_fetches(self) -> list[SidecarCall]:
        """The calls to `/invocation/context`."""
        return [call for call in self.calls if call.url.startswith("/invocation/context")]

    @property
    def proxy_calls(self) -> list[SidecarCall]:
        """The calls the app made through the proxy (everything but `/invocation/context`)."""
        return [call for call in self.calls if not call.url.startswith("/invocation/context")]

    # -- answering -------------------------------------------------------------------------

    def answer(self, request: httpx2.Request) -> httpx2.Response:
        """Answer one call as the sidecar would, and record it in `calls`."""
        url = request.url.raw_path.decode("ascii")
        authorization = request.headers.get("forge-proxy-authorization")
        pairs = _parse_authorization(authorization)
        acting: Literal["app", "user"] | None = None
        account: str | None = None
        path = request.url.path
        if path == "/invocation/context" and request.method == "GET":
            response, refusal = self._context(pairs)
        elif path == "/v1/installations" and request.method == "GET":
            response, refusal = self._installations(request), None
        elif isinstance(pairs, str):
            response, refusal = httpx2.Response(401, json={"message": pairs}), pairs
        elif path.startswith(("/jira/", "/confluence/")):
            response, refusal, acting, account = self._product(request, pairs)
        elif path.startswith("/proxy/"):
            response, refusal = self._fetch(request, pairs)
        elif path == "/atlassian/graphql" and request.method == "POST":
            response, refusal = httpx2.Response(200, json={"data": {}}), None
        else:
            refusal = "blocked: not a path the egress proxy serves"
            response = httpx2.Response(403, json={"message": refusal})
        with self.lock:
            self.calls.append(
                SidecarCall(request.method, url, response.status_code, authorization, acting, account, refusal)
            )
        return response

    def _context(self, pairs: dict[str, str] | str) -> tuple[httpx2.Response, str | None]:
        if isinstance(pairs, str) or set(pairs) != {"id"}:
            return httpx2.Response(400, json={"message": "expected Forge id=<invocation id>"}), "malformed header"
        if self.garbage is not None:
            return httpx2.Response(200, content=self.garbage), None
        context = self.contexts.get(pairs["id"])
        if context is None:
            return httpx2.Response(404, json={"message": "Invocation not found"}), "unknown invocation"
        return httpx2.Response(200, json=context), None

    def _invocation_user(self, pairs: dict[str, str]) -> tuple[str | None, str | None]:
        """Whom the call acts as (an account id, or `None` for the app), or why it is refused."""
        if "id" in pairs:
            context = self.contexts.get(pairs["id"])
            if context is None:
                return None, "unknown invocation"
            if pairs.get("as") != "user":
                return None, None
            account = (context.get("context") or {}).get("accountId")
            return (account, None) if account else (None, "the invocation has no user")
        if pairs["installationId"] != self.forge.installation_uuid:
            return None, "unknown installation"
        return pairs.get("accountId"), None if pairs.get("as") != "user" or "accountId" in pairs else "no accountId"

    def _product(
        self, request: httpx2.Request, pairs: dict[str, str]
    ) -> tuple[httpx2.Response, str | None, Literal["app", "user"] | None, str | None]:
        product, _, rest = request.url.raw_path.decode("ascii")[1:].partition("/")
        account, refusal = self._invocation_user(pairs)
        if refusal is None and product != self.forge.product:
            refusal = f"the installation is not in {product}"
        if refusal is not None:
            return httpx2.Response(403, json={"message": refusal}), refusal, None, None
        token = self.forge.user_token(account_id=account) if account else self.forge.system_token()
        forwarded = httpx2.Request(
            request.method,
            self.forge.api_base_url + "/" + rest,
            headers={"Authorization": f"Bearer {token}", "Content-Type": request.headers.get("content-type", "")},
            content=request.content,
        )
        return self.forge.answer_api_request(forwarded), None, "user" if account else "app", account

    def _fetch(self, request: httpx2.Request, pairs: dict[str, str]) -> tuple[httpx2.Response, str | None]:
        host = request.url.path.split("/")[2]
        _, refusal = self._invocation_user(pairs)
        if refusal is None and host not in self.fetch_hosts:
            refusal = f"{host} is not in permissions.external.fetch.backend"
        if refusal is not None:
            return httpx2.Response(403, json={"message": refusal}), refusal
        return httpx2.Response(200, json={"host": host, "path": request.url.path}), None

    def _installations(self, request: httpx2.Request) -> httpx2.Response:
        size = int(request.url.params.get("pageSize", "100"))
        start = int(request.url.params.get("cursor", "0"))
        page = self.installations[start : start + size]
        more = start + size < len(self.installations)
        return httpx2.Response(200, json={"installations": page, "cursor": str(start + size) if more else None})

    def transport(self) -> httpx2.AsyncBaseTransport:
        """An httpx2 transport that answers as this sidecar in-process, honouring `delay` and `down`."""

        async def handle(request: httpx2.Request) -> httpx2.Response:
            if self.delay:
                await anyio.sleep(self.delay)
            if self.down:
                raise httpx2.ConnectError("connection refused (the fake sidecar is down)", request=request)
            await request.aread()
            return self.answer(request)

        return httpx2.MockTransport(handle)

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve this sidecar on 127.0.0.1, yielding its URL (`url` is it within the block)."""
        server = _SidecarServer(_OnLoopback(self))
        original, self.url = self.url, server.url
        try:
            with running(server):
                yield server.url
        finally:
            self.url = original

    def drive(self, client: httpx2.Client) -> ContainerAppDriver:
        """Send invocations to the app through `client` (a `TestClient`, or an `httpx2.Client` to a running app)."""
        return ContainerAppDriver(self, client)


class ContainerAppDriver:
    """Delivers invocations to a container app as the sidecar does: `x-forge-invocation-id`, trace and log headers."""

    def __init__(self, sidecar: FakeSidecar, client: httpx2.Client) -> None:
        self.sidecar = sidecar
        """The sidecar whose invocations are sent."""
        self.client = client
        """The client that reaches the app."""

    def headers(self, invocation_id: str) -> dict[str, str]:
        """The headers the sidecar adds to a call."""
        return {
            "x-forge-invocation-id": invocation_id,
            "x-b3-traceid": secrets.token_hex(16),
            "x-b3-spanid": secrets.token_hex(8),
            "x-forge-invocation-log-attributes": self.sidecar.log_attributes(invocation_id),
        }

    def invoke(
        self,
        kind: SidecarKind,
        path: str,
        *,
        method: str = "GET",
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        account_id: str | None = DEFAULT_ACCOUNT_ID,
        module_key: str | None = None,
        invocation_id: str | None = None,
    ) -> httpx2.Response:
        """Send one invocation of `kind` (a fresh id unless `invocation_id` is given) to `path`."""
        invocation_id = invocation_id or self.sidecar.invocation(kind, account_id=account_id, module_key=module_key)
        sent = {**(headers or {}), **self.headers(invocation_id)}
        return self.client.request(method, path, json=json, headers=sent)

    def ui(self, path: str, *, method: str = "GET", json: Any = None, **options: Any) -> httpx2.Response:
        """A call from the app's UI (`invokeService` from the frontend), with a user."""
        return self.invoke("ui", path, method=method, json=json, **options)

    def event(self, path: str, payload: Mapping[str, Any], **options: Any) -> httpx2.Response:
        """A product event, POSTed to the trigger's endpoint."""
        return self.invoke("event", path, method="POST", json=dict(payload), **options)

    def web_trigger(
        self, path: str, *, method: str = "POST", json: Any = None, headers: Mapping[str, str] | None = None
    ) -> httpx2.Response:
        """A web trigger: the caller's own headers (anything) forwarded as they are, with the sidecar's."""
        return self.invoke("webtrigger", path, method=method, json=json, headers=headers)


class _OnLoopback:
    """The sidecar as its loopback server answers: after `delay`, on the server's thread."""

    def __init__(self, sidecar: FakeSidecar) -> None:
        self.sidecar = sidecar

    def answer(self, request: httpx2.Request) -> httpx2.Response:
        if self.sidecar.delay:
            time.sleep(self.sidecar.delay)
        return self.sidecar.answer(request)


class _SidecarServer(_APIServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: an app that stops reading a capped answer hangs up mid-write, as it should."""
