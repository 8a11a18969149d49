"""Integration: the library under a real uvicorn process, as `make run` serves it.

What an in-process test client cannot show: how much memory the server holds
while a hostile client streams a huge chunked body, how long it keeps reading a
body dripped a byte at a time, what a client hanging up mid-body leaves in the
log, and what uvicorn's own access log writes.
"""

from __future__ import annotations

import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.conftest import Tokens, auth_header, qsh_for
from tests.served import wait_until_healthy
from tests.served.lifecycle_app import BODY_TIMEOUT

MIB = 1024 * 1024
HOSTILE_BODY = 400 * MIB
MAX_RSS_GROWTH = 10 * MIB
LIFECYCLE_ROUTES = ["installed", "uninstalled", "enabled", "disabled"]


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss(self) -> int:
        """The process's resident-set high-water mark (`VmHWM`), in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB$", status, re.MULTILINE)
        assert match, status
        return int(match[1]) * 1024


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the server's memory")
    log = tmp_path_factory.mktemp("uvicorn") / "server.log"
    port = _free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 -- our own interpreter running uvicorn on loopback
            [sys.executable, "-m", "uvicorn", "tests.served.lifecycle_app:app", "--port", str(port)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    server = Served(process, port, log)
    try:
        wait_until_healthy(f"{server.url}/health", process, log)
        yield server
    finally:
        process.terminate()
        process.wait(10)


def stream_chunked(url: str, path: str, headers: dict[str, str], total: int) -> tuple[int, bytes, int]:
    """POST up to `total` bytes chunked, 1 MiB a chunk, until the server answers; its status, answer, bytes sent.

    The body is never built in memory: one chunk is sent over and over.
    """
    host, port = url.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    chunk = f"{MIB:x}\r\n".encode() + b" " * MIB + b"\r\n"
    sent = 0
    answer = b""
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head.encode())
        pending = memoryview(b"")
        while True:
            readable, writable, _ = select.select([connection], [connection] if sent < total else [], [], 30)
            if readable:
                break
            assert writable, "the server neither answered nor read"
            if not pending:
                pending = memoryview(chunk)
            try:
                written = connection.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                break
            pending = pending[written:]
            sent += written
        connection.settimeout(10)
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            data = connection.recv(65536)
            if not data:
                break
            answer += data
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2], sent


@pytest.mark.parametrize("route", LIFECYCLE_ROUTES)
def test_400_mib_chunked_lifecycle_body_is_refused_without_buffering(served: Served, route: str) -> None:
    """The advisory's measurement: a 400 MiB body with a junk token grew the server by ~400 MB before its 401."""
    httpx2.post(f"{served.url}/{route}", headers=auth_header("junk.junk.junk"), content=b"{}")  # warm the route
    before = served.peak_rss()

    status, answer, sent = stream_chunked(served.url, f"/{route}", auth_header("junk.junk.junk"), HOSTILE_BODY)

    assert status == 401, answer
    assert b"FAILED_TO_DECODE" in answer
    assert served.peak_rss() - before < MAX_RSS_GROWTH, (before, served.peak_rss(), sent)


@pytest.mark.parametrize("route", ["enabled", "disabled"])
def test_400_mib_chunked_body_with_a_plausible_token_stops_at_the_cap(
    served: Served, tokens: Tokens, route: str
) -> None:
    """A token that passes every body-independent check gets its body read, but only up to `max_body_size`."""
    token = tokens.hs256(qsh_for("POST", f"/{route}"), aud=None, iat=int(time.time()), exp=int(time.time()) + 60)
    before = served.peak_rss()

    status, answer, sent = stream_chunked(served.url, f"/{route}", auth_header(token), HOSTILE_BODY)

    assert status == 413, answer
    assert b"PAYLOAD_TOO_LARGE" in answer
    assert served.peak_rss() - before < MAX_RSS_GROWTH, (before, served.peak_rss(), sent)
    assert sent < HOSTILE_BODY


def test_access_log_never_holds_a_jwt(served: Served, tokens: Tokens) -> None:
    token = tokens.hs256(qsh_for("GET", "/page"))
    encoded = "%6Awt"  # "jwt" percent-encoded: Starlette reads it as `jwt` too

    first = httpx2.get(f"{served.url}/page", params={"jwt": token, "xdm_e": "https://x.atlassian.net"})
    second = httpx2.get(f"{served.url}/page?lic=none&{encoded}={token}")

    assert first.status_code == second.status_code == 401
    deadline = time.monotonic() + 5
    while served.log.read_text().count("GET /page") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    log = served.log.read_text()
    lines = [line for line in log.splitlines() if "GET /page" in line]
    assert len(lines) == 2, log
    assert token not in log
    assert token.split(".")[2] not in log
    assert "jwt=[redacted]" in lines[0]
    assert "xdm_e=https" in lines[0]
    assert f"{encoded}=[redacted]" in lines[1]
    assert "lic=none" in lines[1]


def plausible_lifecycle_head(tokens: Tokens, route: str, length: int) -> bytes:
    """The head of a POST whose token passes every check made before the body is read."""
    token = tokens.hs256(qsh_for("POST", f"/{route}"), aud=None, iat=int(time.time()), exp=int(time.time()) + 60)
    return (
        f"POST /{route} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nAuthorization: JWT {token}\r\n\r\n"
    ).encode()


def test_a_body_dripped_a_byte_at_a_time_is_cut_off_at_the_time_limit(served: Served, tokens: Tokens) -> None:
    """Review: a body dripped at 1 byte a second was still being read after 22 s under uvicorn.

    Now the read stops at `body_timeout` (2 s in this app): 408 `BODY_TIMEOUT` with
    `Connection: close`, and the server closes the connection.
    """
    with socket.create_connection(("127.0.0.1", served.port), timeout=15) as connection:
        connection.sendall(plausible_lifecycle_head(tokens, "enabled", 1000))
        started = time.monotonic()
        answer = b""
        while not answer:
            readable, _, _ = select.select([connection], [], [], 0.1)
            if readable:
                answer = connection.recv(65536)
            else:
                connection.sendall(b" ")  # a byte every 0.1 s: 1,000 bytes would take 100 s
            assert time.monotonic() - started < 10, "the server is still reading"
        elapsed = time.monotonic() - started
        while chunk := connection.recv(65536):  # the server closes the connection after its answer
            answer += chunk

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in head.lower()
    assert b'"code":"BODY_TIMEOUT"' in body
    assert BODY_TIMEOUT - 0.1 <= elapsed < BODY_TIMEOUT + 2  # the server starts its clock as we start ours


def test_a_client_hanging_up_mid_body_leaves_one_log_line(served: Served, tokens: Tokens) -> None:
    """Review: a client that disconnected mid-body logged a full traceback (Starlette's `ClientDisconnect`)."""
    with socket.create_connection(("127.0.0.1", served.port), timeout=15) as connection:
        connection.sendall(plausible_lifecycle_head(tokens, "disabled", 1000) + b'{"key": "my-app"')
        time.sleep(0.2)  # the app is reading the body
    deadline = time.monotonic() + 5
    while "The client disconnected" not in served.log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # anything else the server would log about it

    log = served.log.read_text()
    assert log.count("The client disconnected") == 1, log
    assert "INFO fastapi_connect_auth: The client disconnected after 16 bytes of the body of POST '/disabled'." in log
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log
