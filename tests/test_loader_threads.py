"""Sync credentials loaders run in worker threads (as FastAPI runs sync dependencies), unless told not to.

Concurrency is shown by construction, not timed: ten loaders that wait for each
other at a barrier can only all pass it if they run at once, and a route that
needs no loader answers while every loader is still blocked.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

import anyio
import httpx2
import jwt
from fastapi import Depends, FastAPI

from fastapi_connect_auth import ConnectAuth, ConnectRequest, Credentials, VerifiedRequest
from tests.conftest import BASE_URL, CLIENT_KEY, NOW, SHARED_SECRET, qsh_for

CALLS = 10


def app_with(connect: ConnectAuth) -> FastAPI:
    app = FastAPI()
    connect.install(app)

    @app.get("/page")
    async def page(call: Annotated[VerifiedRequest[Any], Depends(ConnectRequest())]) -> str:
        return call.client_key

    @app.get("/health")
    async def health() -> str:
        return "ok"

    return app


def page_token() -> str:
    claims = {"iss": CLIENT_KEY, "iat": NOW, "exp": NOW + 60, "qsh": qsh_for("GET", "/page")}
    return jwt.encode(claims, SHARED_SECRET, algorithm="HS256")


def page_status(app: FastAPI) -> int:
    """One verified page load, answered by `app` in this thread's event loop."""

    async def main() -> int:
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE_URL) as client:
            return (await client.get("/page", headers={"Authorization": f"JWT {page_token()}"})).status_code

    return anyio.run(main)


def test_blocking_sync_loaders_run_side_by_side_and_the_event_loop_stays_free() -> None:
    together = threading.Barrier(CALLS, timeout=10)  # broken (an error) unless all ten loaders run at once
    all_blocked, release = threading.Event(), threading.Event()
    threads: set[int] = set()

    def blocking_loader(client_key: str) -> Credentials[None]:
        threads.add(threading.get_ident())
        if together.wait() == 0:  # one of the ten, once all are here
            all_blocked.set()
        release.wait(10)
        return Credentials(SHARED_SECRET)

    app = app_with(ConnectAuth(base_url=BASE_URL, credentials_loader=blocking_loader, clock=lambda: NOW))
    answers: list[int] = []

    async def main() -> str:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url=BASE_URL) as client:

            async def call_page() -> None:
                response = await client.get("/page", headers={"Authorization": f"JWT {page_token()}"})
                answers.append(response.status_code)

            async with anyio.create_task_group() as group:
                for _ in range(CALLS):
                    group.start_soon(call_page)
                await anyio.to_thread.run_sync(all_blocked.wait, 10)
                health = (await client.get("/health")).text  # answered while they still block
                release.set()
            return health

    assert anyio.run(main) == '"ok"'
    assert answers == [200] * CALLS
    assert len(threads) == CALLS
    assert threading.get_ident() not in threads


def test_an_in_memory_loader_can_opt_out_and_run_on_the_event_loop() -> None:
    threads: list[int] = []

    def in_memory(client_key: str) -> Credentials[None]:
        threads.append(threading.get_ident())
        return Credentials(SHARED_SECRET)

    for in_thread in (False, True):
        connect = ConnectAuth(
            base_url=BASE_URL, credentials_loader=in_memory, sync_loader_in_thread=in_thread, clock=lambda: NOW
        )

        assert page_status(app_with(connect)) == 200
    on_loop, in_worker = threads
    assert on_loop == threading.get_ident()  # anyio.run's event loop runs in this thread
    assert in_worker != threading.get_ident()


def test_an_async_loader_is_awaited_on_the_event_loop() -> None:
    threads: list[int] = []

    class Store:
        async def __call__(self, client_key: str) -> Credentials[None]:
            threads.append(threading.get_ident())
            return Credentials(SHARED_SECRET)

    app = app_with(ConnectAuth(base_url=BASE_URL, credentials_loader=Store(), clock=lambda: NOW))
    assert page_status(app) == 200
    assert threads == [threading.get_ident()]
