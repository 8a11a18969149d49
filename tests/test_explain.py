"""`fastapi-connect-auth explain`: each hint on a token built for that mistake, each refusal code reached.

Tokens are made with PyJWT directly and QSHs hashed here from canonical strings
written out by hand. Every run's stdout and stderr are checked for the secret, the
tokens and their signatures (`Cli.run`), whatever the test asserts besides.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from fastapi_connect_auth import AuthErrorCode
from fastapi_connect_auth._cli import cli as command
from fastapi_connect_auth._cli import main as cli_main
from tests._keyserver import Reply, rsa_key, serve_keys

SECRET = "explain-secret-" + "s" * 32
BASE = "https://app.example.com"
KID = "prod/connect/2024-11/install-key_1.pem"
FORGE_KID = "forge/invocation-token/key-1"
APP_UUID = "6c9a4a8f-27c5-4b7e-8f5e-3b9f2d0c1a77"
APP_ARI = f"ari:cloud:ecosystem::app/{APP_UUID}"
OTHER_ARI = "ari:cloud:ecosystem::app/0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"
INSTALLATION = "ari:cloud:ecosystem::installation/2b6e1f4c-1111-4222-8333-944455556666"

UNREACHABLE = {
    AuthErrorCode.UNAUTHORIZED_REQUEST,
    AuthErrorCode.INVALID_INSTALL_PAYLOAD,
    AuthErrorCode.PAYLOAD_TOO_LARGE,
    AuthErrorCode.BODY_TIMEOUT,
    AuthErrorCode.CLIENT_DISCONNECTED,
    AuthErrorCode.DELIVERY_CONFLICT,
    AuthErrorCode.DELIVERY_STORE_FULL,
    AuthErrorCode.STORE_UNAVAILABLE,
    AuthErrorCode.UNTRUSTED_PRODUCT_HOST,
    AuthErrorCode.WRONG_INVOCATION,
    AuthErrorCode.WRONG_ENVIRONMENT,
    # Forge Containers: no token to explain, the sidecar vouches.
    AuthErrorCode.MISSING_INVOCATION_ID,
    AuthErrorCode.INVALID_INVOCATION_ID,
    AuthErrorCode.UNKNOWN_INVOCATION,
    AuthErrorCode.SIDECAR_UNAVAILABLE,
    AuthErrorCode.CONTEXT_MISMATCH,
    AuthErrorCode.USER_REQUIRED,
}
"""Codes about a body (its content, size or arrival), the store, or a restriction of the route or app (`ForgeRequest(invocation=...)`,
`ForgeAuth(environments=...)`), which the command does not take: it explains tokens (and names a FIT's invocation kind among its facts)."""


def qsh(canonical: str) -> str:
    return hashlib.sha256(canonical.encode()).hexdigest()


def hs256(canonical: str | None = "GET&/webhook&", *, secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"iss": "client-key", "iat": now, "exp": now + 180}
    if canonical is not None:
        payload["qsh"] = canonical if canonical == "context-qsh" else qsh(canonical)
    payload.update(claims)
    return jwt.encode({key: value for key, value in payload.items() if value is not None}, secret, algorithm="HS256")


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "alg": "RS256", "use": "sig"}


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(rsa_key(), KID), jwk(rsa_key(), FORGE_KID)]}))
    return path


