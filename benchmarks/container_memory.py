"""Resident memory of the example app in Forge Containers mode, after start and after a burst of invocations.

The kit's fake sidecar serves on loopback; `python -m example_app.container` runs as a
real uvicorn subprocess against it, configured only through the environment (as Forge
configures a container), with a fresh SQLite file in a temporary directory. Its memory is
the kernel's: `VmRSS` (resident now) and `VmHWM` (the resident peak) from
`/proc/<pid>/status`, read once `/healthz` answers, halfway, and after the last request.

The requests, in a fixed rotation of ten: four `GET /container/whoami`, each a new
invocation the sidecar knows (so each costs one context fetch, and the app's bounded
context cache fills as it would); three `POST /container/events` with distinct events and
one with a retry of an earlier one (a new invocation, the same body plus `retryContext`,
stored once); two `GET /healthz`. At most `--concurrency` in flight, loopback only; every
answer is checked (200 or 204), and so is the end state: the app's database holds exactly the
distinct events. Each run is a fresh app; medians over `--runs`.

The closing line names the smallest memory setting whose size keeps the peak at most
`HEADROOM` (60%) of it (Forge scales a service up at 70% memory, and a Python process rarely
gives memory back).

    .venv/bin/python benchmarks/container_memory.py [--requests 10000] [--concurrency 16] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's example app and library

import httpx2  # noqa: E402

from example_app.demo import free_port  # noqa: E402
from fastapi_connect_auth.testing import FakeSidecar  # noqa: E402

HEADROOM = 0.6
"""The largest share of the memory setting the peak may take: 10 points under Forge's 70% autoscaling trigger,
for what this burst leaves out (larger bodies, other database drivers, the app's own code)."""
SETTINGS_MI = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
"""Memory settings from Forge's smallest profile (64Mi) to its largest (16Gi), each twice the one before (only
the two ends are documented: check a size against Forge's table of CPU/memory pairs)."""
ROTATION = ("whoami",) * 4 + ("event",) * 3 + ("retry",) + ("healthz",) * 2
"""Ten requests, repeated: what each kind of request is, in order."""
EXPECTED = {"whoami": 200, "event": 204, "retry": 204, "healthz": 200}
COMMAND = (sys.executable, "-m", "example_app.container")
"""The container app, as its image would start it."""
START_TIMEOUT = 60.0
"""Seconds the app has to answer `/healthz` (Forge gives 50, on a machine of its own)."""


@dataclass(frozen=True)
class Memory:
    """One reading of `/proc/<pid>/status`, in MiB."""

    rss: float
    """`VmRSS`: resident now."""
    peak: float
    """`VmHWM`: the resident peak so far."""


@dataclass(frozen=True)
class Run:
    """One fresh app: its memory at each point, and how long the requests took."""

    points: list[tuple[str, Memory]]
    seconds: float


def memory(pid: int) -> Memory:
    """The process's resident memory now and its peak, from the kernel."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024  # kB
    return Memory(rss=fields["VmRSS"], peak=fields["VmHWM"])


def smallest_setting(peak_mib: float) -> str:
    """The smallest memory setting of which `peak_mib` is at most `HEADROOM`."""
    for size in SETTINGS_MI:
        if peak_mib <= size * HEADROOM:
            return f"{size}Mi" if size < 1024 else f"{size // 1024}Gi"
    raise SystemExit(f"a peak of {peak_mib:.1f} MiB fits no Forge Containers profile")


def answers_health(url: str) -> bool:
    """Whether the app answers `/healthz` with 200 yet."""
    try:
        return httpx2.get(f"{url}/healthz").status_code == 200
    except httpx2.TransportError:
        return False


@contextmanager
def container_app(sidecar: FakeSidecar, directory: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`python -m example_app.container` against `sidecar` (serving), on loopback, until it answers `/healthz`."""
    port = free_port()
    env = {
        **os.environ,
        **sidecar.environ(SERVER_PORT=str(port), HOST="127.0.0.1"),
        "DATABASE_URL": f"sqlite:///{directory}/container.db",
        "PYTHONPATH": str(ROOT),
    }
    log = directory / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(COMMAND, stdout=sink, stderr=subprocess.STDOUT, cwd=directory, env=env)  # noqa: S603
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not answers_health(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the container app did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield process, url
    finally:
        process.terminate()  # SIGTERM, as Forge stops a container
        process.wait(30)


class Burst:
    """The requests of one run, sent as the sidecar would, at most `concurrency` at once."""

    def __init__(self, sidecar: FakeSidecar, client: httpx2.AsyncClient, concurrency: int) -> None:
        self.sidecar = sidecar
        self.client = client
        self.concurrency = concurrency
        self.distinct = 0
        """Distinct events sent so far."""
        self.wrong: list[str] = []
        """Every answer that was not the expected one."""

    def request(self, index: int) -> tuple[str, str, str, dict[str, Any] | None]:
        """The `index`-th request of the rotation: its kind, method, path and event body."""
        kind = ROTATION[index % len(ROTATION)]
        if kind == "event":
            self.distinct += 1
            return kind, "POST", "/container/events", event(self.distinct)
        if kind == "retry":
            retry = {"retryCount": 1, "retryReason": "TIMEOUT_ERROR", "retryData": None}
            return kind, "POST", "/container/events", {**event(max(self.distinct - 1, 1)), "retryContext": retry}
        return kind, "GET", f"/{kind}" if kind == "healthz" else f"/container/{kind}", None

    async def send(self, indexes: Iterator[int]) -> None:
        for index in indexes:
            kind, method, path, body = self.request(index)
            headers: dict[str, str] = {}
            if kind != "healthz":
                headers["x-forge-invocation-id"] = self.sidecar.invocation("ui" if kind == "whoami" else "event")
            answer = await self.client.request(method, path, json=body, headers=headers)
            if answer.status_code != EXPECTED[kind]:
                self.wrong.append(f"{method} {path}: {answer.status_code}")

    async def run(self, start: int, stop: int) -> None:
        """Send requests `start` to `stop - 1`, `concurrency` senders sharing one sequence."""
        indexes = iter(range(start, stop))
        await asyncio.gather(*(self.send(indexes) for _ in range(self.concurrency)))


def event(number: int) -> dict[str, Any]:
    """A distinct Jira event, as Forge delivers it to a trigger."""
    return {"eventType": "avi:jira:created:issue", "issue": {"key": f"DEMO-{number}"}, "atlassianId": "557058:x"}


def stored_events(database: Path) -> int:
    """How many events the app stored (the listing route shows 50 at most), read from its SQLite file."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        count: int = connection.execute("SELECT count(*) FROM forge_events").fetchone()[0]
        return count


def one_run(requests: int, concurrency: int) -> Run:
    """A fresh sidecar, app and database: memory after start, halfway and at the end."""
    sidecar = FakeSidecar()
    with (
        tempfile.TemporaryDirectory() as directory,
        sidecar.serve(),
        container_app(sidecar, Path(directory)) as (process, url),
    ):
        points = [("started", memory(process.pid))]

        async def burst() -> float:
            limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
            async with httpx2.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
                sender = Burst(sidecar, client, concurrency)
                began = time.perf_counter()
                await sender.run(0, requests // 2)
                points.append((f"after {requests // 2:,}", memory(process.pid)))
                await sender.run(requests // 2, requests)
                took = time.perf_counter() - began
                points.append((f"after {requests:,}", memory(process.pid)))
                if sender.wrong:
                    raise SystemExit(f"{len(sender.wrong)} wrong answers, e.g. {sender.wrong[:3]}")
                stored = stored_events(Path(directory) / "container.db")
                if stored != sender.distinct:
                    raise SystemExit(f"{stored} events stored for {sender.distinct} distinct ones")
                return took

        seconds = asyncio.run(burst())
    return Run(points, seconds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="requests per run (default 10,000)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at most (default 16)")
    parser.add_argument("--runs", type=int, default=3, help="fresh apps, one after the other (default 3)")
    arguments = parser.parse_args(argv)
    if arguments.requests < 2 or arguments.concurrency < 1 or arguments.runs < 1:
        parser.error("--requests must be at least 2, --concurrency and --runs at least 1")
    counts = {kind: 0 for kind in EXPECTED}
    for index in range(arguments.requests):
        counts[ROTATION[index % len(ROTATION)]] += 1
    print(
        f"{arguments.requests:,} requests per run ({counts['whoami']:,} whoami, {counts['event']:,} distinct events, "
        f"{counts['retry']:,} retried events, {counts['healthz']:,} healthz), concurrency {arguments.concurrency}"
    )
    runs = []
    for number in range(1, arguments.runs + 1):
        run = one_run(arguments.requests, arguments.concurrency)
        runs.append(run)
        cells = "  ".join(f"{name} {point.rss:.1f}/{point.peak:.1f}" for name, point in run.points)
        print(f"run {number}: RSS/peak MiB  {cells}  ({run.seconds:.1f} s)")
    print()
    print(f"| median of {len(runs)} run(s) | VmRSS MiB | VmHWM MiB |")
    print("|---|---|---|")
    for position, (name, _) in enumerate(runs[0].points):
        rss = statistics.median(run.points[position][1].rss for run in runs)
        peak = statistics.median(run.points[position][1].peak for run in runs)
        print(f"| {name} | {rss:.1f} | {peak:.1f} |")
    print()
    final = statistics.median(run.points[-1][1].rss for run in runs)
    peak = statistics.median(run.points[-1][1].peak for run in runs)
    print(
        f"after {arguments.requests:,} requests: RSS {final:.1f} MiB, peak {peak:.1f} MiB; "
        f"smallest memory setting with the peak at most {HEADROOM:.0%} of it: {smallest_setting(peak)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
