"""Connect on Forge: one app, its Connect routes and its Forge Remote routes, both
configurations installed and both lifespans entered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fastapi_connect_auth import ConnectAuth, Credentials, ForgeAuth

tenants: dict[str, Credentials[None]] = {}  # your database

connect = ConnectAuth(
    base_url="https://my-app.example.com", credentials_loader=tenants.get
)
forge = ForgeAuth(
    app_id="ari:cloud:ecosystem::app/6c9a4a8f-27c5-4b7e-8f5e-3b9f2d0c1a77"
)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Each opens its key fetcher's HTTP client, and checks every guarded route finds
    its configuration: a forgotten `install(app)` fails here, at startup."""
    async with connect.lifespan(app), forge.lifespan(app):
        yield


app = FastAPI(lifespan=lifespan)
connect.install(app)
forge.install(app)