def rs256(canonical: str = "POST&/uninstalled&", *, kid: str | None = KID, key: int = 0, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": "client-key", "iat": now, "exp": now + 180, "aud": BASE, "qsh": qsh(canonical), **claims}
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(
        {k: v for k, v in payload.items() if v is not None}, rsa_key(index=key), algorithm="RS256", headers=headers
    )


def fit(*, kid: str = FORGE_KID, key: int = 0, app: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "iss": "forge/invocation-token",
        "aud": APP_ARI,
        "iat": now,
        "nbf": now,
        "exp": now + 25,
        "jti": str(uuid.uuid4()),
        "app": {
            "id": APP_ARI,
            "installationId": INSTALLATION,
            "apiBaseUrl": "https://api.atlassian.com/ex/jira/9d1f",
            "environment": {"type": "PRODUCTION", "id": "env-1"},
            "module": {"type": "core:endpoint", "key": "remote"},
            **(app or {}),
        },
        **claims,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, rsa_key(index=key), algorithm="RS256", headers={"kid": kid})


class Cli:
    """Runs the command in-process and checks every run's output for secrets, tokens and signatures."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def run(self, *args: str, stdin: str | None = None, color: bool = False) -> Result:
        # A JWT: three base64url parts (a file path with two dots in it is not one: base64url has no "/").
        self.tokens.extend(arg for arg in args if arg.count(".") == 2 and len(arg) > 40 and "/" not in arg)
        if stdin:
            self.tokens.append(stdin.strip())
        runner = CliRunner()
        result = runner.invoke(
            command, list(args), input=stdin, env={"TENANT_SECRET": SECRET}, color=color, catch_exceptions=False
        )
        output = result.stdout + result.stderr
        assert SECRET not in output
        for token in self.tokens:
            assert token not in output
            signature = token.rpartition(".")[2]
            assert len(signature) < 16 or signature not in output
        assert "Traceback" not in output
        return result

    def json(self, *args: str, stdin: str | None = None) -> tuple[int, dict[str, Any]]:
        result = self.run(*args, "--json", stdin=stdin)
        return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def cli() -> Cli:
    return Cli()


def connect(cli: Cli, token: str, url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    return cli.json("explain", token, "--method", extra[0] if extra else "GET", "--url", url, *extra[1:])


def request(cli: Cli, token: str, method: str, url: str, *extra: str) -> tuple[int, dict[str, Any]]:
    return cli.json("explain", token, "--method", method, "--url", url, "--secret-env", "TENANT_SECRET", *extra)


# -- verdicts -------------------------------------------------------------------------------------------------------


def test_an_accepted_token_exits_0_with_the_pinned_json_fields(cli: Cli) -> None:
    status, out = request(cli, hs256("GET&/webhook&a=1&b=x%20y"), "GET", f"{BASE}/webhook?b=x+y&a=1")

    assert status == 0
    assert out["valid"] is True
    assert out["code"] is None
    assert out["kind"] == "Connect HS256"
    assert out["canonical_request"] == "GET&/webhook&a=1&b=x%20y"
    assert out["hints"] == []
    assert out["claims"]["iss"] == "client-key"
    assert out["claims"]["exp_relative"] == "expires in 3 minutes"
    assert out["claims"]["iat_relative"].startswith("issued ")
    assert out["qsh"]["matches"] is True


def test_a_rejected_token_exits_1_and_the_report_names_the_check_code_and_entry(cli: Cli) -> None:
    token = hs256("GET&/webhook&", exp=int(time.time()) - 600)
    result = cli.run("explain", token, "--method", "GET", "--url", f"{BASE}/webhook", "--secret-env", "TENANT_SECRET")

    assert result.exit_code == 1
    assert "REJECTED TOKEN_EXPIRED (check: expiry (exp))" in result.stdout
    assert "expired 10 minutes ago, beyond the 30 s leeway" in result.stdout
    assert "troubleshooting.md#token_expired" in result.stdout
    assert "\x1b[" not in result.stdout  # not a terminal: no colours


def test_the_report_is_coloured_on_a_terminal(cli: Cli) -> None:
    result = cli.run(
        "explain", hs256(), "--method", "GET", "--url", "/webhook", "--secret-env", "TENANT_SECRET", color=True
    )

    assert result.exit_code == 0
    assert "\x1b[32m\x1b[1mACCEPTED" in result.stdout


def test_expired_within_the_leeway_is_accepted_and_says_so(cli: Cli) -> None:
    status, out = request(cli, hs256(exp=int(time.time()) - 10), "GET", "/webhook")

    assert status == 0
    assert "within the 30 s leeway" in out["claims"]["exp_relative"]


def test_the_token_comes_from_stdin_or_from_the_urls_jwt_parameter(cli: Cli) -> None:
    token = hs256("GET&/page&a=1")
    from_stdin = cli.json(
        "explain", "-", "--method", "GET", "--url", "/page?a=1", "--secret-env", "TENANT_SECRET", stdin=token + "\n"
    )
    from_url = cli.json(
        "explain", "--method", "GET", "--url", f"/page?a=1&jwt={token}", "--secret-env", "TENANT_SECRET"
    )

    assert from_stdin[0] == from_url[0] == 0
    assert from_url[1]["canonical_request"] == "GET&/page&a=1"  # jwt is not part of the QSH, as on the server


def test_an_hs256_token_that_passes_every_other_check_needs_the_secret(cli: Cli) -> None:
    result = cli.run("explain", hs256(), "--method", "GET", "--url", "/webhook")

    assert result.exit_code == 2
    assert "Usage:" in result.stderr
    assert "--secret-env" in result.stderr


def test_a_definite_rejection_needs_no_secret(cli: Cli) -> None:
    status, out = cli.json("explain", hs256("GET&/other&"), "--method", "GET", "--url", "/webhook")

    assert (status, out["code"]) == (1, "INVALID_QSH")


def test_the_secret_never_comes_from_an_argument(cli: Cli) -> None:
    result = cli.run("explain", hs256(), "--method", "GET", "--url", "/webhook", "--secret", SECRET)

    assert result.exit_code == 2
    assert "No such option" in result.stderr


# -- hints for a QSH mismatch -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signed", "method", "url", "base_url", "expected"),
    [
        ("GET&/webhook&", "GET", f"{BASE}/api/webhook", None, "path prefix added: the token was made for /webhook"),
        ("GET&/webhook&", "GET", f"{BASE}/api/webhook", None, "added '/api' in front"),
        ("GET&/jira/webhook&", "GET", f"{BASE}/webhook", None, "a proxy removed '/jira' before the app"),
        ("GET&/tools/webhook&", "GET", f"{BASE}/webhook", f"{BASE}/tools", "removed '/tools'"),
        ("GET&/webhook/&", "GET", f"{BASE}/webhook", None, "trailing slash"),
        (
            "GET&/issue/A B&",
            "GET",
            f"{BASE}/issue/A%20B",
            None,
            "percent-encoding of the path: the token was made for the decoded path",
        ),
        ("GET&/issue/A%3AB&", "GET", f"{BASE}/issue/A:B", None, "the path fully percent-encoded"),
        ("GET&/issue/A%2fB&", "GET", f"{BASE}/issue/A%2FB", None, "other case"),
        (
            "GET&/search&q=a%2Bb",
            "GET",
            f"{BASE}/search?q=a+b",
            None,
            "'+' vs '%20': the token was made with '+' read as a literal plus",
        ),
        ("GET&/search&q=a%20b", "GET", f"{BASE}/search?q=a%2Bb", None, "'%2B' read as a space"),
        (
            "GET&/webhook&a=1",
            "GET",
            f"{BASE}/webhook?a=1&utm=x",
            None,
            "query parameter added: the token was made without the parameter 'utm'",
        ),
        ("GET&/webhook&a=1&k=2", "GET", f"{BASE}/webhook?a=1&k=1&k=2", None, "only one value of 'k'"),
        ("GET&/webhook&", "GET", f"{BASE}/webhook?a=1&b=2", None, "without its query string"),
        ("POST&/webhook&", "GET", f"{BASE}/webhook", None, "method: the token was made for POST, not GET"),
    ],
    ids=[
        "prefix-added",
        "prefix-named",
        "prefix-stripped",
        "base-path-stripped",
        "trailing-slash",
        "decoded-path",
        "encoded-path",
        "escape-case",
        "plus-literal",
        "plus-as-space",
        "parameter-added",
        "repeated-value-dropped",
        "query-added",
        "method",
    ],
)
def test_each_qsh_hint_names_the_mistake_that_made_the_token(
    cli: Cli, signed: str, method: str, url: str, base_url: str | None, expected: str
) -> None:
    extra = ("--base-url", base_url) if base_url else ()
    status, out = request(cli, hs256(signed), method, url, *extra)

    assert (status, out["code"]) == (1, "INVALID_QSH")
    assert out["qsh"]["matches"] is False
    assert any(expected in hint for hint in out["hints"]), out["hints"]
    assert not any(hint.startswith("none of the usual causes") for hint in out["hints"])


def test_a_context_token_on_a_computed_route_is_named(cli: Cli) -> None:
    status, out = request(cli, hs256("context-qsh"), "GET", "/api/events")

    assert (status, out["code"], out["kind"]) == (1, "INVALID_QSH", "context")
    assert out["hints"][0].startswith("context-qsh: this is a context token")
    assert request(cli, hs256("context-qsh"), "GET", "/api/events", "--qsh", "context")[0] == 0


def test_a_request_bound_token_on_a_context_route_is_named(cli: Cli) -> None:
    status, out = request(cli, hs256("GET&/api/events&"), "GET", "/api/events", "--qsh", "context")

    assert (status, out["code"]) == (1, "INVALID_QSH")
    assert "qsh='any'" in out["hints"][0]


def test_an_unexplained_mismatch_says_none_of_the_usual_causes_matches(cli: Cli) -> None:
    status, out = request(cli, hs256("GET&/somewhere/else&z=9"), "GET", "/webhook")

    assert (status, out["code"]) == (1, "INVALID_QSH")
    assert out["hints"][0].startswith("none of the usual causes")


# -- every refusal code the command can reach -------------------------------------------------------------------------


def _connect_cases(jwks: Path) -> dict[AuthErrorCode, list[str]]:
    now = int(time.time())
    keys = ["--jwks", str(jwks), "--secret-env", "TENANT_SECRET"]
    return {
        AuthErrorCode.MISSING_JWT: ["--method", "GET", "--url", "/webhook"],
        AuthErrorCode.FAILED_TO_DECODE: ["not.a-jwt", "--method", "GET", "--url", "/webhook"],
        AuthErrorCode.INVALID_ALGORITHM: [
            jwt.encode({"iss": "c", "exp": now + 60, "qsh": qsh("GET&/webhook&")}, SECRET * 2, algorithm="HS512"),
            *("--method", "GET", "--url", "/webhook", *keys),
        ],
        AuthErrorCode.TOKEN_EXPIRED: [hs256(exp=now - 600), "--method", "GET", "--url", "/webhook"],
        AuthErrorCode.TOKEN_NOT_YET_VALID: [hs256(nbf=now + 600), "--method", "GET", "--url", "/webhook"],
        AuthErrorCode.MISSING_QSH: [hs256(None), "--method", "GET", "--url", "/webhook"],
        AuthErrorCode.INVALID_QSH: [hs256(), "--method", "POST", "--url", "/webhook"],
        AuthErrorCode.INVALID_SIGNATURE: [
            hs256(secret="another-secret-" + "o" * 32),
            *("--method", "GET", "--url", "/webhook", *keys),
        ],
        AuthErrorCode.UNKNOWN_ISSUER: [hs256(iss="x" * 300), "--method", "GET", "--url", "/webhook", *keys],
        AuthErrorCode.MISSING_KID: [rs256(kid=None), "--method", "POST", "--url", f"{BASE}/uninstalled", *keys],
        AuthErrorCode.INVALID_KID: [rs256(kid="../../etc"), "--method", "POST", "--url", f"{BASE}/uninstalled", *keys],
        AuthErrorCode.WRONG_AUDIENCE: [
            rs256(aud="https://elsewhere.example.com"),
            *("--method", "POST", "--url", f"{BASE}/uninstalled", *keys),
        ],
        AuthErrorCode.FAILED_TO_OBTAIN_PUBLIC_KEY: [
            rs256(kid="prod/not-in-the-set"),
            *("--method", "POST", "--url", f"{BASE}/uninstalled", *keys),
        ],
    }


def _forge_cases(jwks: Path) -> dict[AuthErrorCode, list[str]]:
    args = ["--method", "POST", "--url", "https://remote.example.com/forge/events", "--app-id", APP_UUID]
    args += ["--jwks", str(jwks)]
    now = int(time.time())
    return {
        AuthErrorCode.WRONG_ISSUER: [fit(iss="someone-else"), *args],
        AuthErrorCode.WRONG_AUDIENCE: [fit(aud=OTHER_ARI), *args],
        AuthErrorCode.UNTRUSTED_API_HOST: [fit(app={"apiBaseUrl": "https://evil.example.com/ex"}), *args],
        AuthErrorCode.INVALID_IC_LABEL: [fit(icLabel="Not A Label!"), *args],
        AuthErrorCode.INSTALLATION_MISMATCH: [fit(app={"installation": {"id": "another"}}), *args],
        AuthErrorCode.INVALID_SIGNATURE: [fit(key=1), *args],
        AuthErrorCode.TOKEN_EXPIRED: [fit(exp=now - 120, iat=now - 145, nbf=now - 145), *args],
        AuthErrorCode.INVALID_TOKEN_LIFETIME: [fit(exp=now + 86_400), *args],
    }


def test_every_refusal_code_is_reachable(cli: Cli, jwks_file: Path) -> None:
    reached: set[AuthErrorCode] = set()
    for cases in (_connect_cases(jwks_file), _forge_cases(jwks_file)):
        for code, args in cases.items():
            status, out = cli.json("explain", *args)
            assert (status, out["code"]) == (1, code.value), (code, out)
            assert out["valid"] is False
            assert out["troubleshooting"].endswith(f"#{code.value.lower()}")
            reached.add(code)

    assert set(AuthErrorCode) - reached == UNREACHABLE


def test_a_signed_token_is_verified_with_the_jwks_file(cli: Cli, jwks_file: Path) -> None:
    status, out = cli.json(
        "explain", rs256(), "--method", "POST", "--url", f"{BASE}/uninstalled", "--jwks", str(jwks_file)
    )

    assert (status, out["kind"]) == (0, "signed RS256")
    assert "authorization_method='publicKey'" in out["hints"][0]


def test_a_kid_missing_from_the_jwks_is_named_with_the_kids_it_has(cli: Cli, jwks_file: Path) -> None:
    token = rs256(kid="prod/not-in-the-set")
    status, out = cli.json(
        "explain", token, "--method", "POST", "--url", f"{BASE}/uninstalled", "--jwks", str(jwks_file)
    )

    assert status == 1
    assert "'prod/not-in-the-set' is not in the JWKS" in out["hints"][0]
    assert KID in out["hints"][0]


def test_a_wrong_audience_names_the_token_audience_and_the_base_url(cli: Cli, jwks_file: Path) -> None:
    token = rs256(aud="https://old-tunnel.example.com")
    _, out = cli.json("explain", token, "--method", "POST", "--url", f"{BASE}/uninstalled", "--jwks", str(jwks_file))

    assert "https://old-tunnel.example.com" in out["hints"][0]
    assert BASE in out["hints"][0]


# -- Forge ----------------------------------------------------------------------------------------------------------


def forge(cli: Cli, token: str, jwks: str, *extra: str) -> tuple[int, dict[str, Any]]:
    return cli.json(
        "explain", token, "--method", "POST", "--url", "https://remote.example.com/forge/events",
        "--app-id", APP_UUID, "--jwks", jwks, *extra,
    )  # fmt: skip


def test_a_valid_fit_is_explained_with_its_shape_environment_and_lifetime(cli: Cli, jwks_file: Path) -> None:
    status, out = forge(cli, fit(), str(jwks_file))

    assert (status, out["valid"], out["kind"], out["code"]) == (0, True, "Forge", None)
    assert out["canonical_request"] is None
    facts = "\n".join(out["facts"])
    assert f"kid '{FORGE_KID}': present in the JWKS" in facts
    assert "a backend call (invokeRemote)" in facts
    assert "environment: 'PRODUCTION'" in facts
    assert "lifetime: 25 s" in facts
    assert "host on the allow-list" in facts
    assert out["claims"]["exp_relative"].startswith("expires in")


@pytest.mark.parametrize(
    ("claims", "shape"),
    [
        ({"principal": "557058:abc"}, "a UI call (requestRemote or a UI resolver)"),
        ({"app": {"module": {"type": "core:trigger", "key": "on-issue"}}}, "a product event or scheduled trigger"),
    ],
)
def test_the_invocation_shape_is_named(cli: Cli, jwks_file: Path, claims: dict[str, Any], shape: str) -> None:
    _, out = forge(cli, fit(**claims), str(jwks_file))

    assert any(shape in fact for fact in out["facts"])


def test_forge_hints(cli: Cli, jwks_file: Path) -> None:
    _, wrong_app = forge(cli, fit(aud=OTHER_ARI, app={"id": OTHER_ARI}), str(jwks_file))
    _, staging = forge(cli, fit(app={"apiBaseUrl": "https://api.stg.atlassian.com/ex/jira/1"}), str(jwks_file))
    _, unknown_kid = forge(cli, fit(kid="forge/other"), str(jwks_file))
    _, expired = forge(cli, fit(exp=int(time.time()) - 100), str(jwks_file))

    assert OTHER_ARI in wrong_app["hints"][0]
    assert "never the token's own" in wrong_app["hints"][0]
    assert staging["hints"] == ["a staging app's FIT: ForgeAuth(staging=True)."]
    assert (unknown_kid["code"], "staging FIT against production keys" in unknown_kid["hints"][0]) == (
        "FAILED_TO_OBTAIN_PUBLIC_KEY",
        True,
    )
    assert "FITs live about 25 s" in expired["hints"][0]


def test_a_fit_is_checked_against_a_jwks_url(cli: Cli) -> None:
    with serve_keys() as server:
        server.replies["/jwks.json"] = Reply(body=json.dumps({"keys": [jwk(rsa_key(), FORGE_KID)]}).encode())
        status, out = forge(cli, fit(), f"{server.url}/jwks.json")
        server.replies["/jwks.json"] = Reply(status=503)
        outage_status, outage = forge(cli, fit(), f"{server.url}/other.json")

    assert (status, out["valid"]) == (0, True)
    assert (outage_status, outage["code"]) == (1, "FAILED_TO_OBTAIN_PUBLIC_KEY")


def test_a_signed_connect_token_is_checked_against_a_jwks_url(cli: Cli) -> None:
    with serve_keys() as server:
        server.replies["/keys"] = Reply(body=json.dumps({"keys": [jwk(rsa_key(), KID)]}).encode())
        status, _ = cli.json(
            "explain", rs256(), "--method", "POST", "--url", f"{BASE}/uninstalled", "--jwks", f"{server.url}/keys"
        )

    assert status == 0


# -- usage errors and bad input -------------------------------------------------------------------------------------


@pytest.fixture
def not_json(tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text("<html>not json</html>")
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--url", "/webhook"], "Missing option '--method'"),
        (["--method", "GET", "--url", "/x", "--qsh", "sometimes"], "Invalid value for '--qsh'"),
        (["--method", "GET", "--url", "/x", "--secret-env", "UNSET_VARIABLE_FOR_EXPLAIN"], "is not set or empty"),
        (["--method", "GET", "--url", "/x", "--secret-env", "NOT A NAME"], "takes the name of an environment variable"),
        (["--method", "GET", "--url", "ftp://host/x"], "--url must be an http(s) URL or a path"),
        (["--method", "GET", "--url", "webhook"], "a path starting with '/'"),
        (["--method", "G E T", "--url", "/x"], "--method must be an HTTP method"),
        (["--method", "GET", "--url", "/x", "--base-url", "not-a-url"], "--base-url"),
        (["--method", "GET", "--url", "/x", "--app-id", "not-a-uuid"], "--app-id"),
        (["--method", "GET", "--url", "/x", "--jwks", "/nonexistent/jwks.json"], "--jwks: cannot read"),
    ],
)
def test_usage_errors_exit_2_with_a_usage_message(cli: Cli, args: list[str], message: str) -> None:
    result = cli.run("explain", hs256(), *args)

    assert result.exit_code == 2
    assert "Usage: " in result.stderr
    assert message in result.stderr


def test_a_jwks_file_that_is_not_json_is_a_clear_usage_error(cli: Cli, not_json: Path) -> None:
    result = cli.run(
        "explain", fit(), "--method", "POST", "--url", "/forge", "--app-id", APP_UUID, "--jwks", str(not_json)
    )

    assert result.exit_code == 2
    assert "is not a usable JWKS: the JWKS is not a valid key set" in result.stderr


def test_a_fit_without_an_app_id_is_a_usage_error(cli: Cli, jwks_file: Path) -> None:
    result = cli.run("explain", fit(), "--method", "POST", "--url", "/forge", "--jwks", str(jwks_file))

    assert result.exit_code == 2
    assert "needs --app-id" in result.stderr


@pytest.mark.parametrize(
    "token",
    [
        "x" * 100_000,  # huge
        "eyJhbGciOiJIUzI1NiJ9.@@@@.c2ln",  # bad base64
        "bm90IGpzb24.eyJpc3MiOiJ4In0.c2ln",  # a header that is not JSON
        "e30.e30.",  # JSON, but no claims
        "\x00\x01\x02",
    ],
    ids=["huge", "bad-base64", "header-not-json", "no-claims", "control-characters"],
)
def test_bad_tokens_are_rejected_with_a_clear_message(cli: Cli, token: str) -> None:
    status, out = cli.json("explain", "-", "--method", "GET", "--url", "/x", stdin=token)

    assert (status, out["code"], out["kind"] in (None, "Connect HS256")) == (1, "FAILED_TO_DECODE", True)
    assert out["message"].startswith("Failed to decode the JWT")


def test_two_jwt_parameters_are_refused_as_the_server_does(cli: Cli) -> None:
    status, out = cli.json("explain", "--method", "GET", "--url", f"/x?jwt={hs256()}&jwt={hs256()}")

    assert (status, out["code"]) == (1, "FAILED_TO_DECODE")


def test_version_and_help(cli: Cli) -> None:
    assert cli.run("--version").stdout.startswith("fastapi-connect-auth, version ")
    assert "[TOKEN | -]" in cli.run("explain", "--help").stdout


def test_main_returns_the_exit_status(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANT_SECRET", SECRET)
    token = hs256()
    assert cli_main(["explain", token, "--method", "GET", "--url", "/webhook", "--secret-env", "TENANT_SECRET"]) == 0
    assert cli_main(["explain", token, "--method", "PUT", "--url", "/webhook", "--secret-env", "TENANT_SECRET"]) == 1
    assert cli_main(["explain", "--url", "/webhook"]) == 2
    captured = capsys.readouterr()
    assert "Missing option '--method'" in captured.err
    assert SECRET not in captured.out + captured.err
    assert token not in captured.out + captured.err


def test_without_click_the_command_says_how_to_install_the_extra(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi_connect_auth import __main__ as entry

    monkeypatch.setitem(sys.modules, "click", None)  # what `import click` meets where Click is not installed
    monkeypatch.delitem(sys.modules, "fastapi_connect_auth._cli")

    assert entry.main(["explain", "--help"]) == 2
    assert "pip install 'fastapi-connect-auth[cli]'" in capsys.readouterr().err


def test_the_report_shows_header_claims_qsh_facts_and_hints(cli: Cli) -> None:
    token = hs256("GET&/webhook&")
    result = cli.run(
        "explain", token, "--method", "GET", "--url", f"{BASE}/api/webhook", "--secret-env", "TENANT_SECRET"
    )

    assert result.exit_code == 1
    out = result.stdout
    assert out.startswith("REJECTED INVALID_QSH (check: query string hash (qsh))\n")
    for expected in [
        "token:        Connect HS256",
        'alg          "HS256"',
        'iss          "client-key"',
        "canonical request: GET&/api/webhook&",
        f"qsh of the token: {qsh('GET&/webhook&')}",
        f"qsh computed:     {qsh('GET&/api/webhook&')} (does not match)",
        "facts:\n  - leeway on exp and nbf: 30 s",
        "hints:\n  - path prefix added",
    ]:
        assert expected in out


# -- what the token says is escaped ---------------------------------------------------------------------------------

CONTROLS = [
    "\x1b",  # ESC: starts every ANSI sequence
    "\x07",  # BEL: ends an OSC (window title) sequence
    "\r",  # back to the line's start, to overwrite the verdict
    "\x7f",  # DEL
    "\x9b",  # C1 CSI: an ANSI sequence in one character
    "\x85",  # C1 next line
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\u2069",  # pop directional isolate
    "\u200b",  # zero-width space
    "\u200f",  # right-to-left mark
    "\u2028",  # line separator
    "\ud800",  # a lone surrogate (JSON's \ud800): no terminal encoding takes it
]


OWN_STYLES = (
    "\x1b[31m\x1b[1mREJECTED INVALID_QSH\x1b[0m",
    "\x1b[31m\x1b[1mREJECTED FAILED_TO_DECODE\x1b[0m",  # the library refuses a lone surrogate
    "\x1b[31mdoes not match\x1b[0m",
    "\x1b[33m\x1b[1mhints:\x1b[0m",
)
"""The only escape sequences the report itself writes in these tests (on a terminal)."""


def visible(text: str) -> bool:
    """Whether `text` reaches a terminal as seen: nothing but printable characters, line breaks and our colours."""
    for style in OWN_STYLES:
        text = text.replace(style, "")
    return all(char.isprintable() or char == "\n" for char in text)


@pytest.mark.parametrize("control", CONTROLS, ids=[f"U+{ord(char):04X}" for char in CONTROLS])
def test_every_control_character_the_token_carries_is_escaped(cli: Cli, control: str) -> None:
    text = f"a{control}[31mb"
    now = int(time.time())
    token = jwt.encode(
        {"iss": "client-key", "iat": now, "exp": now + 60, "qsh": text, f"claim{control}": text, "sub": text},
        SECRET,
        algorithm="HS256",
        headers={"kid": text},
    )
    args = ("explain", token, "--method", "GET", "--url", f"{BASE}/webhook", "--secret-env", "TENANT_SECRET")
    escaped = control.encode("unicode_escape").decode()

    for color in (False, True):
        result = cli.run(*args, color=color)
        assert result.exit_code == 1
        assert visible(result.stdout)
        assert f"qsh of the token: a{escaped}[31mb" in result.stdout
        assert f"claim{escaped}" in result.stdout
        assert ("\x1b[31m\x1b[1mREJECTED " in result.stdout) is color

    as_json = cli.run(*args, "--json")
    assert visible(as_json.stdout)
    out = json.loads(as_json.stdout)
    assert (out["qsh"]["token"], out["claims"][f"claim{control}"], out["header"]["kid"]) == (text, text, text)


def test_facts_about_a_fit_escape_what_it_says(cli: Cli, jwks_file: Path) -> None:
    token = fit(app={"apiBaseUrl": "https://api.atlassian.com/\x9b2J\u202e", "module": {"type": "\x1b[32mtrigger"}})
    result = cli.run(
        "explain", token, "--method", "POST", "--url", "/forge", "--app-id", APP_ARI, "--jwks", str(jwks_file)
    )

    assert result.exit_code == 1  # UNTRUSTED_API_HOST
    assert visible(result.stdout)
    assert "'https://api.atlassian.com/\\x9b2J\\u202e'" in result.stdout
    assert "(module '\\x1b[32mtrigger')" in result.stdout


def test_printable_text_is_shown_as_it_is(cli: Cli) -> None:
    token = hs256("GET&/webhook&", sub="José 日本 \\x1b", context={"user": {"displayName": "Zoë"}})
    result = cli.run("explain", token, "--method", "GET", "--url", "/webhook", "--secret-env", "TENANT_SECRET")

    assert result.exit_code == 0
    assert 'sub          "José 日本 \\\\x1b"' in result.stdout  # a backslash the token wrote is json's as always
    assert '{"user": {"displayName": "Zoë"}}' in result.stdout
    assert request(cli, token, "GET", "/webhook")[1]["claims"]["sub"] == "José 日本 \\x1b"
