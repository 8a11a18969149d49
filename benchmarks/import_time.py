"""What `import fastapi_connect_auth` adds to a process's start: wall time and peak memory against `import fastapi`.

Each run is a fresh interpreter (`python -c "import <module>"`, with the bytecode
caches a deployed app has: `PYTHONDONTWRITEBYTECODE` is dropped and a warm-up run
writes them), timed from its start to its exit; its peak
resident memory is the kernel's (`ru_maxrss` of that child, from `os.wait4`).
The variants alternate (one run of each, then the next round), so a busy moment of
a shared machine lands on every variant alike; medians reported.

* `bare`: `python -c "pass"`, the interpreter alone;
* `fastapi`: `import fastapi`;
* `package`: `import fastapi_connect_auth` alone (every public name loads on first use);
* `connect`: `import fastapi` and the names a Connect app uses (`ConnectAuth`, `ConnectRequest`, ...);
* `everything`: `import fastapi` and `from fastapi_connect_auth import *` (every public name, as before the lazy import);
* `plain_app`: a FastAPI app with three routes behind a no-op dependency;
* `connect_app`: the same app with `ConnectAuth(...).install(app)` and `ConnectInstall`, `ConnectLifecycle`
  and `ConnectRequest` on the routes.

What the library adds: `connect - fastapi` and `connect_app - plain_app`, each against
FastAPI's own import (`fastapi - bare`); peak memory the same way.

    .venv/bin/python benchmarks/import_time.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CONNECT_NAMES = (
    "from fastapi_connect_auth import ConnectAuth, ConnectInstall, ConnectLifecycle, ConnectRequest, "
    "VerifiedInstallation, VerifiedLifecycle, VerifiedRequest"
)
APP = """
from typing import Annotated, Any
from fastapi import Depends, FastAPI
{imports}
async def load(client_key: str) -> None:
    return None
app = FastAPI()
{setup}
@app.post("/installed")
async def installed(call: Annotated[Any, Depends({install})]) -> None: ...
@app.post("/uninstalled")
async def uninstalled(call: Annotated[Any, Depends({lifecycle})]) -> None: ...
@app.post("/webhook")
async def webhook(call: Annotated[Any, Depends({request})]) -> None: ...
"""

VARIANTS = {
    "bare": "pass",
    "fastapi": "import fastapi",
    "package": "import fastapi_connect_auth",
    "connect": f"import fastapi\n{CONNECT_NAMES}",
    "everything": "import fastapi\nfrom fastapi_connect_auth import *",
    "plain_app": APP.format(
        imports="async def no_op() -> None: ...",
        setup="",
        install="no_op",
        lifecycle="no_op",
        request="no_op",
    ),
    "connect_app": APP.format(
        imports=CONNECT_NAMES,
        setup='ConnectAuth(base_url="https://app.example.com", credentials_loader=load).install(app)',
        install="ConnectInstall()",
        lifecycle='ConnectLifecycle("uninstalled")',
        request="ConnectRequest()",
    ),
}
COMPARED = {"package": "bare", "connect": "fastapi", "everything": "fastapi", "connect_app": "plain_app"}
"""Each measured variant and the one it is compared with."""


def run_once(code: str) -> tuple[float, float]:
    """Seconds from start to exit and peak resident MiB of one fresh `python -c code`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed wheel's modules are compiled; so are these after warm-up
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)  # noqa: S603 - fixed scripts
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{code!r} exited with {process.returncode}")
    return elapsed, usage.ru_maxrss / 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    for code in VARIANTS.values():
        run_once(code)  # warm the bytecode and file caches
    seconds: dict[str, list[float]] = {kind: [] for kind in VARIANTS}
    memory: dict[str, list[float]] = {kind: [] for kind in VARIANTS}
    for _ in range(args.rounds):
        for kind, code in VARIANTS.items():
            elapsed, resident = run_once(code)
            seconds[kind].append(elapsed)
            memory[kind].append(resident)
    wall = {kind: statistics.median(values) * 1000 for kind, values in seconds.items()}
    peak = {kind: statistics.median(values) for kind, values in memory.items()}
    print(f"Python {sys.version.split()[0]}; median of {args.rounds} alternating rounds, fresh process each")
    for kind in VARIANTS:
        print(f"    {kind:12} {wall[kind]:7.1f} ms   peak RSS {peak[kind]:6.1f} MiB")
    fastapi_own = wall["fastapi"] - wall["bare"]
    print(f"FastAPI's own import (fastapi - bare): {fastapi_own:.1f} ms, {peak['fastapi'] - peak['bare']:.1f} MiB")
    for kind, base in COMPARED.items():
        added = wall[kind] - wall[base]
        print(
            f"{kind} - {base}: {added:+.1f} ms = {added / fastapi_own:.2f} x FastAPI's import (target <= 0.15), "
            f"{peak[kind] - peak[base]:+.1f} MiB peak (target <= 4)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
