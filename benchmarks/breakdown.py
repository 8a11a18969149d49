"""Where `ConnectRequest`'s microseconds over FastAPI's no-op dependency go: its steps added one at a time.

The same in-process harness as `floor.py` (one one-route app per variant, the
benchmark's webhook, interleaved rounds, fastest round), with dependencies that
each do one more of `ConnectRequest`'s steps than the one before, in its order:

* `floor`: nothing (`floor.py`'s no-op `SecurityBase` dependency);
* `token`: reads the token (`extract_token`: the `Authorization` header from the scope);
* `target`: and the request target (`request_target`: method, raw path, query; memoised);
* `config`: and finds the app's `ConnectAuth` (`connect_auth`);
* `library`: and verifies (`ConnectRequest()` itself: parse, claims, loader, HS256, QSH, result);
* `body_read`: and reads the body (`read_kept`: streamed under the cap and the deadline);
* `body_parse`: and parses it as strict JSON (`loads`);
* `body`: and validates it (`ConnectRequest(body=Webhook)` itself).

Each line's difference from the line before is that step's cost inside a request;
`verify_request` in a tight loop (`run.py`'s (a)) is printed beside the `library`
step for comparison.

`--forge`: `ForgeRequest`'s steps the same way, on `floor.py`'s FIT:

* `forge_token`: the headers (`forge_headers`: `Authorization`, OAuth tokens, trace ids) and the app's `ForgeAuth`;
* `forge_split`: and the token split (base64url of header, payload and signature) and its `kid` checked;
* `forge_claims`: and the claims validated into `ForgeClaims`;
* `forge_checks`: and the times, `iat`, environment, issuer and audience, installation, API host and JWKS URL;
* `forge_key`: and the signing key from the provider's cache;
* `forge_rsa`: and the RS256 signature;
* `forge`: `ForgeRequest()` itself (the same, plus the `ForgeInvocation` and the flow's own code);
* `forge_body`: `ForgeRequest(body=Webhook)`.

`--rsa`: whether the RS256 check and the body cost more together than apart, inside a request:
* `forge_rsa_alone`: the RS256 check alone (`floor.py`'s `rsa`: the benchmark FIT's signature, its cached key);
* `forge_body_alone`: `ForgeRequest(body=Webhook)`'s body path alone (`read_kept`, then `validate_body`);
* `forge_rsa_body`: the check, then the body, as `ForgeRequest(body=Webhook)` runs them;
* `forge_body_rsa`: the body, then the check (an experiment only: the library never reads a body first);
and the same check in a tight loop after the rounds, as `floor.py` counts it (the bar's "RSA check alone").

`--clock cpu`: process CPU time instead of the wall clock (see `floor.py`).

    .venv/bin/python benchmarks/breakdown.py [--rounds 9 --number 5000] [--forge | --rsa] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import floor  # noqa: E402
from app import QUERY, connect, handle, webhook_token  # noqa: E402
from fastapi import Depends, FastAPI, Request  # noqa: E402
from fastapi.security.base import SecurityBase  # noqa: E402
from floor import PATH, Webhook, forge_auth, measure, rsa_check, run_loop, time_check, variant_app, variant_scopes  # noqa: E402
from pydantic import TypeAdapter  # noqa: E402

from fastapi_connect_auth import ConnectRequest, ForgeAuth, RequestTarget  # noqa: E402
from fastapi_connect_auth._bodies import read_kept  # noqa: E402
from fastapi_connect_auth._connect._dependencies import request_target  # noqa: E402
from fastapi_connect_auth._forge._flow import forge_headers  # noqa: E402
from fastapi_connect_auth._json import loads, validate_body  # noqa: E402
from fastapi_connect_auth._tokens import check_kid, check_times, split_token, verify_rs256  # noqa: E402

STEPS = ("token", "target", "config", "body_read", "body_parse")
ORDER = ("floor", "token", "target", "config", "library", "body_read", "body_parse", "body")
FORGE_STEPS = ("forge_token", "forge_split", "forge_claims", "forge_checks", "forge_key", "forge_rsa")
FORGE_ORDER = ("floor", *FORGE_STEPS, "forge", "forge_body")
RSA_ORDER = ("floor", "forge_rsa_alone", "forge_body_alone", "forge_rsa_body", "forge_body_rsa")
_WEBHOOK = TypeAdapter(Webhook)
_REQUEST = ConnectRequest()


class Steps(SecurityBase):
    """`ConnectRequest`'s steps up to `last`, each as the dependency runs it."""

    def __init__(self, last: str) -> None:
        self.model = _REQUEST.model
        self.scheme_name = f"Steps-{last}"
        self.last = last

    async def __call__(self, request: Request) -> None:
        token = _REQUEST.extract_token(request)
        if self.last == "token":
            return
        target = request_target(request)
        if self.last == "target":
            return
        config = _REQUEST.connect_auth(request)
        if self.last == "config":
            return
        await config.verify_request(token, target, qsh="computed", scope=request.scope)
        raw = await read_kept(request, config.max_body_size, time_limit=config.body_timeout)
        if self.last == "body_parse":
            loads(raw)


