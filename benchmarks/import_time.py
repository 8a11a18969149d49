"""What `import fastapi_connect_auth` adds to a process's start: wall time and peak memory against `import fastapi`.

Each run is a fresh interpreter (`python -c "import <module>"`, with the bytecode
caches a deployed app has: `PYTHONDONTWRITEBYTECODE` is dropped and a warm-up run
writes them), timed from its start to its exit; its peak
resident memory is the kernel's (`ru_maxrss` of that child, from `os.wait4`), and
so is its CPU time (user + system): on a machine shared with other work, the wall
clock counts the time the child waited for a core, its CPU time does not.
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

Whole processes differ by tens of milliseconds from run to run on a shared machine,
as much as the library's share: `split` runs are fresh interpreters too, each timing
inside itself `import fastapi`, then the Connect app (imports, `ConnectAuth`, routes,
`install`), and the ratio of the two is taken per run before the median: the
interpreter's own start and exit, the noisiest part, are left out of both.

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
SPLIT = """
import time
started = time.perf_counter()
import fastapi
imported = time.perf_counter()
exec(compile({app!r}, "connect_app", "exec"), {{}})
print(imported - started, time.perf_counter() - imported)
"""
"""A fresh process timing `import fastapi`, then the Connect-only app, inside itself."""

COMPARED = {"package": "bare", "connect": "fastapi", "everything": "fastapi", "connect_app": "plain_app"}
"""Each measured variant and the one it is compared with."""


def run_once(code: str) -> tuple[float, float, float]:
    """Seconds from start to exit, CPU seconds and peak resident MiB of one fresh `python -c code`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed wheel's modules are compiled; so are these after warm-up
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT)  # noqa: S603 - fixed scripts
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{code!r} exited with {process.returncode}")
    return elapsed, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # Linux reports KiB


def run_split() -> tuple[float, float]:
    """`import fastapi`'s seconds and the Connect app's after it, timed inside one fresh process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    code = SPLIT.format(app=VARIANTS["connect_app"])
    done = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    fastapi_seconds, app_seconds = (float(value) for value in done.stdout.split())
    return fastapi_seconds, app_seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    for code in VARIANTS.values():
        run_once(code)  # warm the bytecode and file caches
    seconds: dict[str, list[float]] = {kind: [] for kind in VARIANTS}
    cpu_seconds: dict[str, list[float]] = {kind: [] for kind in VARIANTS}
    memory: dict[str, list[float]] = {kind: [] for kind in VARIANTS}
    for _ in range(args.rounds):
        for kind, code in VARIANTS.items():
            elapsed, cpu, resident = run_once(code)
            seconds[kind].append(elapsed)
            cpu_seconds[kind].append(cpu)
            memory[kind].append(resident)
    wall = {kind: statistics.median(values) * 1000 for kind, values in seconds.items()}
    cpu_ms = {kind: statistics.median(values) * 1000 for kind, values in cpu_seconds.items()}
    peak = {kind: statistics.median(values) for kind, values in memory.items()}
    print(f"Python {sys.version.split()[0]}; median of {args.rounds} alternating rounds, fresh process each")
    for kind in VARIANTS:
        print(f"    {kind:12} {wall[kind]:7.1f} ms wall {cpu_ms[kind]:7.1f} ms CPU   peak RSS {peak[kind]:6.1f} MiB")
    for name, times in (("wall", wall), ("CPU", cpu_ms)):
        fastapi_own = times["fastapi"] - times["bare"]
        print(f"{name}: FastAPI's own import (fastapi - bare) {fastapi_own:.1f} ms")
        for kind, base in COMPARED.items():
            added = times[kind] - times[base]
            print(f"    {kind} - {base}: {added:+.1f} ms = {added / fastapi_own:.2f} x FastAPI's (target <= 0.15)")
    split = [run_split() for _ in range(args.rounds)]
    ratio = statistics.median(app / fastapi for fastapi, app in split)
    print(
        f"split, inside each process: import fastapi {statistics.median(f for f, _ in split) * 1000:.1f} ms, "
        f"then the Connect app {statistics.median(a for _, a in split) * 1000:.1f} ms; median ratio {ratio:.2f} "
        "(target <= 0.15)"
    )
    print(f"peak RSS: FastAPI's own {peak['fastapi'] - peak['bare']:.1f} MiB")
    for kind, base in COMPARED.items():
        print(f"    {kind} - {base}: {peak[kind] - peak[base]:+.1f} MiB (target <= 4)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
