"""A loopback HTTP server that serves a fake product's install key, for an app running in another process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any

__all__ = ["KeyServer", "running", "serve_keys"]


@dataclass
class KeyServer:
    """A running key server: point the app's key provider at `url` (`AtlassianKeyProvider(base_url=url)`).

    `requests` lists the paths asked for, so a test can see that the app fetched the key.
    """

    url: str
    """The server's base URL (`http://127.0.0.1:<port>`)."""
    keys: dict[str, bytes]
    """`{kid: PEM}` served at `/<kid>`."""
    requests: list[str] = field(default_factory=list)
    """The paths asked for, in order."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Guards `requests` across the server's threads."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        state = self.server.state
        with state.lock:
            state.requests.append(self.path)
        pem = state.keys.get(self.path.lstrip("/"))
        body = pem if pem is not None else b"Not found"
        self.send_response(200 if pem is not None else 404)
        self.send_header("Content-Type", "application/x-pem-file" if pem is not None else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: `KeyServer.requests` records what was asked."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, keys: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        host, port = self.server_address[:2]
        self.state = KeyServer(url=f"http://{host!s}:{port}", keys=keys)


@contextmanager
def running(server: HTTPServer) -> Iterator[None]:
    """Serve `server` on a background thread for the duration of the block, then stop and close it."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def serve_keys(keys: dict[str, bytes]) -> Iterator[KeyServer]:
    """Serve `{kid: pem}` at `http://127.0.0.1:<free port>/<kid>` for the duration of the block."""
    server = _Server(keys)
    with running(server):
        yield server.state
