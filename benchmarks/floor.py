"""What FastAPI charges for any dependency, against what `ConnectRequest` costs: the ASGI app called in-process.

No server and no sockets, so none of their noise: each variant is a one-route app
of its own (route matching costs the same for all), called `--number` times in a
row with the same request, `POST /webhook?a=1&b=x+y` with the benchmark's token
and body, in `--rounds` interleaved rounds; the fastest round of each is reported.

* `open`: no dependency;
* `floor`: a no-op `SecurityBase` dependency that takes `Request`, as `ConnectRequest` is;
* `function`: a no-op `async def` dependency that takes `Request`;
* `library`: `Depends(ConnectRequest())`;
* `body`: `Depends(ConnectRequest(body=Webhook))`, the webhook's body read and validated after the token;
* `forge`: `Depends(ForgeRequest())` on a Forge product event (`Authorization: Bearer <FIT>`, RS256,
  the JWKS fetched once from the test kit's fake Forge and cached, as in production);
* `forge_body`: `Depends(ForgeRequest(body=Webhook))`, the same FIT and the webhook's body;
* `container`: `Depends(ForgeContainerRequest())` on a Forge Containers event (`x-forge-invocation-id`),
  its context fetched once from the test kit's fake sidecar and then cached, as in production.
* `rsa`: not a route: the FIT's RS256 signature check alone (`RSAPublicKey.verify` with its cached key, as
  `run.py`'s (c) times it), in the same rounds, for issue 29's bar: `forge_body - floor <= (body - floor + rsa) x 1.10`.

`open / floor` is the most any dependency can reach against the open route with
this FastAPI: (b) of `run.py` cannot be above it whatever the dependency does.
The closing line gives `library - floor`; the line above it gives `body`, `forge`, `forge_body` and `container`
the same way.

`--clock cpu` times with the process's CPU time instead of the wall clock: on a
machine shared with other work, a round no longer counts the time the process
waited for a core, only what it spent (cache effects of the neighbours remain).

    .venv/bin/python benchmarks/floor.py [--rounds 9 --number 5000] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any, TypeVar

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from app import BODY, QUERY, FloorDependency, connect, handle, webhook_token  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15  # noqa: E402
from cryptography.hazmat.primitives.hashes import SHA256  # noqa: E402
from fastapi import Depends, FastAPI, Request  # noqa: E402
from pydantic import BaseModel  # noqa: E402

from fastapi_connect_auth import (  # noqa: E402
    ConnectRequest,
    ForgeContainerInvocation,
    ForgeContainerRequest,
    ForgeInvocation,
    ForgeRequest,
    VerifiedRequest,
)
from fastapi_connect_auth._tokens import split_token  # noqa: E402
from fastapi_connect_auth.testing import FakeForge, FakeSidecar  # noqa: E402

PATH = "/webhook"
VARIANTS = ("open", "floor", "function", "library", "body", "forge", "forge_body", "container")
Message = MutableMapping[str, Any]
T = TypeVar("T")
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCKS["wall"]
"""What `time_calls` and `time_check` read (`--clock`)."""
FORGE = FakeForge()
forge_auth = FORGE.forge_auth(max_token_lifetime=3600.0)  # the run's one FIT lives an hour, Forge's 25 s
SIDECAR = FakeSidecar(FORGE)
containers = SIDECAR.containers(context_ttl=3600.0)  # the run's one invocation stays cached


class Webhook(BaseModel):
    """The benchmark's webhook body, as a route would declare it: `ConnectRequest(body=Webhook)`."""

    timestamp: int
    webhookEvent: str  # Jira's own field name
    issue: dict[str, str]


async def _no_op(request: Request) -> None:
    return None


def variant_app(kind: str) -> FastAPI:
    """A one-route app: the same handler behind the `kind` of dependency."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    connect.install(app)
    if kind == "open":

        @app.post(PATH)
        async def webhook_open() -> dict[str, str]:
            return handle()

    elif kind == "floor":

        @app.post(PATH)
        async def webhook_floor(call: Annotated[None, Depends(FloorDependency())]) -> dict[str, str]:
            return handle()

    elif kind == "function":

        @app.post(PATH)
        async def webhook_function(call: Annotated[None, Depends(_no_op)]) -> dict[str, str]:
            return handle()

    elif kind == "library":

        @app.post(PATH)
        async def webhook(call: Annotated[VerifiedRequest[Any], Depends(ConnectRequest())]) -> dict[str, str]:
            return handle()

    elif kind == "body":

        @app.post(PATH)
        async def webhook_body(
            call: Annotated[VerifiedRequest[Any], Depends(ConnectRequest(body=Webhook))],
        ) -> dict[str, str]:
            return handle()

    elif kind == "forge":
        forge_auth.install(app)

        @app.post(PATH)
        async def webhook_forge(call: Annotated[ForgeInvocation, Depends(ForgeRequest())]) -> dict[str, str]:
            return handle()

    elif kind == "container":
        containers.install(app)

        @app.post(PATH)
        async def webhook_container(
            call: Annotated[ForgeContainerInvocation, Depends(ForgeContainerRequest())],
        ) -> dict[str, str]:
            return handle()

    else:
        forge_auth.install(app)

        @app.post(PATH)
        async def webhook_forge_body(
            call: Annotated[ForgeInvocation, Depends(ForgeRequest(body=Webhook))],
        ) -> dict[str, str]:
            return handle()

    return app


def request_scope(token: str, scheme: str = "JWT") -> dict[str, Any]:
    """The ASGI scope uvicorn would build for the benchmark's webhook (`scheme` `Forge` sends the token as
    `x-forge-invocation-id`, as the Containers sidecar does)."""
    header = (b"x-forge-invocation-id", token.encode()) if scheme == "Forge" else None
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": QUERY.encode(),
        "headers": [
            (b"host", b"127.0.0.1"),
            header or (b"authorization", f"{scheme} {token}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def time_calls(app: FastAPI, scope: dict[str, Any], number: int) -> float:
    """Microseconds per call of the app on `scope`; every answer must be 200."""
    statuses: set[int] = set()

    async def receive() -> Message:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.add(message["status"])

    call: Callable[[], Awaitable[None]] = lambda: app(dict(scope), receive, send)  # noqa: E731
    started = clock()
    for _ in range(number):
        await call()
    elapsed = clock() - started
    if statuses != {200}:
        raise RuntimeError(f"unexpected answers {sorted(statuses)}: the route is not answering 200")
    return elapsed / number * 1e6


def variant_scopes() -> dict[str, dict[str, Any]]:
    """Each variant's request: the Connect webhook, or for `forge` the same request carrying a FIT instead."""
    connect_scope = request_scope(webhook_token(PATH))
    fit = FORGE.mint_fit("event", exp=int(time.time()) + 3600)  # alive for the whole run
    scopes = {kind: request_scope(fit, "Bearer") if kind.startswith("forge") else connect_scope for kind in VARIANTS}
    scopes["container"] = request_scope(SIDECAR.invocation("event"), "Forge")
    return scopes


