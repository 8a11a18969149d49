"""`make demo`, run once as a newcomer would (minus the install): every step verified, the app stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx2
import pytest

from example_app.demo import Steps
from tests._keyserver import free_loopback_port

ROOT = Path(__file__).resolve().parent.parent


def test_the_demo_verifies_every_step_and_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "example_app.demo"],
        cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert "✗" not in output
    for line in (
        "✓ Signed install (RS256, kid, aud, QSH) accepted (204)",
        "✓ Install signed with another key refused (401 INVALID_SIGNATURE)",
        "✓ jira:issue_created accepted and stored (204)",
        "✓ Inbox page loads with Jira's query parameters (computed QSH) (200)",
        "✓ Context call GET /api/events lists both events, newest first (200)",
        "✓ Inbox shows the live issue summary fetched from Jira's REST API as the user "
        "(user token from the JWT bearer grant) (200)",
        "✓ User A, allowed to see the restricted issue, sees it in the inbox (200)",
        "✓ User B, whom Jira hides the issue from (404 as that user), does not see it (nor the webhook's copy) (200)",
        "✓ Jira's REST API cannot find the issue (404): its events are left out, never shown from the webhook (200)",
        "✓ Webhook signed with the old secret refused (401 INVALID_SIGNATURE)",
        "✓ Webhook from the uninstalled tenant refused (401 UNKNOWN_ISSUER)",
        "✓ Signed install accepted again (204)",
        "The app fetched the install key 1 time(s)",
        "The fake Jira verified the app's token on 9 of 9 call(s).",
        "Stopped the example app, the key server and the fake Jira.",
        "✓ Connect-on-Forge install (installationId in the installed payload) accepted (204)",
        "✓ Forge UI call GET /forge/whoami linked to the Connect tenant (200)",
        "✓ The system token calls the fake product API (Bearer, pinned to app.apiBaseUrl) (200)",
        "✓ Another Forge app's FIT refused (the audience is configured, never read from the token) (401 WRONG_AUDIENCE)",
        "The app fetched Forge's JWKS 1 time(s)",
        "✓ Context call with an anonymous context token (no user) refused (403 UNAUTHORIZED_REQUEST)",
        "✓ The same FIT with another body refused (the FIT signs no body) (409 DELIVERY_CONFLICT)",
        "✓ A UI call's FIT on the event route refused (it may come from a browser) (401 WRONG_INVOCATION)",
        "✓ Forge installed event recorded (204)",
        "✓ Upgraded event naming another installation refused, nothing recorded (401 INSTALLATION_MISMATCH)",
        "✓ Lifecycle event with a UI call's FIT refused (401 WRONG_INVOCATION)",
        "✓ Lifecycle event with a product event's FIT refused (401 WRONG_INVOCATION)",
        "✓ GET /forge/whoami says the installation is uninstalled (200)",
        "✓ A late installed event after the preUninstall answered 2xx, ignored (204)",
        "✓ GET /forge/whoami says the installation is still uninstalled (200)",
        "✓ All 41 steps verified.",
    ):
        assert line in output


def test_a_step_that_misbehaves_is_marked_and_counted(capsys: pytest.CaptureFixture[str]) -> None:
    steps = Steps()
    steps.expect("refused as expected", httpx2.Response(401, json={"code": "UNKNOWN_ISSUER"}), 401, "UNKNOWN_ISSUER")
    steps.expect("accepted when it should be refused", httpx2.Response(204), 401, "UNKNOWN_ISSUER")
    steps.expect("refused with another code", httpx2.Response(401, json={"code": "INVALID_QSH"}), 401, "UNKNOWN_ISSUER")
    steps.expect("not JSON", httpx2.Response(200, text="<html>"), 200, check=lambda response: response.json() == [])
    assert (steps.passed, steps.failed) == (1, 3)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == "  ✓ refused as expected (401 UNKNOWN_ISSUER)"
    assert printed[1].startswith("  ✗ accepted when it should be refused: expected 401 UNKNOWN_ISSUER, got 204")
    assert [line[:3] for line in printed[2:]] == ["  ✗", "  ✗"]


def run_demo(database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "example_app.demo"],
        cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "DATABASE_URL": database_url},
        capture_output=True,
        encoding="utf-8",
        timeout=90,
        check=False,
    )


def test_the_demo_runs_on_the_database_url_it_is_given(postgres_url: str) -> None:
    """`make demo DATABASE_URL=postgresql://…`: the app runs on PostgreSQL, and every step passes there too."""
    result = run_demo(postgres_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Database: postgresql://postgres@/" in result.stdout
    assert "✗" not in result.stdout
    assert "✓ All " in result.stdout


def test_an_unreachable_database_fails_the_demo_in_one_line() -> None:
    port = free_loopback_port()  # nothing listens there
    result = run_demo(f"postgresql://demo:hunter2-password@127.0.0.1:{port}/connect")
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"make demo: cannot reach DATABASE_URL postgresql://demo:***@127.0.0.1:{port}/connect: ")
    assert "hunter2" not in line
