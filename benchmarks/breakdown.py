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

    .venv/bin/python benchmarks/breakdown.py [--rounds 9 --number 5000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from app import QUERY, connect, handle, webhook_token  # noqa: E402
from fastapi import Depends, FastAPI, Request  # noqa: E402
from fastapi.security.base import SecurityBase  # noqa: E402
from floor import PATH, measure, run_loop, variant_app  # noqa: E402

from fastapi_connect_auth import ConnectRequest, RequestTarget  # noqa: E402
from fastapi_connect_auth._bodies import read_kept  # noqa: E402
from fastapi_connect_auth._connect._dependencies import request_target  # noqa: E402
from fastapi_connect_auth._json import loads  # noqa: E402

STEPS = ("token", "target", "config", "body_read", "body_parse")
ORDER = ("floor", "token", "target", "config", "library", "body_read", "body_parse", "body")
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


def step_app(last: str) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    connect.install(app)
    steps = Steps(last)

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
    args = parser.parse_args(argv)
    apps = {kind: variant_app(kind) for kind in ("floor", "library", "body")}
    apps |= {step: step_app(step) for step in STEPS}

    async def run() -> tuple[dict[str, list[float]], float]:
        return await measure(args.rounds, args.number, {kind: apps[kind] for kind in ORDER}), await tight_verify(
            args.number
        )

    times, tight = run_loop(run())
    best: dict[str, Any] = {kind: min(values) for kind, values in times.items()}
    print(f"fastest of {args.rounds} rounds x {args.number} calls, microseconds per request")
    previous = None
    for kind in ORDER:
        step = "" if previous is None else f"{best[kind] - best[previous]:+6.1f} us"
        note = f"   (verify_request alone, in a loop: {tight:.1f} us)" if kind == "library" else ""
        print(f"    {kind:11} {best[kind]:7.1f} us  {step}{note}")
        previous = kind
    print(f"ConnectRequest over the no-op dependency: {best['library'] - best['floor']:.1f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