class ForgeSteps(SecurityBase):
    """`ForgeRequest`'s steps up to `last`, each as `verify_invocation` runs it."""

    def __init__(self, last: str) -> None:
        self.model = _REQUEST.model
        self.scheme_name = f"ForgeSteps-{last}"
        self.last = last

    async def __call__(self, request: Request) -> None:
        headers = forge_headers(request.scope)
        token = headers.get("authorization", "").removeprefix("Bearer ")
        config = ForgeAuth.of(request)
        if self.last == "forge_token":
            return
        raw = split_token(token)
        kid = check_kid(raw.kid)
        if self.last == "forge_split":
            return
        claims = config._claims(raw)
        if self.last == "forge_claims":
            return
        check_times(claims, config.clock(), config.leeway)
        config._check_issued_at(claims)
        config._check_environment(claims)
        config._check_issuer_and_audience(claims)
        config._check_installation(claims)
        jwks_url = config._jwks_url(claims)
        if self.last == "forge_checks":
            return
        key = await config.key_provider.get_signing_key(kid, jwks_url)
        if self.last == "forge_key":
            return
        verify_rs256(raw.signing_input, raw.signature, key)


class RsaAndBody(SecurityBase):
    """The RS256 check alone, the body path alone, or both in the order `parts` names (`--rsa`)."""

    def __init__(self, parts: tuple[str, ...]) -> None:
        self.model = _REQUEST.model
        self.scheme_name = f"RsaAndBody-{'-'.join(parts)}"
        self.parts = parts

    async def __call__(self, request: Request) -> None:
        for part in self.parts:
            if part == "rsa":
                _RSA_CHECK[0]()
            else:
                validate_body(_WEBHOOK, await read_kept(request, 1 << 20))


_RSA_CHECK: list[Callable[[], None]] = []
"""The RS256 check (`floor.rsa_check`), made once the key is cached."""
_RSA_PARTS = {
    "forge_rsa_alone": ("rsa",),
    "forge_body_alone": ("body",),
    "forge_rsa_body": ("rsa", "body"),
    "forge_body_rsa": ("body", "rsa"),
}


def step_app(last: str) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    connect.install(app)
    steps: Steps | ForgeSteps | RsaAndBody = Steps(last)
    if last.startswith("forge"):
        forge_auth.install(app)
        steps = RsaAndBody(_RSA_PARTS[last]) if last in _RSA_PARTS else ForgeSteps(last)

    @app.post(PATH, dependencies=[Depends(steps)])  # not an annotation: `steps` is local, annotations are strings
    async def webhook() -> dict[str, str]:
        return handle()

    return app


async def tight_verify(number: int) -> float:
    """Microseconds per `verify_request` call in a loop, the same token and target."""
    token, target = webhook_token(PATH), RequestTarget("POST", PATH, QUERY)
    verify = connect.verify_request
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(number):
            await verify(token, target, qsh="computed")
        best = min(best, (time.perf_counter() - started) / number * 1e6)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--number", type=int, default=5000)
    parser.add_argument("--forge", action="store_true", help="ForgeRequest's steps instead of ConnectRequest's")
    parser.add_argument("--rsa", action="store_true", help="the RS256 check and the body, apart and together")
    parser.add_argument("--clock", choices=sorted(floor.CLOCKS), default="wall")
    args = parser.parse_args(argv)
    floor.clock = floor.CLOCKS[args.clock]
    if args.rsa:
        return rsa_and_body(args.rounds, args.number, args.clock)
    order = FORGE_ORDER if args.forge else ORDER
    apps = {kind: variant_app(kind) for kind in ("floor", "library", "body", "forge", "forge_body")}
    apps |= {step: step_app(step) for step in (*STEPS, *FORGE_STEPS)}

    async def run() -> tuple[dict[str, list[float]], float]:
        return await measure(args.rounds, args.number, {kind: apps[kind] for kind in order}), await tight_verify(
            args.number
        )

    times, tight = run_loop(run())
    best: dict[str, Any] = {kind: min(values) for kind, values in times.items()}
    print(f"clock: {args.clock}; fastest of {args.rounds} rounds x {args.number} calls, microseconds per request")
    previous = None
    for kind in order:
        step = "" if previous is None else f"{best[kind] - best[previous]:+6.1f} us"
        note = f"   (verify_request alone, in a loop: {tight:.1f} us)" if kind == "library" else ""
        print(f"    {kind:11} {best[kind]:7.1f} us  {step}{note}")
        previous = kind
    if args.forge:
        print(f"ForgeRequest() over the no-op dependency: {best['forge'] - best['floor']:.1f} us")
    else:
        print(f"ConnectRequest over the no-op dependency: {best['library'] - best['floor']:.1f} us")
    return 0


def rsa_and_body(rounds: int, number: int, clock: str) -> int:
    """`--rsa`: the RS256 check and the body path inside a request, apart and together, and the check in a loop."""
    apps = {"floor": variant_app("floor")} | {kind: step_app(kind) for kind in _RSA_PARTS}

    async def run() -> tuple[dict[str, list[float]], list[float]]:
        _RSA_CHECK.append(await rsa_check(variant_scopes()["forge"]))
        times = await measure(rounds, number, apps)
        return times, [time_check(_RSA_CHECK[0], number) for _ in range(rounds)]

    times, loop = run_loop(run())
    best = {kind: min(values) - min(times["floor"]) for kind, values in times.items()}
    print(f"clock: {clock}; fastest of {rounds} rounds x {number} calls, microseconds over the no-op dependency")
    for kind in RSA_ORDER[1:]:
        print(f"    {kind:17} {best[kind]:+7.1f} us")
    print(f"the RS256 check in a loop: {min(loop):.1f} us")
    apart = best["forge_rsa_alone"] + best["forge_body_alone"]
    print(
        f"together minus apart: check then body {best['forge_rsa_body'] - apart:+.1f} us,"
        f" body then check {best['forge_body_rsa'] - apart:+.1f} us"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
