"""The example app: a Jira Connect app that keeps a verified inbox of issue webhooks.

Run it with `make run`, or `uvicorn example_app.main:app`; configure it with the
environment variables of `Settings`.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx2
from fastapi import Depends, FastAPI, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, field_validator
from pydantic.alias_generators import to_camel

from fastapi_connect_auth import (
    FORGE_JWKS_URL,
    AtlassianKeyProvider,
    AuthError,
    AuthErrorCode,
    ConnectAuth,
    ConnectRequest,
    ForgeAuth,
    ForgeInvocation,
    ForgeKeyProvider,
    ForgeRequest,
    JwksKeyProvider,
    ProductHosts,
    PublicKeyProvider,
    UserTokenProvider,
    VerifiedRequest,
    forge_event_once,
    lifecycle_router,
    redact_access_logs,
    remember_forge_delivery,
    remember_forge_tokens,
    webhook_once,
)
from fastapi_connect_auth.stores import ConnectLinker, Tenant
from fastapi_connect_auth.stores.sqlalchemy import SQLAlchemyStore

from .db import Stores, answer_database_outages, load_cipher, open_stores
from .descriptor import connect_descriptor
from .jira_api import SummarySource, visible_summaries, webhook_summary
from .jira_api import Tenant as JiraTenant
from .pages import PAGE_RESPONSES, FramedPage
from .settings import Settings

INBOX_PAGE = Path(__file__).with_name("inbox.html")
logger = logging.getLogger("example_app")

TenantCall = Annotated[VerifiedRequest[Tenant], Depends(ConnectRequest())]
"""A webhook or page load: HS256 with the tenant's shared secret, bound to this method and URL."""
IframeCall = Annotated[VerifiedRequest[Tenant], Depends(ConnectRequest(qsh="context"))]
"""A call from the app's own iframe, with a token from `AP.context.getToken()`."""


async def user_call(call: IframeCall) -> VerifiedRequest[Tenant]:
    """An iframe call made for a user. A context token naming no user (anonymous access) is refused (403).

    What a tenant's users may see differs per user: an answer built for "nobody" would have
    to be built with the app's own permissions, which see everything.
    """
    if call.account_id is None:
        raise AuthError(
            AuthErrorCode.UNAUTHORIZED_REQUEST,
            "This API answers only calls made for a user; the token names none.",
            status_code=403,
        )
    return call


WITHHELD_HEADER = "X-Events-Withheld"
UserIframeCall = Annotated[VerifiedRequest[Tenant], Depends(user_call)]
"""An iframe call for a known user (`call.account_id` is set)."""
NO_USER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The tenant's events this user may see (an issue's only once Jira confirms it to them).",
        "headers": {
            WITHHELD_HEADER: {
                "description": "How many events about issues were left out: hidden from this user, or unconfirmed.",
                "schema": {"type": "integer"},
            }
        },
    },
    403: {
        "description": "The context token names no user (`UNAUTHORIZED_REQUEST`).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AuthErrorResponse"}}},
    },
}

MAX_WEBHOOK_BYTES = 1024 * 1024
WebhookCall = Annotated[
    VerifiedRequest[Tenant], Depends(ConnectRequest(body=dict[str, Any], max_body_size=MAX_WEBHOOK_BYTES))
]
"""A webhook: verified like a page load, then its JSON object read (at most MAX_WEBHOOK_BYTES) into `call.body`."""

FORGE_EVENTS_ENDPOINT = "forge-events"
"""The manifest's endpoint for product events and triggers: the `app.module.key` of their FITs."""
FORGE_LIFECYCLE_ENDPOINT = "forge-lifecycle"
"""The manifest's endpoint for lifecycle events (installed, upgraded, preUninstall)."""

ForgeEventCall = Annotated[
    ForgeInvocation,
    Depends(
        ForgeRequest(
            invocation="event",
            module_keys={FORGE_EVENTS_ENDPOINT},
            body=dict[str, Any],
            max_body_size=MAX_WEBHOOK_BYTES,
        )
    ),
]
"""A Forge product event or trigger (never a FIT from a browser, only the `forge-events` endpoint's): verified,
then its JSON object read strictly."""
ForgeUiCall = Annotated[ForgeInvocation, Depends(ForgeRequest(invocation="ui"))]
"""A call from the app's Forge UI (`requestRemote`)."""


