"""Apps the tests serve with a real uvicorn subprocess on loopback, and the wait for one to answer."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx2


def wait_until_healthy(url: str, process: subprocess.Popen[bytes], log: Path, *, timeout: float = 30.0) -> None:
    """Poll `url` until it answers 200; fail with the server's log if it exits or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx2.get(url).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
