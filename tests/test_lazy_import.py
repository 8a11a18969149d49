"""A Connect-only app loads only the Connect core: every public name is imported on first use.

Each check runs in a fresh interpreter (this test process has imported everything)
and reads `sys.modules` there: after `import fastapi_connect_auth`, and after a
Connect-only app (`ConnectAuth`, `ConnectRequest`, `ConnectInstall`,
`ConnectLifecycle`, `install(app)`) has been built, started and has verified a
webhook signed with HS256 (the token made here with the standard library).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NEVER_IN_A_CONNECT_APP = (
    "fastapi_connect_auth._forge",
    "fastapi_connect_auth._outbound",
    "fastapi_connect_auth.stores",
    "fastapi_connect_auth._telemetry",
    "fastapi_connect_auth._cli",
    "fastapi_connect_auth._explain",
    "fastapi_connect_auth.testing",
    "fastapi_connect_auth._routers",
    "fastapi_connect_auth._redelivery",
    "cryptography",  # RS256: loaded at the first signed install
    "jwt",
)  # not Click: the CLI's own module is checked above, and httpx2 2.0 imports Click itself when installed

CONNECT_APP = """
import asyncio, base64, hashlib, hmac, json, sys, time
from typing import Annotated, Any

from fastapi import Depends, FastAPI

from fastapi_connect_auth import (
    ConnectAuth, ConnectInstall, ConnectLifecycle, ConnectRequest, Credentials, VerifiedInstallation,
    VerifiedLifecycle, VerifiedRequest,
)

SECRET = "lazy-import-shared-secret-0123456789abcdef"
CLIENT_KEY = "jira:4b1c2d3e-5f60-4718-9a0b-1c2d3e4f5a6b"


async def load(client_key: str) -> Credentials[str] | None:
    return Credentials(shared_secret=SECRET, stored_entity="tenant") if client_key == CLIENT_KEY else None


connect = ConnectAuth(base_url="https://lazy.example.com", credentials_loader=load)
app = FastAPI(lifespan=connect.lifespan)
connect.install(app)


@app.post("/installed")
async def installed(call: Annotated[VerifiedInstallation[Any], Depends(ConnectInstall())]) -> None: ...


@app.post("/uninstalled")
async def uninstalled(call: Annotated[VerifiedLifecycle[Any], Depends(ConnectLifecycle("uninstalled"))]) -> None: ...


@app.post("/webhook")
async def webhook(call: Annotated[VerifiedRequest[str], Depends(ConnectRequest())]) -> dict[str, str]:
    return {"tenant": call.stored_entity or ""}


def segment(value: dict[str, Any]) -> bytes:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")


def token() -> str:
    now = int(time.time())
    qsh = hashlib.sha256(b"POST&/webhook&").hexdigest()
    claims = {"iss": CLIENT_KEY, "iat": now, "exp": now + 60, "qsh": qsh}
    signing_input = segment({"alg": "HS256", "typ": "JWT"}) + b"." + segment(claims)
    signature = base64.urlsafe_b64encode(hmac.digest(SECRET.encode(), signing_input, "sha256")).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


async def main() -> list[Any]:
    answers: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        answers.append(message.get("status", message.get("body")))

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "https",
        "path": "/webhook", "raw_path": b"/webhook", "root_path": "", "query_string": b"",
        "headers": [(b"host", b"lazy.example.com"), (b"authorization", b"JWT " + token().encode())],
        "client": ("127.0.0.1", 50000), "server": ("lazy.example.com", 443), "state": {},
    }
    async with connect.lifespan(app):
        await app(scope, receive, send)
    return [answer.decode() if isinstance(answer, bytes) else answer for answer in answers]


answers = asyncio.run(main())
print(json.dumps({"answers": answers, "modules": sorted(sys.modules)}))
"""


def run_fresh(code: str) -> dict[str, list[object]]:
    result = subprocess.run(  # noqa: S603 - this interpreter, a fixed script
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True
    )
    loaded: dict[str, list[object]] = json.loads(result.stdout.splitlines()[-1])
    return loaded


def imported(modules: list[object], prefix: str) -> list[object]:
    return [name for name in modules if name == prefix or str(name).startswith(prefix + ".")]


def test_importing_the_package_imports_nothing_else() -> None:
    loaded = run_fresh(
        "import json, sys\nimport fastapi_connect_auth\nprint(json.dumps({'modules': sorted(sys.modules)}))"
    )

    ours = imported(loaded["modules"], "fastapi_connect_auth")
    assert ours == ["fastapi_connect_auth"]
    assert imported(loaded["modules"], "fastapi") == []
    assert imported(loaded["modules"], "pydantic") == []


def test_a_connect_only_app_never_loads_forge_outbound_stores_telemetry_cli_or_kit() -> None:
    loaded = run_fresh(CONNECT_APP)

    assert loaded["answers"] == [200, '{"tenant":"tenant"}']  # the webhook was verified
    for prefix in NEVER_IN_A_CONNECT_APP:
        assert imported(loaded["modules"], prefix) == [], prefix
    assert "fastapi_connect_auth._connect._dependencies" in loaded["modules"]


def test_a_forge_name_loads_the_forge_modules_on_first_use() -> None:
    loaded = run_fresh(
        "import json, sys\nimport fastapi_connect_auth\nfastapi_connect_auth.ForgeRequest\n"
        "print(json.dumps({'modules': sorted(sys.modules)}))"
    )

    assert "fastapi_connect_auth._forge._dependencies" in loaded["modules"]
    assert imported(loaded["modules"], "fastapi_connect_auth._outbound") == []
    assert imported(loaded["modules"], "fastapi_connect_auth.stores") == []