class EventOut(BaseModel):
    id: int
    event: str
    issue_key: str | None
    received_at: datetime
    webhook_summary: str | None = None
    """The issue's summary when the webhook was sent."""
    current_summary: str | None = None
    """The issue's summary now, from Jira's REST API as the user (`summary_source` "live"), else the webhook's."""
    summary_source: SummarySource | None = None

    @field_validator("received_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        """Stored in UTC; SQLite hands it back without its offset, which an RFC 3339 date-time must carry."""
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


class ForgeWhoAmI(BaseModel):
    """Who a Forge UI call is from, and the Connect tenant it is linked to (Connect on Forge). Never any token."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    installation_id: str
    cloud_id: str | None
    account_id: str | None
    environment: str | None
    connect_client_key: str | None
    installation_state: Literal["installed", "uninstalled"] | None = None
    """The Forge installation's state from its lifecycle events; null for one never seen."""


class ForgeEventOut(BaseModel):
    """A stored Forge event as the app's UI lists it: what kind of event, never its payload.

    Any user of the installation may call the UI: an issue's details in a payload
    are not theirs to see unless Jira says so, so none is listed.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    id: int
    event_type: str | None
    """The body's `eventType` (`avi:jira:created:issue`...); null for a body without one (a scheduled trigger)."""
    module_key: str | None
    received_at: datetime

    @field_validator("received_at")
    @classmethod
    def _in_utc(cls, value: datetime) -> datetime:
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


@contextmanager
def _startup_objects_frozen() -> Iterator[None]:
    """Keep what startup made (modules, models, routes, the engine) out of the garbage collector's full passes.

    Those objects live as long as the app, yet every full collection walks all of
    them: under a burst of webhooks, a pause of about 90 ms every second or so that
    all the requests in flight wait through (`benchmarks/load.py`, SQLite: p99 92-109 ms
    without the freeze, 20-36 ms with it). They go back to the collector when
    the app stops, so nothing is kept for good when one process runs several apps in
    turn (tests, reloads).
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def create_app(
    settings: Settings | None = None,
    *,
    key_provider: PublicKeyProvider | None = None,
    product_transport: httpx2.AsyncBaseTransport | None = None,
    forge_key_provider: ForgeKeyProvider | None = None,
    user_tokens: UserTokenProvider | None = None,
    forge_transport: httpx2.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The app for `settings` (read from the environment by default). Nothing is opened until its lifespan.

    `product_transport` carries the calls to tenants' REST APIs instead of the network (tests);
    `forge_key_provider` resolves Forge's signing keys instead of fetching `FORGE_JWKS_URL`;
    `user_tokens` gives users' access tokens (by default from `settings.authorization_server`, else Atlassian's);
    `forge_transport` carries the calls to Forge's product APIs (the reserved Connect property) instead of the network.
    """
    settings = settings or Settings.from_env()
    tenants = SQLAlchemyStore(
        settings.database_url,
        cipher=lambda: load_cipher(settings.secret_encryption_key, settings.database_url),
        cache_ttl=settings.credentials_cache_ttl,
    )
    stores: list[Stores] = []  # the one `Stores` of the running app, set in its lifespan
    connect = ConnectAuth(
        base_url=settings.base_url,
        store=tenants,
        key_provider=key_provider or AtlassianKeyProvider(base_url=settings.keys_url),
        product_hosts=ProductHosts.of(extra_hosts=settings.extra_product_hosts),
    )

    tokens = user_tokens or UserTokenProvider(authorization_server=settings.authorization_server)

    async def live_summaries(call: VerifiedRequest[Tenant], issue_keys: list[str]) -> dict[str, str | None]:
        """The issues Jira confirms the caller may see, with their current summaries, fetched as that user."""
        stored = call.stored_entity
        if stored is None or call.account_id is None:
            return {}
        tenant = JiraTenant(
            settings.app_key, call.client_key, stored.base_url, stored.shared_secret, stored.oauth_client_id
        )
        return await visible_summaries(
            tenant,
            issue_keys,
            account_id=call.account_id,
            tokens=tokens,
            product_hosts=connect.product_hosts,
            timeout=settings.product_api_timeout,
            transport=product_transport,
        )

    forge = None
    if settings.forge_app_id:
        forge = ForgeAuth(
            app_id=settings.forge_app_id,
            key_provider=forge_key_provider or JwksKeyProvider(),
            api_hosts=settings.forge_api_hosts,
            jwks_url=settings.forge_jwks_url or FORGE_JWKS_URL,
            # Connect's end of support: each installation's first trusted invocation links it to its tenant.
            on_invocation=ConnectLinker(tenants, connect_key=settings.app_key, transport=forge_transport),
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tenants.cipher  # noqa: B018 - the keys are read (or the dev key file made) now: a bad key file stops startup
        async with open_stores(settings, tenants) as opened, AsyncExitStack() as stack:
            stores[:] = [opened]
            await stack.enter_async_context(connect.lifespan(app))
            if forge is not None:
                await stack.enter_async_context(forge.lifespan(app))
            with _startup_objects_frozen():
                yield
            _log_cache_stats(tenants)

    app = FastAPI(title="FastAPI Connect example", lifespan=lifespan)
    connect.install(app)
    if forge is not None:
        forge.install(app)
    redact_access_logs()
    answer_database_outages(app)

    lifecycle = lifecycle_router(connect, tenants, forge, forge_module_keys={FORGE_LIFECYCLE_ENDPOINT})

    @app.get("/atlassian-connect.json")
    async def descriptor() -> dict[str, Any]:
        return connect_descriptor(settings, lifecycle.lifecycle_urls)

    app.include_router(lifecycle)

    @app.post("/webhooks", status_code=204)
    async def webhook(call: WebhookCall) -> None:
        """A Jira webhook, stored once: Jira's retry (the same identifier and body, a new token) is not stored again.

        The identifier is the tenant's own: another tenant's webhook with the same one is
        another webhook. The same identifier with another body is refused with a 422
        (`DELIVERY_CONFLICT`), which Jira does not retry, and nothing is stored.
        """
        opened = stores[0]
        async with webhook_once(opened.forge, call) as delivery:  # a failed write is forgotten: retried, stored
            if delivery.new:
                await opened.events.add_event(call.client_key, call.body)

    async def inbox(call: TenantCall) -> HTMLResponse:
        return HTMLResponse(INBOX_PAGE.read_text(encoding="utf-8"))

    # A framed page: its headers on every answer, and a refusal page for browsers.
    app.router.add_api_route(
        "/inbox", inbox, response_class=HTMLResponse, responses=PAGE_RESPONSES, route_class_override=FramedPage
    )

    @app.get("/api/events", responses=NO_USER)
    async def events(call: UserIframeCall, response: Response) -> list[EventOut]:
        """The tenant's events this user may see, newest first, each issue's summary fetched live as that user.

        Fail closed: an event about an issue is listed only if Jira answered 200 for that issue
        to this user. Hidden issues (404) and unconfirmed ones (Jira down, slow or rate limited)
        are left out, counted in `X-Events-Withheld`; the webhook's stored summary is shown only
        for an issue Jira confirmed but answered without a summary.
        """
        stored = await stores[0].events.events(call.client_key)
        visible = await live_summaries(call, [event.issue_key for event in stored if event.issue_key])
        listed, withheld = [], 0
        for event in stored:
            if event.issue_key is not None and event.issue_key not in visible:
                withheld += 1
                continue
            out = EventOut.model_validate(event, from_attributes=True)
            out.webhook_summary = webhook_summary(event.payload)
            live = visible.get(event.issue_key) if event.issue_key is not None else None
            if live is not None:
                out.current_summary, out.summary_source = live, "live"
            elif out.webhook_summary is not None:
                out.current_summary, out.summary_source = out.webhook_summary, "webhook"
            listed.append(out)
        response.headers[WITHHELD_HEADER] = str(withheld)
        return listed

    if forge is not None:
        add_forge_routes(app, stores, forge)
    return app


def _event_type(payload: Any) -> str | None:
    """A Forge event's `eventType`, if its body has one that is text."""
    event_type = payload.get("eventType") if isinstance(payload, dict) else None
    return event_type if isinstance(event_type, str) else None


def _log_cache_stats(store: SQLAlchemyStore) -> None:
    stats = store.cache_stats
    logger.info("Credentials cache: %d hits, %d misses (hit rate %.3f)", stats.hits, stats.misses, stats.hit_rate)


def add_forge_routes(app: FastAPI, stores: list[Stores], forge: ForgeAuth) -> None:
    """Connect on Forge: Forge events and UI calls, verified by their Forge Invocation Token."""

    @app.post("/forge/events", status_code=204)
    async def forge_event(call: ForgeEventCall) -> None:
        """A product event or scheduled trigger, stored once: Forge retries with a new FIT and `retryContext`.

        A retry is the same event for the same installation once `retryContext` is
        taken out (`forge_event_once`). The same FIT with another body is refused
        (409 `DELIVERY_CONFLICT`); the system token of an event (never a browser's
        call) is kept for work between invocations.
        """
        opened = stores[0]
        await remember_forge_delivery(opened.forge, call)
        await remember_forge_tokens(opened.forge, call)
        async with forge_event_once(opened.forge, call) as event:  # a failed write is forgotten: retried, stored
            if not event.new:
                return
            delivery = hashlib.sha256(call.jti.encode() + b"\0" + (call.raw_body or b"")).hexdigest()
            module_key = call.module.key if call.module else None
            await opened.events.add_forge_event(call.installation_id, delivery, module_key, call.body)

    @app.get("/forge/events")
    async def forge_events(call: ForgeUiCall) -> list[ForgeEventOut]:
        """The calling installation's stored Forge events, newest first: each one's kind, never its payload."""
        stored = await stores[0].events.forge_events(call.installation_id, newest_first=True)
        return [
            ForgeEventOut(
                id=event.id,
                event_type=_event_type(event.payload),
                module_key=event.module_key,
                received_at=event.received_at,
            )
            for event in stored
        ]

    @app.get("/forge/whoami")
    async def forge_whoami(call: ForgeUiCall) -> ForgeWhoAmI:
        """Who called from the app's Forge UI, and the Connect tenant of that installation."""
        tenants = stores[0].tenants
        tenant = await tenants.connect_tenant(call)
        installation = await tenants.forge_installation(call.installation_id)
        return ForgeWhoAmI(
            installation_id=call.installation_id,
            cloud_id=call.cloud_id,
            account_id=call.principal,
            environment=call.environment.type if call.environment else None,
            connect_client_key=tenant.client_key if tenant else None,
            installation_state=installation.state if installation else None,
        )


app = create_app()
