"""The `explain` runs shown on docs/troubleshooting.md, regenerated here: the page shows what the command prints.

Each code's block sits between `<!-- explain CODE -->` and `<!-- /explain -->`. The
tokens are made with PyJWT at a fixed time and explained at that time (the command's
engine with its clock fixed, rendered by the command's own `report`), so the output
is the same on every run. After changing the command, rewrite the blocks with

    .venv/bin/python -m tests.test_troubleshooting_explain
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import jwt

from fastapi_connect_auth import AuthErrorCode
from fastapi_connect_auth._cli import report
from fastapi_connect_auth._explain import Request, explain
from tests._keyserver import rsa_key

PAGE = Path(__file__).resolve().parents[1] / "docs" / "troubleshooting.md"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
SECRET = "the-tenant-shared-secret-" + "x" * 24
BASE = "https://app.example.com"
KID = "prod/connect/2025-06/install-key.pem"
FORGE_KID = "forge-2025-06"
APP_UUID = "6c9a4a8f-27c5-4b7e-8f5e-3b9f2d0c1a77"
APP_ARI = f"ari:cloud:ecosystem::app/{APP_UUID}"
BLOCK = re.compile(r"<!-- explain (?P<code>[A-Z_]+) -->\n(?P<body>.*?)<!-- /explain -->\n", re.DOTALL)


def _qsh(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


def _hs256(claims: dict[str, Any], secret: str = SECRET, algorithm: str = "HS256") -> str:
    base = {"iss": "tenant-client-key", "iat": NOW - 5, "exp": NOW + 175}
    return jwt.encode({**base, **claims}, secret, algorithm=algorithm)


def _rs256(claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
    base = {"iss": "tenant-client-key", "iat": NOW - 5, "exp": NOW + 175, "aud": BASE}
    base["qsh"] = _qsh("POST&/uninstalled&")
    return jwt.encode(
        {**base, **claims}, rsa_key(), algorithm="RS256", headers={"kid": KID} if headers is None else headers
    )


def _fit(claims: dict[str, Any] | None = None, app: dict[str, Any] | None = None, kid: str = FORGE_KID) -> str:
    payload = {
        "iss": "forge/invocation-token",
        "aud": APP_ARI,
        "iat": NOW - 5,
        "nbf": NOW - 5,
        "exp": NOW + 20,
        "jti": "3f1c9a4e-6b2d-4e8f-9a7c-1d2e3f4a5b6c",
        "app": {
            "id": APP_ARI,
            "installationId": "ari:cloud:ecosystem::installation/2b6e1f4c-1111-4222-8333-944455556666",
            "apiBaseUrl": "https://api.atlassian.com/ex/jira/9d1f3c2b",
            "environment": {"type": "PRODUCTION", "id": "prod-env"},
            "module": {"type": "core:endpoint", "key": "remote-backend"},
            **(app or {}),
        },
        **(claims or {}),
    }
    return jwt.encode(payload, rsa_key(), algorithm="RS256", headers={"kid": kid})


JWKS = {
    KID: rsa_key().public_key(),
    FORGE_KID: rsa_key().public_key(),
}
"""The keys of the `jwks.json` the commands name, as `load_jwks` reads such a file."""

CONNECT = Request(token=None, method="GET", url=f"{BASE}/webhook", secret=SECRET, clock=lambda: NOW)
SIGNED = replace(CONNECT, method="POST", url=f"{BASE}/uninstalled", jwks=JWKS, secret=None)
FORGE = Request(
    token=None,
    method="POST",
    url="https://remote.example.com/forge/events",
    app_id=APP_UUID,
    jwks=JWKS,
    clock=lambda: NOW,
)

CASES: dict[AuthErrorCode, Request] = {
    AuthErrorCode.MISSING_JWT: CONNECT,
    AuthErrorCode.FAILED_TO_DECODE: replace(CONNECT, token="eyJhbGciOiJIUzI1NiJ9.not-json.c2ln"),
    AuthErrorCode.UNKNOWN_ISSUER: replace(CONNECT, token=_hs256({"iss": "t" * 300, "qsh": _qsh("GET&/webhook&")})),
    AuthErrorCode.WRONG_ISSUER: replace(FORGE, token=_fit({"iss": "my-own-signer"})),
    AuthErrorCode.WRONG_AUDIENCE: replace(SIGNED, token=_rs256({"aud": "https://old-tunnel.example.net"})),
    AuthErrorCode.MISSING_QSH: replace(CONNECT, token=_hs256({})),
    AuthErrorCode.INVALID_QSH: replace(
        CONNECT, url=f"{BASE}/api/webhook", token=_hs256({"qsh": _qsh("GET&/webhook&")})
    ),
    AuthErrorCode.INVALID_SIGNATURE: replace(
        CONNECT, token=_hs256({"qsh": _qsh("GET&/webhook&")}, secret="a-stale-shared-secret-" + "y" * 24)
    ),
    AuthErrorCode.TOKEN_EXPIRED: replace(
        CONNECT, token=_hs256({"qsh": _qsh("GET&/webhook&"), "iat": NOW - 780, "exp": NOW - 600})
    ),
    AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY: replace(SIGNED, token=_rs256({}, {"kid": "prod/connect/unknown.pem"})),
    AuthErrorCode.MISSING_KID: replace(SIGNED, token=_rs256({}, {})),
    AuthErrorCode.TOKEN_NOT_YET_VALID: replace(
        CONNECT, token=_hs256({"qsh": _qsh("GET&/webhook&"), "nbf": NOW + 300, "exp": NOW + 480})
    ),
    AuthErrorCode.INVALID_KID: replace(SIGNED, token=_rs256({}, {"kid": "../../etc/passwd"})),
    AuthErrorCode.INVALID_ALGORITHM: replace(
        CONNECT, token=_hs256({"qsh": _qsh("GET&/webhook&")}, secret=SECRET * 2, algorithm="HS512")
    ),
    AuthErrorCode.UNTRUSTED_API_HOST: replace(
        FORGE, token=_fit(app={"apiBaseUrl": "https://api.stg.atlassian.com/ex/jira/9d1f3c2b"})
    ),
    AuthErrorCode.INVALID_IC_LABEL: replace(FORGE, token=_fit({"icLabel": "Not a label!"})),
    AuthErrorCode.INSTALLATION_MISMATCH: replace(FORGE, token=_fit(app={"installation": {"id": "another"}})),
    AuthErrorCode.INVALID_TOKEN_LIFETIME: replace(FORGE, token=_fit({"exp": NOW + 86_400})),
}
"""One run per code the command reaches; the others concern a lifecycle body, which it does not take."""


def command(request: Request) -> str:
    """The command line a user types for `request` (the token as `$TOKEN`, the secret in `$TENANT_SECRET`)."""
    words = ["fastapi-connect-auth", "explain"]
    if request.token is not None:
        words.append('"$TOKEN"')
    words += ["--method", request.method, "--url", shlex.quote(request.url)]
    if request.secret is not None:
        words += ["--secret-env", "TENANT_SECRET"]
    if request.app_id is not None:
        words += ["--app-id", request.app_id]
    if request.jwks is not None:
        words += ["--jwks", "jwks.json"]
    return " ".join(words)


def block(request: Request) -> str:
    explanation = asyncio.run(explain(request))
    status = 0 if explanation.valid else 1
    output = click.unstyle(report(explanation, request.url))
    return f"```console\n$ {command(request)}\n{output}\n$ echo $?\n{status}\n```\n"


def rendered(page: str) -> str:
    """`page` with each explain block regenerated."""
    return BLOCK.sub(
        lambda match: (
            f"<!-- explain {match['code']} -->\n{block(CASES[AuthErrorCode(match['code'])])}<!-- /explain -->\n"
        ),
        page,
    )


def test_every_code_the_command_reaches_has_its_run_on_the_page() -> None:
    shown = {AuthErrorCode(match["code"]) for match in BLOCK.finditer(PAGE.read_text())}
    assert shown == set(CASES)


def test_each_run_on_the_page_is_what_the_command_prints() -> None:
    page = PAGE.read_text()
    assert rendered(page) == page, "run: .venv/bin/python -m tests.test_troubleshooting_explain"


def test_each_run_is_refused_with_its_code() -> None:
    for code, request in CASES.items():
        explanation = asyncio.run(explain(request))
        assert explanation.code is code, (code, explanation.code)
        assert SECRET not in block(request)
        if request.token:
            assert request.token not in block(request)


if __name__ == "__main__":
    PAGE.write_text(rendered(PAGE.read_text()))
    sys.exit(0)
