"""Test helpers for install keys: real RSA keys and a loopback HTTP key server.

The server is a plain `http.server` on 127.0.0.1 in a background thread, so the
key provider under test talks real HTTP through a real httpx2 client. Each path
can answer with a status, a body, a delay or a redirect; every request is counted.
"""

from __future__ import annotations

import functools
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

__all__ = ["KeyServer", "Reply", "ec_public_pem", "free_loopback_port", "public_pem", "rsa_key", "serve_keys"]


def rsa_key(bits: int = 2048, index: int = 0) -> rsa.RSAPrivateKey:
    """RSA key number `index` of `bits` bits, made once for the whole run: generation is slow."""
    return _generate_rsa_key(bits, index)


@functools.cache
def _generate_rsa_key(bits: int, index: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of `key`'s public half, as Atlassian's CDN serves it."""
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def ec_public_pem() -> bytes:
    """A valid PEM public key that is not RSA."""
    return (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def free_loopback_port() -> int:
    """A loopback port nobody listens on (bound, then released), for "connection refused"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Reply:
    """How the key server answers one path."""

    status: int = 200
    body: bytes = b""
    delay: float = 0.0
    location: str | None = None
    chunk_size: int | None = None


@dataclass
class KeyServer:
    """A running loopback key server: set `replies[path]`, read `requests`.

    `received` is set once a request arrives; setting `release` ends every pending delay.
    """

    url: str
    replies: dict[str, Reply] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    received: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve_key(self, kid: str, pem: bytes, *, delay: float = 0.0) -> None:
        self.replies[f"/{kid}"] = Reply(body=pem, delay=delay)

    def count(self, kid: str) -> int:
        with self.lock:
            return self.requests.count(f"/{kid}")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        state = self.server.state
        with state.lock:
            state.requests.append(self.path)
        state.received.set()
        reply = state.replies.get(self.path, Reply(status=404, body=b"Not found"))
        if reply.delay:
            state.release.wait(reply.delay)
        try:
            self.send_response(reply.status)
            if reply.location is not None:
                self.send_header("Location", reply.location)
            if reply.chunk_size is None:
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)
            else:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for start in range(0, len(reply.body), reply.chunk_size):
                    chunk = reply.body[start : start + reply.chunk_size]
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client gave up (timeout, size limit): nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads `requests` instead."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: KeyServer | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state or KeyServer(url="")

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet: a client hanging up early is expected in these tests."""


@contextmanager
def serve_keys() -> Iterator[KeyServer]:
    """Run a key server on 127.0.0.1 for the duration of the block."""
    server = _Server()
    host, port = server.server_address[:2]
    server.state.url = f"http://{host!s}:{port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.state
    finally:
        server.state.release.set()
        server.shutdown()
        server.server_close()
        thread.join()
