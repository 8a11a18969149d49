"""A real browser for the tests: Debian's `chromium`, driven by Playwright for Python. Nothing is downloaded.

`tests/conftest.py` loads it as a plugin; a test asks for `browser`, one Chromium
for its module (each test opens its own context: its own cookies and storage).
Not one for the whole session: while Playwright's sync API runs, its event loop
counts as running in the main thread, so every asyncio test after it would fail
("Cannot run the event loop while another loop is running"). Playwright launches `/usr/bin/chromium` (`executable_path`) with a fresh
temporary profile and the flags below: on a machine with no network, Chromium's
own background connections (updates, sync, field trials, QUIC) would otherwise
be refused or hang.

When Chromium or Playwright is missing the browser tests are skipped, loudly (see
`pytest_terminal_summary`); with `REQUIRE_BROWSER=1` (set by `.ci/run`) they fail.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser

REQUIRED = os.environ.get("REQUIRE_BROWSER") == "1"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # we run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_skipped: list[str] = []


def chromium() -> str | None:
    """Debian's Chromium: on the PATH, else where the package puts it."""
    found = shutil.which("chromium")
    if found is None and os.access("/usr/bin/chromium", os.X_OK):
        found = "/usr/bin/chromium"
    return found


def missing() -> str | None:
    """Why the browser tests cannot run here, or `None` when they can."""
    if importlib.util.find_spec("playwright") is None:
        return "Playwright for Python is not installed: `make install` installs the dev extra"
    if chromium() is None:
        return "Chromium not found: install Debian's `chromium` package (`make test` does, as root)"
    return None


def require_browser() -> None:
    """Skip the calling test when no browser can run (fail it with `REQUIRE_BROWSER=1`)."""
    reason = missing()
    if reason is None:
        return
    if REQUIRED:
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    _skipped.append(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """The module's Chromium, headless; stopped after the module, so the asyncio tests after it can run."""
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            launched.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say loudly that the browser tests did not run, so a green run without them is never mistaken for one."""
    if _skipped:
        terminalreporter.write_sep("!", "Browser tests SKIPPED", red=True, bold=True)
        terminalreporter.write_line(f"{_skipped[0]}; set REQUIRE_BROWSER=1 to make this a failure.")
