"""Benchmarks of request verification, printed side by side in one run.

(a)  one full `verify_request` (HS256, computed QSH, in-memory loader) against one
     plain `jwt.decode(token, secret, algorithms=["HS256"])`: target ratio <= 0.40;
(a') a naive FastAPI + PyJWT verification (decode unverified for `iss`, decode
     verified, compute the QSH) against the same `jwt.decode`, for context;
(c)  one Forge Invocation Token verification (`ForgeAuth.verify_invocation`, key
     cached) against the RSA signature check alone (`RSAPublicKey.verify` of the
     same signing input, the floor) and one plain `jwt.decode(token, key,
     algorithms=["RS256"], audience=...)` of the same token: target at most the
     RSA check + 10 us (every other check must cost almost nothing);
(b)  requests per second of `POST /webhook` (`Depends(ConnectRequest())`) against
     its unauthenticated twin `POST /webhook-open` in the same uvicorn app under a
     loopback load, under both servers side by side: uvicorn with uvloop and
     httptools (`uvicorn[standard]`, what production runs: target ratio >= 0.80,
     the headline) and with asyncio and h11 (pure Python: target >= 0.75);
(b') the same for a no-op `Request` dependency (FastAPI's floor) and a naive
     FastAPI + PyJWT dependency, for context, and the authenticated route against
     the floor's (by requests/s and by server CPU): what the library itself costs.

Measurements alternate in rounds and report medians, so drift (CPU frequency,
other load) hits both sides alike. Load comes from `wrk` when it is installed,
else from a Python keep-alive client in a separate process. Loopback only; the
server is started here and killed at the end.

    .venv/bin/python benchmarks/run.py            # or: make bench
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import jwt  # noqa: E402
from app import BASE_URL, BODY, QUERY, SECRET, connect, naive_verify, webhook_token  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15  # noqa: E402
from cryptography.hazmat.primitives.hashes import SHA256  # noqa: E402
from jwt.utils import base64url_decode  # noqa: E402
from load import cpu_seconds, read_response  # noqa: E402

from fastapi_connect_auth import ForgeAuth, RequestTarget  # noqa: E402
from fastapi_connect_auth.testing import FakeForge  # noqa: E402

HOST = "127.0.0.1"
TARGET_A = 0.40
TARGET_C_OVER_RSA = 10e-6
FORGE_APP = "ari:cloud:ecosystem::app/6c9a4a8f-27c5-4b7e-8f5e-3b9f2d0c1a77"
SERVERS = {
    "uvloop+httptools": ("--loop", "uvloop", "--http", "httptools"),
    "asyncio+h11": ("--loop", "asyncio", "--http", "h11"),
}
"""uvicorn's production stack (`uvicorn[standard]`) first: its ratio is the headline."""
TARGETS_B = {"uvloop+httptools": 0.80, "asyncio+h11": 0.75}
ROUTES = {"open": "/webhook-open", "floor": "/webhook-floor", "library": "/webhook", "naive": "/webhook-naive"}


# -- (a) one verification against one jwt.decode -----------------------------------------


