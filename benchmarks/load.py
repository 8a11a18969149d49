"""Load: many tenants install the example app at once, then send it thousands of webhooks.

The example app runs under uvicorn in its own process (a fresh SQLite file in a
temporary folder), fetching install keys from the test kit's loopback key
server. N fake Jira sites sign their installs with one shared key (one `kid`,
as Atlassian does) and install concurrently; then M webhooks, each with a unique
issue summary as its marker, are sent round-robin over the tenants with bounded
concurrency. Every tenant's events are then read back through `/api/events`
with its own context token, and the SQLite file is counted directly, to check
that no event was lost or filed under another tenant. Reports throughput,
latency percentiles, key-server fetches, the server's resident memory, and the
CPU the server and the load generator each used while the webhooks ran (the
generator must have room to spare, or it would be what is measured).

Webhooks go out over keep-alive connections from a minimal HTTP/1.1 client on
asyncio streams: httpx's connection pool costs more CPU per request than the app
does, so with it the load generator, not the app, was the limit.

With `--database postgresql` the app stores into a throwaway PostgreSQL cluster
(Debian's `postgresql` binaries, as the tests use, here with fsync on) on a Unix
socket; `--workers 2` runs uvicorn with two worker processes (the schema is
migrated once, before they start).

Loopback only; bounded in count and time; the server is always stopped.

The credentials cache's hit rate is read from the app's own log line at shutdown.
`--compare-with REV` runs the same load against the example app and library of
another commit too (exported with `git archive`, run from there), alternating
`--rounds` times in one run, and prints the ratios of the medians (this commit
over REV): figures from a shared machine only mean something side by side.
`--databases sqlite,postgresql` alternates the two databases, `--rounds` times
each, and prints the first's medians over the second's (with `--compare-with`
too, both checkouts on both databases in every round).

    .venv/bin/python benchmarks/load.py [--tenants 200] [--webhooks 5000] [--concurrency 50]
                                        [--database sqlite|postgresql] [--workers 1]
                                        [--compare-with 281d10b] [--databases sqlite,postgresql] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import httpx2  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from example_app.db import create_engine, upgrade_schema  # noqa: E402
from example_app.demo import run_app  # noqa: E402
from fastapi_connect_auth.testing import FakeProduct, KeyServer, generate_rsa_key  # noqa: E402

WEBHOOK_EVENT = "jira:issue_created"
EVENTS_PAGE = 50
"""`/api/events` lists a tenant's 50 newest events: no tenant may get more, so all can be read back."""
MAX_TENANTS = 2_000
MAX_WEBHOOKS = 100_000
REQUEST_TIMEOUT = 30.0
RUN_TIMEOUT = 600.0


@dataclass
class Phase:
    """One batch of requests: how many, how long in all, each one's latency and any unexpected answers."""

    name: str
    sent: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        """Nearest-rank percentile of the latencies, in milliseconds."""
        ordered = sorted(self.latencies)
        if not ordered:
            return 0.0
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)] * 1000


