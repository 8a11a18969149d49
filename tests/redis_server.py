"""A real Redis for the tests: Debian's `redis-server`, started on a Unix socket in a temporary directory.

`tests/conftest.py` loads it as a plugin; a test asks for `redis_server` (the
session's server) or `redis_url`; tests keep apart by key prefix. No TCP port is opened.

When `redis-server` is missing the Redis tests are skipped, loudly; with
`REQUIRE_REDIS=1` (set by `.ci/run`) they fail. `make test` installs it as root.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.postgres import not_installed

SKIP_REASON = "redis-server not found: install Debian's `redis-server` package"
_skipped: list[str] = []


@dataclass(frozen=True)
class RedisServer:
    """A running server on a Unix socket: `url(db)` is a `unix://` URL of logical database `db`."""

    socket: Path
    process: subprocess.Popen[bytes]

    def url(self, db: int = 0) -> str:
        return f"unix://{self.socket}?db={db}"

    def stop(self) -> None:
        """Stop the server now (a test of an outage); the fixture does not start it again."""
        self.process.terminate()
        self.process.wait(timeout=10)


@contextmanager
def running_redis(directory: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError(SKIP_REASON)
    socket = directory / "redis.sock"
    command = [
        binary,
        "--port",
        "0",
        "--unixsocket",
        str(socket),
        "--unixsocketperm",
        "700",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(directory),
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield RedisServer(socket, process)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=10)


def require_redis() -> None:
    """Skip the calling test (fail it, with `REQUIRE_REDIS=1`) when `redis-server` is not installed."""
    if shutil.which("redis-server") is None:
        not_installed(SKIP_REASON, variable="REQUIRE_REDIS", skipped=_skipped)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis; skipped (or failed, with `REQUIRE_REDIS=1`) when `redis-server` is not installed."""
    require_redis()
    with tempfile.TemporaryDirectory(prefix="redis-") as directory, running_redis(Path(directory)) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis as a URL; tests keep apart by key prefix (`RedisStore(prefix=…)`)."""
    return redis_server.url()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly that the Redis tests did not run."""
    if _skipped:
        terminalreporter.write_sep("!", "Redis tests SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"{_skipped[0]}; set REQUIRE_REDIS=1 to make this a failure.")
