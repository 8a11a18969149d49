"""Testing the app as it runs (uvicorn, another process): the fake product serves its
key on a loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2

from fastapi_connect_auth.testing import FakeProduct


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_app(keys_url: str) -> Iterator[httpx2.Client]:
    """`uvicorn docs_src.testing_app:app` with CONNECT_KEYS_URL set, and a client to
    it once it answers."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "docs_src.testing_app:app",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    environment = {**os.environ, "CONNECT_KEYS_URL": keys_url}
    server = subprocess.Popen(command, env=environment)  # noqa: S603
    try:
        with httpx2.Client(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    client.get("/atlassian-connect.json")
                    break
                except httpx2.TransportError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.1)
            yield client
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_running_app_fetches_the_install_key_over_http(
    fake_product: FakeProduct,
) -> None:
    with fake_product.serve_keys() as key_server, running_app(key_server.url) as client:
        jira = fake_product.drive(client)
        assert jira.install().status_code == 204
        assert key_server.requests == [
            f"/{fake_product.kid}"
        ]  # the app asked the key server, not Atlassian
        assert jira.webhook("jira:issue_created").status_code == 204
