"""A Confluence app and its test, end to end, with the kit's `fake_confluence`."""

from __future__ import annotations

from typing import Annotated, Any

import httpx2
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from fastapi_connect_auth import (
    ConnectAuth,
    ConnectInstall,
    ConnectRequest,
    Credentials,
    PublicKeyProvider,
    VerifiedInstallation,
    VerifiedRequest,
    product_client,
)
from fastapi_connect_auth.testing import APIRequest, FakeProduct

BASE_URL = "https://wiki-app.example.com"
APP_KEY = "wiki-app"


def create_app(key_provider: PublicKeyProvider, api: httpx2.MockTransport) -> FastAPI:
    """A space page that shows a page's title, read from Confluence's REST API."""
    tenants: dict[str, Credentials[str]] = {}  # clientKey -> secret, and the base URL
    connect = ConnectAuth(
        base_url=BASE_URL, credentials_loader=tenants.get, key_provider=key_provider
    )
    app = FastAPI(lifespan=connect.lifespan)
    connect.install(app)

    @app.get("/atlassian-connect.json")
    def descriptor() -> dict[str, Any]:
        return {
            "key": APP_KEY,
            "baseUrl": BASE_URL,
            "authentication": {"type": "jwt"},
            "apiMigrations": {"signed-install": True},
            "lifecycle": {"installed": "/installed"},
            "modules": {
                "webhooks": [{"event": "page_created", "url": "/pages/created"}],
                # Confluence fills {space.key} and {page.id} in when it loads the page.
                "spacePages": [
                    {"key": "title", "url": "/title?space={space.key}&page={page.id}"}
                ],
            },
        }

    @app.post("/installed", status_code=204)
    async def installed(
        install: Annotated[VerifiedInstallation, Depends(ConnectInstall())],
    ) -> None:
        payload = install.payload
        secret = payload.shared_secret.get_secret_value()
        tenants[install.client_key] = Credentials(secret, payload.base_url)

    @app.post("/pages/created")
    async def page_created(
        call: Annotated[VerifiedRequest[str], Depends(ConnectRequest())],
        event: dict[str, Any],
    ) -> str:
        return str(event["page"]["title"])

    @app.get("/title")
    async def title(
        call: Annotated[VerifiedRequest[str], Depends(ConnectRequest())],
        space: str,
        page: str,
    ) -> dict[str, str]:
        tenant = tenants[call.client_key]
        async with product_client(
            app_key=APP_KEY,
            client_key=call.client_key,
            base_url=str(tenant.stored_entity),
            shared_secret=tenant.shared_secret,
            transport=api,  # the fake Confluence's REST API, in-process
        ) as confluence:
            answer = await confluence.get(f"/rest/api/content/{page}")
        return {"space": space, "title": answer.json()["title"]}

    return app


def test_a_confluence_app_end_to_end(fake_confluence: FakeProduct) -> None:
    # The fake REST API answers the route the app calls, to a valid app JWT only.
    @fake_confluence.api.route("GET", "/rest/api/content/{id}")
    def content(call: APIRequest) -> httpx2.Response:
        return httpx2.Response(200, json={"id": call.params["id"], "title": "Home"})

    app = create_app(fake_confluence.key_provider(), fake_confluence.api_transport)
    with TestClient(app, base_url=BASE_URL) as client:
        confluence = fake_confluence.drive(client)
        assert confluence.install().status_code == 204
        assert confluence.webhook("page_created").json() == "A fake page"

        context = {"space.key": "DOC", "page.id": "98311"}
        page = confluence.load_page("title", module="spacePages", context=context)
        assert page.json() == {"space": "DOC", "title": "Home"}
    assert [call.status for call in fake_confluence.api_calls] == [200]