async def rsa_check(scope: dict[str, Any]) -> Callable[[], None]:
    """The RS256 check of the FIT in `scope` alone, with the key `forge_auth` has cached (as a request makes it)."""
    authorization = dict(scope["headers"])[b"authorization"].decode()
    raw = split_token(authorization.removeprefix("Bearer "))
    key = await forge_auth.key_provider.get_signing_key(raw.kid or "", forge_auth.jwks_url)
    return lambda: key.verify(raw.signature, raw.signing_input, PKCS1v15(), SHA256())


def time_check(check: Callable[[], None], number: int) -> float:
    """Microseconds per call of `check`."""
    started = clock()
    for _ in range(number):
        check()
    return (clock() - started) / number * 1e6


async def measure(rounds: int, number: int, apps: dict[str, FastAPI] | None = None) -> dict[str, list[float]]:
    """Per-call times of every variant (or of `apps`, each sent the Connect webhook, or the FIT if its name
    starts with `forge`), in interleaved rounds
    (after a warm-up call of each); with the variants, the RSA check alone (`rsa`) in the same rounds."""
    with_rsa = apps is None
    apps = apps or {kind: variant_app(kind) for kind in VARIANTS}
    variants = variant_scopes()
    scopes = {kind: variants.get(kind, variants["forge" if kind.startswith("forge") else "library"]) for kind in apps}
    times: dict[str, list[float]] = {kind: [] for kind in apps}
    for kind, app in apps.items():
        await time_calls(app, scopes[kind], 100)  # the first call fetches the JWKS (`forge`), the context (`container`)
    check = await rsa_check(variants["forge"]) if with_rsa else None
    if check is not None:
        times["rsa"] = []
    gc.collect()
    gc.disable()  # as timeit does: collections land on whichever variant is running
    try:
        for _ in range(rounds):
            for kind, app in apps.items():
                times[kind].append(await time_calls(app, scopes[kind], number))
            if check is not None:
                times["rsa"].append(time_check(check, number))
    finally:
        gc.enable()
    return times


def report(times: dict[str, list[float]]) -> str:
    best = {kind: min(values) for kind, values in times.items()}
    lines = [
        f"FastAPI {version('fastapi')}, Starlette {version('starlette')}, pydantic {version('pydantic')}, "
        f"Python {sys.version.split()[0]}; fastest of {len(times['open'])} rounds, microseconds per request",
    ]
    for kind in VARIANTS:
        lines.append(f"    {kind:10} {best[kind]:7.1f} us   open / {kind:10} {best['open'] / best[kind]:.2f}")
    lines.append(
        f"over the no-op dependency: ConnectRequest(body=Webhook) {best['body'] - best['floor']:.1f} us, "
        f"ForgeRequest() {best['forge'] - best['floor']:.1f} us, "
        f"ForgeRequest(body=Webhook) {best['forge_body'] - best['floor']:.1f} us, "
        f"ForgeContainerRequest() (cached context) {best['container'] - best['floor']:.1f} us"
    )
    bar = best["body"] - best["floor"] + best["rsa"]
    lines.append(
        f"the RSA check alone {best['rsa']:.1f} us; ForgeRequest(body=Webhook) over the no-op dependency against "
        f"ConnectRequest(body=Webhook)'s plus the RSA check: {best['forge_body'] - best['floor']:.1f} / {bar:.1f} us "
        f"= {(best['forge_body'] - best['floor']) / bar:.2f} (target <= 1.10)"
    )
    lines.append(
        f"the most any dependency can reach: {best['open'] / best['floor']:.2f}; "
        f"ConnectRequest over the no-op dependency: {best['library'] - best['floor']:.1f} us"
    )
    return "\n".join(lines)


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` on uvloop, the loop uvicorn[standard] uses, when it is there; else on asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--number", type=int, default=5000)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    print(f"clock: {args.clock}")
    print(report(run_loop(measure(args.rounds, args.number))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