async def _timed(run: Callable[[], Awaitable[None] | None]) -> float:
    """Seconds `run` takes (awaited when it is a coroutine), with the garbage collector off as `timeit` does."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        pending = run()
        if pending is not None:
            await pending
        return time.perf_counter() - start
    finally:
        gc.enable()


async def measure_verification(rounds: int, number: int) -> dict[str, list[float]]:
    """Per-call seconds of each contender, `number` calls per round, in rotating order."""
    token = webhook_token("/webhook")
    target = RequestTarget("POST", "/webhook", QUERY)
    url = f"{BASE_URL}/webhook?{QUERY}"
    verify = connect.verify_request

    # Each contender must succeed on the token before it is timed.
    assert (await verify(token, target, qsh="computed")).account_id
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["iss"]
    assert naive_verify(token, "POST", url)["iss"]

    async def library() -> None:
        for _ in range(number):
            await verify(token, target, qsh="computed")

    def plain_decode() -> None:
        for _ in range(number):
            jwt.decode(token, SECRET, algorithms=["HS256"])

    def naive() -> None:
        for _ in range(number):
            naive_verify(token, "POST", url)

    contenders: dict[str, Callable[[], Awaitable[None] | None]] = {
        "library": library,
        "jwt.decode": plain_decode,
        "naive": naive,
    }
    results: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_index in range(rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            results[name].append(await _timed(contenders[name]) / number)
    return results


# -- (c) one Forge Invocation Token verification against one jwt.decode RS256 ----------------


class _CachedKey:
    """A key provider whose key is already cached: what `JwksKeyProvider` is after its first fetch."""

    def __init__(self, key: Any) -> None:
        self.key = key

    async def get_signing_key(self, kid: str, jwks_url: str) -> Any:
        return self.key


async def measure_forge(rounds: int, number: int) -> dict[str, list[float]]:
    """Per-call seconds of `ForgeAuth.verify_invocation`, of the RSA check alone and of a plain RS256 `jwt.decode`.

    A fresh FIT per call, as a server sees them (each its own `jti` and times), made before timing.
    """
    forge = FakeForge(app_id=FORGE_APP)
    key = forge.signing_keys[forge.kid].public_key()
    # FITs live 25 s; these are minted ahead for the whole run, so they may live longer.
    config = ForgeAuth(app_id=FORGE_APP, key_provider=_CachedKey(key), max_token_lifetime=7200)
    tokens = [forge.mint_fit("event", exp=int(time.time()) + 3600) for _ in range(number)]
    parts = [token.encode().rsplit(b".", 1) for token in tokens]
    signed = [(signing_input, base64url_decode(signature)) for signing_input, signature in parts]
    verify = config.verify_invocation
    assert (await verify(tokens[0])).installation_id == forge.installation_id
    assert jwt.decode(tokens[0], key, algorithms=["RS256"], audience=forge.app_id)["jti"]

    async def library() -> None:
        for token in tokens:
            await verify(token)

    def rsa_alone() -> None:
        for signing_input, signature in signed:
            key.verify(signature, signing_input, PKCS1v15(), SHA256())

    def plain_decode() -> None:
        for token in tokens:
            jwt.decode(token, key, algorithms=["RS256"], audience=forge.app_id)

    contenders: dict[str, Callable[[], Awaitable[None] | None]] = {
        "library": library,
        "RSAPublicKey.verify": rsa_alone,
        "jwt.decode": plain_decode,
    }
    results: dict[str, list[float]] = {name: [] for name in contenders}
    for round_index in range(rounds):
        order = list(contenders) if round_index % 2 == 0 else list(reversed(contenders))
        for name in order:
            results[name].append(await _timed(contenders[name]) / number)
    return results


# -- (b) loopback load -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def benchmark_server(port: int, options: Sequence[str]) -> Iterator[subprocess.Popen[bytes]]:
    """uvicorn serving `app:app` with `options` (its loop and HTTP parser), 1 worker, quiet; killed on exit."""
    command = [sys.executable, "-m", "uvicorn", "app:app", "--app-dir", str(HERE), "--host", HOST, "--port", str(port)]
    command += ["--workers", "1", "--log-level", "warning", "--no-access-log", *options]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
        try:
            deadline = time.monotonic() + 30
            while True:
                if server.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"the benchmark server exited:\n{log.read().decode(errors='replace')}")
                with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("the benchmark server did not start within 30 s")
                time.sleep(0.1)
            yield server
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def probe(port: int, path: str, token: str | None) -> int:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"JWT {token}"} if token else {})
    try:
        connection.request("POST", path, BODY, headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def check_routes(port: int, tokens: dict[str, str]) -> None:
    """Every route answers 200 with its token, and the protected ones 401 without: we measure real checks."""
    for path, token in tokens.items():
        status = probe(port, f"{path}?{QUERY}", token)
        if status != 200:
            raise RuntimeError(f"POST {path} answered {status} with a valid token")
    for path in ("/webhook", "/webhook-naive"):
        if probe(port, f"{path}?{QUERY}", None) != 401:
            raise RuntimeError(f"POST {path} did not refuse a request without a token")
    if probe(port, f"/webhook?{QUERY}", tokens["/webhook-naive"]) != 401:
        raise RuntimeError("POST /webhook accepted a token whose QSH is for another path")


class WrkLoad:
    name = "wrk"

    def __init__(self, executable: str, connections: int, workdir: Path) -> None:
        self.executable = executable
        self.connections = connections
        self.workdir = workdir

    def describe(self) -> str:
        return f"wrk -t1 -c{self.connections} -d<seconds>s -s <POST script with 'Authorization: JWT <token>'>"

    def run(self, url: str, token: str, seconds: float) -> tuple[float, int]:
        """Requests per second, and how many requests were answered."""
        script = self.workdir / "post.lua"
        script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = [[{BODY.decode()}]]\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["Authorization"] = "JWT {token}"\n'
        )
        command = [self.executable, "-t1", f"-c{self.connections}", f"-d{max(1, round(seconds))}s", "-s", str(script)]
        output = subprocess.run(  # noqa: S603
            [*command, url], capture_output=True, text=True, check=True, timeout=seconds + 30
        )
        text = output.stdout
        if "Non-2xx or 3xx responses" in text or "Socket errors" in text:
            raise RuntimeError(f"wrk saw failed requests on {url}:\n{text}")
        match = re.search(r"Requests/sec:\s+([\d.]+)", text)
        count = re.search(r"(\d+) requests in", text)
        if match is None or count is None:
            raise RuntimeError(f"unexpected wrk output:\n{text}")
        return float(match.group(1)), int(count.group(1))


class PythonLoad:
    """A keep-alive HTTP/1.1 client on asyncio streams, run in its own process."""

    name = "python"

    def __init__(self, connections: int) -> None:
        self.connections = connections

    def describe(self) -> str:
        return f"python keep-alive client ({self.connections} connections, separate process; wrk not found)"

    def run(self, url: str, token: str, seconds: float) -> tuple[float, int]:
        """Requests per second, and how many requests were answered."""
        command = [sys.executable, __file__, "--load-client", url, str(seconds), str(self.connections)]
        output = subprocess.run(  # noqa: S603
            command, input=token, capture_output=True, text=True, check=True, timeout=seconds + 30
        ).stdout
        result = json.loads(output)
        if result["failed"]:
            raise RuntimeError(f"{result['failed']} requests failed on {url}")
        return float(result["ok"]) / float(result["seconds"]), int(result["ok"])


async def _client_connection(port: int, request: bytes, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            status, _ = await read_response(reader)
            counts[0 if 200 <= status < 300 else 1] += 1
    finally:
        writer.close()


def load_client_main(url: str, seconds: float, connections: int, token: str) -> None:
    """Entry point of the Python load process: prints `{"ok", "failed", "seconds"}`."""
    rest = url.split("://", 1)[1]
    authority, _, path = rest.partition("/")
    port = int(authority.rpartition(":")[2])
    request = (
        f"POST /{path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n"
        f"Authorization: JWT {token}\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY
    counts = [0, 0]

    async def main() -> float:
        start = time.perf_counter()
        deadline = start + seconds
        await asyncio.gather(*(_client_connection(port, request, deadline, counts) for _ in range(connections)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    print(json.dumps({"ok": counts[0], "failed": counts[1], "seconds": elapsed}))


Measures = dict[str, dict[str, list[float]]]
"""server -> route -> one figure per round."""


def measure_load(rounds: int, seconds: float, connections: int) -> tuple[str, Measures, Measures]:
    """RPS, and the server's CPU microseconds per request, of each route under each server, in interleaved rounds.

    Both servers are up at once. Each round visits every server and every route
    once, in an order that rotates from round to round, so drift (other load on
    the machine) hits all alike. The CPU the server process used per request does
    not depend on how much CPU other processes left it, so its ratios stay
    readable on a busy machine where requests per second swing from run to run.
    """
    tokens = {path: webhook_token(path) for path in ("/webhook", "/webhook-naive")}
    # The open and floor routes get the same header bytes, so every request is the same size.
    tokens["/webhook-open"] = tokens["/webhook-floor"] = tokens["/webhook"]
    with tempfile.TemporaryDirectory() as workdir, contextlib.ExitStack() as servers:
        executable = shutil.which("wrk")
        load: WrkLoad | PythonLoad = (
            WrkLoad(executable, connections, Path(workdir)) if executable else PythonLoad(connections)
        )
        ports = {name: free_port() for name in SERVERS}
        pids = {}
        for name, options in SERVERS.items():
            pids[name] = servers.enter_context(benchmark_server(ports[name], options)).pid
            check_routes(ports[name], {path: tokens[path] for path in ROUTES.values()})
        results: Measures = {name: {route: [] for route in ROUTES} for name in SERVERS}
        cpu: Measures = {name: {route: [] for route in ROUTES} for name in SERVERS}
        runs = [(server, route) for server in SERVERS for route in ROUTES]
        for server, route in runs:  # warm-up
            load.run(f"http://{HOST}:{ports[server]}{ROUTES[route]}?{QUERY}", tokens[ROUTES[route]], 1)
        for round_index in range(rounds):
            shift = round_index % len(runs)
            for server, route in runs[shift:] + runs[:shift]:
                path = ROUTES[route]
                used = cpu_seconds(pids[server])
                rps, count = load.run(f"http://{HOST}:{ports[server]}{path}?{QUERY}", tokens[path], seconds)
                results[server][route].append(rps)
                cpu[server][route].append((cpu_seconds(pids[server]) - used) / count * 1e6)
        return load.describe(), results, cpu


# -- report ----------------------------------------------------------------------------


def verdict(ratio: float, target: float, at_most: bool) -> str:
    ok = ratio <= target if at_most else ratio >= target
    return f"(target {'<=' if at_most else '>='} {target:.2f}: {'PASS' if ok else 'FAIL'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of (a) (default 7)")
    parser.add_argument("--number", type=int, default=20_000, help="calls per contender per round of (a)")
    parser.add_argument("--load-rounds", type=int, default=5, help="interleaved rounds of (b) (default 5)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per route and server per round of (b)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections of (b)")
    parser.add_argument("--skip-load", action="store_true", help="run (a) only")
    parser.add_argument("--load-client", nargs=3, metavar=("URL", "SECONDS", "CONNECTIONS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_client:
        url, seconds, connections = args.load_client
        load_client_main(url, float(seconds), int(connections), sys.stdin.read().strip())
        return

    median = statistics.median
    print(
        f"fastapi-connect-auth benchmarks: Python {platform.python_version()}, PyJWT {version('PyJWT')}, "
        f"pydantic {version('pydantic')}, FastAPI {version('fastapi')}, uvicorn {version('uvicorn')}, "
        f"nproc {os.cpu_count()}"
    )
    print("command: .venv/bin/python benchmarks/run.py " + " ".join(sys.argv[1:]))
    print()

    times = asyncio.run(measure_verification(args.rounds, args.number))
    decode, library, naive = median(times["jwt.decode"]), median(times["library"]), median(times["naive"])
    ratio_a = library / decode
    print(f"(a) one request verification vs one jwt.decode ({args.rounds} interleaved rounds x {args.number} calls)")
    print(f"    jwt.decode(token, secret, algorithms=['HS256'])        {decode * 1e6:8.2f} us")
    print(f"    await connect.verify_request(..., qsh='computed')      {library * 1e6:8.2f} us")
    print(
        f"    ratio verify_request / jwt.decode                      {ratio_a:8.2f}  {verdict(ratio_a, TARGET_A, True)}"
    )
    print(f"(a') naive FastAPI+PyJWT verification (2 decodes + QSH)    {naive * 1e6:8.2f} us")
    print(f"    ratio naive / jwt.decode                               {naive / decode:8.2f}  (context)")
    print()
    forge_times = asyncio.run(measure_forge(args.rounds, max(1, args.number // 4)))
    rsa, rs256, fit = (median(forge_times[name]) for name in ("RSAPublicKey.verify", "jwt.decode", "library"))
    over = fit - rsa
    verdict_c = "PASS" if over <= TARGET_C_OVER_RSA else "MISS"
    print(
        f"(c) one FIT verification vs the RSA check alone and one jwt.decode RS256 "
        f"({args.rounds} interleaved rounds x {max(1, args.number // 4)} fresh FITs)"
    )
    print(f"    key.verify(signature, signing_input, PKCS1v15(), SHA256())  {rsa * 1e6:8.2f} us  (the floor)")
    print(f"    await forge.verify_invocation(token)  (key cached)     {fit * 1e6:8.2f} us")
    print(f"    jwt.decode(token, key, algorithms=['RS256'], audience=...) {rs256 * 1e6:8.2f} us")
    print(
        f"    verify_invocation - RSA check                          {over * 1e6:8.2f} us  "
        f"(target <= {TARGET_C_OVER_RSA * 1e6:g} us: {verdict_c}; per round "
        + ", ".join(
            f"{(lib - floor) * 1e6:.1f}"
            for lib, floor in zip(forge_times["library"], forge_times["RSAPublicKey.verify"], strict=True)
        )
        + ")"
    )
    print(f"    ratio verify_invocation / jwt.decode                   {fit / rs256:8.2f}  (context)")
    print()
    if args.skip_load:
        return

    described, by_server, cpu_by_server = measure_load(args.load_rounds, args.seconds, args.connections)
    print(
        f"(b) loopback load, uvicorn 1 worker, both servers up side by side, {args.load_rounds} interleaved rounds "
        f"x {args.seconds:g} s per route and server, median requests/s"
    )
    print(f"    load: {described}")
    headline: list[str] = []
    for server, rps in by_server.items():
        report_server(server, rps, cpu_by_server[server], headline)
    print()
    print("headline: " + "; ".join(headline))


def report_server(server: str, rps: dict[str, list[float]], cpu: dict[str, list[float]], headline: list[str]) -> None:
    median = statistics.median
    open_rps, floor_rps, library_rps, naive_rps = (median(rps[route]) for route in ROUTES)
    ratio, target = library_rps / open_rps, TARGETS_B[server]
    print(f"  uvicorn {' '.join(SERVERS[server])}  ({server})")
    print(f"    POST /webhook-open   (no authentication)              {open_rps:10.0f} rps")
    print(f"    POST /webhook-floor  (no-op Request dependency)       {floor_rps:10.0f} rps")
    print(f"    POST /webhook        (Depends(ConnectRequest()))      {library_rps:10.0f} rps")
    print(f"    ratio authenticated / open                            {ratio:10.2f}  {verdict(ratio, target, False)}")
    print(f"    ratio floor / open                                    {floor_rps / open_rps:10.2f}  (context)")
    print(f"    ratio authenticated / floor                           {library_rps / floor_rps:10.2f}  (context)")
    print(f"(b') POST /webhook-naive (FastAPI+PyJWT dependency)       {naive_rps:10.0f} rps")
    print(f"    ratio naive / open                                    {naive_rps / open_rps:10.2f}  (context)")
    for route, values in rps.items():
        print(f"    rounds {route:8s} " + ", ".join(f"{value:.0f}" for value in values))
    paired = [auth / base for auth, base in zip(rps["library"], rps["open"], strict=True)]
    print(f"    per-round ratio authenticated / open: {', '.join(f'{value:.2f}' for value in paired)}")
    extra = 1e6 / library_rps - 1e6 / open_rps
    floor = 1e6 / floor_rps - 1e6 / open_rps
    print(
        f"    cost per authenticated request over an open one: {extra:.1f} us, of which FastAPI's floor {floor:.1f} us"
    )
    cpu_open, cpu_floor, cpu_library, cpu_naive = (median(cpu[route]) for route in ROUTES)
    print(
        f"    server CPU per request: open {cpu_open:.1f} us, floor {cpu_floor:.1f} us, "
        f"authenticated {cpu_library:.1f} us, naive {cpu_naive:.1f} us"
    )
    by_cpu = [base / auth for base, auth in zip(cpu["open"], cpu["library"], strict=True)]
    ratio_cpu = cpu_open / cpu_library
    print(
        f"    ratio by CPU, open / authenticated                    {ratio_cpu:10.2f}  {verdict(ratio_cpu, target, False)}"
    )
    print(f"    per-round ratio by CPU: {', '.join(f'{value:.2f}' for value in by_cpu)}")
    over_floor = [auth / base for auth, base in zip(rps["library"], rps["floor"], strict=True)]
    over_floor_cpu = [base / auth for base, auth in zip(cpu["floor"], cpu["library"], strict=True)]
    print(
        f"    ratio authenticated / floor: {library_rps / floor_rps:.2f} by requests/s "
        f"(rounds {', '.join(f'{value:.2f}' for value in over_floor)}), {cpu_floor / cpu_library:.2f} by CPU "
        f"(rounds {', '.join(f'{value:.2f}' for value in over_floor_cpu)})"
    )
    headline.append(
        f"{server} {ratio:.2f} by requests/s (rounds {min(paired):.2f}-{max(paired):.2f}), "
        f"{ratio_cpu:.2f} by server CPU (rounds {min(by_cpu):.2f}-{max(by_cpu):.2f}), target {target:.2f}, "
        f"{library_rps / floor_rps:.2f} of the no-op dependency's route ({cpu_floor / cpu_library:.2f} by CPU)"
    )


if __name__ == "__main__":
    main()