@dataclass
class LoadReport:
    tenants: int
    webhooks: int
    concurrency: int
    database: str
    workers: int
    installs: Phase
    deliveries: Phase
    key_fetches: list[str]
    lost: int
    misattributed: int
    stored_rows: int
    rss_kib: dict[str, int]
    cpu_share: dict[str, float]
    """CPU time over wall time while the webhooks ran: 1.0 is one core busy all along."""
    cache_hit_rate: float | None = None
    """The credentials cache's hit rate, from the app's log at shutdown (`None`: the app logs none)."""
    source: str = "this checkout"
    """Which app and library ran: this checkout, or the commit compared with."""

    @property
    def correct(self) -> bool:
        """Every request accepted, every event stored once under its own tenant, one key fetch per worker for the kid."""
        return (
            not self.installs.failures
            and not self.deliveries.failures
            and self.lost == 0
            and self.misattributed == 0
            and self.stored_rows == self.webhooks
            and 1 <= len(self.key_fetches) <= self.workers
        )


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (uvicorn's workers), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended meanwhile
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree = [pid]
    for member in tree:
        tree.extend(parents.get(member, []))
    return tree


def cpu_seconds(pid: int) -> float:
    """User plus system CPU the process and its workers have used so far, from /proc."""
    total = 0
    for member in process_tree(pid):
        fields = Path(f"/proc/{member}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def resident_kib(pid: int) -> dict[str, int]:
    """Resident memory now (`VmRSS`) and at its peak (`VmHWM`) of the process and its workers, in KiB, from /proc."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for member in process_tree(pid):
        for line in Path(f"/proc/{member}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in values:
                values[name] += int(value.split()[0])
    return values


async def run_phase(
    phase: Phase,
    requests: Sequence[Callable[[httpx2.AsyncClient], Awaitable[httpx2.Response]]],
    concurrency: int,
    client: httpx2.AsyncClient,
) -> None:
    """Send `requests` with at most `concurrency` in flight; record each latency and every non-204 answer."""
    gate = asyncio.Semaphore(concurrency)

    async def send(request: Callable[[httpx2.AsyncClient], Awaitable[httpx2.Response]]) -> None:
        async with gate:
            phase.sent += 1
            started = time.perf_counter()
            try:
                response = await request(client)
            except httpx2.HTTPError as exc:
                phase.failures.append(type(exc).__name__)
                return
            phase.latencies.append(time.perf_counter() - started)
            if response.status_code != 204:
                phase.failures.append(f"{response.status_code} {response.text[:120]}")

    started = time.perf_counter()
    await asyncio.gather(*(send(request) for request in requests))
    phase.seconds = time.perf_counter() - started


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of one HTTP/1.1 response (with a Content-Length, as uvicorn sends)."""
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def deliver(phase: Phase, base_url: str, requests: Sequence[bytes], concurrency: int) -> None:
    """Send premade HTTP/1.1 requests over `concurrency` keep-alive connections, each taking the next one when free.

    Records each latency and every non-204 answer; a broken connection is a failure and is reopened.
    """
    address = urlsplit(base_url)
    pending = iter(requests)

    async def connection() -> None:
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            for request in pending:
                phase.sent += 1
                started = time.perf_counter()
                try:
                    writer.write(request)
                    status, body = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
                except (OSError, ValueError, IndexError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                    phase.failures.append(type(exc).__name__)
                    writer.close()
                    reader, writer = await asyncio.open_connection(address.hostname, address.port)
                    continue
                phase.latencies.append(time.perf_counter() - started)
                if status != 204:
                    phase.failures.append(f"{status} {body[:120].decode(errors='replace')}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(min(concurrency, len(requests)))))
    phase.seconds += time.perf_counter() - started


def raw_post(base_url: str, path: str, token: str, body: Mapping[str, object]) -> bytes:
    """One HTTP/1.1 POST of `body` as JSON, with the token in the Authorization header, as bytes on the wire."""
    content = json.dumps(body, separators=(",", ":")).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {urlsplit(base_url).netloc}\r\nAuthorization: JWT {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(content)}\r\n\r\n"
    )
    return head.encode() + content


def post(
    url: str, token: str, body: Mapping[str, object]
) -> Callable[[httpx2.AsyncClient], Awaitable[httpx2.Response]]:
    headers = {"Authorization": f"JWT {token}"}
    return lambda client: client.post(url, json=body, headers=headers)


async def read_back(
    client: httpx2.AsyncClient, base_url: str, products: Sequence[FakeProduct], sent: dict[str, int]
) -> tuple[int, int]:
    """(lost, misattributed): markers sent but listed nowhere, and markers listed under another tenant."""
    seen: set[str] = set()
    misattributed = 0
    for index, product in enumerate(products):
        headers = {"Authorization": f"JWT {product.context_token()}"}
        response = await client.get(f"{base_url}/api/events", headers=headers)
        response.raise_for_status()
        for event in response.json():
            marker = event["webhook_summary"]
            if sent.get(marker) != index:
                misattributed += 1
            seen.add(marker)
    return len(sent.keys() - seen), misattributed


def stored_rows(database: Path) -> int:
    with closing(sqlite3.connect(database)) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM events").fetchone()
    return int(count)


@contextmanager
def fresh_database(kind: str, folder: Path, *, migrated: bool = True) -> Iterator[tuple[str, Callable[[], int]]]:
    """An empty database of `kind` in `folder` (migrated unless the app will): its URL and a count of its events."""
    if kind == "sqlite":
        path = folder / "load.db"
        url = f"sqlite:///{path}"
        if migrated:
            migrate(url)
        yield url, lambda: stored_rows(path)
        return
    from tests.postgres import running_server  # the tests' throwaway cluster; imported only when asked for

    # A directory of its own: the cluster belongs to the `postgres` user when we are root.
    with tempfile.TemporaryDirectory(prefix="pg-") as cluster, running_server(Path(cluster), durable=True) as server:
        name = server.create_database()
        url = server.url(name)
        if migrated:
            migrate(url)
        yield url, lambda: int(server.execute("SELECT COUNT(*) FROM events", database=name)[0][0][0])


def migrate(url: str) -> None:
    """Bring the schema up to date once, before the app's workers start (each would race to do it)."""

    async def upgrade() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(upgrade_schema)
        finally:
            await engine.dispose()

    asyncio.run(upgrade())


async def drive(
    base_url: str, pid: int, products: Sequence[FakeProduct], webhooks: int, concurrency: int
) -> tuple[Phase, Phase, int, int, dict[str, int], dict[str, float]]:
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx2.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as client:
        descriptor = (await client.get(f"{base_url}/atlassian-connect.json")).json()
        app_key = descriptor["key"]
        install_url = descriptor["lifecycle"]["installed"]
        webhook_url = next(hook["url"] for hook in descriptor["modules"]["webhooks"] if hook["event"] == WEBHOOK_EVENT)
        rss = {"start": resident_kib(pid)["VmRSS"]}

        # Tokens and bodies are made before the clock starts: the figures are the server's.
        installs = [
            post(
                f"{base_url}{install_url}",
                product.signed_token("POST", install_url, app_base_url=base_url),
                product.install_payload(app_key=app_key),
            )
            for product in products
        ]
        install_phase = Phase("install")
        await run_phase(install_phase, installs, concurrency, client)
        rss["after installs"] = resident_kib(pid)["VmRSS"]

        sent: dict[str, int] = {}
        deliveries = []
        for number in range(webhooks):
            index = number % len(products)
            product = products[index]
            marker = f"LOAD-{number}"
            sent[marker] = index
            # The marker is the summary of an issue with no key: /api/events lists an event about a keyed issue
            # only once Jira confirms the issue to the user, and live calls are off here.
            body = {"webhookEvent": WEBHOOK_EVENT, "issue": {"id": str(number), "fields": {"summary": marker}}}
            token = product.shared_secret_token("POST", webhook_url, app_base_url=base_url)
            deliveries.append(raw_post(base_url, webhook_url, token, body))
        delivery_phase = Phase("webhook")
        half = len(deliveries) // 2
        server_cpu, own_cpu = cpu_seconds(pid), time.process_time()
        await deliver(delivery_phase, base_url, deliveries[:half], concurrency)
        rss["after half the webhooks"] = resident_kib(pid)["VmRSS"]
        await deliver(delivery_phase, base_url, deliveries[half:], concurrency)
        cpu = {
            "server": (cpu_seconds(pid) - server_cpu) / delivery_phase.seconds if delivery_phase.seconds else 0.0,
            "load generator": (time.process_time() - own_cpu) / delivery_phase.seconds
            if delivery_phase.seconds
            else 0.0,
        }
        status = resident_kib(pid)
        rss["after all webhooks"], rss["peak"] = status["VmRSS"], status["VmHWM"]

        lost, misattributed = await read_back(client, base_url, products, sent)
    return install_phase, delivery_phase, lost, misattributed, rss, cpu


LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "loggers": {"example_app": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
"""The app's own INFO lines (its cache statistics at shutdown) in its log, uvicorn's warnings as before."""
HIT_RATE = re.compile(r"Credentials cache: \d+ hits, \d+ misses \(hit rate ([0-9.]+)\)")


def cache_hit_rate(log: str) -> float | None:
    """The hit rate the app logged at shutdown (one line per worker: their mean), if it logged one."""
    rates = [float(rate) for rate in HIT_RATE.findall(log)]
    return statistics.fmean(rates) if rates else None


def run_load(
    tenants: int = 200,
    webhooks: int = 5000,
    concurrency: int = 50,
    *,
    database: str = "sqlite",
    workers: int = 1,
    source: Path | None = None,
) -> LoadReport:
    """Run the whole load against a fresh app, database and key server; the server is stopped however it ends.

    `source`: the checkout whose example app and library run (a baseline); it migrates its own
    schema at startup, so it runs with one worker.
    """
    if not 1 <= tenants <= MAX_TENANTS or not 0 <= webhooks <= MAX_WEBHOOKS or concurrency < 1:
        raise ValueError(f"Keep 1 <= tenants <= {MAX_TENANTS}, 0 <= webhooks <= {MAX_WEBHOOKS}, concurrency >= 1.")
    if math.ceil(webhooks / tenants) > EVENTS_PAGE:
        raise ValueError(f"At most {EVENTS_PAGE} webhooks per tenant, so every event can be read back.")
    signing_key = generate_rsa_key()
    products = [
        FakeProduct(base_url=f"https://load-{index}.atlassian.net", private_key=signing_key) for index in range(tenants)
    ]
    env = {
        # The fake tenants' hosts are not real: reading events back must not try Jira's REST API.
        "CONNECT_PRODUCT_API_TIMEOUT": "0",
        "MIGRATE_ON_START": "0",
        # Every worker must decrypt what another stored.
        "SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
    }
    if source is not None:
        env["MIGRATE_ON_START"], workers = "1", 1
    with (
        tempfile.TemporaryDirectory(prefix="connect-load-") as folder,
        fresh_database(database, Path(folder), migrated=source is None) as (database_url, count_rows),
        products[0].serve_keys() as key_server,
    ):
        log_config = Path(folder) / "log.json"
        log_config.write_text(json.dumps(LOG_CONFIG))
        options = [
            "--no-access-log",
            "--log-level",
            "warning",
            "--workers",
            str(workers),
            "--log-config",
            str(log_config),
        ]
        with run_app(
            Path(folder),
            key_server.url,
            env={**env, "DATABASE_URL": database_url},
            server_options=options,
            source=source,
        ) as (base_url, process):
            installs, deliveries, lost, misattributed, rss, cpu = asyncio.run(
                asyncio.wait_for(drive(base_url, process.pid, products, webhooks, concurrency), RUN_TIMEOUT)
            )
            rows = count_rows()
            fetches = _fetches(key_server)
        hit_rate = cache_hit_rate((Path(folder) / "app.log").read_text(errors="replace"))
    return LoadReport(
        tenants,
        webhooks,
        concurrency,
        database,
        workers,
        installs,
        deliveries,
        fetches,
        lost,
        misattributed,
        rows,
        rss,
        cpu,
        hit_rate,
        "this checkout" if source is None else source.name,
    )


@contextmanager
def exported(revision: str) -> Iterator[Path]:
    """The tree of `revision` (`git archive`), in a temporary folder named after it."""
    with tempfile.TemporaryDirectory(prefix="connect-baseline-") as folder:
        tree = Path(folder) / revision
        tree.mkdir()
        archive = Path(folder) / "tree.tar"
        with archive.open("wb") as out:
            subprocess.run(["git", "archive", revision], cwd=HERE.parent, stdout=out, check=True)  # noqa: S603, S607
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="data")
        yield tree


def compare(reports: dict[str, list[LoadReport]]) -> str:
    """The medians of each side's rounds, and this checkout's over the baseline's."""

    def median(side: str, value: Callable[[LoadReport], float]) -> float:
        return statistics.median(value(report) for report in reports[side])

    figures: list[tuple[str, Callable[[LoadReport], float]]] = [
        ("install p99 ms", lambda r: r.installs.percentile(0.99)),
        ("install req/s", lambda r: r.installs.throughput),
        ("webhooks/s", lambda r: r.deliveries.throughput),
        ("webhook p99 ms", lambda r: r.deliveries.percentile(0.99)),
    ]
    baseline, current = list(reports)
    lines = [f"{'median of ' + str(len(reports[current])) + ' rounds':<22}{baseline:>16}{current:>16}{'ratio':>9}"]
    for name, value in figures:
        old, new = median(baseline, value), median(current, value)
        lines.append(f"{name:<22}{old:>16.1f}{new:>16.1f}{(new / old if old else 0.0):>9.2f}")
    rates = [r.cache_hit_rate for r in reports[current] if r.cache_hit_rate is not None]
    lines.append(
        f"credentials cache hit rate ({current}): " + (f"{statistics.median(rates):.3f}" if rates else "not logged")
    )
    return "\n".join(lines)


def _fetches(key_server: KeyServer) -> list[str]:
    with key_server.lock:
        return list(key_server.requests)


def summary(report: LoadReport) -> str:
    lines = [
        f"Load: {report.tenants} tenants (one signing key, one kid), {report.webhooks} webhooks, "
        f"concurrency {report.concurrency}; example app of {report.source} under uvicorn ({report.workers} "
        f"worker(s), {report.database}) on 127.0.0.1",
        "",
        f"{'phase':<10}{'requests':>10}{'failed':>8}{'seconds':>9}{'req/s':>9}"
        f"{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}",
    ]
    for phase in (report.installs, report.deliveries):
        lines.append(
            f"{phase.name:<10}{phase.sent:>10}{len(phase.failures):>8}{phase.seconds:>9.2f}{phase.throughput:>9.0f}"
            f"{phase.percentile(0.5):>9.1f}{phase.percentile(0.9):>9.1f}{phase.percentile(0.99):>9.1f}"
            f"{phase.percentile(1.0):>9.1f}"
        )
    for phase in (report.installs, report.deliveries):
        for failure in sorted(set(phase.failures))[:5]:
            lines.append(f"  {phase.name} failure: {failure}")
    lines += [
        "",
        f"events stored: {report.stored_rows} of {report.webhooks}; lost: {report.lost}; "
        f"misattributed: {report.misattributed}",
        f"key server fetches: {len(report.key_fetches)} ({', '.join(sorted(set(report.key_fetches)))})",
        "server RSS (MiB): " + ", ".join(f"{name} {kib / 1024:.1f}" for name, kib in report.rss_kib.items()),
        f"server RSS growth over the webhooks: "
        f"{(report.rss_kib['after all webhooks'] - report.rss_kib['after installs']) / 1024:.1f} MiB",
        "credentials cache hit rate: "
        + (f"{report.cache_hit_rate:.3f}" if report.cache_hit_rate is not None else "not logged by this app"),
        "CPU while the webhooks ran (1.0 = one core busy): "
        + ", ".join(f"{name} {share:.2f}" for name, share in report.cpu_share.items()),
        f"server CPU per webhook: {report.cpu_share['server'] / report.deliveries.throughput * 1000:.2f} ms "
        f"({report.deliveries.throughput / report.cpu_share['server']:.0f} webhooks per CPU-second)"
        if report.deliveries.throughput and report.cpu_share["server"]
        else "server CPU per webhook: not measured",
        "",
        ("PASS: nothing lost or misattributed, one key fetch" + (" per worker" if report.workers > 1 else ""))
        if report.correct
        else "FAIL: see above",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--webhooks", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (default 1)")
    parser.add_argument("--compare-with", metavar="REV", help="also run the example app of this commit, alternating")
    parser.add_argument(
        "--databases", type=databases, metavar="A,B", help="alternate this checkout on two databases: A over B"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side when alternating (default 3)")
    arguments = parser.parse_args(argv)
    if arguments.compare_with or arguments.databases:
        return compare_main(arguments)
    report = load_for(arguments)
    print(summary(report))
    return 0 if report.correct else 1


def databases(value: str) -> tuple[str, str]:
    """`--databases`: two different names of `sqlite` and `postgresql`, comma-separated."""
    names = tuple(name.strip() for name in value.split(","))
    if len(names) != 2 or names[0] == names[1] or not set(names) <= {"sqlite", "postgresql"}:
        raise argparse.ArgumentTypeError("give two different databases of sqlite, postgresql: e.g. sqlite,postgresql")
    return names[0], names[1]


def load_for(arguments: argparse.Namespace, source: Path | None = None, database: str | None = None) -> LoadReport:
    """`run_load` with the command line's sizes, on `source`'s app (this checkout's by default)."""
    return run_load(
        arguments.tenants,
        arguments.webhooks,
        arguments.concurrency,
        database=database or arguments.database,
        workers=arguments.workers,
        source=source,
    )


def compare_main(arguments: argparse.Namespace) -> int:
    """`--compare-with REV` and/or `--databases A,B`: alternate rounds of every side, then print the ratios.

    With both, each round runs REV and this checkout on both databases, and a table per checkout gives A
    over B, and one per database this checkout over REV.
    """
    correct = True
    with exported(arguments.compare_with) if arguments.compare_with else nullcontext(None) as baseline:
        checkouts = [(arguments.compare_with, baseline)] if arguments.compare_with else []
        checkouts.append(("this checkout", None))
        first, second = arguments.databases or (arguments.database, arguments.database)
        kinds = [second, first] if first != second else [first]  # ratios: the first's over the second's
        reports: dict[tuple[str, str], list[LoadReport]] = {
            (checkout, database): [] for checkout, _ in checkouts for database in kinds
        }
        for _ in range(arguments.rounds):
            for checkout, source in checkouts:
                for database in kinds:
                    report = load_for(arguments, source, database)
                    print(summary(report), end="\n\n", flush=True)
                    reports[checkout, database].append(report)
                    correct = correct and report.correct
    tables = []
    if len(kinds) > 1:
        tables += [
            f"{checkout}:\n" + compare({database: reports[checkout, database] for database in kinds})
            for checkout, _ in checkouts
        ]
    if len(checkouts) > 1:
        tables += [
            (f"{database}:\n" if len(kinds) > 1 else "")
            + compare({checkout: reports[checkout, database] for checkout, _ in checkouts})
            for database in kinds
        ]
    print("\n\n".join(tables))
    return 0 if correct else 1


if __name__ == "__main__":
    sys.exit(main())
