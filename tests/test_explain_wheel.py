"""`fastapi-connect-auth explain` as users run it: the console script of the built wheel, in a fresh venv.

Integration test: the wheel is built with the standard tools and installed with uv
(cached, a second or two), first without the `cli` extra (the script must say how to
install it), then with it. The secret, the token and its signature never reach
stdout or stderr.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest

ROOT = Path(__file__).resolve().parents[1]
SECRET = "wheel-secret-" + "w" * 40


def run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed commands, built by these tests
        command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False, env=env
    )


def checked(*command: str | Path, cwd: Path) -> None:
    result = run(*command, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr


def token(canonical: str) -> str:
    now = int(time.time())
    claims = {"iss": "client-key", "iat": now, "exp": now + 120, "qsh": hashlib.sha256(canonical.encode()).hexdigest()}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_the_console_script_of_the_installed_wheel(tmp_path: Path) -> None:
    checked(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp_path / "dist", ROOT, cwd=ROOT)
    (wheel,) = (tmp_path / "dist").glob("fastapi_connect_auth-*.whl")
    venv = tmp_path / "venv"
    python, script = venv / "bin" / "python", venv / "bin" / "fastapi-connect-auth"
    checked(sys.executable, "-m", "uv", "venv", "--quiet", "--python", sys.executable, venv, cwd=tmp_path)
    checked(sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", python, wheel, cwd=tmp_path)

    good = token("GET&/webhook&a=1")
    args = ["explain", good, "--method", "GET", "--url", "https://app.example.com/webhook?a=1"]
    env = {**os.environ, "TENANT_SECRET": SECRET}
    missing = run(script, *args, "--secret-env", "TENANT_SECRET", cwd=tmp_path, env=env)
    assert missing.returncode == 2
    assert "pip install 'fastapi-connect-auth[cli]'" in missing.stderr
    assert "Traceback" not in missing.stderr

    checked(sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", python, f"{wheel}[cli]", cwd=tmp_path)
    accepted = run(script, *args, "--secret-env", "TENANT_SECRET", "--json", cwd=tmp_path, env=env)
    rejected = run(script, *args, "--secret-env", "TENANT_SECRET", "--method", "POST", cwd=tmp_path, env=env)
    as_module = run(python, "-m", "fastapi_connect_auth", *args, "--secret-env", "TENANT_SECRET", cwd=tmp_path, env=env)
    usage = run(script, "explain", good, "--url", "/webhook", cwd=tmp_path, env=env)

    assert accepted.returncode == 0, accepted.stderr
    out = json.loads(accepted.stdout)
    assert (out["valid"], out["code"], out["kind"]) == (True, None, "Connect HS256")
    assert rejected.returncode == 1
    assert "REJECTED INVALID_QSH" in rejected.stdout
    assert "method: the token was made for GET, not POST" in rejected.stdout
    assert as_module.returncode == 0
    assert "ACCEPTED" in as_module.stdout
    assert usage.returncode == 2
    assert "Usage: fastapi-connect-auth explain" in usage.stderr
    for result in (missing, accepted, rejected, as_module, usage):
        output = result.stdout + result.stderr
        assert SECRET not in output
        assert good not in output
        assert good.rpartition(".")[2] not in output


@pytest.mark.parametrize("module", ["fastapi_connect_auth._cli", "fastapi_connect_auth._explain"])
def test_the_command_line_modules_are_not_imported_by_the_package(module: str) -> None:
    """`import fastapi_connect_auth` costs an app nothing for the command line (nor needs Click)."""
    probe = f"import sys, fastapi_connect_auth; print({module!r} in sys.modules)"
    assert run(sys.executable, "-c", probe, cwd=ROOT).stdout.strip() == "False"
